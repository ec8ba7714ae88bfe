// Package pgqueue is the durable Watermill Pub/Sub of the gateway's PostgreSQL backend, built
// on watermill-sql (github.com/ThreeDotsLabs/watermill-sql/v4): its Subscriber runs the
// consume loop, this package gives it the schema, the ack query, the transactions and the
// wake-ups. Several gateway nodes share one database and compete for every topic's messages.
//
// # Storage
//
// Each topic has its own table (see tableName; its COMMENT names the topic), created by New for
// Config.Topics or on first use, under an advisory lock. A publish inserts rows and NOTIFYs, both in the publisher's
// transaction (PublishTx), so messages exist — and consumers wake — only once it commits.
//
// # Consuming: one transaction per batch
//
// A subscription runs MaxInFlight consumers (watermill-sql subscriptions) and merges them into
// one channel. A consumer opens a READ COMMITTED transaction, selects up to BatchSize ready rows
// with FOR UPDATE SKIP LOCKED (rows locked by any other consumer, on any node, are skipped, so
// consumers work in parallel), hands the messages out one at a time, and after the last one (or
// when it stops) deletes the acknowledged rows and commits. The row locks are the claim: if a
// node dies, its connection closes, PostgreSQL rolls the batch back and the rows are offered
// again at once. A node that hangs is cut off by idle_in_transaction_session_timeout
// (AckDeadline + 30s) set in each batch transaction.
//
// Handlers write through that same transaction (TxOf), so their writes and the deletion of the
// message commit together, or not at all. What a handler must know:
//
//   - The transaction is shared by the messages of one batch, one after the other. Before each
//     message is handed out the consumer sets a savepoint: a nack rolls back to it (the
//     handler's writes are undone, even if a failed statement had aborted the transaction),
//     then offers the message again as attempt n+1 after Config.Backoff. An ack keeps them.
//     Handlers may nest savepoints of their own but must not release or roll back to
//     pgqueue_msg.
//   - Writes are committed when the whole batch is, not when the handler returns: until then
//     they hold their row locks (other nodes' writers of the same rows wait) and are invisible.
//     A smaller BatchSize makes outcomes visible sooner; a bigger one costs fewer commits.
//   - The batch commits only if every message handed out in it was acknowledged. If one was not
//     (the queue closed or AckDeadline passed while its handler still ran), the whole batch is
//     rolled back — its acked messages come back too (at-least-once) — so a handler's writes
//     never commit without its ack. Statements a handler runs after that fail with
//     sql.ErrTxDone.
//   - Do not use the transaction from several goroutines, or after acking or nacking.
//   - A redelivery after the holder died, closed or overran AckDeadline repeats the same
//     attempt number: the claim is a lock, and nothing written in the rolled-back transaction
//     survives to count it. Nacks and RetryTx do count.
//
// Each consumer holds one connection of the pool while it has a batch — including while it
// waits for the subscriber to take a message — and the Queue one more for LISTEN (shared by
// Queues on the same *sql.DB): size the pool (and max_connections) for the sum of MaxInFlight
// over the subscribed topics, plus the publishers.
package pgqueue

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/opengw/gateway/internal/store"
)

// ErrClosed is returned by Publish and Subscribe after Close.
var ErrClosed = errors.New("pgqueue: queue is closed")

// Defaults applied by New to zero Config and TopicConfig fields.
const (
	DefaultPollInterval = time.Second
	DefaultAckDeadline  = 5 * time.Minute
	DefaultBatchSize    = 10
	DefaultMaxInFlight  = 4
)

// retryInterval is how long a consumer waits after a failed query (database unreachable).
const retryInterval = time.Second

// Config configures a Queue. Only DB is required.
type Config struct {
	// DB is the database, opened with the pgx driver (github.com/jackc/pgx/v5/stdlib). It must
	// stay open until Close returns.
	DB *sql.DB
	// Logger receives what cannot be returned to a caller. Default: watermill.NopLogger.
	Logger watermill.LoggerAdapter
	// PollInterval bounds how long an idle consumer waits before looking for messages nobody
	// announced: rows released by a dead node's rollback, or published while LISTEN was down.
	// Published messages wake consumers at once (LISTEN/NOTIFY), and a consumer wakes when the
	// next retried message becomes ready. Default 1s.
	PollInterval time.Duration
	// AckDeadline is how long a delivered message may stay unacknowledged. Past it the
	// consumer gives up on it, its batch is rolled back and offered again (see the package
	// doc). Set it above the slowest handler. Default 5 minutes.
	AckDeadline time.Duration
	// Backoff returns how long a message nacked at delivery attempt (1-based) waits before it
	// is offered again. Default: 100ms, doubling each attempt, at most 1 minute.
	Backoff func(attempt int) time.Duration
	// Topics holds per-topic settings; topics not listed use the defaults. Their tables are
	// created by New: list every topic the process uses, so that no table is created later,
	// which needs a connection of its own while consumers may hold the rest of the pool.
	Topics map[string]TopicConfig
}

