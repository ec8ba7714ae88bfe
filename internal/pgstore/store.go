// Package pgstore is the PostgreSQL backend of store.Store, for several gateway nodes sharing
// one database: the tracker projection (tracker.Writer and tracker.Store), intake's
// idempotency keys and event sequence, and the unit of work (Update) that commits them
// together with the messages of the PostgreSQL queue. All of its SQL lives in this package;
// the queue's own SQL lives in the queue (internal/pgqueue), which Store reaches through the
// small Queue interface.
//
// Semantics are those of the SQLite backend, checked by the shared suite (store/storetest).
// Where PostgreSQL differs:
//
//   - Transactions run at READ COMMITTED. Every tracker write first locks its request's row
//     (FOR NO KEY UPDATE), so the writes of one request — claims, finishes, a cancel, a split —
//     are serialized across nodes while other requests proceed in parallel; transitions are
//     compare-and-set on the message's status as on SQLite.
//   - Update retries the whole transaction on a serialization failure (40001) or a deadlock
//     (40P01), at most maxAttempts times.
//   - Times are stored as timestamptz: microsecond precision.
//   - An Idempotency-Key is locked (a transaction-scoped advisory lock) from its lookup to the
//     commit: a second transaction using the same key meanwhile gets
//     store.ErrIdempotencyInFlight at once instead of waiting.
//   - store.Urgent has no effect: there is no single writer to jump the queue of.
package pgstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/opengw/gateway/internal/store"
	"github.com/opengw/gateway/tracker"
)

// Queue is what Store needs of the PostgreSQL queue (internal/pgqueue): the queue itself, and
// its transactional operations on a *sql.Tx of the same database.
type Queue interface {
	store.Queue
	// PublishTx stores msgs on topic inside tx; subscribers see them once tx commits.
	PublishTx(ctx context.Context, tx *sql.Tx, topic string, msgs ...*message.Message) error
	// RetryTx settles msg inside tx and offers it again, not before notBefore, as its next
	// delivery attempt.
	RetryTx(tx *sql.Tx, msg *message.Message, notBefore time.Time) error
	// TxFromContext returns the transaction a delivered message's context carries (the queue
	// consumes a message in a transaction that commits when the handler acks it), or false.
	// For a delivered msg, TxFromContext(msg.Context()) is the transaction it was delivered in.
	TxFromContext(ctx context.Context) (*sql.Tx, bool)
	// AfterCommit runs fn once the delivery transaction of ctx has committed; false if ctx is
	// not a delivered message's.
	AfterCommit(ctx context.Context, fn func()) bool
}

// maxAttempts bounds how many times Update runs fn when PostgreSQL aborts the transaction for
// a serialization failure or a deadlock.
const maxAttempts = 8

// Store is store.Store on PostgreSQL. It is safe for concurrent use.
type Store struct {
	// Now is the clock for processed and cancelled times; nil means time.Now. Set it before
	// the store is used.
	Now func() time.Time

	db     *sql.DB
	queue  Queue
	closed atomic.Bool
}

var _ store.Store = (*Store)(nil)

// New returns a Store on db (a pgx stdlib *sql.DB, shared with the queue) and queue, creating
// the schema if needed; several nodes may call it at once. queue may be nil for a store that
// only tracks (then Publish, Ack and Retry fail and Queue returns nil). The caller keeps
// ownership of db: Close does not close it.
func New(ctx context.Context, db *sql.DB, queue Queue) (*Store, error) {
	if err := createSchema(ctx, db); err != nil {
		return nil, err
	}
	return &Store{db: db, queue: queue}, nil
}

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

var errClosed = errors.New("pgstore: store is closed")

// Update runs fn in one transaction and commits it if fn returns nil (see store.Store). When
// ctx carries a transaction of the queue (a handler's delivery), fn runs inside it under a
// savepoint instead: fn's writes commit with the delivery's acknowledgement, and a failed fn
// rolls back only its own writes.
func (s *Store) Update(ctx context.Context, fn func(tx store.Tx) error) error {
	if s.closed.Load() {
		return errClosed
	}
	if s.queue != nil {
		if outer, ok := s.queue.TxFromContext(ctx); ok {
			return s.updateIn(ctx, outer, fn)
		}
	}
	return s.run(ctx, func(t *txn) error { return fn(t) })
}

// run runs fn in a transaction of its own, retrying it on serialization failures and deadlocks.
func (s *Store) run(ctx context.Context, fn func(t *txn) error) error {
	for attempt := 1; ; attempt++ {
		err := s.runOnce(ctx, fn)
		if err == nil || !retryable(err) || attempt == maxAttempts {
			return err
		}
		if err := pause(ctx, attempt); err != nil {
			return err
		}
	}
}

func (s *Store) runOnce(ctx context.Context, fn func(t *txn) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("pgstore: begin transaction: %w", err)
	}
	t := &txn{ctx: ctx, tx: tx, s: s}
	if err := fn(t); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("pgstore: commit: %w", err)
	}
	for _, f := range t.afterCommit {
		f()
	}
	return nil
}

