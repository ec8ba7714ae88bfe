package pgstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/opengw/gateway/internal/pgqueue"
	"github.com/opengw/gateway/internal/pgtest"
	"github.com/opengw/gateway/internal/store"
	"github.com/opengw/gateway/internal/store/storetest"
	"github.com/opengw/gateway/tracker"
)

// testQueue is a minimal table-backed Queue, only so that the suite's atomicity checks and
// the delivery-transaction tests have something real to commit with: PublishTx inserts into
// a table in the caller's transaction, Depth counts the rows. It delivers nothing. The real
// queue is internal/pgqueue; the suite must also run with it (the lead wires it).
type testQueue struct{ db *sql.DB }

func newTestQueue(t testing.TB, db *sql.DB) *testQueue {
	t.Helper()
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS test_queue (
		topic text NOT NULL, uuid text NOT NULL, payload bytea NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		t.Fatal(err)
	}
	return &testQueue{db: db}
}

func (q *testQueue) Subscribe(context.Context, string) (<-chan *message.Message, error) {
	return nil, errors.New("the test queue delivers nothing")
}

func (q *testQueue) Close() error { return nil }

func (q *testQueue) Depth(ctx context.Context, topic string) (int, error) {
	var n int
	err := q.db.QueryRowContext(ctx, `SELECT count(*) FROM test_queue WHERE topic = $1`, topic).Scan(&n)
	return n, err
}

func (q *testQueue) OldestAge(ctx context.Context, topic string) (time.Duration, error) {
	var age sql.NullFloat64
	err := q.db.QueryRowContext(ctx, `SELECT extract(epoch FROM now() - min(created_at)) FROM test_queue WHERE topic = $1`, topic).Scan(&age)
	return time.Duration(age.Float64 * float64(time.Second)), err
}

func (q *testQueue) PublishTx(ctx context.Context, tx *sql.Tx, topic string, msgs ...*message.Message) error {
	for _, m := range msgs {
		if _, err := tx.ExecContext(ctx, `INSERT INTO test_queue (topic, uuid, payload) VALUES ($1, $2, $3)`, topic, m.UUID, []byte(m.Payload)); err != nil {
			return err
		}
	}
	return nil
}

// AfterCommit keeps nothing: the test queue's deliveries never commit on their own.
func (q *testQueue) AfterCommit(ctx context.Context, fn func()) bool {
	_, ok := q.TxFromContext(ctx)
	return ok
}

func (q *testQueue) RetryTx(*sql.Tx, *message.Message, time.Time) error {
	return errors.New("the test queue does not retry")
}

type deliveryKey struct{}

// TxFromContext returns the transaction withDelivery put in ctx.
func (q *testQueue) TxFromContext(ctx context.Context) (*sql.Tx, bool) {
	tx, ok := ctx.Value(deliveryKey{}).(*sql.Tx)
	return tx, ok
}

// withDelivery marks ctx as a delivery's, consumed in tx (as the queue does for a handler).
func withDelivery(ctx context.Context, tx *sql.Tx) context.Context {
	return context.WithValue(ctx, deliveryKey{}, tx)
}

func openStore(t testing.TB, now func() time.Time) (*Store, *sql.DB) {
	t.Helper()
	db, _ := pgtest.Open(t)
	return openStoreOn(t, db, newTestQueue(t, db), now), db
}

// openStoreOn is a store on db with queue.
func openStoreOn(t testing.TB, db *sql.DB, queue Queue, now func() time.Time) *Store {
	t.Helper()
	s, err := New(context.Background(), db, queue)
	if err != nil {
		t.Fatal(err)
	}
	s.Now = now
	t.Cleanup(func() { s.Close() })
	return s
}

// TestStoreSuite runs the shared suite on PostgreSQL with the real queue (internal/pgqueue);
// the tests below use a table-backed test queue where they need to fake a delivery.
func TestStoreSuite(t *testing.T) {
	storetest.Run(t, storetest.Backend{
		Open: func(t *testing.T, now func() time.Time) store.Store {
			db, _ := pgtest.Open(t)
			q, err := pgqueue.New(pgqueue.Config{DB: db})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { q.Close() })
			return openStoreOn(t, db, q, now)
		},
		Reopen: func(t *testing.T, old store.Store, now func() time.Time) store.Store {
			o := old.(*Store)
			if err := o.Close(); err != nil {
				t.Fatal(err)
			}
			if err := o.Update(context.Background(), func(store.Tx) error { return nil }); !errors.Is(err, errClosed) {
				t.Fatalf("Update after Close: %v", err)
			}
			s, err := New(context.Background(), o.db, o.queue)
			if err != nil {
				t.Fatal(err)
			}
			s.Now = now
			return s
		},
		DetectsInFlight: true,
	})
}

