package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opengw/gateway/internal/metrics"
	"github.com/opengw/gateway/internal/metrics/metricstest"
	"github.com/opengw/gateway/mappings"
	"github.com/opengw/gateway/sinks"
	"github.com/opengw/gateway/tracker"
)

// logLines is a goroutine-safe JSON log sink that parses its lines.
type logLines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// find returns the log lines whose msg is msg.
func (l *logLines) find(t *testing.T, msg string) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

func (l *logLines) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.buf.String() }

func TestRetriedDeliveryIsLoggedTrackedAndMeasured(t *testing.T) {
	forEachBackend(t, testRetriedDeliveryIsLoggedTrackedAndMeasured)
}

// testRetriedDeliveryIsLoggedTrackedAndMeasured: while a sink is down, each retry logs one line
// (sink, attempt k of n, next attempt, error, request id) and tracking shows the last error on
// the Processing record; when the sink recovers one line says so, one line says the request
// completed, and the metrics have moved.
func testRetriedDeliveryIsLoggedTrackedAndMeasured(t *testing.T, b backend) {
	var healthy atomic.Bool
	var failures atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !healthy.Load() {
			failures.Add(1)
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer api.Close()

	dir := t.TempDir()
	set, err := mappings.Load("../examples/mappings", nil)
	if err != nil {
		t.Fatal(err)
	}
	sinkSet, err := sinks.Open(map[string]sinks.Config{
		"activities": {Type: "http", URL: api.URL, MaxAttempts: 1, Timeout: 5 * time.Second},
		"quotes":     {Type: "sqlite", Table: "quotes", Key: "quote_id"},
		"payments":   {Type: "sqlite", Table: "payments", Key: "payment_uuid"},
	}, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer sinkSet.Close()
	st := b.open(t, dir, QueueTopics(sinkSet.Names()))
	defer st.Close()
	logs := &logLines{}
	m := metrics.New()
	p, err := New(Config{Store: st, Mappings: func() *mappings.Set { return set }, Sinks: sinkSet, DeliveryAttempts: 50,
		RetryBackoff: func(int) time.Duration { return 20 * time.Millisecond },
		Metrics:      m, Log: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	if err != nil {
		t.Fatal(err)
	}
	go p.Run(context.Background())
	defer p.Close()
	<-p.Running()

	before := metricstest.Scrape(t, m)
	env := Envelope{Format: "activity", Records: [][]byte{
		[]byte(`{"id":"c1","type":"call","timestamp":"2020-05-18T21:15:00Z","duration":"PT1M","user_email":"a@b.c"}`),
		[]byte(`{"id":"q1","type":"quote","timestamp":"2020-05-18T21:15:00Z","user_email":"a@b.c","amount":1}`),
		[]byte(`{"id":"x1","type":"email"}`),
	}}
	receipt, err := p.Accept(context.Background(), Submission{ClientID: "c", ClientName: "C", Endpoint: "push", Envelope: env})
	if err != nil {
		t.Fatal(err)
	}
	id := receipt.RequestID
	find := func() tracker.RequestView {
		page, err := st.Tracker().Find(context.Background(), "c", tracker.Filter{RequestIDs: []string{id}})
		if err != nil || len(page.Requests) != 1 {
			t.Fatalf("find %s: %+v %v", id, page, err)
		}
		return page.Requests[0]
	}

	// The call waits for its sink: Processing, showing the last delivery error.
	deadline := time.Now().Add(30 * time.Second)
	for {
		v := find()
		call := v.Messages[0]
		// The quote (another sink) and the invalid record settle on their own, possibly later.
		others := v.Messages[1].Status == tracker.Complete && v.Messages[2].Status == tracker.Invalid
		if failures.Load() >= 3 && call.Status == tracker.Processing && len(call.Errors) == 1 && others {
			if e := call.Errors[0]; !strings.Contains(e, "sink activities: attempt ") || !strings.Contains(e, " of 50 failed, next at ") || !strings.Contains(e, "503") {
				t.Fatalf("retrying record's error: %q", e)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no retry error shown: %+v (sink failures %d)\n%s", v.Messages, failures.Load(), logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	healthy.Store(true)
	deadline = time.Now().Add(30 * time.Second)
	for find().Status != tracker.Complete {
		if time.Now().After(deadline) {
			t.Fatalf("not complete after the sink recovered: %+v\n%s", find(), logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if call := find().Messages[0]; call.Status != tracker.Complete || len(call.Errors) != 0 {
		t.Fatalf("delivered record: %+v", call)
	}

	retries := logs.find(t, "delivery failed; will retry")
	if len(retries) < 2 {
		t.Fatalf("%d retry lines:\n%s", len(retries), logs)
	}
	for k, line := range retries {
		if line["level"] != "WARN" || line["sink"] != "activities" || line["request_id"] != id || line["attempt"] != float64(k+1) ||
			line["of"] != float64(50) || line["next_attempt"] == nil || !strings.Contains(line["err"].(string), "503") {
			t.Errorf("retry line %d: %v", k+1, line)
		}
	}
	succeeded := logs.find(t, "delivery succeeded after retrying")
	if len(succeeded) != 1 || succeeded[0]["request_id"] != id || succeeded[0]["sink"] != "activities" || succeeded[0]["attempt"] != float64(len(retries)+1) {
		t.Errorf("success lines: %v (after %d retries)", succeeded, len(retries))
	}
	// Completion is logged by whichever handler settles last; wait for it to have logged.
	deadline = time.Now().Add(10 * time.Second)
	for len(logs.find(t, "request completed")) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	completed := logs.find(t, "request completed")
	if len(completed) != 1 {
		t.Fatalf("completion lines: %v\n%s", completed, logs)
	}
	if c := completed[0]; c["request_id"] != id || c["client"] != "c" || c["format"] != "activity" || c["records"] != float64(3) ||
		c["complete"] != float64(2) || c["invalid"] != float64(1) || c["failed"] != float64(0) || c["ms"] == nil {
		t.Errorf("completion line: %v", c)
	}
	if n := len(logs.find(t, "handler failed; the message will be tried again")) + len(logs.find(t, "Handler returned error")); n != 0 {
		t.Errorf("%d handler error lines for plain retries:\n%s", n, logs)
	}

	after := metricstest.Scrape(t, m)
	for series, want := range map[string][2]float64{
		`gateway_records_accepted_total{format="activity"}`:                   {-1, 3},
		`gateway_records_finished_total{format="activity",status="Complete"}`: {-1, 2},
		`gateway_records_finished_total{format="activity",status="Invalid"}`:  {-1, 1},
		`gateway_sink_writes_total{result="ok",sink="activities"}`:            {-1, 1},
		`gateway_sink_writes_total{result="ok",sink="quotes"}`:                {-1, 1},
		`gateway_sink_records_total{sink="activities"}`:                       {-1, 1},
		`gateway_intake_commit_seconds_count{endpoint="push"}`:                {-1, 1},
	} {
		if b, a := metricstest.Sample(before, series), metricstest.Sample(after, series); b != want[0] || a != want[1] {
			t.Errorf("%s: %v before, %v after; want %v, %v", series, b, a, want[0], want[1])
		}
	}
	if errs := metricstest.Sample(after, `gateway_sink_writes_total{result="error",sink="activities"}`); errs != float64(len(retries)) {
		t.Errorf("sink errors %v, want one per retry (%d)", errs, len(retries))
	}
	if n := metricstest.Sample(after, `gateway_router_handler_execution_time_seconds_count{handler_name="process",success="true"}`); n < 1 {
		t.Errorf("router handler metrics: %v\n%s", n, after)
	}
}
