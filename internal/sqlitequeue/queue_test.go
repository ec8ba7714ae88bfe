package sqlitequeue

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/opengw/gateway/internal/sqlitedb"
)

func openDB(t testing.TB) *sqlitedb.DB {
	t.Helper()
	db, err := sqlitedb.Open(filepath.Join(t.TempDir(), "queue.db"))
	if err != nil {
		t.Fatalf("open database: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// newQueue opens a Queue on db that is closed when the test ends (before db).
func newQueue(t testing.TB, cfg Config) *Queue {
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

func subscribe(t testing.TB, q *Queue, ctx context.Context, topic string) <-chan *message.Message {
	t.Helper()
	ch, err := q.Subscribe(ctx, topic)
	if err != nil {
		t.Fatalf("subscribe %q: %v", topic, err)
	}
	return ch
}

func receive(t testing.TB, ch <-chan *message.Message, timeout time.Duration) *message.Message {
	t.Helper()
	select {
	case msg, ok := <-ch:
		if !ok {
			t.Fatal("message channel closed")
		}
		return msg
	case <-time.After(timeout):
		t.Fatalf("no message within %s", timeout)
		return nil
	}
}

func expectNothing(t testing.TB, ch <-chan *message.Message, d time.Duration) {
	t.Helper()
	select {
	case msg, ok := <-ch:
		if ok {
			t.Fatalf("unexpected message %s (attempt %s)", msg.UUID, msg.Metadata.Get(AttemptKey))
		}
		t.Fatal("message channel closed")
	case <-time.After(d):
	}
}

// rowCount counts stored messages, checking that each has exactly one payload row.
func rowCount(t testing.TB, db *sqlitedb.DB) int {
	t.Helper()
	var msgs, payloads int
	err := db.Reader().QueryRow(`SELECT (SELECT COUNT(*) FROM queue_messages), (SELECT COUNT(*) FROM queue_payloads)`).Scan(&msgs, &payloads)
	if err != nil {
		t.Fatalf("count rows: %v", err)
	}
	if msgs != payloads {
		t.Fatalf("%d messages but %d payloads", msgs, payloads)
	}
	return msgs
}

// waitRows waits until the table holds want rows (acks are applied asynchronously).
func waitRows(t testing.TB, db *sqlitedb.DB, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := rowCount(t, db)
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue_messages has %d rows, want %d", n, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func publish(t testing.TB, q *Queue, topic string, msgs ...*message.Message) {
	t.Helper()
	if err := q.Publish(topic, msgs...); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

func newMsg(payload string) *message.Message {
	return message.NewMessage(watermill.NewUUID(), []byte(payload))
}

func TestAckDeletesRows(t *testing.T) {
	db := openDB(t)
	q := newQueue(t, Config{DB: db})
	const publishers, perPublisher = 8, 50
	var wg sync.WaitGroup
	for range publishers {
		wg.Go(func() {
			for range perPublisher {
				publish(t, q, "acks", newMsg("x"))
			}
		})
	}
	wg.Wait()
	if n := rowCount(t, db); n != publishers*perPublisher {
		t.Fatalf("after publishing: %d rows, want %d", n, publishers*perPublisher)
	}
	ch := subscribe(t, q, context.Background(), "acks")
	seen := map[string]bool{}
	for range publishers * perPublisher {
		msg := receive(t, ch, 5*time.Second)
		if seen[msg.UUID] {
			t.Fatalf("message %s delivered twice", msg.UUID)
		}
		seen[msg.UUID] = true
		msg.Ack()
	}
	waitRows(t, db, 0)
}

func TestRoundTrip(t *testing.T) {
	db := openDB(t)
	q := newQueue(t, Config{DB: db})
	binary := []byte{0, 1, 2, 0xff, 0xfe, '\n', 0}
	want := []*message.Message{
		message.NewMessage("id-binary", binary),
		message.NewMessage("id-empty", []byte{}),
		message.NewMessage("id-nil", nil),
		message.NewMessage("id-metadata", []byte(`{"a":1}`)),
	}
	want[3].Metadata.Set("unicode", "ünïcødé ✓")
	want[3].Metadata.Set("empty", "")
	want[3].Metadata.Set("json", `{"quoted":"\"x\""}`)
	publish(t, q, "roundtrip", want...)

	ch := subscribe(t, q, context.Background(), "roundtrip")
	got := map[string]*message.Message{}
	for range want {
		msg := receive(t, ch, 5*time.Second)
		got[msg.UUID] = msg
		msg.Ack()
	}
	for _, w := range want {
		g := got[w.UUID]
		if g == nil {
			t.Fatalf("message %s not received", w.UUID)
		}
		if !bytes.Equal(g.Payload, w.Payload) {
			t.Errorf("%s: payload %q, want %q", w.UUID, g.Payload, w.Payload)
		}
		if attempt := g.Metadata.Get(AttemptKey); attempt != "1" {
			t.Errorf("%s: %s = %q, want 1", w.UUID, AttemptKey, attempt)
		}
		md := maps.Clone(g.Metadata)
		delete(md, AttemptKey)
		if !maps.Equal(md, w.Metadata) {
			t.Errorf("%s: metadata %v, want %v", w.UUID, md, w.Metadata)
		}
	}
	if got["id-nil"].Payload != nil {
		t.Errorf("nil payload came back as %#v", got["id-nil"].Payload)
	}
	if got["id-empty"].Payload == nil {
		t.Errorf("empty payload came back as nil")
	}
}

// TestBigPayloadLeaseWritesAreSmall checks that claiming and nacking a 10 MB message does not
// rewrite its payload (SQLite rewrites a whole record when a column changes size).
func TestBigPayloadLeaseWritesAreSmall(t *testing.T) {
	db := openDB(t)
	q := newQueue(t, Config{DB: db, Backoff: func(int) time.Duration { return 0 }})
	big := make([]byte, 10<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	publish(t, q, "big", message.NewMessage("big", big))

	raw, err := sql.Open("sqlite3", "file:"+db.Path()+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	walWritten := func(f func()) int64 {
		t.Helper()
		// The database's own checkpoint loop may be running a checkpoint, which makes this one
		// busy at once (the busy timeout does not apply to that lock): try again.
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			var busy, logFrames, checkpointed int
			err := raw.QueryRow(`PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &logFrames, &checkpointed)
			if err == nil && busy == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("checkpoint: busy=%d err=%v", busy, err)
			}
		}
		f()
		st, err := os.Stat(db.Path() + "-wal")
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}

	ch := subscribe(t, q, context.Background(), "big")
	var msg *message.Message
	if n := walWritten(func() { msg = receive(t, ch, 5*time.Second) }); n > 1<<20 {
		t.Errorf("claim wrote %d bytes to the WAL", n)
	}
	if !bytes.Equal(msg.Payload, big) {
		t.Fatal("payload differs")
	}
	if n := walWritten(func() { msg.Nack(); msg = receive(t, ch, 5*time.Second) }); n > 1<<20 {
		t.Errorf("nack and second claim wrote %d bytes to the WAL", n)
	}
	msg.Ack()
	waitRows(t, db, 0)
}

func TestNackRedeliversWithBackoff(t *testing.T) {
	db := openDB(t)
	const backoff = 200 * time.Millisecond
	var attempts []int
	var mu sync.Mutex
	q := newQueue(t, Config{
		DB: db,
		// A long poll interval shows redelivery is scheduled from the backoff, not polled.
		PollInterval: time.Minute,
		Backoff: func(attempt int) time.Duration {
			mu.Lock()
			attempts = append(attempts, attempt)
			mu.Unlock()
			return backoff
		},
	})
	ch := subscribe(t, q, context.Background(), "nack")
	msg := newMsg("retry me")
	publish(t, q, "nack", msg)

	var nackedAt time.Time
	for want := 1; want <= 3; want++ {
		got := receive(t, ch, 10*time.Second)
		if got.UUID != msg.UUID {
			t.Fatalf("got message %s, want %s", got.UUID, msg.UUID)
		}
		if a := got.Metadata.Get(AttemptKey); a != fmt.Sprint(want) {
			t.Fatalf("delivery %d: %s = %q", want, AttemptKey, a)
		}
		if want > 1 {
			// Only the lower bound is a contract; how soon after it is a matter of load.
			if waited := time.Since(nackedAt); waited < backoff {
				t.Fatalf("redelivered %s after nack, before the %s backoff", waited, backoff)
			}
		}
		if want == 3 {
			got.Ack()
			break
		}
		nackedAt = time.Now()
		got.Nack()
	}
	waitRows(t, db, 0)
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(attempts) != "[1 2]" {
		t.Errorf("Backoff called with %v, want [1 2]", attempts)
	}
}

func TestDefaultBackoff(t *testing.T) {
	for attempt, want := range map[int]time.Duration{
		0: 100 * time.Millisecond, 1: 100 * time.Millisecond, 2: 200 * time.Millisecond,
		4: 800 * time.Millisecond, 10: 51200 * time.Millisecond, 11: time.Minute, 1000: time.Minute,
	} {
		if got := defaultBackoff(attempt); got != want {
			t.Errorf("defaultBackoff(%d) = %s, want %s", attempt, got, want)
		}
	}
}

func TestLeaseExtendedWhileHandlerRuns(t *testing.T) {
	db := openDB(t)
	// Long enough that a loaded CI machine delaying the lease keeper by a few hundred
	// milliseconds cannot make the lease lapse.
	const lease = 1500 * time.Millisecond
	holder := newQueue(t, Config{DB: db, LeaseDuration: lease})
	// A competing consumer polling often: it would take the message if its lease lapsed.
	rival := newQueue(t, Config{DB: db, LeaseDuration: lease, PollInterval: 20 * time.Millisecond})

	held := subscribe(t, holder, context.Background(), "slow")
	publish(t, holder, "slow", newMsg("slow"))
	msg := receive(t, held, 2*time.Second)

	rivalCh := subscribe(t, rival, context.Background(), "slow")
	expectNothing(t, rivalCh, 3*lease) // the "handler" runs for three leases
	msg.Ack()
	waitRows(t, db, 0)
	expectNothing(t, rivalCh, lease)
}

func TestMaxInFlight(t *testing.T) {
	db := openDB(t)
	q := newQueue(t, Config{DB: db, Topics: map[string]TopicConfig{"limited": {BatchSize: 2, MaxInFlight: 3}}})
	for i := range 10 {
		publish(t, q, "limited", newMsg(fmt.Sprint(i)))
	}
	ch := subscribe(t, q, context.Background(), "limited")
	// Three messages arrive without any ack: delivery does not wait for the previous ack.
	var held []*message.Message
	for range 3 {
		held = append(held, receive(t, ch, 2*time.Second))
	}
	expectNothing(t, ch, 300*time.Millisecond)
	held[0].Ack()
	held = append(held[1:], receive(t, ch, 2*time.Second))
	expectNothing(t, ch, 300*time.Millisecond)
	nacked := held[0]
	nacked.Nack()
	held = append(held[1:], receive(t, ch, 2*time.Second))
	for _, m := range held {
		m.Ack()
	}
	// Five unseen messages remain, and the nacked one comes back after its backoff.
	retried := false
	for range 6 {
		m := receive(t, ch, 2*time.Second)
		retried = retried || (m.UUID == nacked.UUID && m.Metadata.Get(AttemptKey) == "2")
		m.Ack()
	}
	if !retried {
		t.Error("nacked message not redelivered as attempt 2")
	}
	waitRows(t, db, 0)
}

func TestInsertTxAndNotify(t *testing.T) {
	db := openDB(t)
	// With a one-minute poll, only the in-process signal can deliver promptly.
	q := newQueue(t, Config{DB: db, PollInterval: time.Minute})
	ch := subscribe(t, q, context.Background(), "envelopes")
	time.Sleep(100 * time.Millisecond) // let the subscription find the topic empty and sleep
	if _, err := db.Exec(context.Background(), `CREATE TABLE IF NOT EXISTS test_tracker (uuid TEXT PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}

	// A failed transaction leaves neither the tracker row nor the message.
	failed := newMsg("rolled back")
	errBoom := errors.New("boom")
	err := db.Write(context.Background(), func(tx *sql.Tx) error {
		if _, err := tx.Exec(`INSERT INTO test_tracker (uuid) VALUES (?)`, failed.UUID); err != nil {
			return err
		}
		if err := q.InsertTx(tx, "envelopes", failed); err != nil {
			return err
		}
		return errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("Write: %v, want %v", err, errBoom)
	}
	q.Notify("envelopes")
	expectNothing(t, ch, 200*time.Millisecond)
	if n := rowCount(t, db); n != 0 {
		t.Fatalf("%d queue rows after rollback, want 0", n)
	}

	msg := newMsg("committed")
	err = db.Write(context.Background(), func(tx *sql.Tx) error {
		if _, err := tx.Exec(`INSERT INTO test_tracker (uuid) VALUES (?)`, msg.UUID); err != nil {
			return err
		}
		return q.InsertTx(tx, "envelopes", msg)
	})
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	start := time.Now()
	q.Notify("envelopes")
	got := receive(t, ch, 5*time.Second)
	t.Logf("delivered %s after Notify", time.Since(start))
	if got.UUID != msg.UUID {
		t.Fatalf("got %s, want %s", got.UUID, msg.UUID)
	}
	got.Ack()
	var tracked int
	if err := db.Reader().QueryRow(`SELECT COUNT(*) FROM test_tracker`).Scan(&tracked); err != nil || tracked != 1 {
		t.Fatalf("tracker rows = %d (%v), want 1", tracked, err)
	}

	// Publish wakes the subscription the same way.
	start = time.Now()
	publish(t, q, "envelopes", newMsg("published"))
	receive(t, ch, 5*time.Second).Ack()
	t.Logf("delivered %s after Publish", time.Since(start))
	waitRows(t, db, 0)
}

func TestCloseReleasesUnsettled(t *testing.T) {
	db := openDB(t)
	q := newQueue(t, Config{DB: db, Topics: map[string]TopicConfig{"close": {BatchSize: 5}}})
	for i := range 5 {
		publish(t, q, "close", newMsg(fmt.Sprint(i)))
	}
	ch := subscribe(t, q, context.Background(), "close")
	delivered := receive(t, ch, 2*time.Second) // the other four stay claimed, waiting to be sent
	if err := q.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if _, ok := <-ch; ok {
		t.Fatal("message channel still open after Close")
	}
	select {
	case <-delivered.Context().Done():
	default:
		t.Fatal("message context not cancelled by Close")
	}
	if err := q.Publish("close", newMsg("late")); !errors.Is(err, ErrClosed) {
		t.Errorf("Publish after Close: %v, want ErrClosed", err)
	}
	if _, err := q.Subscribe(context.Background(), "close"); !errors.Is(err, ErrClosed) {
		t.Errorf("Subscribe after Close: %v, want ErrClosed", err)
	}
	if err := q.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	delivered.Ack() // too late: ignored

	// All five are available at once to the next Queue (no lease wait, no poll wait); only
	// the one that reached the consumer counts as an attempt.
	next := newQueue(t, Config{DB: db, PollInterval: time.Minute})
	ch = subscribe(t, next, context.Background(), "close")
	for range 5 {
		msg := receive(t, ch, time.Second)
		want := "1"
		if msg.UUID == delivered.UUID {
			want = "2"
		}
		if a := msg.Metadata.Get(AttemptKey); a != want {
			t.Errorf("message %s: attempt %s, want %s", msg.Payload, a, want)
		}
		msg.Ack()
	}
	waitRows(t, db, 0)
}

func TestSubscribeContextCancel(t *testing.T) {
	db := openDB(t)
	q := newQueue(t, Config{DB: db})
	publish(t, q, "cancel", newMsg("a"), newMsg("b"))
	ctx, cancel := context.WithCancel(context.Background())
	ch := subscribe(t, q, ctx, "cancel")
	msg := receive(t, ch, 2*time.Second)
	cancel()
	for range ch { // the channel closes; a message racing the cancel may still arrive
	}
	select {
	case <-msg.Context().Done():
	default:
		t.Fatal("message context not cancelled with the subscription's")
	}
	// A message received before the cancel can still be settled.
	msg.Ack()
	waitRows(t, db, 1)
	ch = subscribe(t, q, context.Background(), "cancel")
	receive(t, ch, 2*time.Second).Ack()
	waitRows(t, db, 0)
}

// TestRouterGracefulClose shows the shutdown the Queue documents for Watermill's Router:
// handlers run concurrently, and Router.Close lets running handlers finish and ack.
func TestRouterGracefulClose(t *testing.T) {
	db := openDB(t)
	q := newQueue(t, Config{DB: db})
	const n = 5
	for i := range n {
		publish(t, q, "router", newMsg(fmt.Sprint(i)))
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	var started sync.WaitGroup
	started.Add(n)
	var handled atomic.Int32
	router.AddConsumerHandler("slow", "router", unclosable{q}, func(msg *message.Message) error {
		started.Done()
		time.Sleep(300 * time.Millisecond)
		handled.Add(1)
		return nil
	})
	go router.Run(context.Background())
	<-router.Running()
	started.Wait() // all n handlers run at once: delivery does not wait for acks
	if err := router.Close(); err != nil {
		t.Fatalf("router close: %v", err)
	}
	if h := handled.Load(); h != n {
		t.Fatalf("%d handlers finished, want %d", h, n)
	}
	waitRows(t, db, 0) // every message acked, none released for redelivery
}

func TestClaimUsesCoveringIndex(t *testing.T) {
	db := openDB(t)
	newQueue(t, Config{DB: db})
	rows, err := db.Reader().Query(`EXPLAIN QUERY PLAN
SELECT id FROM queue_messages WHERE topic = ? AND available_at <= ? AND locked_until <= ? ORDER BY id LIMIT ?`, "t", 0, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	got := strings.Join(plan, "; ")
	t.Logf("claim plan: %s", got)
	if !strings.Contains(got, "COVERING INDEX queue_messages_claim") || strings.Contains(got, "TEMP B-TREE") {
		t.Errorf("claim plan %q: want a covering index scan without sorting", got)
	}
}

// Crash tests: a child process (this test binary re-run as TestCrashHelperProcess) claims a
// message and is killed while holding it, without ack, nack or Close.

const (
	envCrashDB    = "SQLITEQUEUE_CRASH_DB"
	envCrashLease = "SQLITEQUEUE_CRASH_LEASE"
	crashTopic    = "crash"
)

func TestCrashHelperProcess(t *testing.T) {
	path := os.Getenv(envCrashDB)
	if path == "" {
		t.Skip("helper process for the crash tests")
	}
	lease, err := time.ParseDuration(os.Getenv(envCrashLease))
	if err != nil {
		t.Fatal(err)
	}
	db, err := sqlitedb.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	q, err := New(Config{DB: db, LeaseDuration: lease})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := q.Subscribe(context.Background(), crashTopic)
	if err != nil {
		t.Fatal(err)
	}
	msg := <-ch
	fmt.Printf("claimed %s\n", msg.UUID)
	time.Sleep(time.Hour) // killed by the parent
}

// crashHolding publishes one message on db and has a child process claim it with the given
// lease and die holding it. It returns the message's UUID and the lease's expiry.
func crashHolding(t *testing.T, db *sqlitedb.DB, lease time.Duration) (string, time.Time) {
	t.Helper()
	q := newQueue(t, Config{DB: db})
	msg := newMsg("crash")
	publish(t, q, crashTopic, msg)

	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), envCrashDB+"="+db.Path(), envCrashLease+"="+lease.String())
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(out)
	claimed := false
	for lines.Scan() {
		if strings.HasPrefix(lines.Text(), "claimed ") {
			claimed = strings.TrimPrefix(lines.Text(), "claimed ") == msg.UUID
			break
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	if !claimed {
		t.Fatal("child process did not claim the message")
	}
	var lockedUntil, attempts int64
	if err := db.Reader().QueryRow(`SELECT locked_until, attempts FROM queue_messages WHERE uuid = ?`, msg.UUID).Scan(&lockedUntil, &attempts); err != nil {
		t.Fatal(err)
	}
	if attempts != 1 || time.UnixMilli(lockedUntil).Before(time.Now()) {
		t.Fatalf("after crash: attempts %d, locked until %s; want 1 and a live lease", attempts, time.UnixMilli(lockedUntil))
	}
	return msg.UUID, time.UnixMilli(lockedUntil)
}

func TestLeaseExpiryRedeliversAfterCrash(t *testing.T) {
	db := openDB(t)
	uuid, expiry := crashHolding(t, db, time.Second)
	q := newQueue(t, Config{DB: db})
	ch := subscribe(t, q, context.Background(), crashTopic)
	msg := receive(t, ch, time.Until(expiry)+2*time.Second)
	if now := time.Now(); now.Before(expiry) {
		t.Fatalf("redelivered at %s, before the lease expired at %s", now, expiry)
	}
	t.Logf("redelivered %s after the lease expired", time.Since(expiry))
	if msg.UUID != uuid || msg.Metadata.Get(AttemptKey) != "2" {
		t.Fatalf("got %s attempt %s, want %s attempt 2", msg.UUID, msg.Metadata.Get(AttemptKey), uuid)
	}
	msg.Ack()
	waitRows(t, db, 0)
}

func TestReleaseLeasesOnStart(t *testing.T) {
	db := openDB(t)
	uuid, _ := crashHolding(t, db, time.Hour)

	// Without the option the message waits for its lease.
	waiting := newQueue(t, Config{DB: db, PollInterval: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	expectNothing(t, subscribe(t, waiting, ctx, crashTopic), 300*time.Millisecond)
	cancel()

	q := newQueue(t, Config{DB: db, ReleaseLeasesOnStart: true})
	ch := subscribe(t, q, context.Background(), crashTopic)
	msg := receive(t, ch, time.Second)
	if msg.UUID != uuid || msg.Metadata.Get(AttemptKey) != "2" {
		t.Fatalf("got %s attempt %s, want %s attempt 2", msg.UUID, msg.Metadata.Get(AttemptKey), uuid)
	}
	msg.Ack()
	waitRows(t, db, 0)
}

// TestMaxInFlightBytes: a subscription stops claiming once the payloads it holds reach
// MaxInFlightBytes, and claims again as acks and nacks free them.
func TestMaxInFlightBytes(t *testing.T) {
	db := openDB(t)
	q := newQueue(t, Config{DB: db, Topics: map[string]TopicConfig{"big": {BatchSize: 1, MaxInFlight: 100, MaxInFlightBytes: 1000}}})
	for i := range 8 {
		publish(t, q, "big", newMsg(fmt.Sprintf("%d%s", i, strings.Repeat("x", 399))))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := subscribe(t, q, ctx, "big")
	// 400 and 800 bytes are under the bound, so a third claim takes it to 1,200: no fourth.
	var held []*message.Message
	for range 3 {
		held = append(held, receive(t, ch, 2*time.Second))
	}
	expectNothing(t, ch, 300*time.Millisecond)
	held[0].Ack() // 800 bytes held: one more
	held = append(held[1:], receive(t, ch, 2*time.Second))
	expectNothing(t, ch, 300*time.Millisecond)
	held[0].Nack() // its bytes are freed too (it comes back after its backoff)
	held = append(held[1:], receive(t, ch, 2*time.Second))
	expectNothing(t, ch, 300*time.Millisecond)
	for _, m := range held {
		m.Ack()
	}
	// The three unseen and the nacked one arrive as the acks free their bytes.
	for range 4 {
		receive(t, ch, 3*time.Second).Ack()
	}
	waitRows(t, db, 0)
}

func TestNewValidatesConfig(t *testing.T) {
	db := openDB(t)
	for name, cfg := range map[string]Config{
		"no DB":          {},
		"negative poll":  {DB: db, PollInterval: -time.Second},
		"tiny lease":     {DB: db, LeaseDuration: time.Millisecond},
		"negative batch": {DB: db, Topics: map[string]TopicConfig{"t": {BatchSize: -1}}},
		"negative bytes": {DB: db, Topics: map[string]TopicConfig{"t": {MaxInFlightBytes: -1}}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

// TestAckTx: a message acked inside the consumer's own transaction is gone when that
// transaction commits, is kept when it rolls back, and the later Ack costs nothing extra.
func TestAckTx(t *testing.T) {
	db := openDB(t)
	q := newQueue(t, Config{DB: db, Backoff: func(int) time.Duration { return 0 }})
	ch := subscribe(t, q, context.Background(), "t")
	publish(t, q, "t", newMsg("one"))

	msg := receive(t, ch, 5*time.Second)
	errBoom := errors.New("boom")
	err := db.Write(context.Background(), func(tx *sql.Tx) error {
		if err := q.AckTx(tx, msg); err != nil {
			return err
		}
		return errBoom // rolled back with the caller's work
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("Write: %v", err)
	}
	msg.Nack()
	again := receive(t, ch, 5*time.Second)
	if again.Metadata.Get(AttemptKey) != "2" {
		t.Fatalf("redelivery attempt = %s", again.Metadata.Get(AttemptKey))
	}
	if err := db.Write(context.Background(), func(tx *sql.Tx) error { return q.AckTx(tx, again) }); err != nil {
		t.Fatal(err)
	}
	if n := rowCount(t, db); n != 0 {
		t.Fatalf("%d rows after a committed AckTx, want 0", n)
	}
	again.Ack()
	expectNothing(t, ch, 200*time.Millisecond)

	if err := db.Write(context.Background(), func(tx *sql.Tx) error { return q.AckTx(tx, newMsg("stranger")) }); err == nil {
		t.Fatal("AckTx accepted a message the queue never delivered")
	}
}

// TestAckLeavesNoPayloadRows: whether a message had no payload (no row), an empty one or a
// real one, and whether it is acked in a transaction or after the handler, acking it leaves
// neither its row nor a payload row behind (the ack skips the payload delete only for messages
// read back without one).
func TestAckLeavesNoPayloadRows(t *testing.T) {
	db := openDB(t)
	q := newQueue(t, Config{DB: db})
	payloads := map[string][]byte{"none": nil, "empty": {}, "some": []byte("x")}
	for _, inTx := range []bool{false, true} {
		ch := subscribe(t, q, context.Background(), fmt.Sprint("t", inTx))
		for name, p := range payloads {
			m := message.NewMessage(watermill.NewUUID(), p)
			m.Metadata.Set("name", name)
			publish(t, q, fmt.Sprint("t", inTx), m)
		}
		for range payloads {
			msg := receive(t, ch, 5*time.Second)
			if want := payloads[msg.Metadata.Get("name")]; (msg.Payload == nil) != (want == nil) || !bytes.Equal(msg.Payload, want) {
				t.Fatalf("%s: payload %q (nil %v)", msg.Metadata.Get("name"), msg.Payload, msg.Payload == nil)
			}
			if inTx {
				if err := db.Write(context.Background(), func(tx *sql.Tx) error { return q.AckTx(tx, msg) }); err != nil {
					t.Fatal(err)
				}
			}
			msg.Ack()
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		var msgs, rows int
		if err := db.Reader().QueryRow(`SELECT (SELECT COUNT(*) FROM queue_messages), (SELECT COUNT(*) FROM queue_payloads)`).Scan(&msgs, &rows); err != nil {
			t.Fatal(err)
		}
		if msgs == 0 && rows == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d messages and %d payload rows left after acking every message", msgs, rows)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
