package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

// TestSeedPushEndToEnd pushes the Push API document's example request byte for byte and
// follows both records into the sink tables and the tracker.
func TestSeedPushEndToEnd(t *testing.T) { forEachBackend(t, testSeedPushEndToEnd) }

func testSeedPushEndToEnd(t *testing.T, b gatewayBackend) {
	cfg := b.config(t, exampleConfig)
	g := startGateway(t, cfg, t.TempDir())
	body, err := os.ReadFile("testdata/seed000_push.json")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	id := g.push(t, body)
	t.Logf("202 after %s", time.Since(start))

	r := g.waitComplete(t, id, 30*time.Second)
	if got := r.Get("batchReference").String(); got != "bc314d38-f4a8badc29dd" {
		t.Errorf("batchReference = %q", got)
	}
	if got := r.Get("messageStatusSummary").Raw; gjson.Get(got, "total").Int() != 2 || gjson.Get(got, "complete").Int() != 2 {
		t.Errorf("summary = %s", got)
	}
	types := map[string]string{}
	for _, m := range r.Get("payload").Array() {
		types[m.Get("externalReference").String()] = m.Get("messageType").String() + "/" + m.Get("messageStatus").String()
	}
	if types["02784e36-e70f4c86595b"] != "call/Complete" || types["25b8d74f-3becb0ede39f"] != "quote/Complete" {
		t.Errorf("messages = %v", types)
	}

	calls := g.sinkRows(t, `SELECT * FROM activities`)
	if len(calls) != 1 {
		t.Fatalf("activities rows = %v", calls)
	}
	wantCall := map[string]any{
		"activity_id": "02784e36-e70f4c86595b", "occurred_at": "2020-05-19T02:15:00Z", "duration_s": int64(1530),
		"user": "jonny.test@mivation.com", "contact": "+18774289403", "direction": "outbound",
	}
	assertRow(t, calls[0], wantCall)
	quotes := g.sinkRows(t, `SELECT * FROM quotes`)
	if len(quotes) != 1 {
		t.Fatalf("quotes rows = %v", quotes)
	}
	assertRow(t, quotes[0], map[string]any{
		"quote_id": "25b8d74f-3becb0ede39f", "quoted_at": "2020-05-19T02:20:00Z", "amount": 123.45,
		"product_line": "fire", "product": "Renter", "href": "https://my.quotes.net/25b8d74f-3becb0ede39f",
	})
}

func assertRow(t *testing.T, row, want map[string]any) {
	t.Helper()
	for k, v := range want {
		got := row[k]
		// SQLite hands whole floats back as integers and vice versa; compare by printed value.
		if fmt.Sprint(got) != fmt.Sprint(v) {
			t.Errorf("column %s = %#v, want %#v (row %v)", k, got, v, row)
		}
	}
}

// TestInvalidAndUpsert: a record of an unknown type ends Invalid with the rule's message; a
// record pushed again with the same id updates its sink row instead of adding one.
func TestInvalidAndUpsert(t *testing.T) { forEachBackend(t, testInvalidAndUpsert) }

func testInvalidAndUpsert(t *testing.T, b gatewayBackend) {
	cfg := b.config(t, exampleConfig)
	g := startGateway(t, cfg, t.TempDir())
	id := g.push(t, []byte(`{"format":"activity","payload":[
		{"id":"x1","type":"email","timestamp":"2020-05-18T21:15:00Z"},
		{"id":"c1","type":"call","timestamp":"2020-05-18T21:15:00Z","duration":"PT1M","user_email":"A@B.C"}]}`))
	r := g.waitComplete(t, id, 30*time.Second)
	for _, m := range r.Get("payload").Array() {
		switch m.Get("externalReference").String() {
		case "x1":
			if m.Get("messageStatus").String() != "Invalid" || !strings.Contains(m.Get("errors.0.errorMessage").String(), "type must be call or quote") {
				t.Errorf("invalid record tracked as %s", m.Raw)
			}
		case "c1":
			if m.Get("messageStatus").String() != "Complete" {
				t.Errorf("valid record tracked as %s", m.Raw)
			}
		}
	}
	id = g.push(t, []byte(`{"format":"activity","payload":[
		{"id":"c1","type":"call","timestamp":"2020-05-18T21:15:00Z","duration":"PT2M","user_email":"A@B.C"}]}`))
	g.waitComplete(t, id, 30*time.Second)
	rows := g.sinkRows(t, `SELECT activity_id, duration_s, user FROM activities WHERE activity_id = 'c1'`)
	if len(rows) != 1 || fmt.Sprint(rows[0]["duration_s"]) != "120" || rows[0]["user"] != "a@b.c" {
		t.Fatalf("rows after upsert = %v", rows)
	}
}

