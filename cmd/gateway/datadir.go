package main

import (
	"fmt"
	"os"
)

// prepareDataDir creates the data folder, or narrows an existing one, to mode 0700: it holds
// every partner's data and the token signing key, for the gateway's user alone.
func prepareDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create data folder: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("restrict data folder %s to its owner: %w", dir, err)
	}
	return nil
}
