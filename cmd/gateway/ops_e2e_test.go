package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
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

	"github.com/opengw/gateway/internal/metrics/metricstest"
)

// metrics scrapes the gateway's /metrics.
func (g *gateway) metrics(t *testing.T) string {
	t.Helper()
	status, hdr, out := g.do(t, "GET", "/metrics", "", "", "", nil)
	if status != http.StatusOK || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %d %s", status, hdr.Get("Content-Type"))
	}
	return string(out)
}

// TestMetricsFollowAPush scrapes /metrics before and after the seed push is processed.
func TestMetricsFollowAPush(t *testing.T) {
	g := startGateway(t, exampleConfig, t.TempDir())
	before := g.metrics(t)
	body, err := os.ReadFile("testdata/seed000_push.json")
	if err != nil {
		t.Fatal(err)
	}
	id := g.push(t, body)
	g.waitComplete(t, id, 30*time.Second)
	after := g.metrics(t)

	for series, want := range map[string][2]float64{
		`gateway_http_requests_total{method="POST",route="/push",status="202"}`:                      {-1, 1},
		`gateway_http_request_duration_seconds_count{method="POST",route="/push",status="202"}`:      {-1, 1},
		`gateway_intake_commit_seconds_count{endpoint="push"}`:                                       {-1, 1},
		`gateway_records_accepted_total{format="activity"}`:                                          {-1, 2},
		`gateway_records_finished_total{format="activity",status="Complete"}`:                        {-1, 2},
		`gateway_sink_writes_total{result="ok",sink="activities"}`:                                   {-1, 1},
		`gateway_sink_writes_total{result="ok",sink="quotes"}`:                                       {-1, 1},
		`gateway_sink_records_total{sink="quotes"}`:                                                  {-1, 1},
		`gateway_queue_depth{topic="fragments"}`:                                                     {0, 0},
		`gateway_queue_depth{topic="deliver.activities"}`:                                            {0, 0},
		`gateway_queue_oldest_age_seconds{topic="fragments"}`:                                        {0, 0},
		`gateway_mapping_reloads_total{result="applied"}`:                                            {0, 0},
		`gateway_router_handler_execution_time_seconds_count{handler_name="process",success="true"}`: {-1, 1},
	} {
		if b, a := metricstest.Sample(before, series), metricstest.Sample(after, series); b != want[0] || a != want[1] {
			t.Errorf("%s: %v before, %v after; want %v, %v", series, b, a, want[0], want[1])
		}
	}
	// Tracking polls are counted under their route pattern.
	if n := metricstest.Sample(after, `gateway_http_requests_total{method="POST",route="/tracking",status="200"}`); n < 1 {
		t.Errorf("tracking requests counted: %v", n)
	}
	if strings.Contains(after, id) {
		t.Error("a request id became a label")
	}
}

