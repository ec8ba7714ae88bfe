package pipeline

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/opengw/gateway/internal/pgqueue"
	"github.com/opengw/gateway/internal/pgstore"
	"github.com/opengw/gateway/internal/pgtest"
	"github.com/opengw/gateway/internal/sqlitestore"
	"github.com/opengw/gateway/internal/store"

	"github.com/opengw/gateway/mappings"
	"github.com/opengw/gateway/sinks"
	"github.com/opengw/gateway/tracker"
)

func TestParseEnvelope(t *testing.T) {
	cases := []struct {
		name, body, err string
		records         int
	}{
		{"ok", `{"format":"f","request_id":"r","payload":[{},{"a":1}]}`, "", 2},
		{"null request_id", `{"format":"f","request_id":null,"payload":[]}`, "", 0},
		{"not json", `{"format":`, "not valid JSON", 0},
		{"not an object", `[1]`, "must be a JSON object", 0},
		{"no format", `{"payload":[]}`, "format is required", 0},
		{"empty format", `{"format":"","payload":[]}`, "format must not be empty", 0},
		{"format number", `{"format":1,"payload":[]}`, "format must be a string, not the number 1", 0},
		{"request_id number", `{"format":"f","request_id":7,"payload":[]}`, "request_id must be a string", 0},
		{"no payload", `{"format":"f"}`, "payload is required", 0},
		{"payload object", `{"format":"f","payload":{}}`, "payload must be an array of objects, not an object", 0},
		{"element string", `{"format":"f","payload":[{},"x"]}`, `payload[1] must be an object, not the string "x"`, 0},
		{"too many", `{"format":"f","payload":[` + strings.Repeat(`{},`, MaxRecords) + `{}]}`, "more than 10000 records", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env, err := ParseEnvelope([]byte(c.body))
			if c.err != "" {
				var ee *EnvelopeError
				if !errors.As(err, &ee) || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want an EnvelopeError containing %q", err, c.err)
				}
				return
			}
			if err != nil || len(env.Records) != c.records {
				t.Fatalf("env = %+v, err = %v", env, err)
			}
		})
	}
	env, _ := ParseEnvelope([]byte(`{"format":"f","payload":[ {"a": [1,2]} , {"b":"}"}]}`))
	if string(env.Records[0]) != `{"a": [1,2]}` || string(env.Records[1]) != `{"b":"}"}` {
		t.Fatalf("records = %q", env.Records)
	}
	if got := string(appendRecords(nil, env.Records)); got != `[{"a": [1,2]},{"b":"}"}]` {
		t.Fatalf("joined = %s", got)
	}
}

// harness is a pipeline on a real backend with the example mappings and SQLite sinks.
type harness struct {
	p     *Pipeline
	store store.Store
	sinks *sinks.Registry
	dir   string
	// running is set once run has started the router.
	running bool
	// mappings is the current mapping set (swap it to simulate a hot reload).
	mappings atomic.Pointer[mappings.Set]
}

// backend opens a store.Store for a test; every pipeline test runs on each.
type backend struct {
	name string
	open func(t testing.TB, dir string, topics map[string]store.TopicConfig) store.Store
}

var backends = []backend{
	{"sqlite", func(t testing.TB, dir string, topics map[string]store.TopicConfig) store.Store {
		st, err := sqlitestore.Open(sqlitestore.Config{Path: filepath.Join(dir, "gateway.db"), Topics: topics})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}},
	{"postgres", func(t testing.TB, dir string, topics map[string]store.TopicConfig) store.Store {
		db, _ := pgtest.Open(t)
		topics = maps.Clone(topics)
		topics[TopicEvents] = store.TopicConfig{BatchSize: 16, MaxInFlight: 1}
		q, err := pgqueue.New(pgqueue.Config{DB: db, Topics: pgqueue.TopicsFrom(topics), PollInterval: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		st, err := pgstore.New(context.Background(), db, q)
		if err != nil {
			t.Fatal(err)
		}
		// Closing the store closes the queue too (after the pipeline, which cleans up first).
		t.Cleanup(func() { q.Close() })
		return st
	}},
}

// forEachBackend runs test as a subtest on every backend.
func forEachBackend(t *testing.T, test func(t *testing.T, b backend)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { test(t, b) })
	}
}

