package sinks_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/opengw/gateway/sinks"
)

// TestFileSinkIsOwnerOnly: the output file is 0600, also one an earlier version created 0644.
func TestFileSinkIsOwnerOnly(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "old.ndjson")
	if err := os.WriteFile(old, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{filepath.Join(dir, "new.ndjson"), old} {
		s, err := sinks.OpenFileSink("out", path)
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", filepath.Base(path), fi.Mode().Perm())
		}
	}
}
