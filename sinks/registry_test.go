package sinks_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opengw/gateway/sinks"
)

func TestOpenOpensEverySink(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(srv.Close)
	dir := filepath.Join(t.TempDir(), "data") // created by Open
	r, err := sinks.Open(map[string]sinks.Config{
		"activities": {Type: "sqlite", Key: "activity_id"},
		"payments":   {Type: "sqlite", Table: "payment_status"},
		"archive":    {Type: "sqlite", Path: "archive/old.db"},
		"audit":      {Type: "file"},
		"hook":       {Type: "http", URL: srv.URL},
	}, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })

	if got, want := r.Names(), []string{"activities", "archive", "audit", "hook", "payments"}; !slices.Equal(got, want) {
		t.Errorf("Names() = %v, want %v", got, want)
	}
	if _, ok := r.Get("nope"); ok {
		t.Error(`Get("nope") found a sink`)
	}
	for _, name := range r.Names() {
		s, ok := r.Get(name)
		if !ok {
			t.Fatalf("Get(%q) found nothing", name)
		}
		if err := s.Write(context.Background(), []sinks.Record{{ClientID: "acme", ID: "m1", Data: json.RawMessage(`{"activity_id":"a1","v":1}`)}}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	// Both sinks without a path share sinks.db in the data dir.
	db, err := sql.Open("sqlite3", filepath.Join(dir, "sinks.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var tables string
	if err := db.QueryRow(`SELECT group_concat(name, ',') FROM (SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name)`).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != "activities,payment_status" {
		t.Errorf("tables in sinks.db = %s", tables)
	}
	for _, f := range []string{"archive/old.db", "audit.ndjson"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
}

func TestOpenReportsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		cfgs map[string]sinks.Config
		want []string
	}{
		{"all invalid configs", map[string]sinks.Config{
			"a": {Type: "kafka"},
			"b": {Type: "http"},
			"c": {Type: "file"},
		}, []string{
			`sink "a": type "kafka" is not one of sqlite, postgres, http, file`,
			`sink "b": url is required for type http`,
		}},
		{"same table twice", map[string]sinks.Config{
			"a": {Type: "sqlite", Table: "t"},
			"b": {Type: "sqlite", Table: "T", Path: filepath.Join(dir, "sinks.db")},
		}, []string{`sinks "a" and "b" both write table T in ` + filepath.Join(dir, "sinks.db")}},
		{"same ndjson file twice", map[string]sinks.Config{
			"a": {Type: "file", Path: "x.ndjson"},
			"b": {Type: "file", Path: "./x.ndjson"},
		}, []string{`sinks "a" (file) and "b" (file) both use ` + filepath.Join(dir, "x.ndjson")}},
		{"one file as both kinds", map[string]sinks.Config{
			"a": {Type: "sqlite"},
			"b": {Type: "file", Path: "sinks.db"},
		}, []string{`sinks "a" (sqlite) and "b" (file) both use ` + filepath.Join(dir, "sinks.db")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := sinks.Open(tt.cfgs, dir)
			if err == nil {
				r.Close()
				t.Fatal("Open succeeded")
			}
			if got := strings.Split(err.Error(), "\n"); !slices.Equal(got, tt.want) {
				t.Errorf("Open: %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestOpenClosesWhatItOpenedOnFailure(t *testing.T) {
	dir := t.TempDir()
	// A directory where the NDJSON file should be makes the file sink fail after the sqlite one opened.
	if err := os.Mkdir(filepath.Join(dir, "z.ndjson"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := sinks.Open(map[string]sinks.Config{
		"a": {Type: "sqlite"},
		"z": {Type: "file"},
	}, dir)
	var pathErr *os.PathError
	if !errors.As(err, &pathErr) || !strings.Contains(err.Error(), `sink "z"`) {
		t.Fatalf("err = %v", err)
	}
}

func TestOpenEmpty(t *testing.T) {
	r, err := sinks.Open(nil, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Names()) != 0 {
		t.Errorf("Names() = %v", r.Names())
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}
