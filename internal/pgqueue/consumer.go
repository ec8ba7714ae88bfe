package pgqueue

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/opengw/gateway/internal/store"
)

// subscription is one Subscribe call: its consumers send into out until ctx is cancelled or the
// Queue closes.
type subscription struct {
	q     *Queue
	topic string
	ctx   context.Context
	out   chan *message.Message
	done  chan struct{} // closed when ctx is cancelled or the Queue closes

	mu        sync.RWMutex // held for reading while sending on out, for writing to close it
	outClosed bool
}

// closeWhenDone closes out once ctx is cancelled or the Queue closes, after any send in
// progress gave up.
func (s *subscription) closeWhenDone() {
	defer s.q.wg.Done()
	select {
	case <-s.ctx.Done():
	case <-s.q.closing:
	}
	close(s.done)
	s.mu.Lock()
	s.outClosed = true
	close(s.out)
	s.mu.Unlock()
}

// send hands msg to the subscriber. It reports whether msg was sent and, if not, whether the
// subscription stopped (rather than the consumer's claim on msg ending, at claimEnd).
func (s *subscription) send(msg *message.Message, claimEnd <-chan struct{}) (sent, stopped bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.outClosed {
		return false, true
	}
	select {
	case s.out <- msg:
		return true, false
	case <-s.done:
		return false, true
	case <-claimEnd:
		return false, false
	}
}

// errStopped is returned by BeginTx once the consumer is stopping.
var errStopped = errors.New("consumer stopped")

// consumer is one watermill-sql subscription of a topic. It is the Subscriber's Beginner (to
// wrap each batch transaction), OffsetsAdapter (to ack only what was acked) and BackoffManager
// (to sleep until a notification). Those run on the Subscriber's consume goroutine; run
// forwards its messages to the subscription.
type consumer struct {
	s    *subscription
	wsub *wmsql.Subscriber
	in   <-chan *message.Message
	stop chan struct{} // closed before wsub.Close, to end a wait in HandleError

	// Used only by the consume goroutine.
	batch *batchTx
	seen  uint64 // notification generation when the batch began
}

func (s *subscription) newConsumer(batchSize int) (*consumer, error) {
	c := &consumer{s: s, stop: make(chan struct{})}
	ackDeadline := s.q.ackDeadline
	wsub, err := wmsql.NewSubscriber(c, wmsql.SubscriberConfig{
		AckDeadline:    &ackDeadline,
		PollInterval:   s.q.pollInterval,
		RetryInterval:  retryInterval,
		BackoffManager: c,
		SchemaAdapter:  queueSchema{batchSize: batchSize},
		OffsetsAdapter: c,
	}, s.q.logger)
	if err != nil {
		return nil, fmt.Errorf("new watermill-sql subscriber: %w", err)
	}
	in, err := wsub.Subscribe(s.q.ctx, s.topic)
	if err != nil {
		wsub.Close()
		return nil, err
	}
	c.wsub, c.in = wsub, in
	return c, nil
}

// run forwards messages until the subscription stops or the Queue closes, then stops the
// watermill-sql subscription, which commits (or rolls back, see batchTx.Commit) its batch.
func (c *consumer) run() {
	defer c.s.q.wg.Done()
	defer func() {
		close(c.stop)
		if err := c.wsub.Close(); err != nil {
			c.s.q.logger.Error("Cannot close watermill-sql subscriber", err, watermill.LogFields{"topic": c.s.topic})
		}
	}()
	for {
		select {
		case in, ok := <-c.in:
			if !ok {
				return
			}
			if !c.deliver(in) {
				return
			}
		case <-c.s.done:
			return
		}
	}
}

// deliver hands the caller a copy of in and settles in once the caller settled the copy. It
// reports whether the consumer should go on.
func (c *consumer) deliver(in *message.Message) bool {
	wtx, _ := wmsql.TxFromContext(in.Context())
	b, ok := wtx.(*batchTx)
	if !ok {
		c.s.q.logger.Error("Message without its batch transaction", fmt.Errorf("message %s: transaction is %T", in.UUID, wtx), nil)
		return false
	}
	claimEnd := in.Context().Done()
	d, err := newDelivery(b, c.s.topic, in)
	if err == nil {
		err = b.err()
	}
	if err == nil {
		err = b.savepoint(in.Context())
	}
	if err != nil {
		// The batch will be rolled back: run through it without handing anything out.
		b.fail(err)
		in.Ack()
		<-claimEnd
		return true
	}

	out, cancel := d.message(in, c.s.ctx)
	defer cancel()
	b.handOut(1) // before the send: a Commit racing with it must see the message as out
	if sent, stopped := c.s.send(out, claimEnd); !sent {
		b.handOut(-1)
		return !stopped
	}
	select {
	case <-out.Acked():
		c.ack(in)
	case <-out.Nacked():
		c.nack(d, in)
	case <-claimEnd:
		// watermill-sql gave up on in (AckDeadline): its batch is rolled back and offered again.
		c.s.q.logger.Info("Message not acknowledged within AckDeadline; its batch is rolled back", watermill.LogFields{
			"topic": c.s.topic, "message_uuid": in.UUID, "ack_deadline": c.s.q.ackDeadline})
	case <-c.s.q.closing:
		select {
		case <-out.Acked():
			c.ack(in)
		case <-out.Nacked():
			c.nack(d, in)
		default:
		}
		return false
	}
	return true
}

