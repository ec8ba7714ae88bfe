package pgqueue

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/opengw/gateway/internal/pgtest"
	"github.com/opengw/gateway/internal/store"
)

// waitFor bounds every wait of these tests; reaching it is a failure, never a measurement.
const waitFor = 20 * time.Second

func newQueue(t *testing.T, cfg Config) *Queue {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = watermill.NewStdLogger(false, false)
	}
	q, err := New(cfg)
	if err != nil {
		t.Fatalf("new queue: %v", err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func openDB(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatalf("open %s: %v", dsn, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func subscribe(t *testing.T, q *Queue, ctx context.Context, topic string) <-chan *message.Message {
	t.Helper()
	ch, err := q.Subscribe(ctx, topic)
	if err != nil {
		t.Fatalf("subscribe to %s: %v", topic, err)
	}
	return ch
}

func receive(t *testing.T, ch <-chan *message.Message) *message.Message {
	t.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatal("channel closed while waiting for a message")
		}
		return m
	case <-time.After(waitFor):
		t.Fatalf("no message within %s", waitFor)
		return nil
	}
}

func publish(t *testing.T, q *Queue, topic string, msgs ...*message.Message) {
	t.Helper()
	if err := q.Publish(topic, msgs...); err != nil {
		t.Fatalf("publish to %s: %v", topic, err)
	}
}

func newMessages(n int, prefix string) []*message.Message {
	msgs := make([]*message.Message, n)
	for i := range msgs {
		msgs[i] = message.NewMessage(watermill.NewUUID(), []byte(fmt.Sprintf("%s-%d", prefix, i)))
	}
	return msgs
}

func depth(t *testing.T, q *Queue, topic string) int {
	t.Helper()
	n, err := q.Depth(context.Background(), topic)
	if err != nil {
		t.Fatalf("depth of %s: %v", topic, err)
	}
	return n
}

// eventually polls cond until it holds; a batch is deleted when its transaction commits, just
// after the ack that ends it.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, waitFor)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func createEffects(t *testing.T, db *sql.DB) {
	t.Helper()
	if _, err := db.Exec(`CREATE TABLE effects (id TEXT PRIMARY KEY)`); err != nil {
		t.Fatalf("create effects: %v", err)
	}
}

// writeEffect records msg's effect through the transaction it was delivered in.
func writeEffect(t *testing.T, msg *message.Message) {
	t.Helper()
	tx, ok := TxOf(msg)
	if !ok {
		t.Fatalf("TxOf(%s): no transaction", msg.UUID)
	}
	if _, err := tx.Exec(`INSERT INTO effects (id) VALUES ($1)`, msg.UUID); err != nil {
		t.Fatalf("write effect of %s: %v", msg.UUID, err)
	}
}

func effects(t *testing.T, db *sql.DB) []string {
	t.Helper()
	rows, err := db.Query(`SELECT id FROM effects ORDER BY id`)
	if err != nil {
		t.Fatalf("read effects: %v", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

func TestPublishTxCommitsWithTheCallersTransaction(t *testing.T) {
	db, _ := pgtest.Open(t)
	const topic = "fragments"
	q := newQueue(t, Config{DB: db, Topics: map[string]TopicConfig{topic: {}}})
	ctx := context.Background()

	rolledBack := message.NewMessage(watermill.NewUUID(), []byte("never"))
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if err := q.PublishTx(ctx, tx, topic, rolledBack); err != nil {
		t.Fatalf("PublishTx: %v", err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if n := depth(t, q, topic); n != 0 {
		t.Fatalf("depth after rollback = %d, want 0", n)
	}

	payload := []byte{0, 0xff, 'x', 0x80} // not JSON, not UTF-8
	committed := message.NewMessage(watermill.NewUUID(), payload)
	committed.Metadata.Set("request", "r-1")
	tx, err = db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if err := q.PublishTx(ctx, tx, topic, committed); err != nil {
		t.Fatalf("PublishTx: %v", err)
	}
	if _, err := tx.Exec(`CREATE TABLE side (x int)`); err != nil { // the caller's own write
		t.Fatal(err)
	}
	ch := subscribe(t, q, ctx, topic)
	if n := depth(t, q, topic); n != 0 {
		t.Fatalf("depth before commit = %d, want 0 (uncommitted rows are invisible)", n)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}

	m := receive(t, ch)
	if m.UUID != committed.UUID {
		t.Fatalf("received %s, want the committed %s (rolled back: %s)", m.UUID, committed.UUID, rolledBack.UUID)
	}
	if !bytes.Equal(m.Payload, payload) {
		t.Errorf("payload = %v, want %v", []byte(m.Payload), payload)
	}
	if got := m.Metadata.Get("request"); got != "r-1" {
		t.Errorf("metadata request = %q, want r-1", got)
	}
	if got := m.Metadata.Get(store.AttemptKey); got != "1" {
		t.Errorf("attempt = %q, want 1", got)
	}
	for k := range m.Metadata {
		if strings.HasPrefix(k, "_pgqueue") {
			t.Errorf("private metadata %s leaked to the subscriber", k)
		}
	}
	m.Ack()
	eventually(t, "acked message deleted", func() bool { return depth(t, q, topic) == 0 })
}

func TestHandlerWritesCommitWithTheAck(t *testing.T) {
	db, _ := pgtest.Open(t)
	createEffects(t, db)
	const topic = "deliver.sink"
	cfg := Config{DB: db, PollInterval: 50 * time.Millisecond, Backoff: func(int) time.Duration { return 0 }}
	q := newQueue(t, cfg)
	m1 := message.NewMessage(watermill.NewUUID(), []byte("1"))
	publish(t, q, topic, m1)
	ch := subscribe(t, q, context.Background(), topic)

	t.Run("ack", func(t *testing.T) {
		m := receive(t, ch)
		writeEffect(t, m)
		if got := effects(t, db); len(got) != 0 {
			t.Fatalf("effects visible before the ack: %v", got)
		}
		m.Ack()
		eventually(t, "message deleted", func() bool { return depth(t, q, topic) == 0 })
		if got := effects(t, db); len(got) != 1 || got[0] != m1.UUID {
			t.Fatalf("effects after the commit = %v, want [%s]", got, m1.UUID)
		}
	})

	t.Run("nack undoes the handler's writes and offers the message again", func(t *testing.T) {
		m2 := message.NewMessage(watermill.NewUUID(), []byte("2"))
		publish(t, q, topic, m2)
		m := receive(t, ch)
		writeEffect(t, m)
		// A failed statement aborts the transaction; the nack's rollback must recover it.
		tx, _ := TxOf(m)
		if _, err := tx.Exec(`INSERT INTO effects (id) VALUES (NULL)`); err == nil {
			t.Fatal("inserting NULL into a primary key succeeded")
		}
		m.Nack()
		again := receive(t, ch)
		if again.UUID != m2.UUID || again.Metadata.Get(store.AttemptKey) != "2" {
			t.Fatalf("got %s attempt %s, want %s attempt 2", again.UUID, again.Metadata.Get(store.AttemptKey), m2.UUID)
		}
		writeEffect(t, again)
		again.Ack()
		eventually(t, "message deleted", func() bool { return depth(t, q, topic) == 0 })
		if got := effects(t, db); len(got) != 2 {
			t.Fatalf("effects = %v, want one per message (the nacked write undone)", got)
		}
	})

	t.Run("close before the ack rolls the writes back and redelivers", func(t *testing.T) {
		m3 := message.NewMessage(watermill.NewUUID(), []byte("3"))
		publish(t, q, topic, m3)
		m := receive(t, ch)
		writeEffect(t, m)
		q.Close()
		select {
		case <-m.Context().Done():
		default:
			t.Error("message context not cancelled by Close")
		}
		m.Ack() // too late: ignored
		if _, ok := <-ch; ok {
			t.Fatal("channel still open after Close")
		}
		for _, id := range effects(t, db) {
			if id == m3.UUID {
				t.Fatalf("effect of %s committed without its ack", id)
			}
		}
		q2 := newQueue(t, cfg)
		again := receive(t, subscribe(t, q2, context.Background(), topic))
		if again.UUID != m3.UUID || again.Metadata.Get(store.AttemptKey) != "1" {
			t.Fatalf("got %s attempt %s, want %s attempt 1 (a rollback is not an attempt)", again.UUID, again.Metadata.Get(store.AttemptKey), m3.UUID)
		}
		again.Ack()
		eventually(t, "message deleted", func() bool { return depth(t, q2, topic) == 0 })
	})
}

func TestAckDeadlineRollsTheBatchBack(t *testing.T) {
	db, _ := pgtest.Open(t)
	createEffects(t, db)
	const topic = "slow"
	q := newQueue(t, Config{DB: db, AckDeadline: 500 * time.Millisecond, PollInterval: 50 * time.Millisecond})
	m := message.NewMessage(watermill.NewUUID(), nil)
	publish(t, q, topic, m)
	ch := subscribe(t, q, context.Background(), topic)

	first := receive(t, ch)
	if _, ok := first.Context().Deadline(); !ok {
		t.Error("message context has no deadline")
	}
	writeEffect(t, first)
	<-first.Context().Done() // AckDeadline passed: the claim is gone
	again := receive(t, ch)
	first.Ack() // too late: ignored
	if again.UUID != m.UUID {
		t.Fatalf("redelivered %s, want %s", again.UUID, m.UUID)
	}
	again.Ack()
	eventually(t, "message deleted", func() bool { return depth(t, q, topic) == 0 })
	if got := effects(t, db); len(got) != 0 {
		t.Fatalf("effects of the overdue delivery committed: %v", got)
	}
}

func TestIdleTransactionsAreCutOffAfterTheAckDeadline(t *testing.T) {
	db, _ := pgtest.Open(t)
	q := newQueue(t, Config{DB: db, AckDeadline: 30 * time.Second})
	publish(t, q, "t", message.NewMessage(watermill.NewUUID(), nil))
	m := receive(t, subscribe(t, q, context.Background(), "t"))
	tx, _ := TxOf(m)
	var setting string
	if err := tx.QueryRow(`SELECT current_setting('idle_in_transaction_session_timeout')`).Scan(&setting); err != nil {
		t.Fatal(err)
	}
	if setting != "1min" {
		t.Errorf("idle_in_transaction_session_timeout = %s, want 1min (AckDeadline + 30s)", setting)
	}
	m.Ack()
}

func TestRetryTx(t *testing.T) {
	db, _ := pgtest.Open(t)
	const topic = "deliver.x"
	cfg := Config{DB: db, PollInterval: time.Hour} // only the retry's own time may wake the consumer
	q := newQueue(t, cfg)
	orig := message.NewMessage(watermill.NewUUID(), []byte("payload"))
	orig.Metadata.Set("k", "v")
	publish(t, q, topic, orig)
	m := receive(t, subscribe(t, q, context.Background(), topic))
	tx, _ := TxOf(m)

	if err := q.RetryTx(tx, orig, time.Now()); err == nil {
		t.Error("RetryTx accepted a message the queue did not deliver")
	}
	other, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer other.Rollback()
	if err := q.RetryTx(other, m, time.Now()); err == nil {
		t.Error("RetryTx accepted another transaction than the message's")
	}

	notBefore := time.Now().Add(700 * time.Millisecond)
	for range 2 { // the second call changes nothing
		if err := q.RetryTx(tx, m, notBefore); err != nil {
			t.Fatalf("RetryTx: %v", err)
		}
	}
	m.Ack()
	q.Close() // the ack was given before Close: it is applied, the retried row stays
	if n := depth(t, q, topic); n != 1 {
		t.Fatalf("depth after retry = %d, want 1", n)
	}

	q2 := newQueue(t, cfg) // a restart
	again := receive(t, subscribe(t, q2, context.Background(), topic))
	if now := time.Now(); now.Before(notBefore) {
		t.Errorf("retried message offered at %s, before its not-before %s", now.Format(time.StampMicro), notBefore.Format(time.StampMicro))
	}
	if again.UUID != orig.UUID || string(again.Payload) != "payload" || again.Metadata.Get("k") != "v" {
		t.Errorf("retried message = %s %q %v, want the original", again.UUID, again.Payload, again.Metadata)
	}
	if got := again.Metadata.Get(store.AttemptKey); got != "2" {
		t.Errorf("attempt = %s, want 2", got)
	}

	// A retry rolled back to a savepoint is as if it never happened: the ack deletes the row.
	tx, _ = TxOf(again)
	if _, err := tx.Exec(`SAVEPOINT handler`); err != nil {
		t.Fatal(err)
	}
	if err := q2.RetryTx(tx, again, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`ROLLBACK TO SAVEPOINT handler`); err != nil {
		t.Fatal(err)
	}
	again.Ack()
	eventually(t, "message deleted", func() bool { return depth(t, q2, topic) == 0 })
}

func TestNackBacksOff(t *testing.T) {
	db, _ := pgtest.Open(t)
	const backoff = 400 * time.Millisecond
	var (
		mu       sync.Mutex
		attempts []int
	)
	q := newQueue(t, Config{DB: db, PollInterval: time.Hour, Backoff: func(attempt int) time.Duration {
		mu.Lock()
		attempts = append(attempts, attempt)
		mu.Unlock()
		return backoff
	}})
	publish(t, q, "t", message.NewMessage(watermill.NewUUID(), nil))
	ch := subscribe(t, q, context.Background(), "t")
	var nackedAt time.Time
	for want := 1; want <= 3; want++ {
		m := receive(t, ch)
		if want > 1 {
			if since := time.Since(nackedAt); since < backoff {
				t.Fatalf("nacked message offered again after %s, before its backoff %s", since, backoff)
			}
		}
		if got := m.Metadata.Get(store.AttemptKey); got != fmt.Sprint(want) {
			t.Fatalf("attempt = %s, want %d", got, want)
		}
		if want == 3 {
			m.Ack()
			break
		}
		nackedAt = time.Now()
		m.Nack()
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(attempts) != "[1 2]" {
		t.Errorf("Backoff called with attempts %v, want [1 2]", attempts)
	}
}

// TestConsumersWorkInParallel holds one message unacknowledged (its row locked, its batch
// open) and requires another consumer to receive a message meanwhile: with the stock
// FOR UPDATE select (no SKIP LOCKED) the second consumer would wait for the first's batch.
func TestConsumersWorkInParallel(t *testing.T) {
	const topic = "deliver.activities"
	t.Run("two nodes", func(t *testing.T) {
		dsn := pgtest.New(t)
		cfg := func() Config {
			return Config{DB: openDB(t, dsn), Topics: map[string]TopicConfig{topic: {BatchSize: 5, MaxInFlight: 1}}}
		}
		node1, node2 := newQueue(t, cfg()), newQueue(t, cfg())
		consumeInParallel(t, node1, topic,
			subscribe(t, node1, context.Background(), topic),
			subscribe(t, node2, context.Background(), topic))
	})
	t.Run("one node, MaxInFlight 2", func(t *testing.T) {
		db, _ := pgtest.Open(t)
		q := newQueue(t, Config{DB: db, Topics: map[string]TopicConfig{topic: {BatchSize: 5, MaxInFlight: 2}}})
		ch := subscribe(t, q, context.Background(), topic)
		consumeInParallel(t, q, topic, ch, ch) // two readers of one subscription
	})
}

// consumeInParallel publishes messages on q and reads them from two channels; reader 0 holds
// its first message until reader 1 has received one. It checks that every message arrives
// exactly once and both readers got some.
func consumeInParallel(t *testing.T, q *Queue, topic string, chs ...<-chan *message.Message) {
	const total = 60
	publish(t, q, topic, newMessages(total, "m")...)
	var (
		mu       sync.Mutex
		received = map[string]int{} // uuid -> deliveries
		per      = make([]int, len(chs))
		got      = []chan struct{}{make(chan struct{}), make(chan struct{})} // closed at a reader's first message
		all      = make(chan struct{})
		finish   sync.Once
		wg       sync.WaitGroup
	)
	for i, ch := range chs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				var m *message.Message
				select {
				case m = <-ch:
				case <-all:
					return
				case <-time.After(waitFor):
					t.Errorf("reader %d: no message within %s", i, waitFor)
					return
				}
				mu.Lock()
				received[m.UUID]++
				per[i]++
				first, n := per[i] == 1, len(received)
				mu.Unlock()
				// Each reader holds its first message until the other has one: both must be served
				// while the other's message is still unacknowledged, whichever starts first.
				if first {
					close(got[i])
					select {
					case <-got[1-i]:
					case <-time.After(waitFor):
						t.Errorf("reader %d received nothing while reader %d held a message for %s", 1-i, i, waitFor)
					}
				}
				m.Ack()
				if n == total {
					finish.Do(func() { close(all) })
				}
			}
		}()
	}
	wg.Wait()
	if len(received) != total {
		t.Fatalf("received %d distinct messages, want %d", len(received), total)
	}
	for id, n := range received {
		if n != 1 {
			t.Errorf("message %s delivered %d times, want once (all were acked)", id, n)
		}
	}
	if per[0] == 0 || per[1] == 0 {
		t.Errorf("messages per reader %v: both must have received some", per)
	}
	eventually(t, "all deleted", func() bool { return depth(t, q, topic) == 0 })
}

// TestStoppingKeepsTheRestOfTheBatch cancels a subscription after 3 acks in a batch of 10: the
// 3 are deleted, the 7 others (one possibly claimed but not handed out) stay. watermill-sql's
// own PostgreSQLQueueOffsetsAdapter would have deleted all 10.
func TestStoppingKeepsTheRestOfTheBatch(t *testing.T) {
	db, _ := pgtest.Open(t)
	const topic = "fragments"
	cfg := Config{DB: db, Topics: map[string]TopicConfig{topic: {BatchSize: 10, MaxInFlight: 1}}}
	q := newQueue(t, cfg)
	msgs := newMessages(10, "f")
	publish(t, q, topic, msgs...)

	ctx, cancel := context.WithCancel(context.Background())
	ch := subscribe(t, q, ctx, topic)
	acked := map[string]bool{}
	for range 3 {
		m := receive(t, ch)
		acked[m.UUID] = true
		m.Ack()
	}
	cancel()
	eventually(t, "3 acked rows deleted", func() bool { return depth(t, q, topic) == 7 })

	q2 := newQueue(t, cfg)
	ch2 := subscribe(t, q2, context.Background(), topic)
	for range 7 {
		m := receive(t, ch2)
		if acked[m.UUID] {
			t.Fatalf("acked message %s delivered again", m.UUID)
		}
		acked[m.UUID] = true
		m.Ack()
	}
	if len(acked) != 10 {
		t.Fatalf("%d distinct messages, want 10", len(acked))
	}
	eventually(t, "all deleted", func() bool { return depth(t, q2, topic) == 0 })
}

// TestNotificationsWakeConsumers uses an hour-long poll interval: only a notification (from
// another node, through PostgreSQL) or a retry's own time can wake the idle consumer.
func TestNotificationsWakeConsumers(t *testing.T) {
	dsn := pgtest.New(t)
	const topic = "fragments"
	consumer := newQueue(t, Config{DB: openDB(t, dsn), PollInterval: time.Hour})
	publisherDB := openDB(t, dsn)
	publisher := newQueue(t, Config{DB: publisherDB, PollInterval: time.Hour})
	ch := subscribe(t, consumer, context.Background(), topic)
	for i := range 3 {
		time.Sleep(100 * time.Millisecond) // let the consumer go idle
		m := message.NewMessage(watermill.NewUUID(), nil)
		if i == 2 { // a caller's own transaction
			tx, err := publisherDB.Begin()
			if err != nil {
				t.Fatal(err)
			}
			if err := publisher.PublishTx(context.Background(), tx, topic, m); err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
		} else {
			publish(t, publisher, topic, m)
		}
		got := receive(t, ch)
		if got.UUID != m.UUID {
			t.Fatalf("received %s, want %s", got.UUID, m.UUID)
		}
		got.Ack()
	}
}

func TestSchemaCreationRacesSafely(t *testing.T) {
	dsn := pgtest.New(t)
	topics := map[string]TopicConfig{"fragments": {}, "deliver.a": {}, "deliver.b": {}}
	const nodes = 6
	errs := make(chan error, nodes)
	for range nodes {
		db := openDB(t, dsn) // a pool (and hub) per node, as separate processes have
		go func() {
			q, err := New(Config{DB: db, Topics: topics})
			if err == nil {
				q.Close()
			}
			errs <- err
		}()
	}
	for range nodes {
		if err := <-errs; err != nil {
			t.Errorf("concurrent New: %v", err)
		}
	}
}

// TestStartingNodeDoesNotWaitForBatches starts a node while another holds a batch that wrote
// to a topic's table: ensuring that topic's table must not wait for the batch (CREATE INDEX IF
// NOT EXISTS would).
func TestStartingNodeDoesNotWaitForBatches(t *testing.T) {
	dsn := pgtest.New(t)
	topics := map[string]TopicConfig{"fragments": {}, "deliver.a": {}}
	q := newQueue(t, Config{DB: openDB(t, dsn), Topics: topics})
	publish(t, q, "fragments", message.NewMessage(watermill.NewUUID(), nil))
	m := receive(t, subscribe(t, q, context.Background(), "fragments"))
	tx, _ := TxOf(m)
	if err := q.PublishTx(context.Background(), tx, "deliver.a", message.NewMessage(watermill.NewUUID(), nil)); err != nil {
		t.Fatal(err)
	}
	started := make(chan error, 1)
	go func() {
		q2, err := New(Config{DB: openDB(t, dsn), Topics: topics})
		if err == nil {
			q2.Close()
		}
		started <- err
	}()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("second node: %v", err)
		}
	case <-time.After(waitFor):
		t.Fatalf("second node still starting after %s while a batch is open", waitFor)
	}
	m.Ack()
	eventually(t, "delivery published", func() bool { return depth(t, q, "deliver.a") == 1 })
}

func TestTopicsGetTheirOwnTables(t *testing.T) {
	db, _ := pgtest.Open(t)
	q := newQueue(t, Config{DB: db})
	long := strings.Repeat("deliver.very-long-sink-name.", 8)
	topics := []string{"deliver.activities", "deliver_activities", "Deliver.Activities", long + "a", long + "b"}
	for _, topic := range topics {
		if name := tableName(topic) + "_ready"; len(name) > 63 {
			t.Errorf("index name %s is %d bytes, over PostgreSQL's 63", name, len(name))
		}
		publish(t, q, topic, message.NewMessage(watermill.NewUUID(), []byte(topic)))
	}
	for _, topic := range topics {
		if n := depth(t, q, topic); n != 1 {
			t.Errorf("depth of %q = %d, want 1", topic, n)
		}
		m := receive(t, subscribe(t, q, context.Background(), topic))
		if string(m.Payload) != topic {
			t.Errorf("topic %q delivered %q", topic, m.Payload)
		}
		m.Ack()
	}
	for _, bad := range []string{"", "a b", "a;drop table x", `"x"`} {
		if err := q.Publish(bad, message.NewMessage(watermill.NewUUID(), nil)); err == nil {
			t.Errorf("Publish to %q succeeded", bad)
		}
	}
}

func TestDepthAndOldestAge(t *testing.T) {
	db, _ := pgtest.Open(t)
	q := newQueue(t, Config{DB: db})
	ctx := context.Background()
	if n := depth(t, q, "never.used"); n != 0 {
		t.Errorf("depth of an unknown topic = %d", n)
	}
	if age, err := q.OldestAge(ctx, "never.used"); err != nil || age != 0 {
		t.Errorf("oldest age of an unknown topic = %s, %v", age, err)
	}
	publishedAt := time.Now()
	publish(t, q, "t", newMessages(3, "x")...)
	const wait = 150 * time.Millisecond
	time.Sleep(wait)
	if n := depth(t, q, "t"); n != 3 {
		t.Errorf("depth = %d, want 3", n)
	}
	age, err := q.OldestAge(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	if age < wait || age > time.Since(publishedAt)+time.Second {
		t.Errorf("oldest age = %s, want at least %s", age, wait)
	}

	// A retried message keeps its first publication time.
	ch := subscribe(t, q, ctx, "t")
	for range 3 {
		m := receive(t, ch)
		tx, _ := TxOf(m)
		if err := q.RetryTx(tx, m, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		m.Ack()
	}
	eventually(t, "retries committed", func() bool {
		var n int
		db.QueryRow(`SELECT count(*) FROM ` + tableName("t") + ` WHERE attempt = 2`).Scan(&n)
		return n == 3
	})
	if age, _ := q.OldestAge(ctx, "t"); age < time.Since(publishedAt)-50*time.Millisecond {
		t.Errorf("oldest age after retry = %s, want the age of the first publication (%s)", age, time.Since(publishedAt))
	}
	if n := depth(t, q, "t"); n != 3 {
		t.Errorf("depth with 3 backing off = %d, want 3", n)
	}
}

func TestConfigErrors(t *testing.T) {
	db, _ := pgtest.Open(t)
	for name, cfg := range map[string]Config{
		"no db":             {},
		"negative poll":     {DB: db, PollInterval: -1},
		"negative deadline": {DB: db, AckDeadline: -1},
		"negative batch":    {DB: db, Topics: map[string]TopicConfig{"t": {BatchSize: -1}}},
		"bad topic":         {DB: db, Topics: map[string]TopicConfig{"a b": {}}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
	q := newQueue(t, Config{DB: db})
	q.Close()
	if _, err := q.Subscribe(context.Background(), "t"); err != ErrClosed {
		t.Errorf("Subscribe after Close: %v, want ErrClosed", err)
	}
	if err := q.Publish("t", message.NewMessage("x", nil)); err != ErrClosed {
		t.Errorf("Publish after Close: %v, want ErrClosed", err)
	}
}

// TestAckedRowsAreNotDeletedByAMultiXact inspects the heap of a topic after its messages were
// handled (each handler writing under the message's savepoint) and acknowledged: the batch's
// rows must be deleted by the transaction itself. Deleted from inside the savepoint, their xmax
// would be a MultiXact (the top-level lock plus the subtransaction's delete), which PostgreSQL
// never hints as committed: index scans could not mark the dead entries killed, and every
// claim would walk the dead head of the queue until a VACUUM.
func TestAckedRowsAreNotDeletedByAMultiXact(t *testing.T) {
	db, _ := pgtest.Open(t)
	if _, err := db.Exec(`CREATE EXTENSION IF NOT EXISTS pageinspect`); err != nil {
		t.Fatalf("create extension pageinspect (PostgreSQL's contrib): %v", err)
	}
	createEffects(t, db)
	const topic = "deliver.sink"
	q := newQueue(t, Config{DB: db, PollInterval: 50 * time.Millisecond, Topics: map[string]TopicConfig{topic: {BatchSize: 5, MaxInFlight: 1}}})
	msgs := newMessages(20, "m")
	publish(t, q, topic, msgs...)
	ch := subscribe(t, q, context.Background(), topic)
	for range msgs {
		m := receive(t, ch)
		writeEffect(t, m)
		m.Ack()
	}
	eventually(t, "all deleted", func() bool { return depth(t, q, topic) == 0 })
	if got := effects(t, db); len(got) != len(msgs) {
		t.Fatalf("%d effects, want %d", len(got), len(msgs))
	}
	const xmaxIsMulti = 0x1000 // HEAP_XMAX_IS_MULTI
	var deleted, multi int
	err := db.QueryRow(`SELECT count(*) FILTER (WHERE t_xmax <> 0), count(*) FILTER (WHERE t_xmax <> 0 AND t_infomask & $1 <> 0)
		FROM heap_page_items(get_raw_page($2, 0))`, xmaxIsMulti, tableName(topic)).Scan(&deleted, &multi)
	if err != nil {
		t.Fatalf("inspect the heap of %s: %v", tableName(topic), err)
	}
	if deleted != len(msgs) || multi != 0 {
		t.Fatalf("%d deleted row versions, %d of them by a MultiXact; want %d and 0", deleted, multi, len(msgs))
	}
}
