package pgstore

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opengw/gateway/tracker"
)

// planFixture is a tracker of about 1,000,000 messages filled with generate_series: 10,000
// requests of clients "demo" (odd seq) and "other" (even seq), 100 a day over 100 days from
// 2024-01-01; one request in 100 is big (5,000 messages), the others have 50. Message
// statuses are deterministic: ~90% Complete, 3% Failed (with an error), 2% Invalid, 2%
// Processing, 2% Queued, 1% Cancelled; types cycle call, quote, payment. Record ids are
// "R<seq>-<idx>", batch references "B<seq>". The shape is tracker/bench_test.go's.
func planFixture(t *testing.T) (*Store, *sql.DB) {
	t.Helper()
	start := time.Now()
	s, db := openStore(t, time.Now)
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	for _, stmt := range []string{
		`SET LOCAL synchronous_commit = off`,
		`SET LOCAL maintenance_work_mem = '256MB'`,
		`INSERT INTO tracker_requests (seq, id, client_id, client_name, batch_reference, format, received_at, total)
			OVERRIDING SYSTEM VALUE
			SELECT g, lpad(to_hex(g), 8, '0') || '-0000-4000-8000-' || lpad(to_hex(g), 12, '0'),
				CASE WHEN g % 2 = 0 THEN 'other' ELSE 'demo' END, 'name', 'B' || g, 'activity',
				timestamptz '2024-01-01 00:00:00+00' + (g - 1) * interval '864 seconds',
				CASE WHEN g % 200 IN (50, 151) THEN 5000 ELSE 50 END
			FROM generate_series(1, 10000) AS g`,
		// Bulk load without the secondary indexes, then build them: sorting once is far
		// cheaper than a million random index inserts.
		`DROP INDEX tracker_messages_status, tracker_messages_external_reference`,
		`INSERT INTO tracker_messages (request_seq, idx, external_reference, type, status, processed_at, errors, mapping_version)
			SELECT r.seq, i, 'R' || r.seq || '-' || i, (ARRAY['call', 'quote', 'payment'])[i % 3 + 1], st.code,
				CASE WHEN st.code >= 2 THEN r.received_at + interval '1 minute' END,
				CASE WHEN st.code IN (3, 4) THEN '["Unable to process"]' END, 'v1'
			FROM tracker_requests r CROSS JOIN LATERAL generate_series(0, r.total - 1) AS i
			CROSS JOIN LATERAL (SELECT (CASE
				WHEN (r.seq * 7919 + i * 104729) % 100 < 90 THEN 2
				WHEN (r.seq * 7919 + i * 104729) % 100 < 93 THEN 3
				WHEN (r.seq * 7919 + i * 104729) % 100 < 95 THEN 4
				WHEN (r.seq * 7919 + i * 104729) % 100 < 97 THEN 1
				WHEN (r.seq * 7919 + i * 104729) % 100 < 99 THEN 0
				ELSE 5 END)::smallint AS code) AS st`,
		schema,
		`UPDATE tracker_requests AS r SET n_rows = c.n, n_processing = c.p, n_complete = c.c, n_failed = c.f,
				n_invalid = c.i, n_cancelled = c.x, last_processed_at = c.lp
			FROM (SELECT request_seq, count(*) AS n, count(*) FILTER (WHERE status = 1) AS p,
				count(*) FILTER (WHERE status = 2) AS c, count(*) FILTER (WHERE status = 3) AS f,
				count(*) FILTER (WHERE status = 4) AS i, count(*) FILTER (WHERE status = 5) AS x,
				max(processed_at) AS lp
				FROM tracker_messages GROUP BY request_seq) AS c
			WHERE c.request_seq = r.seq`,
	} {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			t.Fatalf("build fixture: %v\n%s", err, stmt)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `VACUUM ANALYZE tracker_requests, tracker_messages`); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM tracker_messages`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	t.Logf("fixture: %d messages in 10000 requests, built in %v", n, time.Since(start).Round(time.Millisecond))
	return s, db
}

// fixtureID is the request id of seq in planFixture.
func fixtureID(seq int) string { return fmt.Sprintf("%08x-0000-4000-8000-%012x", seq, seq) }

// TestQueryPlans pins, at a million messages, the indexes each kind of search uses (see the
// schema's comment) — a plan that falls back to scanning would pass the functional suite and
// fail in production — and checks the answers of those searches. It builds its fixture in
// about 15 s; -short skips it.
func TestQueryPlans(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 1,000,000-message fixture (about 15 s)")
	}
	s, db := planFixture(t)
	ctx := context.Background()
	// Find plans its queries with their parameters' values (plan_cache_mode), as EXPLAIN does.
	explain := func(q *query) string {
		t.Helper()
		rows, err := db.QueryContext(ctx, "EXPLAIN "+q.sql(), q.args...)
		if err != nil {
			t.Fatalf("explain %s: %v", q.sql(), err)
		}
		defer rows.Close()
		var lines []string
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			lines = append(lines, strings.TrimSpace(line))
		}
		return strings.Join(lines, "\n")
	}
	// A fragment's claim and a delivery's outcome, 1,000 messages of a 5,000-message request,
	// probe the primary key, not the status index (see byIndexes in tracker.go).
	fragment := make([]int32, 1000)
	for i := range fragment {
		fragment[i] = int32(1000 + i)
	}
	for name, q := range map[string]*query{
		"claim":  {args: []any{50, fragment}},
		"finish": {args: []any{50, fragment, int16(2), time.Now(), nil, "v1", int16(1)}},
	} {
		q.b.WriteString(map[string]string{"claim": claimSQL, "finish": finishSQL}[name])
		if plan := explain(q); !strings.Contains(plan, "tracker_messages_pkey") ||
			strings.Contains(plan, "tracker_messages_status") {
			t.Errorf("%s: the plan does not probe the primary key alone:\n%s", name, plan)
		}
	}
	day := time.Date(2024, 2, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name string
		f    tracker.Filter
		want []string // index names the requests query's plan uses
	}{
		{"by id", tracker.Filter{RequestIDs: []string{fixtureID(101)}}, []string{"tracker_requests_id_key"}},
		{"by batch reference", tracker.Filter{BatchReferences: []string{"B101"}}, []string{"tracker_requests_client_batch"}},
		{"by external reference", tracker.Filter{ExternalReferences: []string{"R101-3", "B103"}}, []string{
			"tracker_messages_external_reference", "tracker_requests_client_batch", "tracker_requests_pkey"}},
		{"status and a week", tracker.Filter{Statuses: []tracker.Status{tracker.Failed}, ReceivedFrom: day, ReceivedTo: day.AddDate(0, 0, 7)}, []string{
			"tracker_requests_client_received"}},
		{"type, status and a day", tracker.Filter{MessageTypes: []string{"quote"}, Statuses: []tracker.Status{tracker.Failed}, ReceivedFrom: day, ReceivedTo: day.AddDate(0, 0, 1)}, []string{
			"tracker_requests_client_received", "tracker_messages_status"}},
	} {
		q := requestsQuery(c.f, "demo", "r.seq")
		q.b.WriteString(" ORDER BY " + orderBy(&c.f) + " LIMIT 50")
		plan := explain(q)
		for _, w := range c.want {
			if !strings.Contains(plan, w) {
				t.Errorf("%s: the plan does not use %s:\n%s", c.name, w, plan)
			}
		}
		if strings.Contains(plan, "Seq Scan") {
			t.Errorf("%s: the plan scans a table:\n%s", c.name, plan)
		}
	}
	big := []int64{50, 151} // 5,000 messages each
	for _, c := range []struct {
		name        string
		f           tracker.Filter
		byReference bool
		want        string
	}{
		{"a page of all messages", tracker.Filter{MessagePage: 3, MessagePageSize: 1000}, false, "tracker_messages_pkey"},
		{"a page of messages in a status", tracker.Filter{Statuses: []tracker.Status{tracker.Failed}, MessagePageSize: 1000}, false, "tracker_messages_status"},
		{"messages by record reference", tracker.Filter{ExternalReferences: []string{"R50-7", "R151-9"}, MessagePageSize: 1000}, true, "tracker_messages_external_reference"},
	} {
		plan := explain(messagesQuery(c.f, big, c.byReference))
		if !strings.Contains(plan, c.want) || strings.Contains(plan, "Seq Scan on tracker_messages") {
			t.Errorf("messages %s: the plan does not use %s:\n%s", c.name, c.want, plan)
		}
	}

	// The answers at that scale.
	trk := s.Tracker()
	find := func(f tracker.Filter) tracker.Page {
		t.Helper()
		p, err := trk.Find(ctx, "demo", f)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := find(tracker.Filter{RequestIDs: []string{fixtureID(151)}, MessagePage: 3, MessagePageSize: 1000})
	if len(p.Requests) != 1 || p.Requests[0].Summary.Total != 5000 || len(p.Requests[0].Messages) != 1000 ||
		p.Requests[0].Messages[0].Index != 2000 || p.Requests[0].Messages[999].Index != 2999 {
		t.Fatalf("page 3 of a big request: %+v", p.Requests)
	}
	if p := find(tracker.Filter{RequestIDs: []string{fixtureID(150)}}); p.TotalRequests != 0 {
		t.Fatal("demo found other's request")
	}
	p = find(tracker.Filter{ExternalReferences: []string{"R101-3"}})
	if len(p.Requests) != 1 || len(p.Requests[0].Messages) != 1 || p.Requests[0].Messages[0].ExternalReference != "R101-3" {
		t.Fatalf("by record reference: %+v", p.Requests)
	}
	p = find(tracker.Filter{BatchReferences: []string{"B101", "B102"}})
	if len(p.Requests) != 1 || p.Requests[0].ID != fixtureID(101) || len(p.Requests[0].Messages) != 50 {
		t.Fatalf("by batch reference: %d requests", len(p.Requests))
	}
	f := tracker.Filter{MessageTypes: []string{"QUOTE"}, Statuses: []tracker.Status{tracker.Failed}, ReceivedFrom: day,
		ReceivedTo: day.AddDate(0, 0, 7), PageSize: 50, MessagePageSize: 10}
	p = find(f)
	if p.TotalRequests == 0 || len(p.Requests) > 50 {
		t.Fatalf("type, status and a week: %d of %d requests", len(p.Requests), p.TotalRequests)
	}
	for _, r := range p.Requests {
		if r.ClientID != "demo" || r.ReceivedAt.Before(f.ReceivedFrom) || r.ReceivedAt.After(f.ReceivedTo) || len(r.Messages) == 0 || len(r.Messages) > 10 {
			t.Fatalf("request %+v", r.Request)
		}
		for _, m := range r.Messages {
			if m.Status != tracker.Failed || m.Type != "quote" || !slices.Equal(m.Errors, []string{"Unable to process"}) {
				t.Fatalf("message %+v", m)
			}
		}
	}
}