// TopicConfig tunes the subscriptions of one topic.
type TopicConfig struct {
	// BatchSize is the most rows one consumer claims (and holds in memory) at once. Default 10;
	// use 1 for big payloads.
	BatchSize int
	// MaxInFlight is the number of consumers of each Subscribe call, hence the most messages it
	// hands out unacknowledged at a time (each consumer handles its batch one message after the
	// other). Default 4.
	MaxInFlight int
}

// TopicsFrom turns backend-neutral topic tuning into this queue's, where every consumer of a
// topic holds a transaction and a pool connection while it has a batch: at most two consumers
// per topic and process, batches of at most 16. A Large topic's messages (fragments) are taken
// one per transaction, so a batch never holds the row locks of a big request's writes while
// its other fragments wait, by up to six consumers, so small requests still commit in parallel.
// MaxInFlightBytes needs no counterpart: a topic's consumers hold at most 32 messages.
func TopicsFrom(topics map[string]store.TopicConfig) map[string]TopicConfig {
	out := make(map[string]TopicConfig, len(topics))
	for name, t := range topics {
		c := TopicConfig{BatchSize: min(max(t.BatchSize, 1), 16), MaxInFlight: min(max(t.MaxInFlight, 1), 2)}
		if t.Large {
			c.BatchSize, c.MaxInFlight = 1, min(max(t.MaxInFlight, 1), 6)
		}
		out[name] = c
	}
	return out
}

// Queue is a Watermill message.Publisher and store.Queue backed by PostgreSQL. All methods are
// safe for concurrent use.
//
// One Queue serves every topic, and Close stops all of it. Watermill's Router closes its
// subscribers as soon as it starts closing, before running handlers finish: hand it q behind a
// wrapper whose Close does nothing, and close q after Router.Close returns. Cancelling a
// subscription's context (the router does) closes its channel while messages already handed
// out can still be acked.
type Queue struct {
	db           *sql.DB
	logger       watermill.LoggerAdapter
	pollInterval time.Duration
	ackDeadline  time.Duration
	backoff      func(attempt int) time.Duration
	topics       map[string]TopicConfig
	hub          *hub

	// ctx is the watermill-sql subscriptions' context, cancelled once they have stopped.
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	closed    bool
	closing   chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

var (
	_ store.Queue       = (*Queue)(nil)
	_ message.Publisher = (*Queue)(nil)
)

// New checks cfg, creates the tables of cfg.Topics if they do not exist and starts listening
// for notifications.
func New(cfg Config) (*Queue, error) {
	if cfg.DB == nil {
		return nil, errors.New("pgqueue: Config.DB is required")
	}
	if _, ok := cfg.DB.Driver().(*stdlib.Driver); !ok {
		return nil, fmt.Errorf("pgqueue: Config.DB uses driver %T; open it with the pgx driver (github.com/jackc/pgx/v5/stdlib)", cfg.DB.Driver())
	}
	if cfg.PollInterval < 0 {
		return nil, fmt.Errorf("pgqueue: PollInterval %s is negative", cfg.PollInterval)
	}
	if cfg.AckDeadline < 0 {
		return nil, fmt.Errorf("pgqueue: AckDeadline %s is negative", cfg.AckDeadline)
	}
	for name, tc := range cfg.Topics {
		if tc.BatchSize < 0 || tc.MaxInFlight < 0 {
			return nil, fmt.Errorf("pgqueue: topic %q: negative BatchSize (%d) or MaxInFlight (%d)", name, tc.BatchSize, tc.MaxInFlight)
		}
	}
	q := &Queue{
		db:           cfg.DB,
		logger:       cfg.Logger,
		pollInterval: cmp.Or(cfg.PollInterval, DefaultPollInterval),
		ackDeadline:  cmp.Or(cfg.AckDeadline, DefaultAckDeadline),
		backoff:      cfg.Backoff,
		topics:       cfg.Topics,
		closing:      make(chan struct{}),
	}
	if q.logger == nil {
		q.logger = watermill.NopLogger{}
	}
	if q.backoff == nil {
		q.backoff = defaultBackoff
	}
	q.hub = acquireHub(q.db, q.logger)
	for topic := range cfg.Topics {
		if err := q.ensureTopic(context.Background(), topic); err != nil {
			q.hub.release()
			return nil, fmt.Errorf("pgqueue: %w", err)
		}
	}
	q.ctx, q.cancel = context.WithCancel(context.Background())
	return q, nil
}

func defaultBackoff(attempt int) time.Duration {
	return min(100*time.Millisecond<<min(max(attempt-1, 0), 10), time.Minute)
}

func (q *Queue) topicConfig(topic string) TopicConfig {
	tc := q.topics[topic]
	tc.BatchSize = cmp.Or(tc.BatchSize, DefaultBatchSize)
	tc.MaxInFlight = cmp.Or(tc.MaxInFlight, DefaultMaxInFlight)
	return tc
}

// Publish durably stores msgs on topic in one transaction of its own: all of them or, on error,
// none. It returns ErrClosed after Close.
func (q *Queue) Publish(topic string, msgs ...*message.Message) error {
	q.mu.Lock()
	closed := q.closed
	q.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if len(msgs) == 0 {
		return nil
	}
	ctx := context.Background()
	tx, err := q.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("publish %d messages to topic %q: %w", len(msgs), topic, err)
	}
	defer tx.Rollback()
	if err := q.PublishTx(ctx, tx, topic, msgs...); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("publish %d messages to topic %q: %w", len(msgs), topic, err)
	}
	return nil
}

