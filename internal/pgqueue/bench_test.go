package pgqueue

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/opengw/gateway/internal/pgtest"
)

// BenchmarkConsume measures how fast 1 and 3 Queue instances ("nodes", each with its own
// connection pool and one consumer) drain b.N messages from one topic, each handler ack taking
// `work` (a sink's round trip; sleeping, so that 2 cores do not cap the parallelism being
// measured). "stock" is watermill-sql's own PostgreSQLQueueSchema and offsets adapter (FOR
// UPDATE without SKIP LOCKED) with the same batch size, for comparison. Run with a fixed count,
// e.g. go test -run '^$' -bench Consume -benchtime 2000x ./internal/pgqueue/
func BenchmarkConsume(b *testing.B) {
	for _, work := range []time.Duration{0, time.Millisecond} {
		for _, nodes := range []int{1, 3} {
			b.Run(fmt.Sprintf("work=%s/pgqueue/nodes=%d", work, nodes), func(b *testing.B) {
				benchConsume(b, nodes, work, pgqueueBackend)
			})
		}
		b.Run(fmt.Sprintf("work=%s/stock/nodes=3", work), func(b *testing.B) {
			benchConsume(b, 3, work, stockBackend)
		})
	}
}

const benchTopic = "deliver.bench"
const benchBatch = 10

// backend is a queue implementation under measurement.
type backend struct {
	// node starts one consumer on db and returns its channel and a stop func.
	node func(b *testing.B, db *sql.DB) (<-chan *message.Message, func())
	// publisher publishes on db.
	publisher func(db *sql.DB) (message.Publisher, error)
}

func benchConsume(b *testing.B, nodes int, work time.Duration, be backend) {
	dsn := pgtest.New(b)
	msgs := make([]*message.Message, b.N)
	for i := range msgs {
		msgs[i] = message.NewMessage(watermill.NewUUID(), fmt.Appendf(nil, `{"i":%d}`, i))
	}
	dbs := make([]*sql.DB, nodes)
	for i := range dbs {
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { db.Close() })
		dbs[i] = db
	}
	chs := make([]<-chan *message.Message, nodes)
	stops := make([]func(), nodes)
	for i := range nodes {
		chs[i], stops[i] = be.node(b, dbs[i]) // subscribed first: stock needs its table to publish
	}
	b.Cleanup(func() {
		for _, stop := range stops {
			stop()
		}
	})
	pub, err := be.publisher(dbs[0])
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < len(msgs); i += 1000 {
		if err := pub.Publish(benchTopic, msgs[i:min(i+1000, len(msgs))]...); err != nil {
			b.Fatal(err)
		}
	}
	pub.Close()

	b.ResetTimer()
	began := time.Now()
	var (
		acked atomic.Int64
		seen  sync.Map
		dups  atomic.Int64
		done  = make(chan struct{})
		once  sync.Once
		wg    sync.WaitGroup
	)
	per := make([]atomic.Int64, nodes)
	for i, ch := range chs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case m := <-ch:
					if work > 0 {
						time.Sleep(work)
					}
					if _, dup := seen.LoadOrStore(m.UUID, true); dup {
						dups.Add(1)
					}
					m.Ack()
					per[i].Add(1)
					if acked.Add(1) == int64(b.N) {
						once.Do(func() { close(done) })
					}
				case <-done:
					return
				case <-time.After(time.Minute):
					b.Errorf("node %d: no message for a minute (%d of %d acked)", i, acked.Load(), b.N)
					once.Do(func() { close(done) })
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(began)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(0, "ns/op")
	if dups.Load() > 0 {
		b.Errorf("%d messages delivered twice", dups.Load())
	}
	counts := make([]int64, nodes)
	for i := range per {
		counts[i] = per[i].Load()
	}
	b.Logf("N=%d nodes=%d work=%s: %.0f msgs/s, per node %v", b.N, nodes, work, float64(b.N)/elapsed.Seconds(), counts)
}

var pgqueueBackend = backend{node: pgqueueNode, publisher: func(db *sql.DB) (message.Publisher, error) { return New(Config{DB: db}) }}

func pgqueueNode(b *testing.B, db *sql.DB) (<-chan *message.Message, func()) {
	q, err := New(Config{DB: db, Topics: map[string]TopicConfig{benchTopic: {BatchSize: benchBatch, MaxInFlight: 1}}})
	if err != nil {
		b.Fatal(err)
	}
	ch, err := q.Subscribe(context.Background(), benchTopic)
	if err != nil {
		b.Fatal(err)
	}
	return ch, func() { q.Close() }
}

var stockBackend = backend{node: stockNode, publisher: func(db *sql.DB) (message.Publisher, error) {
	return wmsql.NewPublisher(wmsql.BeginnerFromStdSQL(db), wmsql.PublisherConfig{SchemaAdapter: stockSchema()}, nil)
}}

func stockSchema() wmsql.PostgreSQLQueueSchema {
	return wmsql.PostgreSQLQueueSchema{SubscribeBatchSize: benchBatch}
}

func stockNode(b *testing.B, db *sql.DB) (<-chan *message.Message, func()) {
	sub, err := wmsql.NewSubscriber(wmsql.BeginnerFromStdSQL(db), wmsql.SubscriberConfig{
		SchemaAdapter:    stockSchema(),
		OffsetsAdapter:   wmsql.PostgreSQLQueueOffsetsAdapter{DeleteOnAck: true},
		InitializeSchema: true,
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
	ch, err := sub.Subscribe(context.Background(), benchTopic)
	if err != nil {
		b.Fatal(err)
	}
	return ch, func() { sub.Close() }
}