// ack keeps the handler's writes (the next savepoint releases this one) and lets watermill-sql
// count in as acknowledged. It returns once watermill-sql has done so, so that stopping the
// subscription afterwards cannot race with it.
func (c *consumer) ack(in *message.Message) {
	in.Ack()
	<-in.Context().Done()
}

// nack undoes the handler's writes and offers the message again after the backoff; for
// watermill-sql it is an ack (whose DELETE spares the retried row).
func (c *consumer) nack(d *delivery, in *message.Message) {
	ctx := in.Context()
	err := d.batch.exec(ctx, `ROLLBACK TO SAVEPOINT pgqueue_msg`)
	if err == nil {
		err = d.retry(ctx, time.Now().Add(c.s.q.backoff(d.attempt)))
	}
	if err != nil {
		d.batch.fail(fmt.Errorf("nack message %s: %w", in.UUID, err))
	}
	in.Ack()
	<-ctx.Done()
}

// BeginTx opens a batch transaction (wmsql.Beginner).
func (c *consumer) BeginTx(ctx context.Context, opts *sql.TxOptions) (wmsql.Tx, error) {
	q := c.s.q
	select {
	case <-c.stop:
		return nil, errStopped
	default:
	}
	c.seen = q.hub.generation(c.s.topic)
	tx, err := q.db.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	// A node that stops talking (hung, partitioned) loses its claim when the server ends the
	// session; a live consumer gives up at AckDeadline before that.
	idle := strconv.FormatInt((q.ackDeadline + 30*time.Second).Milliseconds(), 10)
	if _, err := tx.ExecContext(ctx, `SELECT set_config('idle_in_transaction_session_timeout', $1, true)`, idle); err != nil {
		tx.Rollback()
		return nil, fmt.Errorf("set idle_in_transaction_session_timeout: %w", err)
	}
	c.batch = &batchTx{tx: tx, logger: q.logger, topic: c.s.topic}
	return c.batch, nil
}

// ExecContext is part of wmsql.Beginner; watermill-sql does not use it with this
// configuration (no schema initialisation, no before-subscribing queries).
func (c *consumer) ExecContext(ctx context.Context, query string, args ...any) (wmsql.Result, error) {
	return c.s.q.db.ExecContext(ctx, query, args...)
}

// QueryContext is part of wmsql.Beginner, like ExecContext.
func (c *consumer) QueryContext(ctx context.Context, query string, args ...any) (wmsql.Rows, error) {
	return c.s.q.db.QueryContext(ctx, query, args...)
}

// AckMessageQuery deletes the rows of the batch acknowledged so far: watermill-sql hands the
// selected rows out in order and stops at the first one not acked, so those are the rows up to
// LastRow, the last one acked. (watermill-sql's PostgreSQLQueueOffsetsAdapter deletes every
// selected row, losing the rest of a batch when the subscriber stops in the middle of it.) Rows
// come in readiness order, not offset order, so the prefix is found by position. Rows a retry
// moved past the transaction's start are kept.
func (c *consumer) AckMessageQuery(params wmsql.AckMessageQueryParams) (wmsql.Query, error) {
	var offsets []int64
	for _, r := range params.Rows {
		offsets = append(offsets, r.Offset)
		if r.Offset == params.LastRow.Offset {
			break
		}
	}
	c.batch.cover(len(offsets))
	c.batch.closeSavepoint(context.Background())
	return wmsql.Query{
		Query: `DELETE FROM ` + tableName(params.Topic) + ` WHERE "offset" = ANY($1) AND not_before <= now()`,
		Args:  []any{offsets},
	}, nil
}

// ConsumedMessageQuery is part of wmsql.OffsetsAdapter: nothing to record.
func (c *consumer) ConsumedMessageQuery(wmsql.ConsumedMessageQueryParams) (wmsql.Query, error) {
	return wmsql.Query{}, nil
}

