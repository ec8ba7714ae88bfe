package tracker

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opengw/gateway/internal/sqlitedb"
)

// fixedClock is a settable clock for SQLite.Now.
type fixedClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fixedClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fixedClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func openTracker(t testing.TB) (*SQLite, *sqlitedb.DB, *fixedClock) {
	t.Helper()
	db, err := sqlitedb.Open(filepath.Join(t.TempDir(), "gateway.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	tr, err := NewSQLite(db)
	if err != nil {
		t.Fatal(err)
	}
	clock := &fixedClock{t: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)}
	tr.Now = clock.Now
	return tr, db, clock
}

func accept(t testing.TB, tr *SQLite, db *sqlitedb.DB, r Request) {
	t.Helper()
	if err := db.Write(context.Background(), func(tx *sql.Tx) error { return tr.AcceptTx(tx, r) }); err != nil {
		t.Fatal(err)
	}
}

func msgs(from, n int, typ string) []NewMessage {
	out := make([]NewMessage, n)
	for i := range out {
		out[i] = NewMessage{Index: from + i, ExternalReference: fmt.Sprintf("rec-%d", from+i), Type: typ}
	}
	return out
}

func results(status Status, idx ...int) []Result {
	out := make([]Result, len(idx))
	for i, x := range idx {
		out[i] = Result{Index: x, Status: status, MappingVersion: "v1"}
	}
	return out
}

func seqInts(from, to int) []int {
	var out []int
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// view finds request id in a search by id.
func view(t testing.TB, tr *SQLite, client, id string) RequestView {
	t.Helper()
	p, err := tr.Find(context.Background(), client, Filter{RequestIDs: []string{id}})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Requests) != 1 {
		t.Fatalf("search by id %s: %d requests", id, len(p.Requests))
	}
	return p.Requests[0]
}

const reqA = "0b9a0c3e-6a51-4f0e-9d37-4b0f1e2f3a01"

func TestLifecycleCountsAndIdempotence(t *testing.T) {
	tr, db, clock := openTracker(t)
	ctx := context.Background()
	received := time.Date(2024, 5, 1, 9, 30, 0, 0, time.UTC)
	r := Request{ID: reqA, ClientID: "demo", ClientName: "Demo Partner", BatchReference: "B1", Format: "activity", ReceivedAt: received, Total: 10}
	accept(t, tr, db, r)
	accept(t, tr, db, r) // idempotent

	// Accepted, not split: no rows, summary from the request's total.
	v := view(t, tr, "demo", reqA)
	if want := (Summary{Total: 10, Queued: 10}); v.Summary != want || v.Status != Queued || len(v.Messages) != 0 {
		t.Fatalf("before split: %+v %s %d messages", v.Summary, v.Status, len(v.Messages))
	}
	if !v.ReceivedAt.Equal(received) || v.BatchReference != "B1" || v.ClientName != "Demo Partner" {
		t.Fatalf("request fields: %+v", v.Request)
	}

	// Split in two parts, the first replayed.
	for _, m := range [][]NewMessage{msgs(0, 6, "call"), msgs(0, 6, "call"), msgs(6, 4, "quote")} {
		cancelled, err := tr.AddMessages(ctx, reqA, m)
		if err != nil || cancelled {
			t.Fatalf("add messages: %v %v", cancelled, err)
		}
	}
	v = view(t, tr, "demo", reqA)
	if want := (Summary{Total: 10, Queued: 10}); v.Summary != want || len(v.Messages) != 10 {
		t.Fatalf("after split: %+v, %d messages", v.Summary, len(v.Messages))
	}
	for i, m := range v.Messages {
		if m.Index != i || m.ID != MessageID(reqA, i) || m.ExternalReference != fmt.Sprintf("rec-%d", i) || m.Status != Queued || !m.ProcessedAt.IsZero() {
			t.Fatalf("message %d: %+v", i, m)
		}
	}

	// Invalid straight from Queued, then claim (replayed), then finish (replayed).
	clock.Add(time.Minute)
	if err := tr.Finish(ctx, reqA, []Result{{Index: 9, Status: Invalid, Errors: []string{"type must be call or quote"}}}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		got, err := tr.Claim(ctx, reqA, seqInts(0, 9))
		if err != nil {
			t.Fatal(err)
		}
		if want := seqInts(0, 8); !slices.Equal(got, want) {
			t.Fatalf("claimed %v, want %v", got, want)
		}
	}
	v = view(t, tr, "demo", reqA)
	if want := (Summary{Total: 10, Processing: 9, Invalid: 1}); v.Summary != want || v.Status != Processing {
		t.Fatalf("after claim: %+v %s", v.Summary, v.Status)
	}
	clock.Add(time.Minute)
	finishAt := clock.Now()
	done := append(results(Complete, 0, 1, 2, 3, 5, 6, 7), Result{Index: 4, Status: Failed, Errors: []string{"sink down", "retry later"}, MappingVersion: "v1"})
	done = append(done, results(Complete, 9)...) // already Invalid: stays Invalid
	for range 2 {
		if err := tr.Finish(ctx, reqA, done); err != nil {
			t.Fatal(err)
		}
		clock.Add(time.Minute)
	}
	v = view(t, tr, "demo", reqA)
	if want := (Summary{Total: 10, Processing: 1, Complete: 7, Failed: 1, Invalid: 1}); v.Summary != want || v.Status != Processing {
		t.Fatalf("after finish: %+v %s", v.Summary, v.Status)
	}
	if m := v.Messages[4]; m.Status != Failed || !slices.Equal(m.Errors, []string{"sink down", "retry later"}) || !m.ProcessedAt.Equal(finishAt) || m.MappingVersion != "v1" {
		t.Fatalf("failed message: %+v", m)
	}
	if m := v.Messages[9]; m.Status != Invalid || len(m.Errors) != 1 {
		t.Fatalf("invalid message: %+v", m)
	}
	if !v.LastProcessedAt.Equal(finishAt) {
		t.Fatalf("last processed %v, want %v", v.LastProcessedAt, finishAt)
	}
	if err := tr.Finish(ctx, reqA, results(Failed, 8)); err != nil {
		t.Fatal(err)
	}
	v = view(t, tr, "demo", reqA)
	if want := (Summary{Total: 10, Complete: 7, Failed: 2, Invalid: 1}); v.Summary != want || v.Status != Complete {
		t.Fatalf("all done: %+v %s", v.Summary, v.Status)
	}

	// Errors for unknown requests and bad input.
	if _, err := tr.AddMessages(ctx, "nope", msgs(0, 1, "call")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("add to unknown request: %v", err)
	}
	if _, err := tr.Claim(ctx, "nope", []int{0}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("claim unknown request: %v", err)
	}
	if err := tr.Finish(ctx, reqA, results(Processing, 0)); err == nil {
		t.Fatal("finish with a non-terminal status succeeded")
	}
}

// TestRetryingShowsLastError: a Processing message shows the last delivery error, replaced by
// the next one and then by the outcome; other statuses never take it.
func TestRetryingShowsLastError(t *testing.T) {
	tr, db, _ := openTracker(t)
	ctx := context.Background()
	accept(t, tr, db, Request{ID: reqA, ClientID: "demo", ClientName: "Demo", Format: "activity", ReceivedAt: time.Now(), Total: 4})
	if _, err := tr.AddMessages(ctx, reqA, msgs(0, 4, "call")); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Claim(ctx, reqA, []int{0, 1, 2}); err != nil {
		t.Fatal(err)
	}
	if err := tr.Finish(ctx, reqA, results(Complete, 2)); err != nil {
		t.Fatal(err)
	}
	retrying := func(indexes []int, msg string) {
		t.Helper()
		if err := db.Write(ctx, func(tx *sql.Tx) error { return tr.RetryingTx(tx, reqA, indexes, msg) }); err != nil {
			t.Fatal(err)
		}
	}
	retrying([]int{0, 1, 2, 3}, "sink activities: 503 down")
	retrying([]int{0, 1, 2, 3}, "sink activities: 502 bad gateway")
	v := view(t, tr, "demo", reqA)
	want := []string{"sink activities: 502 bad gateway"}
	for _, i := range []int{0, 1} {
		if m := v.Messages[i]; m.Status != Processing || !slices.Equal(m.Errors, want) {
			t.Errorf("retrying message %d: %+v", i, m)
		}
	}
	if m := v.Messages[2]; m.Status != Complete || len(m.Errors) != 0 {
		t.Errorf("complete message took the retry error: %+v", m)
	}
	if m := v.Messages[3]; m.Status != Queued || len(m.Errors) != 0 {
		t.Errorf("queued message took the retry error: %+v", m)
	}
	if want := (Summary{Total: 4, Queued: 1, Processing: 2, Complete: 1}); v.Summary != want {
		t.Errorf("summary changed: %+v", v.Summary)
	}
	if err := tr.Finish(ctx, reqA, results(Complete, 0, 1)); err != nil {
		t.Fatal(err)
	}
	v = view(t, tr, "demo", reqA)
	if m := v.Messages[0]; m.Status != Complete || len(m.Errors) != 0 {
		t.Errorf("finished message keeps the retry error: %+v", m)
	}
	err := db.Write(ctx, func(tx *sql.Tx) error { return tr.RetryingTx(tx, "nope", []int{0}, "x") })
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("retrying on an unknown request: %v", err)
	}
}

