package pipeline

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opengw/gateway/internal/sqlitedb"
	"github.com/opengw/gateway/internal/sqlitequeue"
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
	if got := string(joinRecords(env.Records)); got != `[{"a": [1,2]},{"b":"}"}]` {
		t.Fatalf("joined = %s", got)
	}
}

// harness is a pipeline on real SQLite files with the example mappings and SQLite sinks.
type harness struct {
	p       *Pipeline
	db      *sqlitedb.DB
	tracker *tracker.SQLite
	sinks   *sinks.Registry
}

func newHarness(t *testing.T, fragmentSize int) *harness {
	t.Helper()
	dir := t.TempDir()
	db, err := sqlitedb.Open(filepath.Join(dir, "gateway.db"))
	if err != nil {
		t.Fatal(err)
	}
	set, err := mappings.Load("../examples/mappings", nil)
	if err != nil {
		t.Fatal(err)
	}
	sinkSet, err := sinks.Open(map[string]sinks.Config{
		"activities": {Type: "sqlite", Table: "activities", Key: "activity_id"},
		"quotes":     {Type: "sqlite", Table: "quotes", Key: "quote_id"},
		"payments":   {Type: "sqlite", Table: "payments", Key: "payment_uuid"},
	}, dir)
	if err != nil {
		t.Fatal(err)
	}
	q, err := sqlitequeue.New(sqlitequeue.Config{DB: db, Topics: QueueTopics(sinkSet.Names())})
	if err != nil {
		t.Fatal(err)
	}
	trk, err := tracker.NewSQLite(db)
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Config{DB: db, Queue: q, Tracker: trk, Mappings: func() *mappings.Set { return set }, Sinks: sinkSet, FragmentSize: fragmentSize})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Close()
		q.Close()
		sinkSet.Close()
		db.Close()
	})
	return &harness{p: p, db: db, tracker: trk, sinks: sinkSet}
}

func (h *harness) run(t *testing.T) {
	t.Helper()
	go h.p.Run(context.Background())
	select {
	case <-h.p.Running():
	case <-time.After(10 * time.Second):
		t.Fatal("router did not start")
	}
}

func (h *harness) view(t *testing.T, requestID string) tracker.RequestView {
	t.Helper()
	page, err := h.tracker.Find(context.Background(), "c", tracker.Filter{RequestIDs: []string{requestID}})
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
func TestCancelBeforeProcessing(t *testing.T) {
	h := newHarness(t, 10)
	r, err := h.p.Accept(context.Background(), Submission{ClientID: "c", ClientName: "C", Envelope: calls(35)})
	if err != nil {
		t.Fatal(err)
	}
	found, n, err := h.tracker.Cancel(context.Background(), "c", r.RequestID)
	if err != nil || !found || n != 35 {
		t.Fatalf("cancel: found=%v n=%d err=%v", found, n, err)
	}
	h.run(t)
	// The fragments are consumed (acked) without delivering anything.
	deadline := time.Now().Add(10 * time.Second)
	for queued(t, h.db) > 0 {
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
func TestFragmentsAndRedelivery(t *testing.T) {
	h := newHarness(t, 10)
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
	err = h.db.Write(context.Background(), func(tx *sql.Tx) error {
		return h.p.cfg.Queue.InsertTx(tx, topicFragments, h.p.fragments(r.RequestID, env)...)
	})
	if err != nil {
		t.Fatal(err)
	}
	h.p.cfg.Queue.Notify(topicFragments)
	deadline := time.Now().Add(10 * time.Second)
	for queued(t, h.db) > 0 {
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

func queued(t *testing.T, db *sqlitedb.DB) int {
	var n int
	if err := db.Reader().QueryRow(`SELECT count(*) FROM queue_messages`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func rows(t *testing.T, h *harness, table string) int {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(filepath.Dir(h.db.Path()), "sinks.db")+"?mode=ro")
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
func TestBacklogRefusesIntake(t *testing.T) {
	h := newHarness(t, 10)
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
	for queued(t, h.db) > 0 {
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