// TestPushContract exercises every status /push can answer.
func TestPushContract(t *testing.T) {
	g := startGateway(t, exampleConfig, t.TempDir())
	one := `{"format":"activity","payload":[{"id":"a","type":"call","timestamp":"2020-05-18T21:15:00Z","duration":"PT1M","user_email":"a@b.c"}]}`
	many := func(n int) string {
		var b strings.Builder
		b.WriteString(`{"format":"activity","payload":[`)
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(`{"id":"r` + fmt.Sprint(i) + `"}`)
		}
		b.WriteString(`]}`)
		return b.String()
	}
	cases := []struct {
		name          string
		method        string
		path          string
		client        string
		secret        string
		contentType   string
		body          string
		headers       []string
		status        int
		bodyHas       string
		headerChecked [2]string
	}{
		{name: "basic auth accepted", client: "demo", secret: "demo-secret", body: one, status: 202, bodyHas: `"id"`},
		{name: "static bearer accepted", headers: []string{"Authorization", "Bearer demo-token"}, body: one, status: 202},
		{name: "text/json with charset", client: "demo", secret: "demo-secret", contentType: "text/json; charset=utf-8", body: one, status: 202},
		{name: "no credentials", body: one, status: 401, headerChecked: [2]string{"WWW-Authenticate", "Basic"}},
		{name: "wrong secret", client: "demo", secret: "nope", body: one, status: 401},
		{name: "unknown bearer", headers: []string{"Authorization", "Bearer nope"}, body: one, status: 401},
		{name: "wrong method", method: "GET", client: "demo", secret: "demo-secret", status: 405, headerChecked: [2]string{"Allow", "POST"}},
		{name: "unknown path", path: "/nope", client: "demo", secret: "demo-secret", body: one, status: 404},
		{name: "form content type", client: "demo", secret: "demo-secret", contentType: "application/x-www-form-urlencoded", body: one, status: 415, bodyHas: "Content-Type"},
		{name: "latin1 charset", client: "demo", secret: "demo-secret", contentType: "application/json; charset=latin1", body: one, status: 415, bodyHas: "latin1"},
		{name: "malformed json", client: "demo", secret: "demo-secret", body: `{"format":`, status: 400, bodyHas: "not valid JSON"},
		{name: "missing format", client: "demo", secret: "demo-secret", body: `{"payload":[{}]}`, status: 400, bodyHas: "format is required"},
		{name: "format not a string", client: "demo", secret: "demo-secret", body: `{"format":7,"payload":[{}]}`, status: 400, bodyHas: "format must be a string"},
		{name: "payload not an array", client: "demo", secret: "demo-secret", body: `{"format":"activity","payload":{}}`, status: 400, bodyHas: "payload must be an array"},
		{name: "element not an object", client: "demo", secret: "demo-secret", body: `{"format":"activity","payload":[{},3]}`, status: 400, bodyHas: "payload[1]"},
		{name: "too many records", client: "demo", secret: "demo-secret", body: many(10001), status: 400, bodyHas: "10000"},
		{name: "unknown format", client: "demo", secret: "demo-secret", body: `{"format":"nope","payload":[{}]}`, status: 400, bodyHas: `nope`},
		{name: "format not assigned", client: "other", secret: "other-secret", body: `{"format":"payment_status_updated","payload":[{}]}`, status: 403, bodyHas: "not assigned"},
		{name: "empty payload", client: "demo", secret: "demo-secret", body: `{"format":"activity","payload":[]}`, status: 204},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			method, path, ct := c.method, c.path, c.contentType
			if method == "" {
				method = "POST"
			}
			if path == "" {
				path = "/push"
			}
			if ct == "" {
				ct = "application/json"
			}
			status, hdr, out := g.do(t, method, path, c.client, c.secret, ct, []byte(c.body), c.headers...)
			if status != c.status {
				t.Fatalf("status = %d, want %d: %s", status, c.status, out)
			}
			if c.bodyHas != "" && !bytes.Contains(out, []byte(c.bodyHas)) {
				t.Errorf("body %s does not mention %s", out, c.bodyHas)
			}
			if status >= 400 && !gjson.ValidBytes(out) {
				t.Errorf("error body is not JSON: %s", out)
			}
			if h := c.headerChecked; h[0] != "" && !strings.Contains(hdr.Get(h[0]), h[1]) {
				t.Errorf("header %s = %q, want it to contain %q", h[0], hdr.Get(h[0]), h[1])
			}
		})
	}

	t.Run("body over 10 MiB with length", func(t *testing.T) {
		big := bytes.Repeat([]byte(" "), 10<<20+1)
		status, _, out := g.do(t, "POST", "/push", "demo", "demo-secret", "application/json", big)
		if status != 413 || !bytes.Contains(out, []byte("limit")) {
			t.Fatalf("status = %d: %s", status, out)
		}
	})
	t.Run("body over 10 MiB chunked", func(t *testing.T) {
		// No Content-Length: the limit must hold while reading.
		pr, pw := io.Pipe()
		go func() {
			chunk := bytes.Repeat([]byte(" "), 1<<20)
			for range 12 {
				if _, err := pw.Write(chunk); err != nil {
					return
				}
			}
			pw.Close()
		}()
		req, _ := http.NewRequest("POST", g.URL+"/push", pr)
		req.SetBasicAuth("demo", "demo-secret")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		pr.CloseWithError(io.ErrClosedPipe)
		if resp.StatusCode != 413 {
			t.Fatalf("status = %d", resp.StatusCode)
		}
	})
	t.Run("idempotency key replays the first response", func(t *testing.T) {
		_, _, first := g.do(t, "POST", "/push", "demo", "demo-secret", "application/json", []byte(one), "Idempotency-Key", "k1")
		status, hdr, again := g.do(t, "POST", "/push", "demo", "demo-secret", "application/json", []byte(one), "Idempotency-Key", "k1")
		if status != 202 || gjson.GetBytes(first, "id").String() != gjson.GetBytes(again, "id").String() || hdr.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("replay: %d %s vs %s", status, again, first)
		}
		// The same key from another client is another key.
		_, _, other := g.do(t, "POST", "/push", "other", "other-secret", "application/json", []byte(one), "Idempotency-Key", "k1")
		if gjson.GetBytes(other, "id").String() == gjson.GetBytes(first, "id").String() {
			t.Fatal("idempotency keys leak between clients")
		}
		status, _, out := g.do(t, "POST", "/push", "demo", "demo-secret", "application/json", []byte(many(2)), "Idempotency-Key", "k1")
		if status != 422 {
			t.Fatalf("reused key with another body: %d %s", status, out)
		}
	})
}

