package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opengw/gateway/internal/sqlitedb"
	"github.com/opengw/gateway/tracker"
)

func TestMain(m *testing.M) {
	code := m.Run()
	for _, fx := range fixtures {
		fx.db.Close()
		os.RemoveAll(fx.dir)
	}
	os.Exit(code)
}

// BenchmarkProjection measures the pipeline's three tracker writes per record: each
// 10,000-record request is recorded, claimed and finished in fragments of 1,000 (AddMessages,
// Claim, Finish per fragment; 1% of records end Invalid with an error), by one worker and by
// several concurrent workers (whose writes share group commits, as the pipeline's do).
func BenchmarkProjection(b *testing.B) {
	for _, workers := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			tr, db := openTracker(b)
			ctx := context.Background()
			const recordsPerRequest, fragment = 10_000, 1_000
			var next atomic.Int64
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for n := next.Add(1) - 1; n < int64(b.N); n = next.Add(1) - 1 {
						id := fmt.Sprintf("bench-%d-%d", w, n)
						accept(b, tr, db, tracker.Request{ID: id, ClientID: "demo", Format: "activity", ReceivedAt: time.Now(), Total: recordsPerRequest})
						for off := 0; off < recordsPerRequest; off += fragment {
							if err := projectFragment(ctx, tr, id, off, fragment); err != nil {
								b.Error(err)
								return
							}
						}
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.ReportMetric(float64(b.N*recordsPerRequest)/elapsed.Seconds(), "records/s")
		})
	}
}

// projectFragment does what the pipeline does for one fragment.
func projectFragment(ctx context.Context, tr *trackerDB, id string, off, n int) error {
	ms := msgs(off, n, "call")
	if _, err := tr.AddMessages(ctx, id, ms); err != nil {
		return err
	}
	var invalid []tracker.Result
	var valid []int
	for i := off; i < off+n; i++ {
		if i%100 == 42 {
			invalid = append(invalid, tracker.Result{Index: i, Status: tracker.Invalid, Errors: []string{"type must be call or quote"}, MappingVersion: "v1"})
			continue
		}
		valid = append(valid, i)
	}
	if err := tr.Finish(ctx, id, invalid); err != nil {
		return err
	}
	claimed, err := tr.Claim(ctx, id, valid)
	if err != nil {
		return err
	}
	if len(claimed) != len(valid) {
		return fmt.Errorf("claimed %d of %d", len(claimed), len(valid))
	}
	res := make([]tracker.Result, len(claimed))
	for i, idx := range claimed {
		res[i] = tracker.Result{Index: idx, Status: tracker.Complete, MappingVersion: "v1"}
	}
	return tr.Finish(ctx, id, res)
}

// fixture is a tracker database filled directly with SQL, shared by the search benchmarks.
type fixture struct {
	dir      string
	db       *sqlitedb.DB
	tr       *trackerDB
	requests int
	messages int
	first    time.Time // received day of the first request
	days     int
	build    time.Duration
}

var (
	fixturesMu sync.Mutex
	fixtures   = map[int]*fixture{}
)

