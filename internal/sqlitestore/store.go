// Package sqlitestore is the single-node storage backend (store.Store) on one embedded SQLite
// database file: the lease-based queue (internal/sqlitequeue), the tracker projection, the
// intake tables (idempotency keys, event sequence) and the integrations (Integrations) share
// the file, so one group-committed transaction (internal/sqlitedb) covers all of them.
package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/opengw/gateway/internal/sqlitedb"
	"github.com/opengw/gateway/internal/sqlitequeue"
	"github.com/opengw/gateway/internal/store"
	"github.com/opengw/gateway/tracker"
)

// Config configures Open. Only Path is required.
type Config struct {
	// Path is the database file, created if missing.
	Path string
	// Topics tunes the queue's topics; others use sqlitequeue's defaults.
	Topics map[string]store.TopicConfig
	// Logger receives the queue's errors that cannot be returned to a caller.
	Logger watermill.LoggerAdapter
	// ReleaseLeasesOnStart: see sqlitequeue.Config. Set it only when this process is the only
	// user of the file (the gateway locks its data folder).
	ReleaseLeasesOnStart bool
	// Now is the clock of the tracker's processed and cancelled times; nil means time.Now.
	Now func() time.Time
}

// Store implements store.Store on SQLite. It is safe for concurrent use.
type Store struct {
	db           *sqlitedb.DB
	queue        *sqlitequeue.Queue
	tracker      *trackerDB
	integrations *Integrations

	closeOnce sync.Once
	closeErr  error
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the database at cfg.Path with the queue, tracker and intake
// tables.
func Open(cfg Config) (*Store, error) {
	db, err := sqlitedb.Open(cfg.Path)
	if err != nil {
		return nil, err
	}
	topics := make(map[string]sqlitequeue.TopicConfig, len(cfg.Topics))
	for name, t := range cfg.Topics {
		topics[name] = sqlitequeue.TopicConfig{BatchSize: t.BatchSize, MaxInFlight: t.MaxInFlight, MaxInFlightBytes: t.MaxInFlightBytes}
	}
	queue, err := sqlitequeue.New(sqlitequeue.Config{
		DB: db, Logger: cfg.Logger, Topics: topics, ReleaseLeasesOnStart: cfg.ReleaseLeasesOnStart,
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open queue in %s: %w", cfg.Path, err)
	}
	trk, err := newTrackerDB(db)
	if err != nil {
		queue.Close()
		db.Close()
		return nil, err
	}
	trk.Now = cfg.Now
	if _, err := db.Exec(context.Background(), retentionSchema); err != nil {
		queue.Close()
		db.Close()
		return nil, fmt.Errorf("create retention index in %s: %w", cfg.Path, err)
	}
	if err := migrateIntake(db); err != nil {
		queue.Close()
		db.Close()
		return nil, err
	}
	integ, err := openIntegrations(db, cfg.Now, cfg.ReleaseLeasesOnStart)
	if err != nil {
		queue.Close()
		db.Close()
		return nil, err
	}
	return &Store{db: db, queue: queue, tracker: trk, integrations: integ}, nil
}

// Update runs fn in a transaction of the group-committing writer, shared with concurrent
// callers; if fn fails, none of its writes are kept, and if another caller's function fails, fn
// runs again (sqlitedb.DB.Write). Subscriptions of the topics fn published to are woken after
// the commit.
func (s *Store) Update(ctx context.Context, fn func(store.Tx) error) error {
	if store.IsUrgent(ctx) {
		ctx = sqlitedb.Urgent(ctx)
	}
	var done *tx
	err := s.db.Write(ctx, func(sqlTx *sql.Tx) error {
		t := &tx{tx: sqlTx, s: s}
		if err := fn(t); err != nil {
			return err
		}
		done = t
		return nil
	})
	if err != nil {
		return err
	}
	for _, topic := range done.published {
		s.queue.Notify(topic)
	}
	for _, f := range done.afterCommit {
		f()
	}
	return nil
}

// Queue is the lease-based SQLite queue.
func (s *Store) Queue() store.Queue { return queue{s.queue} }

// Tracker answers tracking searches from the read pool.
func (s *Store) Tracker() tracker.Store { return s.tracker }

// PurgeIdempotencyKeys forgets keys remembered before before.
func (s *Store) PurgeIdempotencyKeys(ctx context.Context, before time.Time) error {
	if _, err := s.db.Exec(ctx, `DELETE FROM intake_idempotency WHERE created_at < ?`, before.UnixMilli()); err != nil {
		return fmt.Errorf("purge idempotency keys: %w", err)
	}
	return nil
}

// Ping writes to the database (an empty transaction through the writer), so it fails while
// the file cannot be written.
func (s *Store) Ping(ctx context.Context) error {
	return s.db.Write(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO intake_sequence (name, value) VALUES ('ping', 0)
			ON CONFLICT (name) DO UPDATE SET value = value + 1`)
		return err
	})
}

// Close stops the queue (unsettled messages return) and closes the database.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closeErr = errors.Join(s.queue.Close(), s.db.Close())
	})
	return s.closeErr
}

// queue adapts sqlitequeue.Queue to store.Queue. Its Close does nothing: the Store owns the
// queue and closes it after the router has stopped (the router closes subscribers before its
// handlers finish, which would release every message in flight).
type queue struct{ *sqlitequeue.Queue }

func (queue) Close() error { return nil }

// tx implements store.Tx on one sqlitedb.Write transaction.
type tx struct {
	tx          *sql.Tx
	s           *Store
	published   []string
	afterCommit []func()
	writer      *writeTx // the tracker's view of tx, made on first use
}

func (t *tx) AfterCommit(fn func()) { t.afterCommit = append(t.afterCommit, fn) }

func (t *tx) Tracker() tracker.Writer {
	if t.writer == nil {
		t.writer = &writeTx{Tx: t.tx}
	}
	return trackerTx{t.s.tracker, t.writer}
}

func (t *tx) Publish(topic string, msgs ...*message.Message) error {
	if err := t.s.queue.InsertTx(t.tx, topic, msgs...); err != nil {
		return err
	}
	t.published = append(t.published, topic)
	return nil
}

func (t *tx) Ack(msg *message.Message) error { return t.s.queue.AckTx(t.tx, msg) }

func (t *tx) Retry(msg *message.Message, notBefore time.Time) error {
	return t.s.queue.RetryTx(t.tx, msg, notBefore)
}

// trackerTx binds the SQLite tracker's transaction methods to one transaction.
type trackerTx struct {
	t  *trackerDB
	tx *writeTx
}

func (w trackerTx) Accept(r tracker.Request, msgs ...tracker.NewMessage) error {
	return w.t.AcceptTx(w.tx, r, msgs...)
}
func (w trackerTx) AddMessages(requestID string, msgs []tracker.NewMessage) (bool, error) {
	return w.t.AddMessagesTx(w.tx, requestID, msgs)
}
func (w trackerTx) Claim(requestID string, indexes []int) ([]int, error) {
	return w.t.ClaimTx(w.tx, requestID, indexes)
}
func (w trackerTx) Finish(requestID string, results []tracker.Result) (*tracker.Completion, error) {
	return w.t.FinishTx(w.tx, requestID, results)
}
func (w trackerTx) Replay(requestID string, indexes []int) ([]int, error) {
	return w.t.ReplayTx(w.tx, requestID, indexes)
}
func (w trackerTx) RecordParts(requestID, part string, results []tracker.Result) (map[int][]tracker.Result, error) {
	return w.t.RecordPartsTx(w.tx, requestID, part, results)
}
func (w trackerTx) Retrying(requestID string, indexes []int, lastError string) error {
	return w.t.RetryingTx(w.tx, requestID, indexes, lastError)
}