func newHarness(t testing.TB, b backend, fragmentSize int) *harness {
	t.Helper()
	return newHarnessWith(t, b, fragmentSize, "../examples/mappings", map[string]sinks.Config{
		"activities": {Type: "sqlite", Table: "activities", Key: "activity_id"},
		"quotes":     {Type: "sqlite", Table: "quotes", Key: "quote_id"},
		"payments":   {Type: "sqlite", Table: "payments", Key: "payment_uuid"},
	})
}

// newHarnessWith is a harness with the mappings of mappingsDir and the given sinks.
func newHarnessWith(t testing.TB, b backend, fragmentSize int, mappingsDir string, sinkConfigs map[string]sinks.Config) *harness {
	t.Helper()
	dir := t.TempDir()
	set, err := mappings.Load(mappingsDir, slices.Collect(maps.Keys(sinkConfigs)))
	if err != nil {
		t.Fatal(err)
	}
	sinkSet, err := sinks.Open(sinkConfigs, dir)
	if err != nil {
		t.Fatal(err)
	}
	st := b.open(t, dir, QueueTopics(sinkSet.Names()))
	h := &harness{store: st, sinks: sinkSet, dir: dir}
	h.mappings.Store(set)
	p, err := New(Config{Store: st, Mappings: h.mappings.Load, Sinks: sinkSet, FragmentSize: fragmentSize,
		RetryBackoff: func(int) time.Duration { return 10 * time.Millisecond }})
	if err != nil {
		t.Fatal(err)
	}
	h.p = p
	t.Cleanup(func() {
		if h.running {
			p.Close() // a router that never ran would wait its whole CloseTimeout
		}
		st.Close()
		sinkSet.Close()
	})
	return h
}

func (h *harness) run(t *testing.T) {
	t.Helper()
	h.running = true
	go h.p.Run(context.Background())
	select {
	case <-h.p.Running():
	case <-time.After(10 * time.Second):
		t.Fatal("router did not start")
	}
}

func (h *harness) view(t *testing.T, requestID string) tracker.RequestView {
	t.Helper()
	return h.viewOf(t, "c", requestID)
}

// viewOf is view for a request of client.
func (h *harness) viewOf(t *testing.T, client, requestID string) tracker.RequestView {
	t.Helper()
	page, err := h.store.Tracker().Find(context.Background(), client, tracker.Filter{RequestIDs: []string{requestID}})
	if err != nil || len(page.Requests) != 1 {
		t.Fatalf("find %s: %+v %v", requestID, page, err)
	}
	return page.Requests[0]
}

