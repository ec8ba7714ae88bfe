package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadExample(t *testing.T) {
	cfg, err := Load("../../examples/gateway.yaml", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.Addr != "127.0.0.1:8080" || len(cfg.Clients) != 3 || cfg.Clients[0].ID != "demo" || cfg.Clients[0].Secret != "demo-secret" {
		t.Fatalf("example config = %+v", cfg)
	}
	if p := cfg.Clients[2]; p.ID != "platform" || p.Secret != "platform-secret" || len(p.Scopes) != 1 || p.Scopes[0] != "internal" {
		t.Fatalf("platform client = %+v", p)
	}
	if w := cfg.Webhooks; !w.AllowPrivate || w.KeyOverlap.String() != "24h0m0s" || w.Timeout.String() != "15s" || len(w.Schedule) != 7 || w.Schedule[6].String() != "10h0m0s" {
		t.Fatalf("webhooks = %+v", w)
	}
	if got := cfg.MappingsDir(); got != filepath.Join("../../examples", "mappings") {
		t.Fatalf("mappings dir = %s", got)
	}
}

func TestEnvExpansion(t *testing.T) {
	p := write(t, "server:\n  addr: ${ADDR}\nauth:\n  jwt:\n    key: ${KEY:-fallback}\n    ttl: ${TTL}\nclients:\n  - id: a\n    secret: \"$${literal}\"\n")
	env := map[string]string{"ADDR": "0.0.0.0:9000", "TTL": "2h"}
	cfg, err := Load(p, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.Addr != "0.0.0.0:9000" || cfg.Auth.JWT.Key != "fallback" || cfg.Auth.JWT.TTL.String() != "2h0m0s" || cfg.Clients[0].Secret != "${literal}" {
		t.Fatalf("expanded = %+v", cfg)
	}
}

func TestProblemsCarryLines(t *testing.T) {
	cases := []struct {
		name, body string
		want       []string
	}{
		{"unknown keys are all reported, with did you mean", "server:\n  adr: x\nclients:\n  - id: a\n    scope: [push]\n", []string{
			`:2:3: server: unknown key "adr" (did you mean "addr"?)`,
			`:5:5: clients[0]: unknown key "scope" (did you mean "scopes"?)`,
		}},
		{"a far-off key lists the allowed ones", "server:\n  listen: x\n", []string{`:2:3: server: unknown key "listen" (allowed: addr, idle_timeout, max_header_bytes, `}},
		{"duplicate keys", "server:\n  addr: a\n  addr: b\nsinks:\n  s: {type: file}\n  s: {type: file}\n", []string{
			`:3:3: server: key "addr" appears twice`,
			`:6:3: sinks: key "s" appears twice`,
		}},
		{"unknown key inside a sink", "sinks:\n  hook:\n    type: http\n    endpoint: https://x\n", []string{
			`:4:5: sinks.hook: unknown key "endpoint" (allowed: batch_size, headers, key, max_attempts, path, table, timeout, type, url)`,
		}},
		{"unset env", "server:\n  addr: ${NOPE}\n", []string{":2: environment variable NOPE is not set"}},
		{"value of the wrong type", "pipeline:\n  fragment_size: many\n", []string{":2: cannot unmarshal !!str `many` into int"}},
		{"yaml syntax", "server:\n  addr: [x\n", []string{": invalid YAML: "}},
		{"bad scope", "clients:\n  - id: a\n    scopes: [push, admin]\n", []string{`:2: client "a": unknown scope "admin"`}},
		{"duplicate client", "clients:\n  - id: a\n  - id: a\n", []string{`:3: clients[1]: duplicate client id "a"`}},
		{"bad bcrypt", "clients:\n  - id: a\n    secret_bcrypt: plain\n", []string{`client "a": secret_bcrypt is not a bcrypt hash`}},
		{"bad tenant", "clients:\n  - id: a\n    tenants: [dk]\n", []string{`tenant "dk" is not country/tenant`}},
		{"bad fragment size at its line", "server:\n  addr: x\npipeline:\n  fragment_size: 20000\n", []string{`:4: pipeline.fragment_size 20000 is outside 1..10000`}},
		{"bad sink type at its line", "server:\n  addr: x\nsinks:\n  s:\n    type: kafka\n", []string{`:5: sink "s": type "kafka" is not one of`}},
		{"bad sink setting at its line", "sinks:\n  a: {type: file}\n  hook:\n    type: http\n    url: /in\n    batch_size: -1\n", []string{
			`:5: sink "hook": url "/in" is not an absolute http or https URL`,
			`:6: sink "hook": batch_size -1 must be positive`,
		}},
		{"missing sink setting at the sink", "sinks:\n  a: {type: file}\n  hook:\n    type: http\n", []string{`:3: sink "hook": url is required for type http`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := write(t, c.body)
			_, err := Load(p, func(string) string { return "" })
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
			if !strings.HasPrefix(err.Error(), p+":") {
				t.Errorf("error does not start with the file name: %q", err)
			}
		})
	}
}

func TestWebhooksValidation(t *testing.T) {
	p := write(t, "webhooks:\n  schedule: [1s, 0s]\n  timeout: -1s\n  allow_privat: true\nclients: []\n")
	_, err := Load(p, nil)
	if err == nil || !strings.Contains(err.Error(), `unknown key "allow_privat"`) {
		t.Fatalf("Load = %v, want the misspelt key named", err)
	}
	p = write(t, "clients:\n  - id: a\n    hubs: [h1]\n  - id: b\n    hubs: [h2, h1]\n")
	if _, err := Load(p, nil); err == nil || !strings.Contains(err.Error(), `client "b": hub "h1" is also owned by client "a"`) {
		t.Fatalf("Load = %v, want the shared hub named", err)
	}
	p = write(t, "webhooks:\n  schedule: [1s, 0s]\n  timeout: -1s\nclients: []\n")
	_, err = Load(p, nil)
	if err == nil || !strings.Contains(err.Error(), "webhooks.schedule[1] is 0s") || !strings.Contains(err.Error(), "webhooks.timeout") {
		t.Fatalf("Load = %v, want the bad schedule entry and timeout named", err)
	}
}
