package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opengw/gateway/internal/pgtest"
)

// gatewayBackend is a storage backend the end-to-end tests run on: config turns a configuration
// file into one that runs on it.
type gatewayBackend struct {
	name   string
	config func(t *testing.T, configPath string) string
}

// gatewayBackends: every end-to-end test that involves state runs on each. The PostgreSQL one
// gets a fresh database per test (internal/pgtest; skipped with a message when no server is
// reachable, never under .ci/run).
var gatewayBackends = []gatewayBackend{
	{"SQLite", func(_ *testing.T, configPath string) string { return configPath }},
	{"PostgreSQL", func(t *testing.T, configPath string) string { return withDatabase(t, configPath, pgtest.New(t)) }},
}

// forEachBackend runs test as a subtest on every backend.
func forEachBackend(t *testing.T, test func(t *testing.T, b gatewayBackend)) {
	for _, b := range gatewayBackends {
		t.Run(b.name, func(t *testing.T) { test(t, b) })
	}
}

// withDatabase writes a copy of the configuration at configPath that runs on the database at
// url (its mappings folder made absolute, so the copy can live elsewhere) and returns its path.
func withDatabase(t *testing.T, configPath, url string) string {
	t.Helper()
	data, err := os.ReadFile(configPath)
	if err != nil {
		t.Fatal(err)
	}
	mappings, err := filepath.Abs(filepath.Join(filepath.Dir(configPath), "mappings"))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(data), "\nmappings: mappings", "\nmappings: "+mappings, 1)
	s = strings.TrimRight(s, "\n") + "\ndatabase: " + url + "\n"
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