// PublishTx stores msgs on topic inside tx, the caller's transaction on the Queue's database:
// they are delivered once tx commits, and never if it rolls back. Consumers on every node are
// notified at the commit. The first use of a topic creates its table in a transaction of its
// own (so it needs a second connection once). PublishTx works whether or not q is closed.
func (q *Queue) PublishTx(ctx context.Context, tx *sql.Tx, topic string, msgs ...*message.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	if err := q.ensureTopic(ctx, topic); err != nil {
		return fmt.Errorf("publish to topic %q: %w", topic, err)
	}
	for start := 0; start < len(msgs); {
		end, size := start, 0
		for end < len(msgs) && end-start < insertMaxMessages && (end == start || size+len(msgs[end].Payload) <= insertMaxBytes) {
			size += len(msgs[end].Payload)
			end++
		}
		query, err := queueSchema{}.InsertQuery(wmsql.InsertQueryParams{Topic: topic, Msgs: msgs[start:end]})
		if err != nil {
			return fmt.Errorf("publish to topic %q: %w", topic, err)
		}
		if _, err := tx.ExecContext(ctx, query.Query, query.Args...); err != nil {
			return fmt.Errorf("publish %d messages to topic %q: %w", end-start, topic, err)
		}
		start = end
	}
	return nil
}

// SubscribeInitialize creates topic's table if it does not exist (message.SubscribeInitializer).
func (q *Queue) SubscribeInitialize(topic string) error {
	return q.ensureTopic(context.Background(), topic)
}

// Depth counts the messages of topic not yet acknowledged: waiting, backing off or being
// handled (a row is deleted when its batch commits).
func (q *Queue) Depth(ctx context.Context, topic string) (int, error) {
	var n int
	err := q.db.QueryRowContext(ctx, `SELECT count(*) FROM `+tableName(topic)).Scan(&n)
	if isUndefinedTable(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("count messages on topic %q: %w", topic, err)
	}
	return n, nil
}

// OldestAge is how long the oldest message of topic not yet acknowledged has waited since it
// was first published (retries keep the first publication time), by the database's clock; 0
// if there is none.
func (q *Queue) OldestAge(ctx context.Context, topic string) (time.Duration, error) {
	var us int64
	err := q.db.QueryRowContext(ctx,
		`SELECT COALESCE(floor(EXTRACT(EPOCH FROM clock_timestamp() - min(created_at)) * 1e6), 0)::bigint FROM `+tableName(topic)).Scan(&us)
	if isUndefinedTable(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("find oldest message on topic %q: %w", topic, err)
	}
	return max(time.Duration(us)*time.Microsecond, 0), nil
}

