package sinks_test

import (
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/opengw/gateway/sinks"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		sink string
		cfg  sinks.Config
		want string // every problem, one per line; empty: valid
	}{
		{"sqlite defaults", "activities", sinks.Config{Type: "sqlite"}, ""},
		{"sqlite full", "acts", sinks.Config{Type: "sqlite", Path: "out/a.db", Table: "activities", Key: "activity_id"}, ""},
		{"http minimal", "hook", sinks.Config{Type: "http", URL: "https://example.com/in"}, ""},
		{"http full", "hook", sinks.Config{Type: "http", URL: "http://127.0.0.1:9/in", Headers: map[string]string{"Authorization": "Bearer x"},
			Timeout: 2 * time.Second, BatchSize: 100, MaxAttempts: 5}, ""},
		{"file defaults", "audit", sinks.Config{Type: "file"}, ""},
		{"file path", "audit", sinks.Config{Type: "file", Path: "/var/log/audit.ndjson"}, ""},

		{"missing type", "x", sinks.Config{}, `sink "x": type is required: one of sqlite, postgres, http, file`},
		{"unknown type", "x", sinks.Config{Type: "kafka"}, `sink "x": type "kafka" is not one of sqlite, postgres, http, file`},
		{"type is case-sensitive", "x", sinks.Config{Type: "SQLite"}, `sink "x": type "SQLite" is not one of sqlite, postgres, http, file`},
		{"empty name", "", sinks.Config{Type: "file", Path: "a.ndjson"}, `sink "": name must not be empty`},

		{"sink name not usable as table", "my-sink", sinks.Config{Type: "sqlite"},
			`sink "my-sink": table "my-sink" (the sink name) is not a plain identifier (letters, digits and _, not starting with a digit); set table`},
		{"sink name with table set", "my-sink", sinks.Config{Type: "sqlite", Table: "t"}, ""},
		{"bad table", "x", sinks.Config{Type: "sqlite", Table: "1st"},
			`sink "x": table "1st" is not a plain identifier (letters, digits and _, not starting with a digit)`},
		{"reserved table", "x", sinks.Config{Type: "sqlite", Table: "sqlite_stat1"}, `sink "x": table "sqlite_stat1" is reserved by SQLite (sqlite_ prefix)`},
		{"bad key", "x", sinks.Config{Type: "sqlite", Key: "payment.uuid"},
			`sink "x": key "payment.uuid" is not a plain identifier (letters, digits and _, not starting with a digit)`},
		{"reserved key", "x", sinks.Config{Type: "sqlite", Key: "_updated_at"}, `sink "x": key "_updated_at" is reserved for the time of the last write`},
		{"memory database", "x", sinks.Config{Type: "sqlite", Path: ":memory:"}, `sink "x": path ":memory:" is not supported: give a file path`},
		{"http fields on sqlite", "x", sinks.Config{Type: "sqlite", URL: "https://u:secret@h/x", Headers: map[string]string{"B": "1", "A": "2"},
			Timeout: time.Second, BatchSize: 3, MaxAttempts: 2},
			`sink "x": url "https://u:xxxxx@h/x" does not apply to type sqlite` + "\n" +
				`sink "x": headers [A B] does not apply to type sqlite` + "\n" +
				`sink "x": timeout 1s does not apply to type sqlite` + "\n" +
				`sink "x": batch_size 3 does not apply to type sqlite` + "\n" +
				`sink "x": max_attempts 2 does not apply to type sqlite`},

		{"http without url", "x", sinks.Config{Type: "http"}, `sink "x": url is required for type http`},
		{"http relative url", "x", sinks.Config{Type: "http", URL: "/in"}, `sink "x": url "/in" is not an absolute http or https URL`},
		{"http other scheme", "x", sinks.Config{Type: "http", URL: "ftp://h/in"}, `sink "x": url "ftp://h/in" is not an absolute http or https URL`},
		{"sqlite fields on http", "x", sinks.Config{Type: "http", URL: "https://h", Path: "a.db", Table: "t", Key: "k"},
			`sink "x": path "a.db" does not apply to type http` + "\n" +
				`sink "x": table "t" does not apply to type http` + "\n" +
				`sink "x": key "k" does not apply to type http`},
		{"bad headers", "x", sinks.Config{Type: "http", URL: "https://h", Headers: map[string]string{
			"Bad Name": "v", "content-type": "text/plain", "Idempotency-Key": "k", "X-Token": "a\r\nInjected: 1"}},
			`sink "x": headers: "Bad Name" is not a valid header name` + "\n" +
				`sink "x": headers: "Idempotency-Key" is set by the sink and cannot be configured` + "\n" +
				`sink "x": headers: value of "X-Token" contains a line break or NUL` + "\n" +
				`sink "x": headers: "content-type" is set by the sink and cannot be configured`},
		{"negative numbers", "x", sinks.Config{Type: "http", URL: "https://h", Timeout: -time.Second, BatchSize: -1, MaxAttempts: -2},
			`sink "x": timeout -1s must be positive (omit it for the default 10s)` + "\n" +
				`sink "x": batch_size -1 must be positive (omit it for the default 500)` + "\n" +
				`sink "x": max_attempts -2 must be positive (omit it for the default 3)`},
		{"timeout without unit", "x", sinks.Config{Type: "http", URL: "https://h", Timeout: 10}, `sink "x": timeout 10ns is below 1ms; give a unit, e.g. 10s`},

		{"reserved client key", "x", sinks.Config{Type: "sqlite", Key: "_Client_ID"}, `sink "x": key "_Client_ID" is reserved for the client id`},

		{"postgres defaults", "activities", sinks.Config{Type: "postgres"}, ""},
		{"postgres full", "acts", sinks.Config{Type: "postgres", URL: "postgresql://gw:pw@db:5432/sinks?sslmode=require", Table: "activities", Key: "activity_id"}, ""},
		{"postgres url of another kind", "x", sinks.Config{Type: "postgres", URL: "mysql://u:secret@h/db"},
			`sink "x": url "mysql://u:xxxxx@h/db" is not a postgres:// or postgresql:// URL`},
		{"postgres unparsable url keeps its password hidden", "x", sinks.Config{Type: "postgres", URL: "postgres://u:p%zz@h/db?password=x"},
			`sink "x": url "postgres://xxxxx@h/db?..." is not a postgres:// or postgresql:// URL`},
		{"postgres reserved table", "x", sinks.Config{Type: "postgres", Table: "pg_stats"}, `sink "x": table "pg_stats" is reserved by PostgreSQL (pg_ prefix)`},
		{"postgres long names", "x", sinks.Config{Type: "postgres", Table: strings.Repeat("t", 64), Key: strings.Repeat("k", 64)},
			`sink "x": table "` + strings.Repeat("t", 64) + `" is longer than PostgreSQL's 63-byte identifier limit` + "\n" +
				`sink "x": key "` + strings.Repeat("k", 64) + `" is longer than PostgreSQL's 63-byte identifier limit`},
		{"sqlite names may be long", "x", sinks.Config{Type: "sqlite", Table: strings.Repeat("t", 64)}, ""},
		{"other fields on postgres", "x", sinks.Config{Type: "postgres", Path: "a.db", Headers: map[string]string{"A": "1"}, BatchSize: 2},
			`sink "x": path "a.db" does not apply to type postgres` + "\n" +
				`sink "x": headers [A] does not apply to type postgres` + "\n" +
				`sink "x": batch_size 2 does not apply to type postgres`},
		{"client header is the sink's", "x", sinks.Config{Type: "http", URL: "https://h", Headers: map[string]string{"x-gateway-client": "spoof"}},
			`sink "x": headers: "x-gateway-client" is set by the sink and cannot be configured`},

		{"key on file", "x", sinks.Config{Type: "file", Key: "id"}, `sink "x": key "id" does not apply to type file`},
		{"url on file", "x", sinks.Config{Type: "file", URL: "https://h"}, `sink "x": url "https://h" does not apply to type file`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate(tt.sink)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("Validate(%q) =\n%s\nwant\n%s", tt.sink, got, tt.want)
			}
		})
	}
}

func TestConfigDecodesFromYAML(t *testing.T) {
	src := `
activities:
  type: sqlite
  key: activity_id
orders:
  type: postgres
  url: postgres://gw@127.0.0.1:5432/sinks
  key: order_id
hook:
  type: http
  url: https://example.com/in
  headers: {Authorization: Bearer x}
  timeout: 2s
  batch_size: 50
  max_attempts: 4
`
	var cfgs map[string]sinks.Config
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&cfgs); err != nil {
		t.Fatal(err)
	}
	h := cfgs["hook"]
	if h.Timeout != 2*time.Second || h.BatchSize != 50 || h.MaxAttempts != 4 || h.Headers["Authorization"] != "Bearer x" {
		t.Errorf("hook = %+v", h)
	}
	for name, c := range cfgs {
		if err := c.Validate(name); err != nil {
			t.Error(err)
		}
	}
}