// TestReadinessFollowsTheDatabase: /readyz is 200; while another process holds SQLite's write
// lock on the gateway's database (so nothing can be written) it turns 503 naming the database;
// once the lock is released it is 200 again by itself. /healthz stays 200 throughout.
func TestReadinessFollowsTheDatabase(t *testing.T) {
	g := startGateway(t, exampleConfig, t.TempDir())
	ready := func() (int, gjson.Result) {
		status, _, out := g.do(t, "GET", "/readyz", "", "", "", nil)
		return status, gjson.ParseBytes(out)
	}
	waitReady := func(want int) gjson.Result {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			status, r := ready()
			if status == want {
				return r
			}
			if time.Now().After(deadline) {
				t.Fatalf("readyz stayed %d: %s\n%s", status, r.Raw, g.logs.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	r := waitReady(http.StatusOK)
	if r.Get("status").String() != "ready" || r.Get("checks.database").String() != "ok" || r.Get("checks.router").String() != "ok" || r.Get("checks.backlog").String() != "ok" {
		t.Fatalf("ready answer: %s", r.Raw)
	}

	db, err := sql.Open("sqlite3", "file:"+filepath.Join(g.DataDir, "gateway.db")+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(context.Background(), "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	locked := true
	defer func() {
		if locked {
			conn.ExecContext(context.Background(), "ROLLBACK")
		}
	}()
	r = waitReady(http.StatusServiceUnavailable)
	if r.Get("status").String() != "unavailable" || r.Get("failed").Raw != `["database"]` || r.Get("checks.database").String() == "ok" ||
		r.Get("checks.router").String() != "ok" {
		t.Fatalf("unavailable answer: %s", r.Raw)
	}
	if status, _, _ := g.do(t, "GET", "/healthz", "", "", "", nil); status != http.StatusOK {
		t.Fatalf("healthz while the database is locked: %d", status)
	}

	if _, err := conn.ExecContext(context.Background(), "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	locked = false
	waitReady(http.StatusOK)
	// Writes work again: a push is accepted and processed.
	id := g.push(t, callRecord("after-lock", "Outbound"))
	g.waitComplete(t, id, 30*time.Second)
}

// TestLogsTellTheStory reads the JSON log of a push whose calls' sink is down for a while: the
// listen line first, no router chatter; one line when the push is accepted, one per retry
// (attempt k of n, next attempt, error), one when the retried delivery succeeds and one when the
// request completes, all carrying the request id; tracking shows the last error meanwhile.
func TestLogsTellTheStory(t *testing.T) {
	var healthy atomic.Bool
	var failures atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if !healthy.Load() {
			failures.Add(1)
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer api.Close()
	abs, _ := filepath.Abs("../../examples/mappings")
	cfg := filepath.Join(t.TempDir(), "gateway.yaml")
	os.WriteFile(cfg, []byte(`mappings: `+abs+`
pipeline: {retry_backoff: 50ms, max_retry_backoff: 100ms, delivery_attempts: 100}
sinks:
  activities: {type: http, url: `+api.URL+`, timeout: 2s, max_attempts: 1}
  quotes: {type: sqlite, table: quotes, key: quote_id}
  payments: {type: sqlite, table: payments, key: payment_uuid}
clients:
  - {id: demo, name: Demo, secret: demo-secret, formats: [activity], scopes: [push, tracking]}
`), 0o644)
	g := startGateway(t, cfg, t.TempDir(), "--log-format", "json", "--log-level", "info")
	body := []byte(`{"format":"activity","payload":[
		{"id":"c1","type":"call","timestamp":"2020-05-18T21:15:00Z","duration":"PT1M","user_email":"a@b.c"},
		{"id":"q1","type":"quote","timestamp":"2020-05-18T21:15:00Z","user_email":"a@b.c","amount":1}]}`)
	id := g.push(t, body)

	deadline := time.Now().Add(30 * time.Second)
	for {
		var call gjson.Result
		for _, m := range g.tracked(t, id).Get("payload").Array() {
			if m.Get("externalReference").String() == "c1" {
				call = m
			}
		}
		if failures.Load() >= 3 && call.Get("messageStatus").String() == "Processing" && call.Get("errors.#").Int() == 1 {
			if e := call.Get("errors.0.errorMessage").String(); !strings.Contains(e, "sink activities: attempt ") || !strings.Contains(e, "of 100 failed, next at") || !strings.Contains(e, "503") {
				t.Fatalf("tracking error while retrying: %q", e)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no retry error in tracking: %s", call.Raw)
		}
		time.Sleep(20 * time.Millisecond)
	}
	healthy.Store(true)
	g.waitComplete(t, id, 30*time.Second)
	deadline = time.Now().Add(10 * time.Second)
	for !strings.Contains(g.logs.String(), `"msg":"request completed"`) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}

	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(g.logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", l)
		}
		lines = append(lines, m)
	}
	if lines[0]["msg"] != "gateway listening" || lines[0]["level"] != "INFO" {
		t.Errorf("first line: %v", lines[0])
	}
	byMsg := map[string][]map[string]any{}
	for _, l := range lines {
		msg := l["msg"].(string)
		byMsg[msg] = append(byMsg[msg], l)
		if l["level"] == "INFO" && l["msg"] != "gateway listening" && l["request_id"] != id {
			t.Errorf("an info line that is not about the request: %v", l)
		}
	}
	for _, noise := range []string{"Adding handler", "Starting handler", "Handler returned error", "handler failed; the message will be tried again"} {
		if n := len(byMsg[noise]); n > 0 {
			t.Errorf("%d %q lines", n, noise)
		}
	}
	if a := byMsg["request accepted"]; len(a) != 1 || a[0]["client"] != "demo" || a[0]["format"] != "activity" ||
		a[0]["records"] != float64(2) || a[0]["bytes"] != float64(len(body)) || a[0]["ms"] == nil || a[0]["endpoint"] != "push" {
		t.Errorf("accepted lines: %v", a)
	}
	retries := byMsg["delivery failed; will retry"]
	if len(retries) < 3 {
		t.Fatalf("%d retry lines", len(retries))
	}
	for k, l := range retries {
		next, _ := time.Parse(time.RFC3339, l["next_attempt"].(string))
		if l["level"] != "WARN" || l["sink"] != "activities" || l["request_id"] != id || l["attempt"] != float64(k+1) ||
			l["of"] != float64(100) || next.IsZero() || !strings.Contains(l["err"].(string), "503") {
			t.Errorf("retry line %d: %v", k+1, l)
		}
	}
	if s := byMsg["delivery succeeded after retrying"]; len(s) != 1 || s[0]["sink"] != "activities" || s[0]["attempt"] != float64(len(retries)+1) {
		t.Errorf("success lines: %v", s)
	}
	if c := byMsg["request completed"]; len(c) != 1 || c[0]["records"] != float64(2) || c[0]["complete"] != float64(2) ||
		c[0]["failed"] != float64(0) || c[0]["client"] != "demo" {
		t.Errorf("completion lines: %v", c)
	}
}

// TestLogFlags: every command takes --log-level and --log-format and names a bad value.
func TestLogFlags(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "--config", exampleConfig, "--log-level", "loud"},
		{"check", "--config", exampleConfig, "--log-level", "loud"},
		{"map", "--config", exampleConfig, "--format", "activity", "--log-level", "loud", "-"},
	} {
		err := run(context.Background(), args, func(string) string { return "" }, strings.NewReader(`{}`), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), `--log-level "loud" is not one of debug, info, warn, error`) {
			t.Errorf("%v: %v", args, err)
		}
	}
	err := run(context.Background(), []string{"check", "--config", exampleConfig, "--log-format", "xml"}, func(string) string { return "" },
		strings.NewReader(""), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `--log-format "xml" is not one of text, json`) {
		t.Errorf("bad format: %v", err)
	}
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"check", "--config", exampleConfig, "--log-level", "debug", "--log-format", "json"},
		func(string) string { return "" }, strings.NewReader(""), &stdout, &stderr); err != nil {
		t.Fatalf("check: %v\n%s", err, stdout.String())
	}
	if !strings.Contains(stderr.String(), `"level":"DEBUG","msg":"running mapping tests"`) || !strings.Contains(stdout.String(), "0 failed") {
		t.Errorf("check at debug in JSON: stdout %q, stderr %q", stdout.String(), stderr.String())
	}
	for _, cmd := range []string{"serve", "check", "map"} {
		var help bytes.Buffer
		run(context.Background(), []string{cmd, "--help"}, func(string) string { return "" }, strings.NewReader(""), io.Discard, &help)
		if !strings.Contains(help.String(), "-log-level") || !strings.Contains(help.String(), "-log-format") {
			t.Errorf("%s --help does not list the log flags:\n%s", cmd, help.String())
		}
	}
}
