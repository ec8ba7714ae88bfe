package sqlitequeue

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
)

// record is a payload the size of one typical JSON record.
var record = []byte(`{"id":"7f9c2ba4-e88f-11e8-9f32-f2801f1b9fd1","type":"order.created","customer":"C-004211",` +
	`"amount":{"value":"129.90","currency":"EUR"},"lines":3,"created_at":"2024-05-14T09:21:07Z"}`)

// BenchmarkPublishConsume publishes b.N single-message Publish calls from concurrent publishers
// while one consumer acks every message; the clock stops once every ack is committed (Close).
// msgs/s is end-to-end throughput. With 32 publishers, concurrent publishes and acks share
// commits (group commit); publishers=1 shows the cost of one fsync'd commit per publish.
func BenchmarkPublishConsume(b *testing.B) {
	for _, publishers := range []int{1, 32} {
		b.Run(fmt.Sprintf("publishers=%d", publishers), func(b *testing.B) {
			db := openDB(b)
			q := newQueue(b, Config{DB: db})
			ch := subscribe(b, q, context.Background(), "bench")
			b.SetBytes(int64(len(record)))
			b.ResetTimer()
			start := time.Now()

			var (
				wg      sync.WaitGroup
				next    atomic.Int64
				pubErr  atomic.Value
				pubDone = make(chan time.Time, 1)
			)
			for range publishers {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						if err := q.Publish("bench", message.NewMessage(watermill.NewUUID(), record)); err != nil {
							pubErr.Store(err)
							return
						}
					}
				})
			}
			go func() {
				wg.Wait()
				pubDone <- time.Now()
			}()
			for range b.N {
				select {
				case msg := <-ch:
					msg.Ack()
				case <-time.After(30 * time.Second):
					b.Fatalf("consumer stalled (publish error: %v)", pubErr.Load())
				}
			}
			pubEnded := <-pubDone
			q.Close() // waits until the last ack is committed
			elapsed := time.Since(start)
			b.StopTimer()

			if err := pubErr.Load(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
			b.ReportMetric(float64(b.N)/pubEnded.Sub(start).Seconds(), "publishes/s")
			if n := rowCount(b, db); n != 0 {
				b.Fatalf("%d rows left after consuming everything", n)
			}
		})
	}
}