// TestSchemaConcurrentStart: nodes starting together on an empty database all create (or
// find) the schema.
func TestSchemaConcurrentStart(t *testing.T) {
	db, _ := pgtest.Open(t)
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = New(context.Background(), db, nil)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
	}
}

// TestUpdateInDelivery: with a delivery's transaction in ctx, Update runs inside it under a
// savepoint: a failed fn rolls back its own writes only, and what succeeded commits (or rolls
// back) with the delivery.
func TestUpdateInDelivery(t *testing.T) {
	s, db := openStore(t, time.Now)
	ctx := context.Background()
	accept := func(id string) func(tx store.Tx) error {
		return func(tx store.Tx) error {
			return tx.Tracker().Accept(tracker.Request{ID: id, ClientID: "demo", Format: "f", ReceivedAt: time.Now(), Total: 1})
		}
	}
	exists := func(id string) bool {
		p, err := s.Tracker().Find(ctx, "demo", tracker.Filter{RequestIDs: []string{id}})
		if err != nil {
			t.Fatal(err)
		}
		return p.TotalRequests == 1
	}
	boom := errors.New("boom")
	for _, commit := range []bool{true, false} {
		kept, failed := fmt.Sprint("kept-", commit), fmt.Sprint("failed-", commit)
		delivery, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		dctx := withDelivery(ctx, delivery)
		msg := message.NewMessage("m-"+kept, nil)
		msg.SetContext(dctx)
		if err := s.Update(dctx, func(tx store.Tx) error {
			if err := accept(kept)(tx); err != nil {
				return err
			}
			if err := tx.Publish("topic", message.NewMessage("out-"+kept, []byte("x"))); err != nil {
				return err
			}
			return tx.Ack(msg)
		}); err != nil {
			t.Fatal(err)
		}
		err = s.Update(dctx, func(tx store.Tx) error {
			if err := accept(failed)(tx); err != nil {
				return err
			}
			if _, err := tx.NextSequence("events"); err != nil {
				return err
			}
			// A statement that fails aborts the (sub)transaction: the savepoint recovers it.
			_, err := tx.Tracker().AddMessages("no-such-request", nil)
			return errors.Join(err, boom)
		})
		if !errors.Is(err, boom) || !errors.Is(err, tracker.ErrNotFound) {
			t.Fatalf("failed fn: %v", err)
		}
		if exists(kept) {
			t.Fatal("writes inside a delivery were visible before it committed")
		}
		// The delivery's transaction is still usable.
		if _, err := delivery.ExecContext(ctx, `SELECT 1`); err != nil {
			t.Fatalf("delivery transaction after a failed fn: %v", err)
		}
		if commit {
			err = delivery.Commit()
		} else {
			err = delivery.Rollback()
		}
		if err != nil {
			t.Fatal(err)
		}
		depth, err := s.Queue().Depth(ctx, "topic")
		if err != nil {
			t.Fatal(err)
		}
		wantDepth := map[bool]int{true: 1, false: 1}[commit] // the committed round's message stays
		if exists(kept) != commit || exists(failed) || depth != wantDepth {
			t.Fatalf("commit %v: kept %v, failed %v, depth %d", commit, exists(kept), exists(failed), depth)
		}
	}
	// The failed fn's sequence step was rolled back with it.
	if err := s.Update(ctx, func(tx store.Tx) error {
		n, err := tx.NextSequence("events")
		if err == nil && n != 1 {
			err = fmt.Errorf("sequence %d, want 1", n)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// Acking a delivered message outside its transaction is a wiring mistake, reported.
	delivery, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer delivery.Rollback()
	msg := message.NewMessage("elsewhere", nil)
	msg.SetContext(withDelivery(ctx, delivery))
	if err := s.Update(ctx, func(tx store.Tx) error { return tx.Ack(msg) }); err == nil {
		t.Fatal("Ack outside the message's transaction succeeded")
	}
}

// TestUpdateRetries: a transaction PostgreSQL aborts for a serialization failure or a deadlock
// runs again; other errors are returned at once.
func TestUpdateRetries(t *testing.T) {
	s, _ := openStore(t, time.Now)
	ctx := context.Background()
	calls := 0
	err := s.Update(ctx, func(tx store.Tx) error {
		calls++
		if err := tx.Tracker().Accept(tracker.Request{ID: fmt.Sprint("r", calls), ClientID: "demo", Format: "f", ReceivedAt: time.Now(), Total: 1}); err != nil {
			return err
		}
		if calls < 3 {
			return fmt.Errorf("write: %w", &pgconn.PgError{Code: []string{"40001", "40P01"}[calls-1]})
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("retried Update: %v after %d calls", err, calls)
	}
	p, err := s.Tracker().Find(ctx, "demo", tracker.Filter{})
	if err != nil || ids(p) != "r3" {
		t.Fatalf("only the last attempt is kept: %q %v", ids(p), err)
	}
	calls = 0
	if err := s.Update(ctx, func(store.Tx) error { calls++; return &pgconn.PgError{Code: "23505"} }); err == nil || calls != 1 {
		t.Fatalf("a unique violation was retried: %v after %d calls", err, calls)
	}
	calls = 0
	if err := s.Update(ctx, func(store.Tx) error { calls++; return &pgconn.PgError{Code: "40001"} }); err == nil || calls != maxAttempts {
		t.Fatalf("endless serialization failures: %v after %d calls", err, calls)
	}
}

func ids(p tracker.Page) string {
	var out string
	for i, r := range p.Requests {
		if i > 0 {
			out += " "
		}
		out += r.ID
	}
	return out
}

// TestTextPostgreSQLRefuses: NUL bytes and invalid UTF-8, which PostgreSQL's text refuses,
// are stored as U+FFFD, and found by the values the partner sent.
func TestTextPostgreSQLRefuses(t *testing.T) {
	s, _ := openStore(t, time.Now)
	ctx := context.Background()
	batch, ref := "batch\x00one", "rec\xff\x00"
	if err := s.Update(ctx, func(tx store.Tx) error {
		w := tx.Tracker()
		if err := w.Accept(tracker.Request{ID: "r", ClientID: "demo", BatchReference: batch, Format: "f", ReceivedAt: time.Now(), Total: 1}); err != nil {
			return err
		}
		_, err := w.AddMessages("r", []tracker.NewMessage{{Index: 0, ExternalReference: ref, Type: "t\x00"}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []tracker.Filter{{BatchReferences: []string{batch}}, {ExternalReferences: []string{ref}}, {ExternalReferences: []string{batch}}, {MessageTypes: []string{"T\x00"}}} {
		p, err := s.Tracker().Find(ctx, "demo", f)
		if err != nil || p.TotalRequests != 1 || len(p.Requests[0].Messages) != 1 {
			t.Fatalf("%+v: %+v %v", f, p, err)
		}
		if m := p.Requests[0].Messages[0]; m.ExternalReference != "rec\ufffd\ufffd" || p.Requests[0].BatchReference != "batch\ufffdone" {
			t.Fatalf("stored as %q, %q", m.ExternalReference, p.Requests[0].BatchReference)
		}
	}
}

func TestPing(t *testing.T) {
	s, db := openStore(t, time.Now)
	ctx := context.Background()
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`ALTER DATABASE ` + currentDatabase(t, db) + ` SET default_transaction_read_only = on`); err != nil {
		t.Fatal(err)
	}
	db.SetMaxIdleConns(0) // new connections pick the setting up
	if err := s.Ping(ctx); err == nil {
		t.Fatal("Ping succeeded on a read-only database")
	}
}

func currentDatabase(t *testing.T, db *sql.DB) string {
	t.Helper()
	var name string
	if err := db.QueryRow(`SELECT current_database()`).Scan(&name); err != nil {
		t.Fatal(err)
	}
	return name
}

// TestSharedSecret: every node reads the secret the first one generated.
func TestSharedSecret(t *testing.T) {
	a, db := openStore(t, time.Now)
	b, err := New(context.Background(), db, nil)
	if err != nil {
		t.Fatal(err)
	}
	first, err := a.SharedSecret(context.Background(), "jwt", 32)
	if err != nil || len(first) != 32 {
		t.Fatalf("first: %x %v", first, err)
	}
	second, err := b.SharedSecret(context.Background(), "jwt", 32)
	if err != nil || string(second) != string(first) {
		t.Fatalf("second node got %x, want the first node's %x (%v)", second, first, err)
	}
}