// TestSinkOutageIsolatedAndRetried: with the calls sink down, quotes still complete; calls
// are retried with backoff and complete once the sink recovers; a sink refusing a record (4xx)
// ends it Failed with the sink's message.
func TestSinkOutageIsolatedAndRetried(t *testing.T) {
	forEachBackend(t, testSinkOutageIsolatedAndRetried)
}

func testSinkOutageIsolatedAndRetried(t *testing.T, b gatewayBackend) {
	var healthy atomic.Bool
	var posts atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		posts.Add(1)
		body, _ := io.ReadAll(r.Body)
		switch {
		case bytes.Contains(body, []byte("refuse-me")):
			http.Error(w, `{"error":"user refuse-me is unknown"}`, http.StatusUnprocessableEntity)
		case !healthy.Load():
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
		default:
			w.WriteHeader(http.StatusOK)
		}
	}))
	defer api.Close()
	abs, _ := filepath.Abs("../../examples/mappings")
	cfg := filepath.Join(t.TempDir(), "gateway.yaml")
	os.WriteFile(cfg, []byte(`mappings: `+abs+`
pipeline: {retry_backoff: 50ms, max_retry_backoff: 200ms, delivery_attempts: 1000}
sinks:
  activities: {type: http, url: `+api.URL+`, timeout: 2s, max_attempts: 1}
  quotes: {type: sqlite, table: quotes, key: quote_id}
  payments: {type: sqlite, table: payments, key: payment_uuid}
clients:
  - {id: demo, name: Demo, secret: demo-secret, formats: [activity], scopes: [push, tracking]}
`), 0o644)
	g := startGateway(t, b.config(t, cfg), t.TempDir())
	id := g.push(t, []byte(`{"format":"activity","payload":[
		{"id":"c1","type":"call","timestamp":"2020-05-18T21:15:00Z","duration":"PT1M","user_email":"a@b.c"},
		{"id":"q1","type":"quote","timestamp":"2020-05-18T21:15:00Z","user_email":"a@b.c","amount":1}]}`))
	deadline := time.Now().Add(20 * time.Second)
	for {
		byRef := map[string]string{}
		for _, m := range g.tracked(t, id).Get("payload").Array() {
			byRef[m.Get("externalReference").String()] = m.Get("messageStatus").String()
		}
		if byRef["q1"] == "Complete" && posts.Load() >= 3 {
			if byRef["c1"] != "Processing" {
				t.Fatalf("call status while its sink is down = %q", byRef["c1"])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("quotes did not complete while calls' sink was down: %v (posts %d)", byRef, posts.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	healthy.Store(true)
	g.waitComplete(t, id, 20*time.Second)

	id = g.push(t, []byte(`{"format":"activity","payload":[
		{"id":"c2","type":"call","timestamp":"2020-05-18T21:15:00Z","duration":"PT1M","user_email":"refuse-me"}]}`))
	r := g.waitComplete(t, id, 20*time.Second)
	m := r.Get("payload.0")
	if m.Get("messageStatus").String() != "Failed" || !strings.Contains(m.Get("errors.0.errorMessage").String(), "422") {
		t.Fatalf("refused record tracked as %s", m.Raw)
	}
}

// TestClientsKeepTheirOwnRows: two clients pushing records with the same ids each keep their own
// sink row; neither overwrites nor reveals the other's (upsert identity is (client, key)).
func TestClientsKeepTheirOwnRows(t *testing.T) { forEachBackend(t, testClientsKeepTheirOwnRows) }

func testClientsKeepTheirOwnRows(t *testing.T, b gatewayBackend) {
	cfg := b.config(t, exampleConfig)
	g := startGateway(t, cfg, t.TempDir())
	record := func(contact string) []byte {
		return []byte(`{"format":"activity","payload":[{"id":"shared-1","type":"call","timestamp":"2020-05-18T21:15:00Z",
			"duration":"PT1M","user_email":"a@b.c","contact":"` + contact + `","direction":"inbound"}]}`)
	}
	demoID := g.push(t, record("demo's contact"))
	g.waitComplete(t, demoID, 30*time.Second)

	status, _, out := g.do(t, "POST", "/push", "other", "other-secret", "application/json", record("overwritten"))
	if status != http.StatusAccepted {
		t.Fatalf("other's push: %d %s", status, out)
	}
	otherID := gjson.GetBytes(out, "id").String()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, _, out := g.do(t, "POST", "/tracking", "other", "other-secret", "application/json",
			[]byte(`{"search":[{"by":"id","value":"`+otherID+`"}]}`))
		if gjson.GetBytes(out, "data.requests.0.requestStatus").String() == "Complete" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("other's request not complete: %s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	rows := g.sinkRows(t, `SELECT _client_id, contact FROM activities WHERE activity_id = 'shared-1' ORDER BY _client_id`)
	if len(rows) != 2 || rows[0]["_client_id"] != "demo" || rows[0]["contact"] != "demo's contact" ||
		rows[1]["_client_id"] != "other" || rows[1]["contact"] != "overwritten" {
		t.Fatalf("rows = %v; want one row per client, each with its own contact", rows)
	}
}