func TestCancel(t *testing.T) {
	tr, db, clock := openTracker(t)
	ctx := context.Background()
	at := time.Date(2024, 5, 1, 9, 0, 0, 0, time.UTC)
	accept(t, tr, db, Request{ID: "r1", ClientID: "demo", Format: "activity", ReceivedAt: at, Total: 10})
	accept(t, tr, db, Request{ID: "r2", ClientID: "demo", Format: "activity", ReceivedAt: at, Total: 3})
	if _, err := tr.AddMessages(ctx, "r1", msgs(0, 6, "call")); err != nil { // 4 not yet recorded
		t.Fatal(err)
	}
	if _, err := tr.Claim(ctx, "r1", []int{0, 1}); err != nil {
		t.Fatal(err)
	}
	if err := tr.Finish(ctx, "r1", results(Complete, 0)); err != nil {
		t.Fatal(err)
	}
	// Another client cannot cancel it, nor learn it exists.
	if found, n, err := tr.Cancel(ctx, "other", "r1"); err != nil || found || n != 0 {
		t.Fatalf("other client's cancel: %v %d %v", found, n, err)
	}
	if found, _, err := tr.Cancel(ctx, "demo", "missing"); err != nil || found {
		t.Fatalf("missing: %v %v", found, err)
	}
	clock.Add(time.Hour)
	found, n, err := tr.Cancel(ctx, "demo", "r1")
	if err != nil || !found || n != 8 { // 4 queued rows + 4 not yet recorded
		t.Fatalf("cancel: %v %d %v", found, n, err)
	}
	if found, n, err := tr.Cancel(ctx, "demo", "r1"); err != nil || !found || n != 0 {
		t.Fatalf("second cancel: %v %d %v", found, n, err)
	}
	v := view(t, tr, "demo", "r1")
	if want := (Summary{Total: 10, Processing: 1, Complete: 1, Cancelled: 8}); v.Summary != want || v.Status != Processing {
		t.Fatalf("after cancel: %+v %s", v.Summary, v.Status)
	}
	if v.CancelledAt.IsZero() || !v.Messages[2].ProcessedAt.Equal(clock.Now()) || v.Messages[2].Status != Cancelled {
		t.Fatalf("cancelled message: %+v", v.Messages[2])
	}
	// Cancelled messages are never claimed; finishing them keeps Cancelled.
	got, err := tr.Claim(ctx, "r1", seqInts(0, 5))
	if err != nil || !slices.Equal(got, []int{1}) {
		t.Fatalf("claim after cancel: %v %v", got, err)
	}
	if err := tr.Finish(ctx, "r1", results(Invalid, 2, 3)); err != nil {
		t.Fatal(err)
	}
	// The rest of the envelope is recorded Cancelled.
	cancelled, err := tr.AddMessages(ctx, "r1", msgs(6, 4, "call"))
	if err != nil || !cancelled {
		t.Fatalf("add after cancel: %v %v", cancelled, err)
	}
	if err := tr.Finish(ctx, "r1", results(Complete, 1)); err != nil {
		t.Fatal(err)
	}
	v = view(t, tr, "demo", "r1")
	if want := (Summary{Total: 10, Complete: 2, Cancelled: 8}); v.Summary != want || v.Status != Complete {
		t.Fatalf("final: %+v %s", v.Summary, v.Status)
	}
	for _, m := range v.Messages[6:] {
		if m.Status != Cancelled || m.ProcessedAt.IsZero() {
			t.Fatalf("late message: %+v", m)
		}
	}
	// Cancelled before split: everything counts as cancelled at once.
	if found, n, err := tr.Cancel(ctx, "demo", "r2"); !found || n != 3 || err != nil {
		t.Fatalf("cancel unsplit: %v %d %v", found, n, err)
	}
	v = view(t, tr, "demo", "r2")
	if want := (Summary{Total: 3, Cancelled: 3}); v.Summary != want || v.Status != Complete {
		t.Fatalf("unsplit cancelled: %+v %s", v.Summary, v.Status)
	}
}