// Fixture shape: requests alternate between clients "demo" (odd seq) and "other" (even seq),
// spread evenly over `days` days; one request in 100 is big (50×perRequest messages), the others have about
// perRequest/2 — so the total is about requests×perRequest messages. Message statuses are
// deterministic: ~90% Complete, 3% Failed (with an error), 2% Invalid, 2% Processing, 2% Queued,
// 1% Cancelled. Types cycle call, quote, payment. Record ids are "R<seq>-<idx>", batch
// references "B<seq>".
func getFixture(tb testing.TB, requests, perRequest int) *fixture {
	fixturesMu.Lock()
	defer fixturesMu.Unlock()
	key := requests*1_000_000 + perRequest
	if fx := fixtures[key]; fx != nil {
		return fx
	}
	start := time.Now()
	dir, err := os.MkdirTemp("", "tracker-fixture-")
	if err != nil {
		tb.Fatal(err)
	}
	db, err := sqlitedb.Open(filepath.Join(dir, "gateway.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tr, err := newTrackerDB(db)
	if err != nil {
		tb.Fatal(err)
	}
	fx := &fixture{dir: dir, db: db, tr: tr, requests: requests, days: 100,
		first: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}
	perDay := max(requests/fx.days, 1)
	big := perRequest * 50
	small := max((requests*perRequest-requests/100*big)/(requests-requests/100), 1)
	ctx := context.Background()
	err = db.Write(ctx, func(tx *sql.Tx) error {
		ins, err := tx.Prepare(`INSERT INTO tracker_requests (seq, id, client_id, client_name, batch_reference, format, received_at, total)
			VALUES (?, ?, ?, ?, ?, 'activity', ?, ?)`)
		if err != nil {
			return err
		}
		defer ins.Close()
		for seq := 1; seq <= requests; seq++ {
			client := "demo"
			if seq%2 == 0 {
				client = "other"
			}
			total := small
			if seq%200 == 50 || seq%200 == 151 { // 1% big, for both clients
				total = big
			}
			day := (seq - 1) / perDay
			at := fx.first.AddDate(0, 0, day).Add(time.Duration((seq-1)%perDay) * (24 * time.Hour / time.Duration(perDay)))
			id := fmt.Sprintf("%08x-0000-4000-8000-%012x", seq, seq)
			if _, err := ins.Exec(seq, id, client, client, fmt.Sprintf("B%d", seq), at.UnixNano(), total); err != nil {
				return err
			}
		}
		// Bulk load without the secondary indexes, then build them (sorting once is far
		// cheaper than a million random index inserts).
		if _, err := tx.Exec(`DROP INDEX tracker_messages_status; DROP INDEX tracker_messages_external_reference`); err != nil {
			return err
		}
		_, err = tx.Exec(`INSERT INTO tracker_messages
			(request_seq, idx, external_reference, type, status, processed_at, errors, mapping_version)
			WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?),
			m AS (SELECT r.seq, n.i, r.received_at, CASE
					WHEN (r.seq * 7919 + n.i * 104729) % 100 < 90 THEN 2
					WHEN (r.seq * 7919 + n.i * 104729) % 100 < 93 THEN 3
					WHEN (r.seq * 7919 + n.i * 104729) % 100 < 95 THEN 4
					WHEN (r.seq * 7919 + n.i * 104729) % 100 < 97 THEN 1
					WHEN (r.seq * 7919 + n.i * 104729) % 100 < 99 THEN 0
					ELSE 5 END AS st
				FROM tracker_requests r JOIN n ON n.i < r.total)
			SELECT seq, i, 'R' || seq || '-' || i,
				CASE i % 3 WHEN 0 THEN 'call' WHEN 1 THEN 'quote' ELSE 'payment' END,
				st,
				CASE WHEN st >= 2 THEN received_at + 60000000000 ELSE NULL END,
				CASE WHEN st IN (3, 4) THEN '["Unable to process"]' ELSE NULL END,
				'v1'
			FROM m ORDER BY seq, i`, big-1)
		if err != nil {
			return fmt.Errorf("insert messages: %w", err)
		}
		if _, err := tx.Exec(schema); err != nil {
			return fmt.Errorf("index messages: %w", err)
		}
		_, err = tx.Exec(`UPDATE tracker_requests AS r SET
				n_rows = c.n, n_processing = c.p, n_complete = c.c, n_failed = c.f, n_invalid = c.i, n_cancelled = c.x,
				last_processed_at = c.lp
			FROM (SELECT request_seq, count(*) AS n, sum(status = 1) AS p, sum(status = 2) AS c, sum(status = 3) AS f,
				sum(status = 4) AS i, sum(status = 5) AS x, max(processed_at) AS lp
				FROM tracker_messages GROUP BY request_seq) AS c
			WHERE c.request_seq = r.seq`)
		if err != nil {
			return fmt.Errorf("count messages: %w", err)
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("build fixture: %v", err)
	}
	if err := db.Reader().QueryRow(`SELECT count(*) FROM tracker_messages`).Scan(&fx.messages); err != nil {
		tb.Fatal(err)
	}
	fx.build = time.Since(start)
	fixtures[key] = fx
	return fx
}

// query is one kind of search the benchmark times.
type query struct {
	name string
	next func(r *rand.Rand) tracker.Filter
	// check validates an answer (nil: any).
	check func(f tracker.Filter, p tracker.Page) error
}

func (fx *fixture) queries() []query {
	demoSeq := func(r *rand.Rand) int { return 1 + 2*r.IntN(fx.requests/2) } // odd seqs are demo's
	id := func(seq int) string { return fmt.Sprintf("%08x-0000-4000-8000-%012x", seq, seq) }
	return []query{
		{
			name: "by-id",
			next: func(r *rand.Rand) tracker.Filter { return tracker.Filter{RequestIDs: []string{id(demoSeq(r))}} },
			check: func(f tracker.Filter, p tracker.Page) error {
				if p.TotalRequests != 1 || p.Requests[0].ID != f.RequestIDs[0] || len(p.Requests[0].Messages) != p.Requests[0].Summary.Total {
					return fmt.Errorf("by id %v: %d requests", f.RequestIDs, p.TotalRequests)
				}
				return nil
			},
		},
		{
			name: "by-record-reference",
			next: func(r *rand.Rand) tracker.Filter {
				seq := demoSeq(r)
				return tracker.Filter{ExternalReferences: []string{fmt.Sprintf("R%d-%d", seq, r.IntN(10))}}
			},
			check: func(f tracker.Filter, p tracker.Page) error {
				if p.TotalRequests != 1 || len(p.Requests[0].Messages) != 1 || p.Requests[0].Messages[0].ExternalReference != f.ExternalReferences[0] {
					return fmt.Errorf("by reference %v: %d requests", f.ExternalReferences, p.TotalRequests)
				}
				return nil
			},
		},
		{
			name: "other-clients-id",
			next: func(r *rand.Rand) tracker.Filter { return tracker.Filter{RequestIDs: []string{id(demoSeq(r) + 1)}} },
			check: func(f tracker.Filter, p tracker.Page) error {
				if p.TotalRequests != 0 {
					return fmt.Errorf("another client's request was found")
				}
				return nil
			},
		},
		{
			name: "status+week-page50",
			next: func(r *rand.Rand) tracker.Filter {
				from := fx.first.AddDate(0, 0, r.IntN(fx.days-7))
				return tracker.Filter{Statuses: []tracker.Status{tracker.Failed}, ReceivedFrom: from, ReceivedTo: from.AddDate(0, 0, 7).Add(-1),
					Page: 1 + r.IntN(3), PageSize: 50}
			},
			check: checkStatusPage,
		},
		{
			name: "status+all-days-random-page50",
			next: func(r *rand.Rand) tracker.Filter {
				return tracker.Filter{Statuses: []tracker.Status{tracker.Failed, tracker.Invalid}, ReceivedFrom: fx.first, ReceivedTo: fx.first.AddDate(0, 0, fx.days),
					Page: 1 + r.IntN(max(fx.requests/2/50, 1)), PageSize: 50}
			},
			check: checkStatusPage,
		},
		{
			name: "type+status+day-page50",
			next: func(r *rand.Rand) tracker.Filter {
				from := fx.first.AddDate(0, 0, r.IntN(fx.days))
				return tracker.Filter{MessageTypes: []string{"quote"}, Statuses: []tracker.Status{tracker.Failed}, ReceivedFrom: from,
					ReceivedTo: from.AddDate(0, 0, 1).Add(-1), PageSize: 50, Page: 1}
			},
			check: checkStatusPage,
		},
	}
}

func checkStatusPage(f tracker.Filter, p tracker.Page) error {
	if len(p.Requests) > f.PageSize {
		return fmt.Errorf("page of %d", len(p.Requests))
	}
	for _, r := range p.Requests {
		if len(r.Messages) == 0 {
			return fmt.Errorf("request %s without matching messages", r.ID)
		}
		for _, m := range r.Messages {
			if !slices.Contains(f.Statuses, m.Status) {
				return fmt.Errorf("message in status %s", m.Status)
			}
		}
		if r.ReceivedAt.Before(f.ReceivedFrom) || r.ReceivedAt.After(f.ReceivedTo) {
			return fmt.Errorf("request received %v", r.ReceivedAt)
		}
		if r.ClientID != "demo" {
			return fmt.Errorf("request of %s", r.ClientID)
		}
	}
	return nil
}

// latencies runs q n times and returns the sorted durations.
func latencies(tb testing.TB, fx *fixture, q query, n int, seed uint64) []time.Duration {
	r := rand.New(rand.NewPCG(seed, 7))
	out := make([]time.Duration, 0, n)
	ctx := context.Background()
	for range n {
		f := q.next(r)
		start := time.Now()
		p, err := fx.tr.Find(ctx, "demo", f)
		out = append(out, time.Since(start))
		if err != nil {
			tb.Fatal(err)
		}
		if q.check != nil {
			if err := q.check(f, p); err != nil {
				tb.Fatalf("%s: %v", q.name, err)
			}
		}
	}
	slices.Sort(out)
	return out
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(int(float64(len(d))*p), len(d)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkFind times searches over 1,000,000 messages in 10,000 requests of two clients
// (see getFixture), reporting p50 and p99 in milliseconds. write-load-alone measures the
// projection rate (four workers, as BenchmarkProjection) on that database; under-write-load
// runs the searches back to back — one of the two cores busy searching — while that
// projection goes on, and reports both; under-write-load-200qps does the same at 200
// searches/s.
func BenchmarkFind(b *testing.B) {
	fx := getFixture(b, 10_000, 100)
	b.Logf("fixture: %d requests, %d messages, built in %v", fx.requests, fx.messages, fx.build.Round(time.Millisecond))
	for i, q := range fx.queries() {
		b.Run(q.name, func(b *testing.B) {
			d := latencies(b, fx, q, b.N, uint64(i))
			b.ReportMetric(ms(pct(d, 0.50)), "p50-ms")
			b.ReportMetric(ms(pct(d, 0.99)), "p99-ms")
		})
	}
	b.Run("write-load-alone", func(b *testing.B) {
		stop, written := projectInBackground(b, fx)
		start := time.Now()
		time.Sleep(3 * time.Second)
		elapsed := time.Since(start)
		stop()
		b.ReportMetric(float64(written.Load())/elapsed.Seconds(), "written-records/s")
	})
	b.Run("under-write-load", func(b *testing.B) {
		all, rate := underWriteLoad(b, fx, max(b.N, 50), 3*time.Second, 0)
		b.ReportMetric(ms(pct(all, 0.50)), "p50-ms")
		b.ReportMetric(ms(pct(all, 0.99)), "p99-ms")
		b.ReportMetric(rate, "written-records/s")
	})
	b.Run("under-write-load-200qps", func(b *testing.B) {
		all, rate := underWriteLoad(b, fx, 50, 3*time.Second, 5*time.Millisecond)
		b.ReportMetric(ms(pct(all, 0.50)), "p50-ms")
		b.ReportMetric(ms(pct(all, 0.99)), "p99-ms")
		b.ReportMetric(rate, "written-records/s")
	})
}

// underWriteLoad runs every query kind in turn, at least n queries and for at least minDur,
// one every pace (0: back to back), while projectInBackground writes. It returns the sorted
// latencies and the projection's records/s meanwhile.
func underWriteLoad(tb testing.TB, fx *fixture, n int, minDur, pace time.Duration) ([]time.Duration, float64) {
	stop, written := projectInBackground(tb, fx)
	start := time.Now()
	qs := fx.queries()
	var all []time.Duration
	for i := 0; len(all) < n || time.Since(start) < minDur; i++ {
		if pace > 0 {
			time.Sleep(time.Until(start.Add(time.Duration(len(all)) * pace)))
			all = append(all, latencies(tb, fx, qs[i%len(qs)], 1, uint64(1000+i))...)
			continue
		}
		all = append(all, latencies(tb, fx, qs[i%len(qs)], 10, uint64(1000+i))...)
	}
	elapsed := time.Since(start)
	stop()
	slices.Sort(all)
	return all, float64(written.Load()) / elapsed.Seconds()
}

// projectInBackground keeps four workers projecting 10,000-record requests of client "load"
// into fx (received far outside the fixture's days, so searches' answers do not change) until
// stop is called. written counts projected records.
func projectInBackground(tb testing.TB, fx *fixture) (stop func(), written *atomic.Int64) {
	ctx, cancel := context.WithCancel(context.Background())
	written = new(atomic.Int64)
	var wg sync.WaitGroup
	var n atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				id := fmt.Sprintf("load-%d-%d", time.Now().UnixNano(), n.Add(1))
				err := fx.db.Write(ctx, func(tx *sql.Tx) error {
					return fx.tr.AcceptTx(&writeTx{Tx: tx}, tracker.Request{ID: id, ClientID: "load", Format: "activity", ReceivedAt: time.Now(), Total: 10_000})
				})
				for off := 0; off < 10_000 && err == nil && ctx.Err() == nil; off += 1000 {
					if err = projectFragment(ctx, fx.tr, id, off, 1000); err == nil {
						written.Add(1000)
					}
				}
				if err != nil && ctx.Err() == nil {
					tb.Error(err)
					return
				}
			}
		}()
	}
	return func() { cancel(); wg.Wait() }, written
}

// TestFindLatency is BenchmarkFind's correctness run on a smaller fixture (100,000 messages):
// every query's answers are checked, latencies logged, and a generous bound enforced (the
// figures that matter come from the benchmark, on the full fixture).
func TestFindLatency(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 100,000-message fixture")
	}
	fx := getFixture(t, 1_000, 100)
	t.Logf("fixture: %d requests, %d messages, built in %v", fx.requests, fx.messages, fx.build.Round(time.Millisecond))
	for i, q := range fx.queries() {
		d := latencies(t, fx, q, 200, uint64(i))
		t.Logf("%-32s p50 %6.2f ms  p99 %6.2f ms", q.name, ms(pct(d, 0.5)), ms(pct(d, 0.99)))
		if p99 := pct(d, 0.99); p99 > 500*time.Millisecond {
			t.Errorf("%s: p99 %v", q.name, p99)
		}
	}
	d, rate := underWriteLoad(t, fx, 100, time.Second, 0)
	t.Logf("under write load: p50 %.2f ms p99 %.2f ms; projected %.0f records/s meanwhile",
		ms(pct(d, 0.5)), ms(pct(d, 0.99)), rate)
	if rate == 0 {
		t.Error("no projection progress while searching")
	}
}
