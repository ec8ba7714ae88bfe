package sinks_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/opengw/gateway/sinks"
	"github.com/opengw/gateway/sinks/sinktest"
)

// receiver is a test endpoint that stores the records it is sent as a receiver should: upserting
// by client and "id". It refuses (400) a request whose records do not all carry the client its
// X-Gateway-Client header names.
type receiver struct {
	mu       sync.Mutex
	order    []string
	byID     map[string]sinktest.Row // by client and id
	requests []*http.Request
	bodies   [][]byte
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	var objs []map[string]any
	if err == nil {
		err = json.Unmarshal(body, &objs)
	}
	if err != nil || r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
		http.Error(w, "want a POSTed JSON array", http.StatusBadRequest)
		return
	}
	client := r.Header.Get(sinks.ClientHeader)
	rows := make([]sinktest.Row, len(objs))
	for i, o := range objs {
		if o[sinks.ClientField] != client || client == "" {
			http.Error(w, fmt.Sprintf("record %d: %s %v is not the header's %q", i, sinks.ClientField, o[sinks.ClientField], client), http.StatusBadRequest)
			return
		}
		delete(o, sinks.ClientField)
		b, _ := json.Marshal(o)
		rows[i] = sinktest.Row{Client: client, Data: b}
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.requests = append(rc.requests, r)
	rc.bodies = append(rc.bodies, body)
	if rc.byID == nil {
		rc.byID = map[string]sinktest.Row{}
	}
	for _, row := range rows {
		id := client + "\x00" + gjson.GetBytes(row.Data, "id").String()
		if !gjson.GetBytes(row.Data, "id").Exists() {
			id = "#" + string(row.Data) // no id: stored as is, never merged
		}
		if _, ok := rc.byID[id]; !ok {
			rc.order = append(rc.order, id)
		}
		rc.byID[id] = row
	}
	w.WriteHeader(http.StatusOK)
}

func (rc *receiver) stored(*testing.T) []sinktest.Row {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := make([]sinktest.Row, 0, len(rc.order))
	for _, id := range rc.order {
		out = append(out, rc.byID[id])
	}
	return out
}

func TestHTTPSink(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) sinktest.Harness {
		rc := &receiver{}
		srv := httptest.NewServer(rc)
		t.Cleanup(srv.Close)
		return sinktest.Harness{
			Sink:    newHTTP(t, sinks.Config{URL: srv.URL, BatchSize: 3}),
			Stored:  rc.stored,
			Upserts: true,
		}
	})
}

// scripted serves the given responses in turn (then 200s), counting requests.
func scripted(t *testing.T, steps ...func(w http.ResponseWriter, r *http.Request)) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(n.Add(1)) - 1
		io.Copy(io.Discard, r.Body)
		if i < len(steps) {
			steps[i](w, r)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func status(code int, header ...string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.WriteHeader(code)
	}
}

func TestHTTPSinkRetries503ThenSucceeds(t *testing.T) {
	srv, n := scripted(t, status(http.StatusServiceUnavailable))
	s := newHTTP(t, sinks.Config{URL: srv.URL})
	write(t, s, sinktest.Records("r", 2)...)
	if got := n.Load(); got != 2 {
		t.Errorf("attempts = %d, want 2", got)
	}
}

func TestHTTPSinkHonoursRetryAfter(t *testing.T) {
	srv, n := scripted(t, status(http.StatusTooManyRequests, "Retry-After", "1"))
	s := newHTTP(t, sinks.Config{URL: srv.URL})
	start := time.Now()
	write(t, s, sinktest.Records("r", 1)...)
	if got := n.Load(); got != 2 {
		t.Errorf("attempts = %d, want 2", got)
	}
	if waited := time.Since(start); waited < 900*time.Millisecond {
		t.Errorf("retried after %s; Retry-After asked for 1s", waited)
	}
}

func TestHTTPSinkRetryAfterBeyondDeadlineReturnsAtOnce(t *testing.T) {
	srv, n := scripted(t, status(http.StatusServiceUnavailable, "Retry-After", "60"))
	s := newHTTP(t, sinks.Config{URL: srv.URL})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.Write(ctx, sinktest.Records("r", 1))
	if err == nil || errors.Is(err, sinks.ErrPermanent) || !strings.Contains(err.Error(), "503") {
		t.Fatalf("err = %v; want a retryable error naming 503", err)
	}
	// Returned before the deadline (so without sleeping toward the 60 s it cannot wait out).
	if ctx.Err() != nil || n.Load() != 1 {
		t.Errorf("ctx err %v after %d attempts; want one attempt and a return before the deadline", ctx.Err(), n.Load())
	}
}