// TestClaimCancelRace: for every message exactly one of Claim and Cancel wins.
func TestClaimCancelRace(t *testing.T) {
	tr, db, _ := openTracker(t)
	ctx := context.Background()
	for round := range 20 {
		id := fmt.Sprintf("race-%d", round)
		accept(t, tr, db, Request{ID: id, ClientID: "demo", Format: "f", ReceivedAt: time.Now(), Total: 100})
		if _, err := tr.AddMessages(ctx, id, msgs(0, 100, "call")); err != nil {
			t.Fatal(err)
		}
		var claimed []int
		var cancelled int
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			for from := 0; from < 100; from += 10 {
				got, err := tr.Claim(ctx, id, seqInts(from, from+9))
				if err != nil {
					t.Error(err)
				}
				claimed = append(claimed, got...)
			}
		}()
		go func() {
			defer wg.Done()
			_, n, err := tr.Cancel(ctx, "demo", id)
			if err != nil {
				t.Error(err)
			}
			cancelled = n
		}()
		wg.Wait()
		if len(claimed)+cancelled != 100 {
			t.Fatalf("round %d: claimed %d + cancelled %d != 100", round, len(claimed), cancelled)
		}
		v := view(t, tr, "demo", id)
		if v.Summary.Processing != len(claimed) || v.Summary.Cancelled != cancelled {
			t.Fatalf("round %d: summary %+v", round, v.Summary)
		}
	}
}

