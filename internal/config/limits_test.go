package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestServerAndLimitDefaults(t *testing.T) {
	cfg, err := Load(write(t, "clients:\n  - id: a\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Server{Addr: "127.0.0.1:8080", ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 5 * time.Minute,
		WriteTimeout: 6 * time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	if cfg.Server != want {
		t.Errorf("server = %+v, want %+v", cfg.Server, want)
	}
	if l := cfg.Limits; l != (Limits{MaxDepth: 64, MaxInflightBytes: 256 << 20, MemoryLimitBytes: 96 << 20, AuthFailuresPerSecond: 1, AuthFailureBurst: 20}) {
		t.Errorf("limits = %+v", l)
	}
	if c, k := cfg.TLSFiles(); c != "" || k != "" {
		t.Errorf("TLS files = %q, %q without tls", c, k)
	}
	if cfg.Clients[0].RateLimit != (RateLimit{}) {
		t.Errorf("rate limit = %+v, want none", cfg.Clients[0].RateLimit)
	}
}

func TestServerLimitsAndRateLimitsAreRead(t *testing.T) {
	p := write(t, `server:
  read_timeout: 30s
  max_header_bytes: 8192
  tls: {cert_file: certs/gw.crt, key_file: /etc/gw/gw.key}
limits:
  max_depth: 20
  max_inflight_bytes: 104857600
  memory_limit_bytes: -1
  auth_failures_per_second: -1
clients:
  - id: a
    rate_limit: {requests_per_second: 50, burst: 100, records_per_second: 20000}
`)
	cfg, err := Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.ReadTimeout != 30*time.Second || cfg.Server.MaxHeaderBytes != 8192 || cfg.Server.WriteTimeout != 6*time.Minute {
		t.Errorf("server = %+v", cfg.Server)
	}
	if c, k := cfg.TLSFiles(); c != filepath.Join(filepath.Dir(p), "certs/gw.crt") || k != "/etc/gw/gw.key" {
		t.Errorf("TLS files = %q, %q", c, k)
	}
	if l := cfg.Limits; l.MaxDepth != 20 || l.MaxInflightBytes != 100<<20 || l.MemoryLimitBytes != -1 || l.AuthFailuresPerSecond != -1 || l.AuthFailureBurst != 20 {
		t.Errorf("limits = %+v", l)
	}
	if rl := cfg.Clients[0].RateLimit; rl != (RateLimit{RequestsPerSecond: 50, Burst: 100, RecordsPerSecond: 20000}) {
		t.Errorf("rate limit = %+v", rl)
	}
}

func TestServerAndLimitProblems(t *testing.T) {
	cases := []struct{ name, body, want string }{
		{"negative timeout", "server:\n  idle_timeout: -1s\n", "gateway.yaml:2: server.idle_timeout -1s must not be negative"},
		{"cert without key", "server:\n  tls: {cert_file: a.crt}\n", `server.tls: give both cert_file and key_file, or neither (cert_file "a.crt", key_file "")`},
		{"depth too small", "limits:\n  max_depth: 2\n", "gateway.yaml:2: limits.max_depth 2 is outside 3..10000"},
		{"depth too large", "limits:\n  max_depth: 20000\n", "limits.max_depth 20000 is outside 3..10000"},
		{"inflight below one push", "limits:\n  max_inflight_bytes: 1000\n", "gateway.yaml:2: limits.max_inflight_bytes 1000 is below one 10 MiB push"},
		{"memory limit too small", "limits:\n  memory_limit_bytes: 1048576\n", "gateway.yaml:2: limits.memory_limit_bytes 1048576 is below the minimum 33554432 (32 MiB); -1 keeps Go's defaults"},
		{"negative memory limit", "limits:\n  memory_limit_bytes: -5\n", "gateway.yaml:2: limits.memory_limit_bytes -5 must be -1 (Go's defaults), 0 (the default) or at least 33554432 (32 MiB)"},
		{"negative webhook timeout", "webhooks:\n  key_overlap: 1h\n  timeout: -1s\n", "gateway.yaml:3: webhooks.timeout -1s must not be negative"},
		{"negative key overlap", "webhooks:\n  key_overlap: -2h\n", "gateway.yaml:2: webhooks.key_overlap -2h0m0s must not be negative"},
		{"zero webhook wait", "webhooks:\n  timeout: 5s\n  schedule: [1s, 0s]\n", "gateway.yaml:3: webhooks.schedule[1] is 0s; every wait must be positive"},
		{"bad auth throttle", "limits:\n  auth_failures_per_second: -2\n", "limits.auth_failures_per_second -2 must be positive, or -1"},
		{"negative rate", "clients:\n  - id: a\n    rate_limit: {requests_per_second: -5}\n", `:2: client "a": rate_limit values must not be negative`},
		{"burst without rate", "clients:\n  - id: a\n    rate_limit: {burst: 5}\n", `:2: client "a": rate_limit.burst 5 needs requests_per_second`},
		{"unknown rate key", "clients:\n  - id: a\n    rate_limit: {rps: 5}\n", `:3:18: clients[0].rate_limit: unknown key "rps"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(write(t, c.body), nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to contain %q", err, c.want)
			}
		})
	}
}
