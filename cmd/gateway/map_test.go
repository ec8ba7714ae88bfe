package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

// seedCallFields and seedQuoteFields are what the example mapping makes of the seed
// envelope's two records, in mapping order.
const (
	seedCallFields  = `{"activity_id":"02784e36-e70f4c86595b","occurred_at":"2020-05-19T02:15:00Z","duration_s":1530,"user":"jonny.test@mivation.com","contact":"+18774289403","direction":"outbound"}`
	seedQuoteFields = `{"quote_id":"25b8d74f-3becb0ede39f","quoted_at":"2020-05-19T02:20:00Z","user":"jonny.test@mivation.com","contact":"Jane S","product_line":"fire","product":"Renter","amount":123.45,"href":"https://my.quotes.net/25b8d74f-3becb0ede39f"}`
)

// assertSeedDryRun checks a dry-run result of the seed envelope.
func assertSeedDryRun(t *testing.T, out []byte) {
	t.Helper()
	r := gjson.ParseBytes(out)
	if r.Get("format").String() != "activity" || len(r.Get("mappingVersion").String()) != 12 {
		t.Errorf("header of the result: %s", out)
	}
	recs := r.Get("records").Array()
	if len(recs) != 2 {
		t.Fatalf("records: %s", out)
	}
	for i, want := range []struct{ ref, typ, route, sink, fields string }{
		{"02784e36-e70f4c86595b", "call", "calls", "activities", seedCallFields},
		{"25b8d74f-3becb0ede39f", "quote", "quotes", "quotes", seedQuoteFields},
	} {
		rec := recs[i]
		if rec.Get("index").Int() != int64(i) || rec.Get("externalReference").String() != want.ref ||
			rec.Get("messageType").String() != want.typ || !rec.Get("valid").Bool() ||
			len(rec.Get("routes").Array()) != 1 ||
			rec.Get("routes.0.route").String() != want.route || rec.Get("routes.0.sink").String() != want.sink {
			t.Errorf("record %d: %s", i, rec.Raw)
		}
		// Compacted, the fields are byte for byte what the sink would receive, in order.
		if got := compact(rec.Get("routes.0.fields").Raw); got != want.fields {
			t.Errorf("record %d fields\n got %s\nwant %s", i, got, want.fields)
		}
	}
}

// compact removes the indentation `gateway map` adds.
func compact(s string) string {
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		return s
	}
	return b.String()
}

// TestMapSeedEnvelope: `gateway map` on the seed envelope file shows both records' routes,
// sinks and fields.
func TestMapSeedEnvelope(t *testing.T) {
	out, err := runTool(t, "", "map", "--config", exampleConfig, "testdata/seed000_push.json")
	if err != nil {
		t.Fatalf("map: %v\n%s", err, out)
	}
	assertSeedDryRun(t, []byte(out))
}

// TestMapRecordFromStdin: one record on stdin with --format; an invalid one says why.
func TestMapRecordFromStdin(t *testing.T) {
	out, err := runTool(t, `{"id":"q9","type":"quote","timestamp":"2020-05-18 10:00:00","user_email":"A@B.C","amount":"12.50"}`,
		"map", "--config", exampleConfig, "--format", "activity", "-")
	if err != nil {
		t.Fatalf("map: %v\n%s", err, out)
	}
	rec := gjson.Get(out, "records.0")
	want := `{"quote_id":"q9","quoted_at":"2020-05-18T10:00:00Z","user":"a@b.c","contact":null,"product_line":null,"product":null,"amount":12.5,"href":null}`
	if rec.Get("routes.0.route").String() != "quotes" || compact(rec.Get("routes.0.fields").Raw) != want {
		t.Errorf("map of one record: %s", out)
	}

	out, err = runTool(t, `{"id":"v1","type":"visit"}`, "map", "--config", exampleConfig, "--format", "activity")
	if err != nil {
		t.Fatalf("map: %v\n%s", err, out)
	}
	rec = gjson.Get(out, "records.0")
	if rec.Get("valid").Bool() || rec.Get("errors").Raw != `[
        "type must be call or quote"
      ]` {
		t.Errorf("map of an invalid record: %s", out)
	}

	if _, err := runTool(t, `{"id":"v1"}`, "map", "--config", exampleConfig); err == nil || !strings.Contains(err.Error(), "--format is required") {
		t.Errorf("a record without --format: %v", err)
	}
	if _, err := runTool(t, `{"id":"v1"}`, "map", "--config", exampleConfig, "--format", "nope"); err == nil || !strings.Contains(err.Error(), `unknown format "nope"`) {
		t.Errorf("an unknown format: %v", err)
	}
}

// TestPushDryRun: POST /push?dry_run=true answers 200 with per-record results, keeps the
// auth and envelope rules of /push, and queues nothing: tracking shows no request.
func TestPushDryRun(t *testing.T) {
	g := startGateway(t, exampleConfig, t.TempDir())
	seed, err := os.ReadFile("testdata/seed000_push.json")
	if err != nil {
		t.Fatal(err)
	}
	status, _, out := g.do(t, "POST", "/push?dry_run=true", "demo", "demo-secret", "application/json", seed)
	if status != http.StatusOK {
		t.Fatalf("dry run: %d %s", status, out)
	}
	assertSeedDryRun(t, out)

	status, _, out = g.do(t, "POST", "/push?dry_run=true", "demo", "demo-secret", "application/json",
		[]byte(`{"format":"activity","payload":[{"id":"x1","type":"email"},{"type":"call"}]}`))
	if status != http.StatusOK {
		t.Fatalf("dry run: %d %s", status, out)
	}
	if got := gjson.GetBytes(out, "records.#.errors").Raw; got != `[["type must be call or quote"],["required field id is missing"]]` {
		t.Errorf("invalid records: %s", out)
	}

	for _, c := range []struct {
		name, client, secret, body string
		status                     int
	}{
		{"no credentials", "", "", string(seed), http.StatusUnauthorized},
		{"format not assigned", "other", "other-secret", `{"format":"payment_status_updated","payload":[{}]}`, http.StatusForbidden},
		{"unknown format", "demo", "demo-secret", `{"format":"nope","payload":[{}]}`, http.StatusBadRequest},
		{"bad envelope", "demo", "demo-secret", `{"format":"activity","payload":{}}`, http.StatusBadRequest},
	} {
		if status, _, out := g.do(t, "POST", "/push?dry_run=true", c.client, c.secret, "application/json", []byte(c.body)); status != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, status, out, c.status)
		}
	}

	// Nothing was queued: today's tracking is empty, and a real push afterwards is the only
	// request.
	status, _, out = g.do(t, "POST", "/tracking", "demo", "demo-secret", "application/json", []byte(`{}`))
	if status != http.StatusOK || gjson.GetBytes(out, "data.paging.totalRequests").Int() != 0 || len(gjson.GetBytes(out, "data.requests").Array()) != 0 {
		t.Fatalf("tracking after dry runs: %d %s", status, out)
	}
	id := g.push(t, seed)
	g.waitComplete(t, id, 30*time.Second)
	_, _, out = g.do(t, "POST", "/tracking", "demo", "demo-secret", "application/json", []byte(`{}`))
	if n := gjson.GetBytes(out, "data.paging.totalRequests").Int(); n != 1 {
		t.Errorf("requests after one real push = %d: %s", n, out)
	}
}