// updateIn runs fn inside outer, the transaction of a delivery, under a savepoint.
func (s *Store) updateIn(ctx context.Context, outer *sql.Tx, fn func(tx store.Tx) error) error {
	for attempt := 1; ; attempt++ {
		if _, err := outer.ExecContext(ctx, "SAVEPOINT pgstore_update"); err != nil {
			return fmt.Errorf("pgstore: savepoint in the delivery's transaction: %w", err)
		}
		t := &txn{ctx: ctx, tx: outer, s: s}
		err := fn(t)
		if err == nil {
			if _, err := outer.ExecContext(ctx, "RELEASE SAVEPOINT pgstore_update"); err != nil {
				return fmt.Errorf("pgstore: release savepoint: %w", err)
			}
			// The delivery's transaction commits later, with its acknowledgement.
			for _, f := range t.afterCommit {
				s.queue.AfterCommit(ctx, f)
			}
			return nil
		}
		if _, rbErr := outer.ExecContext(ctx, "ROLLBACK TO SAVEPOINT pgstore_update; RELEASE SAVEPOINT pgstore_update"); rbErr != nil {
			return errors.Join(err, fmt.Errorf("pgstore: roll back to savepoint: %w", rbErr))
		}
		if !retryable(err) || attempt == maxAttempts {
			return err
		}
		if err := pause(ctx, attempt); err != nil {
			return err
		}
	}
}

// retryable reports whether err is PostgreSQL aborting a transaction that may succeed if run
// again: a serialization failure or a deadlock.
func retryable(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && (pg.Code == "40001" || pg.Code == "40P01")
}

// pause waits a little, more after each attempt, with jitter so that the transactions that
// collided do not collide again.
func pause(ctx context.Context, attempt int) error {
	d := time.Duration(attempt)*5*time.Millisecond + rand.N(5*time.Millisecond)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Queue returns the queue New was given.
//
// Its Close does nothing: Watermill's router closes a subscriber before its handlers finish,
// which would roll back every batch in flight; the queue's owner closes it after the router has
// stopped.
func (s *Store) Queue() store.Queue {
	if s.queue == nil {
		return nil
	}
	return unclosable{s.queue}
}

// unclosable hides the queue's Close from the router.
type unclosable struct{ store.Queue }

func (unclosable) Close() error { return nil }

// Tracker answers tracking searches and cancels requests.
func (s *Store) Tracker() tracker.Store { return trackerStore{s} }

// PurgeIdempotencyKeys forgets idempotency keys remembered before before.
func (s *Store) PurgeIdempotencyKeys(ctx context.Context, before time.Time) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM intake_idempotency WHERE created_at < $1`, before); err != nil {
		return fmt.Errorf("pgstore: purge idempotency keys: %w", err)
	}
	return nil
}

// Ping reports whether the database is reachable and writable: a primary, not a read-only
// standby or session.
func (s *Store) Ping(ctx context.Context) error {
	var writable bool
	err := s.db.QueryRowContext(ctx,
		`SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off'`).Scan(&writable)
	if err != nil {
		return fmt.Errorf("pgstore: ping: %w", err)
	}
	if !writable {
		return errors.New("pgstore: ping: the database is read-only (a standby or a read-only session)")
	}
	return nil
}

// Close marks the store closed: later Updates fail. It does not close the *sql.DB, which the
// caller owns (the queue shares it). It is idempotent.
func (s *Store) Close() error {
	s.closed.Store(true)
	return nil
}

// txn is one transaction of the store: its own, or a delivery's (under a savepoint).
type txn struct {
	ctx         context.Context
	tx          *sql.Tx
	s           *Store
	afterCommit []func()
}

func (t *txn) AfterCommit(fn func()) { t.afterCommit = append(t.afterCommit, fn) }

var _ store.Tx = (*txn)(nil)

var errNoQueue = errors.New("pgstore: the store was created without a queue")

func (t *txn) Tracker() tracker.Writer { return writer{t} }

// integSQLTx hands the integrations store this transaction, so that its writes join the unit
// of work (see Integrations.Bind).
func (t *txn) integSQLTx() (context.Context, *sql.Tx) { return t.ctx, t.tx }

func (t *txn) Publish(topic string, msgs ...*message.Message) error {
	if t.s.queue == nil {
		return errNoQueue
	}
	if err := t.s.queue.PublishTx(t.ctx, t.tx, topic, msgs...); err != nil {
		return fmt.Errorf("pgstore: publish %d messages on %s: %w", len(msgs), topic, err)
	}
	return nil
}

// Ack settles msg in this transaction. The queue acknowledges a message by committing the
// transaction it was delivered in, so Ack only checks that this is that transaction (Update
// was called with the message's context): anything else is a wiring mistake, reported.
func (t *txn) Ack(msg *message.Message) error {
	if t.s.queue == nil {
		return errNoQueue
	}
	if delivery, ok := t.s.queue.TxFromContext(msg.Context()); !ok || delivery != t.tx {
		return fmt.Errorf("pgstore: ack message %s: the Update does not run in the transaction the message was delivered in (pass msg.Context() to Update)", msg.UUID)
	}
	return nil
}

func (t *txn) Retry(msg *message.Message, notBefore time.Time) error {
	if t.s.queue == nil {
		return errNoQueue
	}
	if err := t.s.queue.RetryTx(t.tx, msg, notBefore); err != nil {
		return fmt.Errorf("pgstore: retry message %s: %w", msg.UUID, err)
	}
	return nil
}