// Subscribe starts MaxInFlight consumers of topic and returns the channel they share. Each
// message must be acked or nacked (see the package doc for what either does to the handler's
// writes through TxOf). A message carries store.AttemptKey; its Context carries ctx's values,
// its transaction (TxOf, TxFromContext) and AckDeadline, and is cancelled once the message is
// settled, when the consumer gives up on it (AckDeadline) or at Close — not when ctx is
// cancelled, so that running handlers can finish and ack.
//
// The channel is closed when ctx is cancelled or Close is called. After ctx is cancelled,
// messages already received are settled as usual, then each consumer commits its batch and
// stops; messages it had claimed but not handed out are offered again at once. Subscribe
// returns ErrClosed after Close.
func (q *Queue) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	if err := q.ensureTopic(ctx, topic); err != nil {
		return nil, fmt.Errorf("subscribe to topic %q: %w", topic, err)
	}
	tc := q.topicConfig(topic)
	s := &subscription{q: q, topic: topic, ctx: ctx, out: make(chan *message.Message), done: make(chan struct{})}
	consumers := make([]*consumer, 0, tc.MaxInFlight)
	stopAll := func() {
		for _, c := range consumers {
			close(c.stop)
			c.wsub.Close()
		}
	}
	for range tc.MaxInFlight {
		c, err := s.newConsumer(tc.BatchSize)
		if err != nil {
			stopAll()
			return nil, fmt.Errorf("subscribe to topic %q: %w", topic, err)
		}
		consumers = append(consumers, c)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		stopAll()
		return nil, ErrClosed
	}
	q.wg.Add(1 + len(consumers))
	go s.closeWhenDone()
	for _, c := range consumers {
		go c.run()
	}
	return s.out, nil
}

// Close stops all subscriptions (closing their channels) and waits for their consumers: each
// commits what was acknowledged or, if a message it handed out is still unsettled, rolls its
// batch back so that all of it is offered again at once (see the package doc). Acks and nacks
// given before Close are applied; later ones are ignored. Close does not close the DB. It is
// idempotent and always returns nil.
func (q *Queue) Close() error {
	q.closeOnce.Do(func() {
		q.mu.Lock()
		q.closed = true
		q.mu.Unlock()
		close(q.closing)
		q.wg.Wait()
		q.cancel()
		q.hub.release()
	})
	return nil
}

type deliveryKey struct{}

// TxOf returns the transaction msg, a message a Queue delivered, was claimed in: write through
// it so that the writes commit together with msg's acknowledgement (see the package doc). ok
// is false for any other message.
func TxOf(msg *message.Message) (tx *sql.Tx, ok bool) { return TxFromContext(msg.Context()) }

// TxFromContext is TxOf for a context derived from a delivered message's Context.
func TxFromContext(ctx context.Context) (tx *sql.Tx, ok bool) {
	d, ok := ctx.Value(deliveryKey{}).(*delivery)
	if !ok {
		return nil, false
	}
	return d.batch.tx, true
}

// AfterCommit arranges for fn to run once the transaction of the delivered message ctx comes
// from has committed (never if it rolls back), and reports whether ctx is such a context.
func (q *Queue) AfterCommit(ctx context.Context, fn func()) bool {
	d, ok := ctx.Value(deliveryKey{}).(*delivery)
	if !ok {
		return false
	}
	d.batch.mu.Lock()
	d.batch.afterCommit = append(d.batch.afterCommit, fn)
	d.batch.mu.Unlock()
	return true
}

// TxFromContext is the package's TxFromContext as a method, so that a store can take the queue
// behind a small interface.
func (q *Queue) TxFromContext(ctx context.Context) (*sql.Tx, bool) { return TxFromContext(ctx) }

// RetryTx offers msg, a message q delivered, again as delivery attempt AttemptKey+1, not before
// notBefore (nor before now), once tx commits; tx must be msg's own transaction (TxOf). The
// handler then acks msg as usual: the ack leaves a retried row in place instead of deleting
// it. If the retry is rolled back (say, to a savepoint), the ack deletes msg as if RetryTx had
// not been called. Calling it twice for one delivery changes nothing the second time. The row
// keeps msg's payload and metadata, so the retry survives restarts.
func (q *Queue) RetryTx(tx *sql.Tx, msg *message.Message, notBefore time.Time) error {
	d, ok := msg.Context().Value(deliveryKey{}).(*delivery)
	if !ok {
		return fmt.Errorf("retry message %s: not a message this queue delivered", msg.UUID)
	}
	if d.batch.tx != tx {
		return fmt.Errorf("retry message %s: tx is not the transaction the message was delivered in (use TxOf)", msg.UUID)
	}
	if err := d.retry(msg.Context(), notBefore); err != nil {
		return fmt.Errorf("retry message %s: %w", msg.UUID, err)
	}
	return nil
}
