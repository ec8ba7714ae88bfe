package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestHelpExitsZero: `gateway --help` and `gateway CMD --help` succeed (main exits 0 when
// run returns nil) and print the usage.
func TestHelpExitsZero(t *testing.T) {
	for _, args := range [][]string{
		{"--help"}, {"-h"}, {"help"},
		{"serve", "--help"}, {"check", "--help"}, {"map", "-h"},
	} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), args, func(string) string { return "" }, strings.NewReader(""), &stdout, &stderr)
		if err != nil {
			t.Errorf("%q: %v", args, err)
		}
		out := stdout.String() + stderr.String()
		if want := "--config"; !strings.Contains(out, want) && !strings.Contains(out, "-config") {
			t.Errorf("%q printed no usage: %q", args, out)
		}
	}
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"check", "--nope"}, func(string) string { return "" }, strings.NewReader(""), &stdout, &stderr); err == nil {
		t.Errorf("an unknown flag succeeded")
	}
}