// fixture for search tests: two clients, requests on three days.
func searchFixture(t *testing.T) (*SQLite, context.Context) {
	tr, db, _ := openTracker(t)
	ctx := context.Background()
	day := func(d, h int) time.Time { return time.Date(2024, 5, d, h, 0, 0, 0, time.UTC) }
	type req struct {
		id, client, batch string
		at                time.Time
		types             []string
	}
	reqs := []req{
		{"a1", "demo", "BATCH-1", day(1, 8), []string{"call", "quote", "call"}},
		{"a2", "demo", "BATCH-2", day(2, 8), []string{"quote", "quote"}},
		{"a3", "demo", "", day(3, 8), []string{"call"}},
		{"b1", "other", "BATCH-1", day(2, 9), []string{"call", "call"}},
	}
	for _, r := range reqs {
		accept(t, tr, db, Request{ID: r.id, ClientID: r.client, ClientName: r.client, BatchReference: r.batch, Format: "activity", ReceivedAt: r.at, Total: len(r.types)})
		var ms []NewMessage
		for i, typ := range r.types {
			ms = append(ms, NewMessage{Index: i, ExternalReference: fmt.Sprintf("%s-rec-%d", r.id[:1], i), Type: typ})
		}
		if _, err := tr.AddMessages(ctx, r.id, ms); err != nil {
			t.Fatal(err)
		}
	}
	// a1: 0 Complete, 1 Failed, 2 Queued; a2: 0 Processing, 1 Complete; a3: Queued; b1: Failed, Failed.
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := tr.Claim(ctx, "a1", []int{0, 1})
	must(err)
	must(tr.Finish(ctx, "a1", append(results(Complete, 0), results(Failed, 1)...)))
	_, err = tr.Claim(ctx, "a2", []int{0})
	must(err)
	must(tr.Finish(ctx, "a2", results(Complete, 1)))
	must(tr.Finish(ctx, "b1", results(Failed, 0, 1)))
	return tr, ctx
}

// ids renders a page as "request:idx,idx request:..." for compact comparisons.
func ids(p Page) string {
	var parts []string
	for _, r := range p.Requests {
		var idx []string
		for _, m := range r.Messages {
			idx = append(idx, fmt.Sprint(m.Index))
		}
		parts = append(parts, r.ID+":"+strings.Join(idx, ","))
	}
	return strings.Join(parts, " ")
}

