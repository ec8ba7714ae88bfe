package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opengw/gateway/internal/sqlitedb"
	"github.com/opengw/gateway/tracker"
)

func openTracker(t testing.TB) (*trackerDB, *sqlitedb.DB) {
	t.Helper()
	db, err := sqlitedb.Open(filepath.Join(t.TempDir(), "gateway.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	tr, err := newTrackerDB(db)
	if err != nil {
		t.Fatal(err)
	}
	return tr, db
}

func accept(t testing.TB, tr *trackerDB, db *sqlitedb.DB, r tracker.Request) {
	t.Helper()
	if err := db.Write(context.Background(), func(tx *sql.Tx) error { return tr.AcceptTx(&writeTx{Tx: tx}, r) }); err != nil {
		t.Fatal(err)
	}
}

func msgs(from, n int, typ string) []tracker.NewMessage {
	out := make([]tracker.NewMessage, n)
	for i := range out {
		out[i] = tracker.NewMessage{Index: from + i, ExternalReference: fmt.Sprintf("rec-%d", from+i), Type: typ}
	}
	return out
}

func results(status tracker.Status, idx ...int) []tracker.Result {
	out := make([]tracker.Result, len(idx))
	for i, x := range idx {
		out[i] = tracker.Result{Index: x, Status: status, MappingVersion: "v1"}
	}
	return out
}

const reqA = "0b9a0c3e-6a51-4f0e-9d37-4b0f1e2f3a01"

// fixture for search tests: two clients, requests on three days.
func searchFixture(t *testing.T) (*trackerDB, context.Context) {
	tr, db := openTracker(t)
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
		accept(t, tr, db, tracker.Request{ID: r.id, ClientID: r.client, ClientName: r.client, BatchReference: r.batch, Format: "activity", ReceivedAt: r.at, Total: len(r.types)})
		var ms []tracker.NewMessage
		for i, typ := range r.types {
			ms = append(ms, tracker.NewMessage{Index: i, ExternalReference: fmt.Sprintf("%s-rec-%d", r.id[:1], i), Type: typ})
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
	must(tr.Finish(ctx, "a1", append(results(tracker.Complete, 0), results(tracker.Failed, 1)...)))
	_, err = tr.Claim(ctx, "a2", []int{0})
	must(err)
	must(tr.Finish(ctx, "a2", results(tracker.Complete, 1)))
	must(tr.Finish(ctx, "b1", results(tracker.Failed, 0, 1)))
	return tr, ctx
}

func TestMessageID(t *testing.T) {
	a, b := tracker.MessageID(reqA, 0), tracker.MessageID(reqA, 1)
	if a == b || a != tracker.MessageID(reqA, 0) || len(a) != 36 || a[14] != '5' {
		t.Fatalf("ids %s %s", a, b)
	}
	if tracker.MessageID("not-a-uuid", 0) == tracker.MessageID("not-a-uuid", 1) {
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
		f    tracker.Filter
		want []string // substrings of the requests query's plan
	}{
		{"by id", tracker.Filter{RequestIDs: []string{"a1"}}, []string{"USING INDEX sqlite_autoindex_tracker_requests_1 (id=?)"}},
		{"by reference", tracker.Filter{ExternalReferences: []string{"x"}}, []string{
			"USING INTEGER PRIMARY KEY (rowid=?)",
			"USING COVERING INDEX tracker_messages_external_reference (external_reference=?)",
			"USING COVERING INDEX tracker_requests_client_batch (client_id=? AND batch_reference=?)"}},
		{"by batch reference", tracker.Filter{BatchReferences: []string{"B"}}, []string{
			"USING INTEGER PRIMARY KEY (rowid=?)",
			"USING COVERING INDEX tracker_requests_client_batch (client_id=? AND batch_reference=?)"}},
		{"by batch reference and dates", tracker.Filter{BatchReferences: []string{"B"}, ReceivedFrom: day, ReceivedTo: day.AddDate(0, 0, 7)}, []string{
			"USING INTEGER PRIMARY KEY (rowid=?)",
			"USING COVERING INDEX tracker_requests_client_batch (client_id=? AND batch_reference=?)"}},
		{"status and dates", tracker.Filter{Statuses: []tracker.Status{tracker.Failed}, ReceivedFrom: day, ReceivedTo: day.AddDate(0, 0, 7)}, []string{
			"USING INDEX tracker_requests_client_received (client_id=? AND received_at>? AND received_at<?)"}},
		{"type and status", tracker.Filter{MessageTypes: []string{"call"}, Statuses: []tracker.Status{tracker.Failed}, ReceivedFrom: day}, []string{
			"USING INDEX tracker_requests_client_received (client_id=? AND received_at>?)",
			"USING COVERING INDEX tracker_messages_status (request_seq=? AND status=? AND type=?)"}},
	} {
		where, args := where(&c.f, "demo")
		got := plan("SELECT r.seq FROM tracker_requests r WHERE "+where+" ORDER BY "+orderBy(&c.f), args)
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: plan %q lacks %q", c.name, got, w)
			}
		}
	}
	for _, c := range []struct {
		name        string
		f           tracker.Filter
		byReference bool
		want        string
	}{
		{"all messages", tracker.Filter{}, false, "USING PRIMARY KEY (request_seq=?)"},
		{"by status", tracker.Filter{Statuses: []tracker.Status{tracker.Failed}}, false, "USING INDEX tracker_messages_status (request_seq=? AND status=?)"},
		{"by reference", tracker.Filter{ExternalReferences: []string{"x"}}, true, "USING INDEX tracker_messages_external_reference (external_reference=?)"},
	} {
		q, args := messagesQuery(&c.f, []int64{1, 2}, c.byReference)
		if got := plan(q, args); !strings.Contains(got, c.want) {
			t.Errorf("messages %s: plan %q lacks %q", c.name, got, c.want)
		}
	}
}