// NextOffsetQuery is part of wmsql.OffsetsAdapter: a queue has no offsets to resume from.
func (c *consumer) NextOffsetQuery(wmsql.NextOffsetQueryParams) (wmsql.Query, error) {
	return wmsql.Query{}, nil
}

// SchemaInitializingQueries is part of wmsql.OffsetsAdapter: no tables of its own.
func (c *consumer) SchemaInitializingQueries(wmsql.OffsetsSchemaInitializingQueriesParams) ([]wmsql.Query, error) {
	return nil, nil
}

// BeforeSubscribingQueries is part of wmsql.OffsetsAdapter: none.
func (c *consumer) BeforeSubscribingQueries(wmsql.BeforeSubscribingQueriesParams) ([]wmsql.Query, error) {
	return nil, nil
}

// HandleError is the wmsql.BackoffManager: after an empty query it waits for a notification of
// the topic, the next retried message becoming ready, or the poll interval, whichever is first;
// after an error, a second.
func (c *consumer) HandleError(logger watermill.LoggerAdapter, noMsg bool, err error) time.Duration {
	q := c.s.q
	wait := time.Duration(0)
	var wake <-chan struct{}
	switch {
	case errors.Is(err, errStopped):
		return 0
	case err != nil:
		logger.Error("Cannot consume messages", err, watermill.LogFields{"retry_in": retryInterval})
		wait = retryInterval
	case noMsg:
		wake = q.hub.wakeup(c.s.topic, c.seen)
		wait = q.untilReady(c.s.topic)
	default:
		return 0
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-wake:
	case <-t.C:
	case <-c.stop:
	case <-q.closing:
	}
	return 0
}

// untilReady is how long until the next backing-off message of topic becomes ready, at most
// the poll interval.
func (q *Queue) untilReady(topic string) time.Duration {
	var us sql.NullInt64
	err := q.db.QueryRowContext(q.ctx, `SELECT floor(EXTRACT(EPOCH FROM min(not_before) - clock_timestamp()) * 1e6)::bigint FROM `+
		tableName(topic)+` WHERE not_before > now()`).Scan(&us)
	if err != nil {
		if q.ctx.Err() == nil {
			q.logger.Error("Cannot find the next ready message", fmt.Errorf("topic %q: %w", topic, err), nil)
		}
		return q.pollInterval
	}
	if !us.Valid {
		return q.pollInterval
	}
	return min(max(time.Duration(us.Int64)*time.Microsecond, 0), q.pollInterval)
}

// batchTx is a consumer's transaction for one batch. It commits only if every message handed
// out was acknowledged (covered by the ack query) and none of its own statements failed;
// otherwise it rolls back, so that no handler's writes commit without their message's ack.
type batchTx struct {
	tx     *sql.Tx
	logger watermill.LoggerAdapter
	topic  string

	mu      sync.Mutex
	handed  int   // messages handed to the subscriber
	covered int   // messages the ack query deletes
	failed  error // first failure of a statement of the consumer's

	// marked: a savepoint is open. Used by the forwarding goroutine while it hands messages
	// out, then by the consume goroutine (closeSavepoint) once the last one was settled.
	marked bool

	afterCommit []func() // run once the batch has committed (AfterCommit)
}

func (b *batchTx) ExecContext(ctx context.Context, query string, args ...any) (wmsql.Result, error) {
	return b.tx.ExecContext(ctx, query, args...)
}

func (b *batchTx) QueryContext(ctx context.Context, query string, args ...any) (wmsql.Rows, error) {
	return b.tx.QueryContext(ctx, query, args...)
}

func (b *batchTx) Rollback() error { return b.tx.Rollback() }

func (b *batchTx) Commit() error {
	b.mu.Lock()
	handed, covered, failed := b.handed, b.covered, b.failed
	b.mu.Unlock()
	if failed == nil && covered >= handed {
		if err := b.tx.Commit(); err != nil {
			return err
		}
		b.mu.Lock()
		fns := b.afterCommit
		b.afterCommit = nil
		b.mu.Unlock()
		for _, fn := range fns {
			fn()
		}
		return nil
	}
	if failed == nil {
		failed = fmt.Errorf("%d of the %d messages handed out were not acknowledged", handed-covered, handed)
	}
	b.logger.Info("Rolling back a batch; its messages are offered again", watermill.LogFields{"topic": b.topic, "reason": failed.Error()})
	if err := b.tx.Rollback(); err != nil && !errors.Is(err, sql.ErrTxDone) {
		return err
	}
	return nil
}