func TestHTTPSinkGivesUpAfterMaxAttempts(t *testing.T) {
	always := status(http.StatusBadGateway)
	srv, n := scripted(t, always, always, always, always)
	s := newHTTP(t, sinks.Config{URL: srv.URL + "/in", MaxAttempts: 3})
	err := s.Write(context.Background(), sinktest.Records("r", 1))
	if err == nil || errors.Is(err, sinks.ErrPermanent) {
		t.Fatalf("err = %v; want a retryable error", err)
	}
	for _, want := range []string{"502 Bad Gateway", srv.URL + "/in", "3 attempts"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err = %q; want it to contain %q", err, want)
		}
	}
	if got := n.Load(); got != 3 {
		t.Errorf("attempts = %d, want 3", got)
	}
}

func TestHTTPSink400IsPermanent(t *testing.T) {
	body := `{"error":"field x is wrong"}` + strings.Repeat(".", 200) + "TAIL"
	srv, n := scripted(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, body, http.StatusBadRequest)
	})
	s := newHTTP(t, sinks.Config{URL: srv.URL})
	err := s.Write(context.Background(), sinktest.Records("r", 1))
	if !errors.Is(err, sinks.ErrPermanent) {
		t.Fatalf("err = %v; want permanent", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "400 Bad Request") || !strings.Contains(msg, `{"error":"field x is wrong"}...`) || strings.Contains(msg, "TAIL") {
		t.Errorf("err = %q; want the status and the first 200 bytes of the body", msg)
	}
	if got := n.Load(); got != 1 {
		t.Errorf("attempts = %d, want 1", got)
	}
}

func TestHTTPSinkTimeoutIsRetryable(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		io.Copy(io.Discard, r.Body) // lets the server notice the client hanging up
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	t.Cleanup(srv.Close)
	s := newHTTP(t, sinks.Config{URL: srv.URL, Timeout: 50 * time.Millisecond, MaxAttempts: 2})
	err := s.Write(context.Background(), sinktest.Records("r", 1))
	if err == nil || errors.Is(err, sinks.ErrPermanent) || !strings.Contains(err.Error(), "no response within 50ms") {
		t.Fatalf("err = %v; want a retryable timeout", err)
	}
	if got := n.Load(); got != 2 {
		t.Errorf("attempts = %d, want 2", got)
	}
}

func TestHTTPSinkConnectionErrorIsRetryable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	s := newHTTP(t, sinks.Config{URL: url, MaxAttempts: 2})
	err := s.Write(context.Background(), sinktest.Records("r", 1))
	if err == nil || errors.Is(err, sinks.ErrPermanent) || !strings.Contains(err.Error(), "POST "+url) {
		t.Fatalf("err = %v; want a retryable error naming the URL", err)
	}
}

func TestHTTPSinkChunksWithStableIdempotencyKeys(t *testing.T) {
	rc := &receiver{}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	s := newHTTP(t, sinks.Config{URL: srv.URL, BatchSize: 2, Headers: map[string]string{"Authorization": "Bearer t0k"}})
	recs := sinktest.Records("c", 5)
	write(t, s, recs...)
	write(t, s, recs...) // redelivery

	if len(rc.requests) != 6 {
		t.Fatalf("requests = %d, want 6 (3 chunks, twice)", len(rc.requests))
	}
	keys := map[string]bool{}
	for i, r := range rc.requests {
		if got := r.Header.Get("Authorization"); got != "Bearer t0k" {
			t.Errorf("request %d: Authorization = %q", i, got)
		}
		if n, want := len(gjson.ParseBytes(rc.bodies[i]).Array()), []int{2, 2, 1}[i%3]; n != want {
			t.Errorf("request %d carries %d records, want %d", i, n, want)
		}
		key := r.Header.Get("Idempotency-Key")
		if key == "" {
			t.Fatalf("request %d has no Idempotency-Key", i)
		}
		if i < 3 {
			keys[key] = true
		} else if !keys[key] || key != rc.requests[i-3].Header.Get("Idempotency-Key") {
			t.Errorf("redelivered chunk %d has key %s, want the first delivery's", i-3, key)
		}
	}
	if len(keys) != 3 {
		t.Errorf("%d distinct keys for 3 chunks", len(keys))
	}
	if got, want := string(rc.bodies[0]), `[{"_client_id":"client-a","id":"r-c-0","seq":0,"name":"name c 0"},{"_client_id":"client-a","id":"r-c-1","seq":1,"name":"name c 1"}]`; got != want {
		t.Errorf("first body =\n  %s\nwant\n  %s", got, want)
	}
}

