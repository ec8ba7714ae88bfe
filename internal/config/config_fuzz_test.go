package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoad: whatever the file holds, Load never panics; it either refuses with problems that
// each name the file, or returns a configuration that meets its own validation and has every
// default applied.
func FuzzLoad(f *testing.F) {
	if example, err := os.ReadFile("../../examples/gateway.yaml"); err == nil {
		f.Add(example)
	}
	for _, s := range []string{
		"server:\n  addr: ${ADDR:-127.0.0.1:9}\n  tls: {cert_file: a, key_file: b}\n",
		"limits: {max_depth: 3, max_inflight_bytes: 20971520}\nclients:\n  - id: a\n    rate_limit: {requests_per_second: 1.5}\n",
		"clients:\n  - id: a\n  - id: a\n    scopes: [push, admin]\n",
		"pipeline: {fragment_size: 0}\nsinks:\n  s: {type: sqlite, table: t, key: k}\n",
		"a: &x [*x]\n", "- 1\n", "{", "server: 7\n", "",
	} {
		f.Add([]byte(s))
	}
	path := filepath.Join(f.TempDir(), "gateway.yaml") // one file, rewritten by each run
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(path, func(string) string { return "" })
		if err != nil {
			if !strings.HasPrefix(err.Error(), path) {
				t.Fatalf("error does not name the file: %q", err)
			}
			return
		}
		if ps := cfg.validate(); len(ps) > 0 {
			t.Fatalf("accepted a config with problems: %+v", ps)
		}
		if cfg.Server.Addr == "" || cfg.DataDir == "" || cfg.Limits.MaxDepth < 3 || cfg.Limits.MaxDepth > 10000 ||
			cfg.Limits.MaxInflightBytes <= 0 || cfg.Server.ReadTimeout <= 0 || cfg.Pipeline.FragmentSize <= 0 {
			t.Fatalf("defaults not applied: %+v", cfg)
		}
		ids := map[string]bool{}
		for _, c := range cfg.Clients {
			if c.ID == "" || ids[c.ID] {
				t.Fatalf("accepted client id %q twice or empty", c.ID)
			}
			ids[c.ID] = true
		}
	})
}