func TestFindSemantics(t *testing.T) {
	tr, ctx := searchFixture(t)
	may1 := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name  string
		f     Filter
		want  string
		total int
	}{
		{"everything, newest first", Filter{}, "a3:0 a2:0,1 a1:0,1,2", 3},
		{"by id", Filter{RequestIDs: []string{"a2"}}, "a2:0,1", 1},
		{"by ids (OR)", Filter{RequestIDs: []string{"a1", "a3", "nope"}}, "a3:0 a1:0,1,2", 2},
		{"other client's id", Filter{RequestIDs: []string{"b1"}}, "", 0},
		{"batch reference: every message", Filter{ExternalReferences: []string{"BATCH-1"}}, "a1:0,1,2", 1},
		{"record reference: that message", Filter{ExternalReferences: []string{"a-rec-2"}}, "a1:2", 1},
		{"record references OR batch", Filter{ExternalReferences: []string{"BATCH-2", "a-rec-1"}}, "a2:0,1 a1:1", 2},
		{"other client's reference", Filter{ExternalReferences: []string{"b-rec-0"}}, "", 0},
		{"type", Filter{MessageTypes: []string{"QUOTE"}}, "a2:0,1 a1:1", 2},
		{"types OR", Filter{MessageTypes: []string{"quote", "call"}}, "a3:0 a2:0,1 a1:0,1,2", 3},
		{"status", Filter{Statuses: []Status{Failed}}, "a1:1", 1},
		{"statuses OR", Filter{Statuses: []Status{Queued, Processing}}, "a3:0 a2:0 a1:2", 3},
		{"status AND type on one message", Filter{Statuses: []Status{Complete}, MessageTypes: []string{"quote"}}, "a2:1", 1},
		{"status AND type, no single message", Filter{Statuses: []Status{Failed}, MessageTypes: []string{"call"}}, "", 0},
		{"one day", Filter{ReceivedFrom: may1, ReceivedTo: may1.Add(24*time.Hour - 1)}, "a1:0,1,2", 1},
		{"range inclusive", Filter{ReceivedFrom: may1.Add(8 * time.Hour), ReceivedTo: may1.Add(32 * time.Hour)}, "a2:0,1 a1:0,1,2", 2},
		{"range AND status", Filter{ReceivedFrom: may1.Add(24 * time.Hour), Statuses: []Status{Queued}}, "a3:0", 1},
		{"batch AND status", Filter{ExternalReferences: []string{"BATCH-1"}, Statuses: []Status{Queued}}, "a1:2", 1},
		{"batch AND status, none", Filter{ExternalReferences: []string{"BATCH-2"}, Statuses: []Status{Failed}}, "", 0},
		{"record AND type", Filter{ExternalReferences: []string{"a-rec-0"}, MessageTypes: []string{"quote"}}, "a2:0", 1},
		{"id AND reference", Filter{RequestIDs: []string{"a1"}, ExternalReferences: []string{"a-rec-1"}}, "a1:1", 1},
		{"sort batch asc, none last", Filter{Sorts: []Sort{{By: SortBatchReference}}}, "a1:0,1,2 a2:0,1 a3:0", 3},
		{"sort batch desc, none last", Filter{Sorts: []Sort{{By: SortBatchReference, Desc: true}}}, "a2:0,1 a1:0,1,2 a3:0", 3},
		{"sort received asc", Filter{Sorts: []Sort{{By: SortReceivedDate}}}, "a1:0,1,2 a2:0,1 a3:0", 3},
		{"sort processed desc, unprocessed last", Filter{Sorts: []Sort{{By: SortProcessedDate, Desc: true}}}, "a1:0,1,2 a2:0,1 a3:0", 3},
		{"page 2 of size 2", Filter{Page: 2, PageSize: 2}, "a1:0,1,2", 3},
		{"page beyond end", Filter{Page: 3, PageSize: 2}, "", 3},
		{"range beyond int64 nanoseconds", Filter{ReceivedFrom: time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), ReceivedTo: time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)}, "a3:0 a2:0,1 a1:0,1,2", 3},
		{"range before the requests", Filter{ReceivedFrom: time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), ReceivedTo: may1.Add(-1)}, "", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := tr.Find(ctx, "demo", c.f)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(p); got != c.want || p.TotalRequests != c.total {
				t.Fatalf("got %q (total %d), want %q (total %d)", got, p.TotalRequests, c.want, c.total)
			}
		})
	}
	// Summaries are over the whole request whatever the payload shows.
	p, err := tr.Find(ctx, "demo", Filter{Statuses: []Status{Failed}})
	if err != nil {
		t.Fatal(err)
	}
	if want := (Summary{Total: 3, Queued: 1, Complete: 1, Failed: 1}); p.Requests[0].Summary != want || p.Requests[0].Status != Processing {
		t.Fatalf("summary %+v %s", p.Requests[0].Summary, p.Requests[0].Status)
	}
	// Other client sees its own.
	p, err = tr.Find(ctx, "other", Filter{ExternalReferences: []string{"BATCH-1"}})
	if err != nil || ids(p) != "b1:0,1" || p.Requests[0].Status != Complete {
		t.Fatalf("other client: %q %v", ids(p), err)
	}
	// Invalid filters.
	for _, f := range []Filter{{Statuses: []Status{"Lost"}}, {Sorts: []Sort{{By: "size"}}}, {PageSize: -1}} {
		if _, err := tr.Find(ctx, "demo", f); !errors.Is(err, ErrInvalidFilter) {
			t.Fatalf("%+v: %v", f, err)
		}
	}
}

