// Package sqlitequeue is a durable, lease-based Watermill Pub/Sub stored in SQLite.
//
// Messages live in the queue_messages table of a shared sqlitedb.DB, their payloads in
// queue_payloads. A subscriber claims a batch of ready rows in one short transaction by setting
// a lease (locked_until) on them, reads their payloads outside it, hands the messages to the
// consumer without waiting for earlier acks, keeps extending the lease while the consumer still
// holds a message, deletes the rows on ack and makes the message available again after a
// backoff on nack. No transaction is ever held while a handler runs, so ingest never waits for
// handlers: every write is a short group-committed sqlitedb.DB.Write.
//
// Payloads have their own table because SQLite rewrites a whole record when one of its columns
// changes size: with a 10 MB payload in the same row, every claim, nack and release wrote
// 10 MB to the WAL (measured: 100 ms per claim) instead of a few pages. A message without a
// payload (nil, as the pipeline's fragment schedules are) has no payload row.
//
// Delivery is at-least-once with competing consumers: all subscriptions of a topic (in this
// process or any other Queue on the same file) share its messages and each claim goes to one of
// them. Order is roughly by publication (claims take the oldest ready rows) but not guaranteed,
// because messages are processed concurrently and nacked ones come back later.
package sqlitequeue

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/opengw/gateway/internal/sqlitedb"
	"github.com/opengw/gateway/internal/store"
)

// AttemptKey is the metadata key set on every delivered message to its 1-based delivery attempt
// (a decimal string): "1" on first delivery, "2" after one nack or expired lease, and so on.
// Handlers can use it to give up on a message after N attempts.
const AttemptKey = store.AttemptKey

// ErrClosed is returned by Publish and Subscribe after Close.
var ErrClosed = errors.New("sqlitequeue: queue is closed")

// Defaults applied by New to zero Config and TopicConfig fields.
const (
	DefaultPollInterval  = time.Second
	DefaultLeaseDuration = 30 * time.Second
	DefaultBatchSize     = 64
	DefaultMaxInFlight   = 128
)

// Config configures a Queue. Only DB is required.
type Config struct {
	// DB holds the queue's tables (all prefixed queue_). It must stay open until Close returns.
	DB *sqlitedb.DB
	// Logger receives errors that cannot be returned to a caller (failed acks, lease
	// extensions). Default: watermill.NopLogger.
	Logger watermill.LoggerAdapter
	// PollInterval bounds how long a subscription waits before looking for messages it was not
	// told about (published by another Queue or process). Publishes through this Queue and
	// Notify wake subscriptions at once. Default 1s.
	PollInterval time.Duration
	// LeaseDuration is how long a claimed message stays invisible to other subscribers if its
	// holder vanishes. While the holder runs, the lease is extended every LeaseDuration/3.
	// Default 30s.
	LeaseDuration time.Duration
	// Backoff returns how long a message nacked after attempt delivery attempts (1-based)
	// waits before it is offered again. Default: exponential from 100ms, doubling, capped at 1min.
	Backoff func(attempt int) time.Duration
	// Topics holds per-topic settings; topics not listed use the defaults.
	Topics map[string]TopicConfig
	// ReleaseLeasesOnStart makes every leased row available again when New runs. Set it only
	// when no other process can be using DB (the gateway holds an exclusive lock on its data
	// directory), so that messages claimed before a crash return at once instead of after their
	// lease expires.
	ReleaseLeasesOnStart bool
}

// TopicConfig tunes the subscriptions of one topic.
type TopicConfig struct {
	// BatchSize is the most rows one claim takes (at most MaxInFlight). Default 64; use 1–2
	// for big payloads, which are held in memory from claim to settlement.
	BatchSize int
	// MaxInFlight is the most messages one subscription holds claimed and not yet acked or
	// nacked. Default 128.
	MaxInFlight int
	// MaxInFlightBytes, when positive, also bounds the payload bytes one subscription holds
	// claimed and not yet settled: it claims no more while they reach it, so it may exceed it
	// by one claim's batch. Zero: no bound but MaxInFlight.
	MaxInFlightBytes int64
}