func (h *harness) waitDone(t *testing.T, requestID string) tracker.RequestView {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		v := h.view(t, requestID)
		if v.Summary.Status() == "Complete" {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("request not done: %+v", v.Summary)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func calls(n int) Envelope {
	env := Envelope{Format: "activity", BatchReference: "b"}
	for i := range n {
		env.Records = append(env.Records, []byte(`{"id":"c`+strconv.Itoa(i)+`","type":"call","timestamp":"2020-05-18T21:15:00Z","duration":"PT1M","user_email":"a@b.c"}`))
	}
	return env
}

// TestCancelBeforeProcessing: a request cancelled while its fragments are queued ends with
// every message Cancelled and nothing delivered.
func TestCancelBeforeProcessing(t *testing.T) { forEachBackend(t, testCancelBeforeProcessing) }

func testCancelBeforeProcessing(t *testing.T, b backend) {
	h := newHarness(t, b, 10)
	r, err := h.p.Accept(context.Background(), Submission{ClientID: "c", ClientName: "C", Envelope: calls(35)})
	if err != nil {
		t.Fatal(err)
	}
	found, n, err := h.store.Tracker().Cancel(context.Background(), "c", r.RequestID)
	if err != nil || !found || n != 35 {
		t.Fatalf("cancel: found=%v n=%d err=%v", found, n, err)
	}
	h.run(t)
	// The fragments are consumed (acked) without delivering anything.
	deadline := time.Now().Add(10 * time.Second)
	for queued(t, h) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("fragments of a cancelled request were not consumed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	v := h.waitDone(t, r.RequestID)
	if v.Summary.Cancelled != 35 || v.Summary.Complete != 0 {
		t.Fatalf("summary = %+v", v.Summary)
	}
	if got := rows(t, h, "activities"); got != 0 {
		t.Fatalf("%d cancelled records were delivered", got)
	}
}

// TestFragmentsAndRedelivery: a request of several fragments completes, and replaying its
// fragments' work (as after a crash) neither double-counts nor duplicates sink rows.
func TestFragmentsAndRedelivery(t *testing.T) { forEachBackend(t, testFragmentsAndRedelivery) }

func testFragmentsAndRedelivery(t *testing.T, b backend) {
	h := newHarness(t, b, 10)
	h.run(t)
	env := calls(35)
	r, err := h.p.Accept(context.Background(), Submission{ClientID: "c", ClientName: "C", Envelope: env})
	if err != nil {
		t.Fatal(err)
	}
	v := h.waitDone(t, r.RequestID)
	if v.Summary.Total != 35 || v.Summary.Complete != 35 {
		t.Fatalf("summary = %+v", v.Summary)
	}
	// Replay: the same request's fragments queued again.
	err = h.store.Update(context.Background(), func(tx store.Tx) error {
		for _, f := range h.p.fragments(r.RequestID, "c", env, false) {
			if err := tx.Publish(TopicFragments, f.msg); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for queued(t, h) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("replayed fragments were not consumed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	v = h.view(t, r.RequestID)
	if v.Summary.Total != 35 || v.Summary.Complete != 35 {
		t.Fatalf("summary after replay = %+v", v.Summary)
	}
	if got := rows(t, h, "activities"); got != 35 {
		t.Fatalf("sink rows after replay = %d, want 35", got)
	}
}

// queued counts the messages not yet settled on every topic of the pipeline.
func queued(t *testing.T, h *harness) int {
	t.Helper()
	total := 0
	for topic := range QueueTopics(h.sinks.Names()) {
		n, err := h.store.Queue().Depth(context.Background(), topic)
		if err != nil {
			t.Fatal(err)
		}
		total += n
	}
	return total
}

func rows(t *testing.T, h *harness, table string) int {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(h.dir, "sinks.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM ` + table).Scan(&n); err != nil {
		if strings.Contains(err.Error(), "no such table") {
			return 0
		}
		t.Fatal(err)
	}
	return n
}

// TestBacklogRefusesIntake: past MaxBacklog queued fragments Accept refuses with ErrBacklog,
// and accepts again once the pipeline has caught up.
func TestBacklogRefusesIntake(t *testing.T) { forEachBackend(t, testBacklogRefusesIntake) }

func testBacklogRefusesIntake(t *testing.T, b backend) {
	h := newHarness(t, b, 10)
	h.p.cfg.MaxBacklog = 3
	ctx := context.Background()
	if _, err := h.p.Accept(ctx, Submission{ClientID: "c", Envelope: calls(35)}); err != nil {
		t.Fatal(err) // 4 fragments queued; the count is refreshed below
	}
	if err := h.p.refreshBacklog(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := h.p.Accept(ctx, Submission{ClientID: "c", Envelope: calls(1)})
	if !errors.Is(err, ErrBacklog) || !strings.Contains(err.Error(), "4 fragments queued, limit 3") {
		t.Fatalf("Accept with 4 fragments queued: %v", err)
	}
	h.run(t)
	deadline := time.Now().Add(10 * time.Second)
	for queued(t, h) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("backlog not processed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := h.p.refreshBacklog(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := h.p.Accept(ctx, Submission{ClientID: "c", Envelope: calls(1)}); err != nil {
		t.Fatalf("Accept after catching up: %v", err)
	}
}

// TestUnreadableDeliveryEndsFailed: a delivery whose payload cannot be decoded ends its records
// Failed with the reason instead of being dropped (which would leave them Processing for ever).
func TestUnreadableDeliveryEndsFailed(t *testing.T) {
	forEachBackend(t, testUnreadableDeliveryEndsFailed)
}

func testUnreadableDeliveryEndsFailed(t *testing.T, b backend) {
	h := newHarness(t, b, 10)
	const requestID = "7d2b2c1e-5f0a-4c55-9d0e-2f6f3f1c9a10"
	err := h.store.Update(context.Background(), func(tx store.Tx) error {
		if err := tx.Tracker().Accept(tracker.Request{ID: requestID, ClientID: "c", ClientName: "C", Format: "activity", ReceivedAt: time.Now(), Total: 3}); err != nil {
			return err
		}
		if _, err := tx.Tracker().AddMessages(requestID, []tracker.NewMessage{{Index: 0}, {Index: 1}, {Index: 2}}); err != nil {
			return err
		}
		if _, err := tx.Tracker().Claim(requestID, []int{0, 1, 2}); err != nil {
			return err
		}
		d := message.NewMessage("d1", []byte(`{"request_id":"`+requestID+`","records":[{"index":0,"data":`+strings.Repeat("[", 20000)))
		d.Metadata.Set(mdRequest, requestID)
		d.Metadata.Set(mdIndexes, formatIndexes([]int{0, 1, 2}))
		return tx.Publish(topicDeliverPrefix+"activities", d)
	})
	if err != nil {
		t.Fatal(err)
	}
	h.run(t)
	v := h.waitDone(t, requestID)
	if v.Summary.Failed != 3 {
		t.Fatalf("summary = %+v, want 3 Failed", v.Summary)
	}
	for _, m := range v.Messages {
		if m.Status != tracker.Failed || len(m.Errors) != 1 || !strings.Contains(m.Errors[0], "could not be decoded") {
			t.Fatalf("message %d: %s %q", m.Index, m.Status, m.Errors)
		}
	}
	if n := queued(t, h); n != 0 {
		t.Fatalf("%d messages left on the queue", n)
	}
}

func TestIndexesRoundTrip(t *testing.T) {
	for _, idx := range [][]int{{0}, {0, 1, 2}, {3, 5, 6, 7, 10}, {9999}} {
		s := formatIndexes(idx)
		got, err := parseIndexes(s)
		if err != nil || !slices.Equal(got, idx) {
			t.Fatalf("%v -> %q -> %v, %v", idx, s, got, err)
		}
	}
	for _, bad := range []string{"", "x", "5-3", "0-20000", "1,,2"} {
		if _, err := parseIndexes(bad); err == nil {
			t.Fatalf("parseIndexes(%q) accepted", bad)
		}
	}
}

// TestIdempotencyKeys: keys are scoped per client and per endpoint; a retry while the first
// submission with the key is still being committed gets ErrIdempotencyInFlight; once committed,
// the same key and body replay the first receipt and another body is a conflict.
func TestIdempotencyKeys(t *testing.T) { forEachBackend(t, testIdempotencyKeys) }

func testIdempotencyKeys(t *testing.T, b backend) {
	h := newHarness(t, b, 10)
	ctx := context.Background()
	sub := func(client, endpoint string, n int) Submission {
		env := calls(n)
		return Submission{ClientID: client, Endpoint: endpoint, Envelope: env, IdempotencyKey: "K", Body: appendRecords(nil, env.Records)}
	}

	// Hold the store's writer so the first submission stays uncommitted.
	release := make(chan struct{})
	holding := make(chan struct{})
	go h.store.Update(ctx, func(store.Tx) error {
		close(holding)
		<-release
		return nil
	})
	<-holding
	first := make(chan error, 1)
	var firstReceipt Receipt
	go func() {
		var err error
		firstReceipt, err = h.p.Accept(ctx, sub("c", "push", 2))
		first <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, busy := h.p.committing.Load([3]string{"c", "push", "K"}); busy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first submission never started committing")
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := h.p.Accept(ctx, sub("c", "push", 2)); !errors.Is(err, ErrIdempotencyInFlight) {
		t.Fatalf("retry while committing: %v, want ErrIdempotencyInFlight", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}

	replay, err := h.p.Accept(ctx, sub("c", "push", 2))
	if err != nil || !replay.Replayed || replay.RequestID != firstReceipt.RequestID {
		t.Fatalf("replay = %+v, %v; want the first receipt %s replayed", replay, err, firstReceipt.RequestID)
	}
	if _, err := h.p.Accept(ctx, sub("c", "push", 3)); !errors.Is(err, ErrIdempotencyConflict) {
		t.Fatalf("same key, other body: %v, want ErrIdempotencyConflict", err)
	}
	for _, other := range []Submission{sub("c", "events", 3), sub("d", "push", 3)} {
		r, err := h.p.Accept(ctx, other)
		if err != nil || r.Replayed || r.RequestID == firstReceipt.RequestID {
			t.Fatalf("%s/%s with the same key: %+v, %v; want a new request", other.ClientID, other.Endpoint, r, err)
		}
	}
}

// TestQueuedAtOnce: a request's records are findable, Queued, by their external reference as
// soon as Accept returns, before any processing.
func TestQueuedAtOnce(t *testing.T) { forEachBackend(t, testQueuedAtOnce) }

func testQueuedAtOnce(t *testing.T, b backend) {
	h := newHarness(t, b, 10)
	r, err := h.p.Accept(context.Background(), Submission{ClientID: "c", Envelope: calls(25)})
	if err != nil {
		t.Fatal(err)
	}
	page, err := h.store.Tracker().Find(context.Background(), "c", tracker.Filter{ExternalReferences: []string{"c17"}})
	if err != nil || len(page.Requests) != 1 || page.Requests[0].ID != r.RequestID {
		t.Fatalf("find c17: %+v, %v", page, err)
	}
	if ms := page.Requests[0].Messages; len(ms) != 1 || ms[0].Status != tracker.Queued || ms[0].Type != "call" {
		t.Fatalf("messages = %+v, want c17 Queued", ms)
	}
}

// TestEventsPublished: with PublishEvents, a request's acceptance and every message's terminal
// status are published on TopicEvents, batched per transaction, with their external references.
func TestEventsPublished(t *testing.T) { forEachBackend(t, testEventsPublished) }

func testEventsPublished(t *testing.T, b backend) {
	h := newHarness(t, b, 10)
	h.p.cfg.PublishEvents = true
	h.p.cfg.EventsFor = func(client string) bool { return client == "c" }
	h.run(t)
	// Nothing consumes the events of client "quiet": none are published (the loop below fails
	// on an event about another client's request).
	quiet, err := h.p.Accept(context.Background(), Submission{ClientID: "quiet", Envelope: calls(3)})
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); h.viewOf(t, "quiet", quiet.RequestID).Summary.Status() != tracker.Complete; {
		if time.Now().After(deadline) {
			t.Fatal("the quiet client's request did not complete")
		}
		time.Sleep(10 * time.Millisecond)
	}
	env := calls(12)
	env.Records = append(env.Records, []byte(`{"id":"bad","type":"meeting"}`))
	r, err := h.p.Accept(context.Background(), Submission{ClientID: "c", Envelope: env})
	if err != nil {
		t.Fatal(err)
	}
	h.waitDone(t, r.RequestID)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := h.store.Queue().Subscribe(ctx, TopicEvents)
	if err != nil {
		t.Fatal(err)
	}
	statuses := map[string]tracker.Status{}
	accepted := 0
	timeout := time.After(10 * time.Second)
	for len(statuses) < 13 || accepted == 0 {
		select {
		case m := <-ch:
			var ev Event
			if err := json.Unmarshal(m.Payload, &ev); err != nil {
				t.Fatal(err)
			}
			if ev.ClientID != "c" || ev.RequestID != r.RequestID {
				t.Fatalf("event %+v is not about request %s of client c", ev, r.RequestID)
			}
			switch ev.Type {
			case EventRequestAccepted:
				accepted++
				if ev.Total != 13 {
					t.Fatalf("accepted total = %d", ev.Total)
				}
			case EventMessages:
				for _, em := range ev.Messages {
					if _, dup := statuses[em.ExternalReference]; dup {
						t.Fatalf("%s reported twice", em.ExternalReference)
					}
					statuses[em.ExternalReference] = em.Status
				}
			}
			m.Ack()
		case <-timeout:
			t.Fatalf("events so far: accepted %d, statuses %v", accepted, statuses)
		}
	}
	if statuses["bad"] != tracker.Invalid || statuses["c0"] != tracker.Complete || statuses["c11"] != tracker.Complete {
		t.Fatalf("statuses = %v", statuses)
	}
}

// TestFanOut: with routes_mode all a record goes to every matching route's sink; each sink is
// retried on its own (the one that succeeded is not written again) and the record is Complete
// only when every sink has it, or Failed with the failing sink's error.
func TestFanOut(t *testing.T) { forEachBackend(t, testFanOut) }

func testFanOut(t *testing.T, b backend) {
	var calls, fail atomic.Int32
	fail.Store(2) // the API answers 503 twice, then 200
	var permanent atomic.Bool
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		calls.Add(1)
		switch {
		case permanent.Load():
			http.Error(w, "claim refused", http.StatusUnprocessableEntity)
		case fail.Add(-1) >= 0:
			http.Error(w, "down", http.StatusServiceUnavailable)
		}
	}))
	defer api.Close()
	dir := t.TempDir()
	mapping := `format: claim
id: id
type: {const: claim}
routes_mode: all
routes:
  - name: table
    sink: claims
    fields: {claim_id: id, amount: amount}
  - name: urgent
    when: urgent == true
    sink: api
    fields: {claim_id: id}
`
	if err := os.WriteFile(filepath.Join(dir, "claim.yaml"), []byte(mapping), 0o600); err != nil {
		t.Fatal(err)
	}
	h := newHarnessWith(t, b, 10, dir, map[string]sinks.Config{
		"claims": {Type: "sqlite", Table: "claims", Key: "claim_id"},
		"api":    {Type: "http", URL: api.URL, MaxAttempts: 1},
	})
	h.run(t)
	env := Envelope{Format: "claim", Records: [][]byte{
		[]byte(`{"id":"u1","amount":5,"urgent":true}`),
		[]byte(`{"id":"n1","amount":7,"urgent":false}`),
	}}
	r, err := h.p.Accept(context.Background(), Submission{ClientID: "c", Envelope: env})
	if err != nil {
		t.Fatal(err)
	}
	v := h.waitDone(t, r.RequestID)
	if v.Summary.Complete != 2 {
		t.Fatalf("summary = %+v, want both Complete", v.Summary)
	}
	if got := rows(t, h, "claims"); got != 2 {
		t.Fatalf("claims rows = %d, want 2", got)
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("the API was called %d times, want 3 (two 503s, then the urgent claim)", n)
	}

	// A permanent refusal by one sink fails the record with that sink's error; the other sink
	// still has it.
	permanent.Store(true)
	r, err = h.p.Accept(context.Background(), Submission{ClientID: "c", Envelope: Envelope{Format: "claim",
		Records: [][]byte{[]byte(`{"id":"u2","amount":9,"urgent":true}`)}}})
	if err != nil {
		t.Fatal(err)
	}
	v = h.waitDone(t, r.RequestID)
	if v.Summary.Failed != 1 || len(v.Messages) != 1 || len(v.Messages[0].Errors) != 1 ||
		!strings.Contains(v.Messages[0].Errors[0], "sink api") || !strings.Contains(v.Messages[0].Errors[0], "claim refused") {
		t.Fatalf("after a refusal: %+v %+v", v.Summary, v.Messages)
	}
	if got := rows(t, h, "claims"); got != 3 {
		t.Fatalf("claims rows = %d, want 3", got)
	}
}

// TestReplayAfterMappingFix: records that failed validation are replayed after the mapping is
// fixed and end Complete, their earlier errors still visible; replaying again is harmless.
func TestReplayAfterMappingFix(t *testing.T) { forEachBackend(t, testReplayAfterMappingFix) }

func testReplayAfterMappingFix(t *testing.T, b backend) {
	dir := t.TempDir()
	write := func(limit string) {
		m := `format: claim
id: id
type: {const: claim}
validate:
  - rule: amount < ` + limit + `
    message: amount too large
routes:
  - sink: claims
    fields: {claim_id: id, amount: amount}
`
		if err := os.WriteFile(filepath.Join(dir, "claim.yaml"), []byte(m), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("10")
	h := newHarnessWith(t, b, 2, dir, map[string]sinks.Config{"claims": {Type: "sqlite", Table: "claims", Key: "claim_id"}})
	h.run(t)
	env := Envelope{Format: "claim", Records: [][]byte{[]byte(`{"id":"a","amount":5}`), []byte(`{"id":"b","amount":50}`),
		[]byte(`{"id":"c","amount":7}`), []byte(`{"id":"d","amount":70}`), []byte(`{"id":"e","amount":80}`)}}
	r, err := h.p.Accept(context.Background(), Submission{ClientID: "c", Envelope: env})
	if err != nil {
		t.Fatal(err)
	}
	if v := h.waitDone(t, r.RequestID); v.Summary.Invalid != 3 || v.Summary.Complete != 2 {
		t.Fatalf("before the fix: %+v", v.Summary)
	}
	// Another client cannot replay c's messages.
	if n, _, err := h.p.Replay(context.Background(), "intruder", tracker.Filter{RequestIDs: []string{r.RequestID}}); err != nil || n != 0 {
		t.Fatalf("replay by another client: %d, %v", n, err)
	}

	write("100")
	fixed, err := mappings.Load(dir, []string{"claims"})
	if err != nil {
		t.Fatal(err)
	}
	h.mappings.Store(fixed)
	n, skipped, err := h.p.Replay(context.Background(), "c", tracker.Filter{RequestIDs: []string{r.RequestID}})
	if err != nil || n != 3 || skipped != 0 {
		t.Fatalf("replay: %d replayed, %d skipped, %v", n, skipped, err)
	}
	v := h.waitDone(t, r.RequestID)
	if v.Summary.Complete != 5 {
		t.Fatalf("after the fix: %+v", v.Summary)
	}
	for _, m := range v.Messages {
		replayed := m.ExternalReference == "b" || m.ExternalReference == "d" || m.ExternalReference == "e"
		if replayed && (len(m.Errors) != 1 || !strings.Contains(m.Errors[0], "amount too large")) {
			t.Fatalf("%s lost its earlier error: %q", m.ExternalReference, m.Errors)
		}
	}
	if got := rows(t, h, "claims"); got != 5 {
		t.Fatalf("claims rows = %d, want 5", got)
	}
	if n, _, err := h.p.Replay(context.Background(), "c", tracker.Filter{RequestIDs: []string{r.RequestID}}); err != nil || n != 0 {
		t.Fatalf("second replay: %d, %v; want nothing to replay", n, err)
	}
	if _, _, err := h.p.Replay(context.Background(), "c", tracker.Filter{Statuses: []tracker.Status{tracker.Complete}}); !errors.Is(err, tracker.ErrInvalidFilter) {
		t.Fatalf("replaying Complete messages: %v, want ErrInvalidFilter", err)
	}
}

// TestRetention: raw records and tracked requests older than their retention are purged; newer
// ones are kept.
func TestRetention(t *testing.T) { forEachBackend(t, testRetention) }

func testRetention(t *testing.T, b backend) {
	h := newHarness(t, b, 10)
	base := time.Now().Add(-3 * time.Hour)
	var clock atomic.Int64
	clock.Store(base.UnixNano())
	h.p.cfg.Now = func() time.Time { return time.Unix(0, clock.Load()) }
	h.run(t)
	old, err := h.p.Accept(context.Background(), Submission{ClientID: "c", Envelope: calls(25)})
	if err != nil {
		t.Fatal(err)
	}
	h.waitDone(t, old.RequestID)
	clock.Store(base.Add(2 * time.Hour).UnixNano())
	recent, err := h.p.Accept(context.Background(), Submission{ClientID: "c", Envelope: calls(5)})
	if err != nil {
		t.Fatal(err)
	}
	h.waitDone(t, recent.RequestID)

	// The configured retention is zero, so the pipeline's own purge loop keeps everything; the
	// test purges with retention given explicitly.
	const retainRecords, retainTracking = time.Hour, 90 * time.Minute
	n, err := h.p.purgeOlder(context.Background(), retainRecords, retainTracking)
	if err != nil || n < 25+3 { // 25 messages, their request, 3 kept fragments
		t.Fatalf("purged %d rows, %v", n, err)
	}
	ctx := context.Background()
	if offs, err := h.store.RecordOffsets(ctx, old.RequestID); err != nil || len(offs) != 0 {
		t.Fatalf("old records still kept: %v %v", offs, err)
	}
	if offs, err := h.store.RecordOffsets(ctx, recent.RequestID); err != nil || len(offs) != 1 {
		t.Fatalf("recent records: %v %v", offs, err)
	}
	page, err := h.store.Tracker().Find(ctx, "c", tracker.Filter{RequestIDs: []string{old.RequestID, recent.RequestID}})
	if err != nil || len(page.Requests) != 1 || page.Requests[0].ID != recent.RequestID || len(page.Requests[0].Messages) != 5 {
		t.Fatalf("after purge: %+v, %v; want only the recent request", page, err)
	}
	if n, err := h.p.purgeOlder(ctx, retainRecords, retainTracking); err != nil || n != 0 {
		t.Fatalf("second purge: %d, %v", n, err)
	}
}