// savepoint marks the start of a message's writes, releasing the previous message's mark in the
// same round trip (a statement without arguments goes through pgx's simple protocol, which
// takes several statements), so that at most one savepoint is open at a time.
func (b *batchTx) savepoint(ctx context.Context) error {
	query := `SAVEPOINT pgqueue_msg`
	if b.marked {
		query = `RELEASE SAVEPOINT pgqueue_msg; SAVEPOINT pgqueue_msg`
	}
	if err := b.exec(ctx, query); err != nil {
		return err
	}
	b.marked = true
	return nil
}

// closeSavepoint releases the open savepoint before the ack query deletes the batch's rows. The
// rows were locked (FOR UPDATE) by the top-level transaction; deleted from inside a savepoint
// (a subtransaction) their xmax would be a MultiXact, which PostgreSQL never marks committed in
// the tuple's hint bits, so index scans could not mark the dead entries killed and every later
// claim would walk the whole dead head of the queue's index until a VACUUM. It runs on the
// consume goroutine once every message handed out was settled (handlers no longer use the
// transaction); a batch that will be rolled back (a failure, or a message still out past
// AckDeadline whose handler may still be writing) is left alone.
func (b *batchTx) closeSavepoint(ctx context.Context) {
	b.mu.Lock()
	settled := b.failed == nil && b.covered >= b.handed
	b.mu.Unlock()
	if !b.marked || !settled {
		return
	}
	if err := b.exec(ctx, `RELEASE SAVEPOINT pgqueue_msg`); err != nil {
		b.fail(fmt.Errorf("release savepoint before the ack: %w", err))
		return
	}
	b.marked = false
}

func (b *batchTx) exec(ctx context.Context, query string) error {
	_, err := b.tx.ExecContext(ctx, query)
	return err
}

func (b *batchTx) handOut(n int) {
	b.mu.Lock()
	b.handed += n
	b.mu.Unlock()
}

func (b *batchTx) cover(n int) {
	b.mu.Lock()
	b.covered = n
	b.mu.Unlock()
}

func (b *batchTx) fail(err error) {
	b.mu.Lock()
	if b.failed == nil {
		b.failed = err
	}
	b.mu.Unlock()
}

func (b *batchTx) err() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.failed
}

// delivery is one message handed out: its row and the batch it was claimed in.
type delivery struct {
	batch   *batchTx
	table   string
	offset  int64
	attempt int
}

func newDelivery(b *batchTx, topic string, in *message.Message) (*delivery, error) {
	offset, err := strconv.ParseInt(in.Metadata.Get(offsetKey), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("message %s: bad offset: %w", in.UUID, err)
	}
	attempt, err := strconv.Atoi(in.Metadata.Get(attemptKey))
	if err != nil {
		return nil, fmt.Errorf("message %s: bad attempt: %w", in.UUID, err)
	}
	return &delivery{batch: b, table: tableName(topic), offset: offset, attempt: attempt}, nil
}

// message is the caller's copy of in: its metadata without the private keys and with
// store.AttemptKey; a context with subCtx's values and d, cancelled when in's is (settled,
// AckDeadline, Close) or by the returned cancel.
func (d *delivery) message(in *message.Message, subCtx context.Context) (*message.Message, context.CancelFunc) {
	out := message.NewMessage(in.UUID, in.Payload)
	for k, v := range in.Metadata {
		if k != offsetKey && k != attemptKey {
			out.Metadata[k] = v
		}
	}
	out.Metadata.Set(store.AttemptKey, strconv.Itoa(d.attempt))
	ctx := context.WithValue(context.WithoutCancel(subCtx), deliveryKey{}, d)
	var cancel context.CancelFunc
	if deadline, ok := in.Context().Deadline(); ok {
		ctx, cancel = context.WithDeadline(ctx, deadline)
	} else {
		ctx, cancel = context.WithCancel(ctx)
	}
	stop := context.AfterFunc(in.Context(), cancel)
	out.SetContext(ctx)
	return out, func() { stop(); cancel() }
}

// retry moves the row to attempt+1, ready at notBefore (but after the transaction's start,
// which keeps it from the ack's DELETE). A row already retried in this transaction is left as
// it is.
func (d *delivery) retry(ctx context.Context, notBefore time.Time) error {
	_, err := d.batch.tx.ExecContext(ctx, `UPDATE `+d.table+`
SET attempt = attempt + 1, not_before = greatest($2::timestamptz, clock_timestamp(), now() + interval '1 microsecond')
WHERE "offset" = $1 AND not_before <= now()`, d.offset, notBefore)
	return err
}