func TestMessageID(t *testing.T) {
	a, b := MessageID(reqA, 0), MessageID(reqA, 1)
	if a == b || a != MessageID(reqA, 0) || len(a) != 36 || a[14] != '5' {
		t.Fatalf("ids %s %s", a, b)
	}
	if MessageID("not-a-uuid", 0) == MessageID("not-a-uuid", 1) {
		t.Fatal("fallback ids collide")
	}
}

func TestToRanges(t *testing.T) {
	got := toRanges([]int{5, 1, 2, 3, 3, 9, 8, 20})
	want := [][2]int{{1, 3}, {5, 5}, {8, 9}, {20, 20}}
	if !slices.Equal(got, want) {
		t.Fatalf("%v", got)
	}
}

func TestAppendJSONString(t *testing.T) {
	got := string(appendJSONStringOrNull(nil, "a\"b\\c\n\x01é\xff"))
	if want := `"a\"b\\c\u000a\u0001é` + "\ufffd" + `"`; got != want {
		t.Fatalf("%s", got)
	}
}

// TestQueryPlans pins the indexes the searches use (see the schema's comment): a planner
// change that falls back to scanning would pass the functional tests and fail the benchmark.
func TestQueryPlans(t *testing.T) {
	tr, _ := searchFixture(t)
	plan := func(query string, args []any) string {
		rows, err := tr.db.Reader().Query("EXPLAIN QUERY PLAN "+query, args...)
		if err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			out = append(out, detail)
		}
		return strings.Join(out, "; ")
	}
	day := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name string
		f    Filter
		want []string // substrings of the requests query's plan
	}{
		{"by id", Filter{RequestIDs: []string{"a1"}}, []string{"USING INDEX sqlite_autoindex_tracker_requests_1 (id=?)"}},
		{"by reference", Filter{ExternalReferences: []string{"x"}}, []string{
			"USING INTEGER PRIMARY KEY (rowid=?)",
			"USING COVERING INDEX tracker_messages_external_reference (external_reference=?)",
			"USING COVERING INDEX tracker_requests_client_batch (client_id=? AND batch_reference=?)"}},
		{"status and dates", Filter{Statuses: []Status{Failed}, ReceivedFrom: day, ReceivedTo: day.AddDate(0, 0, 7)}, []string{
			"USING INDEX tracker_requests_client_received (client_id=? AND received_at>? AND received_at<?)"}},
		{"type and status", Filter{MessageTypes: []string{"call"}, Statuses: []Status{Failed}, ReceivedFrom: day}, []string{
			"USING INDEX tracker_requests_client_received (client_id=? AND received_at>?)",
			"USING COVERING INDEX tracker_messages_status (request_seq=? AND status=? AND type=?)"}},
	} {
		where, args := c.f.where("demo")
		got := plan("SELECT r.seq FROM tracker_requests r WHERE "+where+" ORDER BY "+c.f.orderBy(), args)
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: plan %q lacks %q", c.name, got, w)
			}
		}
	}
	for _, c := range []struct {
		name        string
		f           Filter
		byReference bool
		want        string
	}{
		{"all messages", Filter{}, false, "USING PRIMARY KEY (request_seq=?)"},
		{"by status", Filter{Statuses: []Status{Failed}}, false, "USING INDEX tracker_messages_status (request_seq=? AND status=?)"},
		{"by reference", Filter{ExternalReferences: []string{"x"}}, true, "USING INDEX tracker_messages_external_reference (external_reference=?)"},
	} {
		q, args := c.f.messagesQuery([]int64{1, 2}, c.byReference)
		if got := plan(q, args); !strings.Contains(got, c.want) {
			t.Errorf("messages %s: plan %q lacks %q", c.name, got, c.want)
		}
	}
}