// Queue is a Watermill message.Publisher and message.Subscriber backed by SQLite.
// All methods are safe for concurrent use.
//
// One Queue serves every topic, and Close stops all of it. Watermill's Router closes what it is
// given (a handler's publisher when the handler stops, its subscriber as soon as the router
// closes, before waiting for running handlers), so hand it q behind a wrapper whose Close does
// nothing and close q yourself after Router.Close returns: cancelling the router's subscription
// contexts then closes the channels while running handlers still ack normally.
type Queue struct {
	db           *sqlitedb.DB
	logger       watermill.LoggerAdapter
	pollInterval time.Duration
	lease        time.Duration
	backoff      func(attempt int) time.Duration
	topics       map[string]TopicConfig

	mu     sync.Mutex
	closed bool
	// subs holds the running subscriptions of each topic, for Notify.
	subs map[string]map[*subscription]struct{}
	// leases maps the id of every row this Queue holds claimed to the attempts value of that
	// claim, which identifies the claim: a later claim of the same row increments it.
	leases map[int64]int64
	// delivered maps each message handed to a consumer and not yet settled to its claim, for
	// AckTx.
	delivered map[*message.Message]*delivery

	closing   chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

const schema = `
CREATE TABLE IF NOT EXISTS queue_messages (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	topic        TEXT    NOT NULL,
	uuid         TEXT    NOT NULL,
	created_at   INTEGER NOT NULL, -- unix ms
	available_at INTEGER NOT NULL, -- unix ms; later than now while a nacked message backs off
	locked_until INTEGER NOT NULL DEFAULT 0, -- unix ms; 0 = not claimed
	attempts     INTEGER NOT NULL DEFAULT 0, -- claims so far
	metadata     TEXT    NOT NULL -- JSON object
);
-- Written once (for a non-nil payload) and deleted with its message, never updated.
CREATE TABLE IF NOT EXISTS queue_payloads (
	message_id INTEGER PRIMARY KEY, -- queue_messages.id
	payload    BLOB
);
-- Covering index for claims: walks a topic in id order and filters on the two times without
-- reading table rows.
CREATE INDEX IF NOT EXISTS queue_messages_claim ON queue_messages (topic, id, available_at, locked_until);
`

// New creates the queue's tables in cfg.DB if they do not exist and starts its lease keeper.
// It returns an error if cfg is invalid or the schema cannot be created.
func New(cfg Config) (*Queue, error) {
	if cfg.DB == nil {
		return nil, errors.New("sqlitequeue: Config.DB is required")
	}
	if cfg.PollInterval < 0 {
		return nil, fmt.Errorf("sqlitequeue: negative PollInterval %s", cfg.PollInterval)
	}
	if cfg.LeaseDuration != 0 && cfg.LeaseDuration < 3*time.Millisecond {
		return nil, fmt.Errorf("sqlitequeue: LeaseDuration %s is below the 3ms minimum", cfg.LeaseDuration)
	}
	topics := make(map[string]TopicConfig, len(cfg.Topics))
	for name, tc := range cfg.Topics {
		if tc.BatchSize < 0 || tc.MaxInFlight < 0 || tc.MaxInFlightBytes < 0 {
			return nil, fmt.Errorf("sqlitequeue: topic %q: negative BatchSize (%d), MaxInFlight (%d) or MaxInFlightBytes (%d)",
				name, tc.BatchSize, tc.MaxInFlight, tc.MaxInFlightBytes)
		}
		topics[name] = tc
	}
	q := &Queue{
		db:           cfg.DB,
		logger:       cfg.Logger,
		pollInterval: cmp.Or(cfg.PollInterval, DefaultPollInterval),
		lease:        cmp.Or(cfg.LeaseDuration, DefaultLeaseDuration),
		backoff:      cfg.Backoff,
		topics:       topics,
		subs:         make(map[string]map[*subscription]struct{}),
		leases:       make(map[int64]int64),
		delivered:    make(map[*message.Message]*delivery),
		closing:      make(chan struct{}),
	}
	if q.logger == nil {
		q.logger = watermill.NopLogger{}
	}
	if q.backoff == nil {
		q.backoff = defaultBackoff
	}
	err := q.db.Write(context.Background(), func(tx *sql.Tx) error {
		if _, err := tx.Exec(schema); err != nil {
			return fmt.Errorf("create queue schema: %w", err)
		}
		if cfg.ReleaseLeasesOnStart {
			if _, err := tx.Exec(`UPDATE queue_messages SET locked_until = 0 WHERE locked_until <> 0`); err != nil {
				return fmt.Errorf("release leases on start: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlitequeue: migrate %s: %w", q.db.Path(), err)
	}
	q.wg.Add(1)
	go q.keepLeases()
	return q, nil
}

func defaultBackoff(attempt int) time.Duration {
	const ceiling = time.Minute
	d := 100 * time.Millisecond
	for i := 1; i < attempt && d < ceiling; i++ {
		d *= 2
	}
	return min(d, ceiling)
}

func (q *Queue) topicConfig(topic string) TopicConfig {
	tc := q.topics[topic]
	tc.BatchSize = cmp.Or(tc.BatchSize, DefaultBatchSize)
	tc.MaxInFlight = cmp.Or(tc.MaxInFlight, DefaultMaxInFlight)
	tc.BatchSize = min(tc.BatchSize, tc.MaxInFlight)
	return tc
}

// Publish durably stores msgs on topic and wakes this Queue's subscriptions of topic. It returns
// once the rows are committed; concurrent Publish calls share one commit. Either all of msgs are
// stored or, on error, none. It returns ErrClosed after Close.
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
	err := q.db.Write(context.Background(), func(tx *sql.Tx) error {
		return q.InsertTx(tx, topic, msgs...)
	})
	if err != nil {
		return fmt.Errorf("publish %d messages to topic %q: %w", len(msgs), topic, err)
	}
	q.Notify(topic)
	return nil
}

// InsertTx stores msgs on topic inside tx, a transaction of the caller's own sqlitedb.DB.Write
// on the Queue's DB, so that they are committed (or rolled back) together with the caller's other
// writes. Call Notify(topic) after Write returns nil so that subscriptions see them at once
// rather than at their next poll. InsertTx works whether or not q is closed: the rows are durable
// and will be delivered to whichever Queue subscribes to topic.
func (q *Queue) InsertTx(tx *sql.Tx, topic string, msgs ...*message.Message) error {
	if topic == "" {
		return errors.New("insert messages: empty topic")
	}
	if len(msgs) == 0 {
		return nil
	}
	// Plain Exec runs through the connection's statement cache; tx.Prepare would compile the
	// statements again for every publish.
	now := time.Now().UnixMilli()
	for _, msg := range msgs {
		md := msg.Metadata
		if md == nil {
			md = message.Metadata{}
		}
		mdJSON, err := json.Marshal(md)
		if err != nil {
			return fmt.Errorf("encode metadata of message %s: %w", msg.UUID, err)
		}
		res, err := tx.Exec(insertMessageSQL, topic, msg.UUID, now, now, string(mdJSON))
		if err != nil {
			return fmt.Errorf("insert message %s on topic %q: %w", msg.UUID, topic, err)
		}
		id, err := res.LastInsertId()
		if err != nil {
			return fmt.Errorf("insert message %s on topic %q: %w", msg.UUID, topic, err)
		}
		if msg.Payload == nil {
			continue // no row, read back as nil: one insert fewer per fragment schedule
		}
		if _, err := tx.Exec(insertPayloadSQL, id, msg.Payload); err != nil {
			return fmt.Errorf("insert payload of message %s on topic %q: %w", msg.UUID, topic, err)
		}
	}
	return nil
}

const (
	insertMessageSQL = `INSERT INTO queue_messages (topic, uuid, created_at, available_at, metadata) VALUES (?, ?, ?, ?, ?)`
	insertPayloadSQL = `INSERT INTO queue_payloads (message_id, payload) VALUES (?, ?)`
)

// Depth counts the messages of topic not yet acknowledged (waiting, backing off or being
// handled), from the read pool.
func (q *Queue) Depth(ctx context.Context, topic string) (int, error) {
	var n int
	if err := q.db.Reader().QueryRowContext(ctx, `SELECT count(*) FROM queue_messages WHERE topic = ?`, topic).Scan(&n); err != nil {
		return 0, fmt.Errorf("count messages on topic %q: %w", topic, err)
	}
	return n, nil
}

// Notify wakes this Queue's subscriptions of topic so they claim new messages now. It never
// blocks and does nothing after Close.
func (q *Queue) Notify(topic string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for s := range q.subs[topic] {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// Subscribe starts a subscription of topic and returns its message channel. Messages are sent
// as soon as they are claimed, without waiting for earlier ones to be acked, up to the topic's
// MaxInFlight unsettled messages. Each message must be acked (the row is deleted) or nacked
// (offered again after Backoff); its Context is cancelled once it is settled, when ctx is
// cancelled, or on Close.
//
// The channel is closed when ctx is cancelled or Close is called. After ctx is cancelled,
// messages already received are still extended and settled as usual until Close; at Close every
// unsettled message is released for immediate redelivery, and later acks are ignored (the
// message will be delivered again). Subscribe returns ErrClosed after Close.
func (q *Queue) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	if topic == "" {
		return nil, errors.New("subscribe: empty topic")
	}
	tc := q.topicConfig(topic)
	s := &subscription{
		q:           q,
		topic:       topic,
		batchSize:   tc.BatchSize,
		maxInFlight: tc.MaxInFlight,
		maxBytes:    tc.MaxInFlightBytes,
		ctx:         ctx,
		out:         make(chan *message.Message),
		wake:        make(chan struct{}, 1),
		freed:       make(chan struct{}, 1),
	}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil, ErrClosed
	}
	if q.subs[topic] == nil {
		q.subs[topic] = make(map[*subscription]struct{})
	}
	q.subs[topic][s] = struct{}{}
	q.wg.Add(1)
	q.mu.Unlock()
	go s.run()
	return s.out, nil
}

// Close stops all subscriptions (closing their channels), releases the leases of messages not
// yet acked or nacked so they are redelivered at once, and waits for that to finish. Acks and
// nacks given before Close are still applied. Close does not close the DB. It is idempotent and
// always returns nil.
func (q *Queue) Close() error {
	q.closeOnce.Do(func() {
		q.mu.Lock()
		q.closed = true
		q.mu.Unlock()
		close(q.closing)
		q.wg.Wait()
	})
	return nil
}

// keepLeases extends the lease of every row this Queue holds, every lease/3.
func (q *Queue) keepLeases() {
	defer q.wg.Done()
	ticker := time.NewTicker(q.lease / 3)
	defer ticker.Stop()
	for {
		select {
		case <-q.closing:
			return
		case <-ticker.C:
		}
		q.mu.Lock()
		held := maps.Clone(q.leases)
		q.mu.Unlock()
		if len(held) == 0 {
			continue
		}
		err := q.db.Write(context.Background(), func(tx *sql.Tx) error {
			// locked_until <> 0 skips rows nacked or released since the snapshot.
			stmt, err := tx.Prepare(`UPDATE queue_messages SET locked_until = ? WHERE id = ? AND attempts = ? AND locked_until <> 0`)
			if err != nil {
				return err
			}
			defer stmt.Close()
			until := time.Now().Add(q.lease).UnixMilli()
			for id, attempts := range held {
				if _, err := stmt.Exec(until, id, attempts); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			q.logger.Error("Cannot extend message leases", fmt.Errorf("extend %d leases: %w", len(held), err), nil)
		}
	}
}

func (q *Queue) hold(ds []*delivery) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, d := range ds {
		q.leases[d.id] = d.attempts
	}
}

func (q *Queue) drop(ds ...*delivery) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, d := range ds {
		if q.leases[d.id] == d.attempts {
			delete(q.leases, d.id)
		}
	}
}

// delivery is one claimed row.
type delivery struct {
	id       int64
	attempts int64
	msg      *message.Message
	size     int64 // payload bytes, counted against the subscription's MaxInFlightBytes
	cancel   context.CancelFunc
	// ackedInTx: AckTx deleted the row, so the ack needs no write of its own. Guarded by q.mu.
	ackedInTx bool
}

// subscription is one Subscribe call: a claim loop plus one settle goroutine per delivered
// message.
type subscription struct {
	q           *Queue
	topic       string
	batchSize   int
	maxInFlight int
	maxBytes    int64 // MaxInFlightBytes; 0: no bound
	ctx         context.Context
	out         chan *message.Message
	wake        chan struct{} // Notify: new messages may be ready
	freed       chan struct{} // a message was settled: a slot is free

	mu            sync.Mutex
	inFlight      int   // claimed and not yet settled or released
	inFlightBytes int64 // their payloads' bytes
}

func (s *subscription) stopped() bool {
	select {
	case <-s.ctx.Done():
		return true
	case <-s.q.closing:
		return true
	default:
		return false
	}
}

func (s *subscription) run() {
	q := s.q
	defer q.wg.Done()
	defer close(s.out)
	defer func() {
		q.mu.Lock()
		delete(q.subs[s.topic], s)
		if len(q.subs[s.topic]) == 0 {
			delete(q.subs, s.topic)
		}
		q.mu.Unlock()
	}()
	timer := time.NewTimer(q.pollInterval)
	defer timer.Stop()
	// wait blocks until ch fires, d passes, or the subscription stops; it reports whether the
	// subscription goes on.
	wait := func(ch <-chan struct{}, d time.Duration) bool {
		timer.Reset(d)
		select {
		case <-ch:
		case <-timer.C:
		case <-s.ctx.Done():
			return false
		case <-q.closing:
			return false
		}
		timer.Stop()
		return true
	}
	for !s.stopped() {
		s.mu.Lock()
		free := s.maxInFlight - s.inFlight
		full := s.maxBytes > 0 && s.inFlightBytes >= s.maxBytes
		s.mu.Unlock()
		if free <= 0 || full {
			if !wait(s.freed, q.pollInterval) {
				return
			}
			continue
		}
		limit := min(s.batchSize, free)
		ds, claimed, err := s.claim(limit)
		if err != nil {
			if s.stopped() || errors.Is(err, sqlitedb.ErrClosed) {
				return
			}
			q.logger.Error("Cannot claim messages", err, watermill.LogFields{"topic": s.topic})
			if !wait(nil, q.pollInterval) {
				return
			}
			continue
		}
		for i, d := range ds {
			if !s.send(d) {
				s.release(ds[i:], false)
				return
			}
		}
		if claimed == limit {
			continue // there may be more ready rows
		}
		if !wait(s.wake, q.untilReady(s.topic)) {
			return
		}
	}
}

// claim claims up to limit messages and loads their payloads. claimed counts the rows claimed,
// including any found settled elsewhere meanwhile, which are not returned.
func (s *subscription) claim(limit int) (ds []*delivery, claimed int, err error) {
	ds, err = s.q.claim(s.ctx, s.topic, limit)
	if err != nil || len(ds) == 0 {
		return nil, 0, err
	}
	s.mu.Lock()
	s.inFlight += len(ds)
	s.mu.Unlock()
	found, missing, err := s.q.loadPayloads(ds)
	if err != nil {
		s.release(ds, false)
		return nil, 0, err
	}
	if len(missing) > 0 {
		s.q.logger.Info("Skipping claimed messages settled elsewhere", watermill.LogFields{"topic": s.topic, "count": len(missing)})
		s.q.drop(missing...)
		s.settled(missing...)
	}
	var payloadBytes int64
	for _, d := range found {
		d.size = int64(len(d.msg.Payload))
		payloadBytes += d.size
	}
	s.mu.Lock()
	s.inFlightBytes += payloadBytes
	s.mu.Unlock()
	return found, len(ds), nil
}

// send hands d to the consumer and starts settling it; it reports false, without sending, if the
// subscription stopped first.
func (s *subscription) send(d *delivery) bool {
	msgCtx, cancel := context.WithCancel(s.ctx)
	d.cancel = cancel
	d.msg.SetContext(msgCtx)
	if s.stopped() {
		cancel()
		return false
	}
	// Registered before the consumer can see the message, so its handler may AckTx at once.
	s.q.mu.Lock()
	s.q.delivered[d.msg] = d
	s.q.mu.Unlock()
	select {
	case s.out <- d.msg:
	case <-s.ctx.Done():
		s.unregister(d)
		cancel()
		return false
	case <-s.q.closing:
		s.unregister(d)
		cancel()
		return false
	}
	s.q.wg.Add(1)
	go s.settle(d)
	return true
}

// unregister forgets d's delivery bookkeeping once it is settled or was never handed over.
func (s *subscription) unregister(d *delivery) {
	s.q.mu.Lock()
	delete(s.q.delivered, d.msg)
	s.q.mu.Unlock()
}

// AckTx deletes msg, a message this Queue delivered, inside the caller's transaction, so the
// caller's writes and the acknowledgement commit (or roll back) together: a handler that
// records its outcome and acks in one transaction is never redelivered after committing.
// The caller must still Ack msg once the transaction has committed (a Watermill handler does so
// by returning nil); that Ack then costs no write. If the claim was lost meanwhile (the lease
// expired and the message was claimed again), AckTx deletes nothing and the other claim wins.
func (q *Queue) AckTx(tx *sql.Tx, msg *message.Message) error {
	return q.settleTx(msg, "ack", func(id, attempts int64) (bool, error) {
		res, err := tx.Exec(`DELETE FROM queue_messages WHERE id = ? AND attempts = ?`, id, attempts)
		if err != nil {
			return false, err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return false, nil
		}
		return true, deletePayload(tx, id, msg)
	})
}

// deletePayload deletes the payload row of message id, delivered as msg. A message read back
// with a nil payload has none (InsertTx writes no row for a nil payload; an empty one is read
// back as empty, not nil): no statement then, one fewer per fragment acknowledged.
func deletePayload(tx *sql.Tx, id int64, msg *message.Message) error {
	if msg.Payload == nil {
		return nil
	}
	_, err := tx.Exec(`DELETE FROM queue_payloads WHERE message_id = ?`, id)
	return err
}

// RetryTx settles msg, a message this Queue delivered, inside the caller's transaction and
// offers it again at notBefore as its next delivery attempt, so a handler's decision to retry
// later commits together with its other writes and survives a restart. The caller must still
// Ack msg after the commit (a Watermill handler returns nil); that Ack costs no write. If the
// claim was lost meanwhile, RetryTx changes nothing.
func (q *Queue) RetryTx(tx *sql.Tx, msg *message.Message, notBefore time.Time) error {
	return q.settleTx(msg, "retry", func(id, attempts int64) (bool, error) {
		res, err := tx.Exec(`UPDATE queue_messages SET available_at = ?, locked_until = 0 WHERE id = ? AND attempts = ?`,
			notBefore.UnixMilli(), id, attempts)
		if err != nil {
			return false, err
		}
		n, _ := res.RowsAffected()
		return n > 0, nil
	})
}

// settleTx runs write for the claim of msg (its row id and the claim's attempts value) and, if
// write changed the row, marks msg settled so that its Ack costs no write.
func (q *Queue) settleTx(msg *message.Message, what string, write func(id, attempts int64) (bool, error)) error {
	q.mu.Lock()
	d, ok := q.delivered[msg]
	q.mu.Unlock()
	if !ok {
		return fmt.Errorf("%s message %s in transaction: not a message this queue has delivered", what, msg.UUID)
	}
	changed, err := write(d.id, d.attempts)
	if err != nil {
		return fmt.Errorf("%s message %s in transaction: %w", what, msg.UUID, err)
	}
	if changed {
		q.mu.Lock()
		d.ackedInTx = true
		q.mu.Unlock()
	}
	return nil
}

// OldestAge is how long the oldest message of topic not yet acknowledged has waited, 0 if none.
func (q *Queue) OldestAge(ctx context.Context, topic string) (time.Duration, error) {
	var oldest sql.NullInt64
	if err := q.db.Reader().QueryRowContext(ctx, `SELECT min(created_at) FROM queue_messages WHERE topic = ?`, topic).Scan(&oldest); err != nil {
		return 0, fmt.Errorf("find oldest message on topic %q: %w", topic, err)
	}
	if !oldest.Valid {
		return 0, nil
	}
	return max(time.Since(time.UnixMilli(oldest.Int64)), 0), nil
}

// settle waits for d's ack or nack and applies it; at Close it releases d unless the consumer
// settled it first.
func (s *subscription) settle(d *delivery) {
	defer s.q.wg.Done()
	defer d.cancel()
	defer s.unregister(d)
	select {
	case <-d.msg.Acked():
		s.ack(d)
	case <-d.msg.Nacked():
		s.nack(d)
	case <-s.q.closing:
		select {
		case <-d.msg.Acked():
			s.ack(d)
		case <-d.msg.Nacked():
			s.nack(d)
		default:
			s.release([]*delivery{d}, true)
		}
	}
}

// settled frees the in-flight slots (and payload bytes) of ds.
func (s *subscription) settled(ds ...*delivery) {
	s.mu.Lock()
	s.inFlight -= len(ds)
	for _, d := range ds {
		s.inFlightBytes -= d.size
	}
	s.mu.Unlock()
	select {
	case s.freed <- struct{}{}:
	default:
	}
}

func (s *subscription) ack(d *delivery) {
	defer s.settled(d)
	defer s.q.drop(d)
	s.q.mu.Lock()
	done := d.ackedInTx
	s.q.mu.Unlock()
	if done {
		return
	}
	err := s.q.db.Write(context.Background(), func(tx *sql.Tx) error {
		if err := deletePayload(tx, d.id, d.msg); err != nil {
			return err
		}
		_, err := tx.Exec(`DELETE FROM queue_messages WHERE id = ?`, d.id)
		return err
	})
	if err != nil {
		// The row keeps its lease: the message comes back when the lease expires.
		s.q.logger.Error("Cannot ack message", fmt.Errorf("delete acked message %s on topic %q: %w", d.msg.UUID, s.topic, err), nil)
	}
}

func (s *subscription) nack(d *delivery) {
	defer s.settled(d)
	defer s.q.drop(d)
	availableAt := time.Now().Add(s.q.backoff(int(d.attempts))).UnixMilli()
	err := s.q.db.Write(context.Background(), func(tx *sql.Tx) error {
		_, err := tx.Exec(`UPDATE queue_messages SET available_at = ?, locked_until = 0 WHERE id = ? AND attempts = ?`,
			availableAt, d.id, d.attempts)
		return err
	})
	if err != nil {
		s.q.logger.Error("Cannot nack message", fmt.Errorf("nack message %s on topic %q: %w", d.msg.UUID, s.topic, err), nil)
		return
	}
	// Let subscriptions recompute when the next message becomes ready.
	s.q.Notify(s.topic)
}

// release makes ds available again at once. Rows never delivered also get their claim's
// attempt taken back, so AttemptKey counts only real deliveries.
func (s *subscription) release(ds []*delivery, delivered bool) {
	defer s.settled(ds...)
	defer s.q.drop(ds...)
	undo := 1
	if delivered {
		undo = 0
	}
	err := s.q.db.Write(context.Background(), func(tx *sql.Tx) error {
		for _, d := range ds {
			if _, err := tx.Exec(`UPDATE queue_messages SET locked_until = 0, attempts = attempts - ? WHERE id = ? AND attempts = ?`,
				undo, d.id, d.attempts); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.q.logger.Error("Cannot release messages", fmt.Errorf("release %d messages on topic %q: %w", len(ds), s.topic, err), nil)
		return
	}
	s.q.Notify(s.topic)
}

// claim leases up to limit ready rows of topic, oldest first.
func (q *Queue) claim(ctx context.Context, topic string, limit int) ([]*delivery, error) {
	var ds []*delivery
	err := q.db.Write(ctx, func(tx *sql.Tx) error {
		ds = ds[:0] // a run again (see sqlitedb.DB.Write) claims afresh
		now := time.Now()
		rows, err := tx.Query(`
UPDATE queue_messages SET locked_until = ?, attempts = attempts + 1
WHERE id IN (
	SELECT id FROM queue_messages
	WHERE topic = ? AND available_at <= ? AND locked_until <= ?
	ORDER BY id LIMIT ?)
RETURNING id, attempts, uuid, metadata`,
			now.Add(q.lease).UnixMilli(), topic, now.UnixMilli(), now.UnixMilli(), limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				d      delivery
				uuid   string
				mdJSON string
			)
			if err := rows.Scan(&d.id, &d.attempts, &uuid, &mdJSON); err != nil {
				return err
			}
			md := message.Metadata{}
			if err := json.Unmarshal([]byte(mdJSON), &md); err != nil {
				return fmt.Errorf("decode metadata of message %s: %w", uuid, err)
			}
			md.Set(AttemptKey, strconv.FormatInt(d.attempts, 10))
			d.msg = message.NewMessage(uuid, nil)
			d.msg.Metadata = md
			ds = append(ds, &d)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("claim messages on topic %q: %w", topic, err)
	}
	slices.SortFunc(ds, func(a, b *delivery) int { return cmp.Compare(a.id, b.id) })
	q.hold(ds)
	return ds, nil
}

// loadPayloads reads the payloads of claimed messages through the read pool, so that big ones
// do not lengthen the claim's write transaction. It returns the deliveries whose message it
// found: a missing one was settled elsewhere after the claim (only possible if the lease
// lapsed). A message without a payload row has a nil payload.
func (q *Queue) loadPayloads(ds []*delivery) (found, missing []*delivery, err error) {
	byID := make(map[int64]*delivery, len(ds))
	ids := make([]int64, len(ds))
	for i, d := range ds {
		byID[d.id] = d
		ids[i] = d.id
	}
	idsJSON, err := json.Marshal(ids)
	if err != nil {
		return nil, nil, fmt.Errorf("encode message ids: %w", err)
	}
	rows, err := q.db.Reader().Query(`SELECT m.id, p.payload FROM queue_messages m LEFT JOIN queue_payloads p ON p.message_id = m.id
		WHERE m.id IN (SELECT value FROM json_each(?))`, string(idsJSON))
	if err != nil {
		return nil, nil, fmt.Errorf("read payloads of %d messages: %w", len(ds), err)
	}
	defer rows.Close()
	loaded := make(map[int64]bool, len(ds))
	for rows.Next() {
		var id int64
		// Scanning into *[]byte copies the value, which must outlive the statement.
		var payload []byte
		if err := rows.Scan(&id, &payload); err != nil {
			return nil, nil, fmt.Errorf("read payloads of %d messages: %w", len(ds), err)
		}
		if d := byID[id]; d != nil {
			d.msg.Payload = payload
			loaded[id] = true
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("read payloads of %d messages: %w", len(ds), err)
	}
	for _, d := range ds {
		if loaded[d.id] {
			found = append(found, d)
		} else {
			missing = append(missing, d)
		}
	}
	return found, missing, nil
}

// untilReady is how long until the next row of topic can be claimed, at most the poll interval.
func (q *Queue) untilReady(topic string) time.Duration {
	var next sql.NullInt64
	err := q.db.Reader().QueryRow(`SELECT MIN(MAX(available_at, locked_until)) FROM queue_messages WHERE topic = ?`, topic).Scan(&next)
	if err != nil {
		q.logger.Error("Cannot find next ready message", fmt.Errorf("find next ready message on topic %q: %w", topic, err), nil)
		return q.pollInterval
	}
	if !next.Valid {
		return q.pollInterval
	}
	return min(max(time.Until(time.UnixMilli(next.Int64)), 0), q.pollInterval)
}