func TestHTTPSinkSendsOneClientPerRequest(t *testing.T) {
	rc := &receiver{}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	s := newHTTP(t, sinks.Config{URL: srv.URL, BatchSize: 2})
	a, b := sinktest.RecordsOf("client-a", "x", 3), sinktest.RecordsOf("client-b", "x", 1)
	// Interleaved: a0 b0 a1 a2.
	write(t, s, a[0], b[0], a[1], a[2])
	var got []string
	keys := map[string]bool{}
	for i, r := range rc.requests {
		got = append(got, fmt.Sprintf("%s:%d", r.Header.Get(sinks.ClientHeader), len(gjson.ParseBytes(rc.bodies[i]).Array())))
		keys[r.Header.Get("Idempotency-Key")] = true
	}
	// Grouped by client in order of first appearance, then chunked.
	if want := []string{"client-a:2", "client-a:1", "client-b:1"}; !slices.Equal(got, want) {
		t.Errorf("requests (client:records) = %v, want %v", got, want)
	}
	if len(keys) != 3 {
		t.Errorf("%d distinct Idempotency-Keys for 3 requests", len(keys))
	}

	// The same record IDs from another client get another Idempotency-Key.
	rc.requests, rc.bodies = nil, nil
	write(t, s, a[0])
	first := rc.requests[0].Header.Get("Idempotency-Key")
	c := a[0]
	c.ClientID = "client-c"
	write(t, s, c)
	if rc.requests[1].Header.Get("Idempotency-Key") == first {
		t.Error("the same record ID of two clients got the same Idempotency-Key")
	}
}

func TestHTTPSinkRefusesClientUnfitForHeader(t *testing.T) {
	srv, n := scripted(t)
	s := newHTTP(t, sinks.Config{URL: srv.URL})
	recs := sinktest.Records("r", 1)
	recs[0].ClientID = "evil\r\nX-Injected: 1"
	err := s.Write(context.Background(), recs)
	if !errors.Is(err, sinks.ErrPermanent) || !strings.Contains(err.Error(), "cannot be sent in a header") {
		t.Fatalf("err = %v", err)
	}
	if n.Load() != 0 {
		t.Errorf("%d requests sent; want none", n.Load())
	}
}

func TestHTTPSinkRejectsBadDataBeforeSending(t *testing.T) {
	srv, n := scripted(t)
	s := newHTTP(t, sinks.Config{URL: srv.URL, BatchSize: 1})
	recs := sinktest.Records("r", 2)
	recs[1].Data = json.RawMessage(`"not an object"`)
	err := s.Write(context.Background(), recs)
	if !errors.Is(err, sinks.ErrPermanent) || !strings.Contains(err.Error(), "record msg-r-1: data is a string") {
		t.Fatalf("err = %v", err)
	}
	if n.Load() != 0 {
		t.Errorf("%d requests sent; want none", n.Load())
	}
}

func TestHTTPSinkDoesNotTurnPostIntoGet(t *testing.T) {
	srv, _ := scripted(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	})
	s := newHTTP(t, sinks.Config{URL: srv.URL})
	err := s.Write(context.Background(), sinktest.Records("r", 1))
	if !errors.Is(err, sinks.ErrPermanent) || !strings.Contains(err.Error(), "302 Found") {
		t.Fatalf("err = %v; want a permanent error naming 302", err)
	}
}

func newHTTP(t *testing.T, cfg sinks.Config) *sinks.HTTPSink {
	t.Helper()
	s, err := sinks.NewHTTPSink("test", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
