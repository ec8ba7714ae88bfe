package pgstore

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/opengw/gateway/internal/store"
	"github.com/opengw/gateway/tracker"
)

// BenchmarkProjection measures the pipeline's tracker writes per record on PostgreSQL, as
// tracker.BenchmarkProjection does on SQLite: each 10,000-record request is accepted, then
// recorded, claimed and finished in fragments of 1,000 (each step its own Update; 1% of the
// records end Invalid with an error), by one worker and by several concurrent ones. Record
// ids are random, as partners send them.
func BenchmarkProjection(b *testing.B) {
	for _, workers := range []int{1, 4} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			s, _ := openStore(b, time.Now)
			const recordsPerRequest, fragment = 10_000, 1_000
			var next atomic.Int64
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for n := next.Add(1) - 1; n < int64(b.N); n = next.Add(1) - 1 {
						if err := projectRequest(s, uuid.NewString(), recordsPerRequest, fragment); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N*recordsPerRequest)/time.Since(start).Seconds(), "records/s")
		})
	}
}

// projectRequest does what the pipeline does to the tracker for one request.
func projectRequest(s *Store, id string, total, fragment int) error {
	ctx := context.Background()
	update := func(fn func(w tracker.Writer) error) error {
		return s.Update(ctx, func(tx store.Tx) error { return fn(tx.Tracker()) })
	}
	if err := update(func(w tracker.Writer) error {
		return w.Accept(tracker.Request{ID: id, ClientID: "demo", Format: "activity", ReceivedAt: time.Now(), Total: total})
	}); err != nil {
		return err
	}
	for off := 0; off < total; off += fragment {
		msgs := make([]tracker.NewMessage, fragment)
		var invalid []tracker.Result
		var valid []int
		for i := range msgs {
			msgs[i] = tracker.NewMessage{Index: off + i, ExternalReference: uuid.NewString(), Type: "call"}
			if i%100 == 42 {
				invalid = append(invalid, tracker.Result{Index: off + i, Status: tracker.Invalid, Errors: []string{"type must be call or quote"}, MappingVersion: "v1"})
			} else {
				valid = append(valid, off+i)
			}
		}
		if err := update(func(w tracker.Writer) error { _, err := w.AddMessages(id, msgs); return err }); err != nil {
			return err
		}
		var claimed []int
		if err := update(func(w tracker.Writer) error {
			if _, err := w.Finish(id, invalid); err != nil {
				return err
			}
			var err error
			claimed, err = w.Claim(id, valid)
			return err
		}); err != nil {
			return err
		}
		if len(claimed) != len(valid) {
			return fmt.Errorf("claimed %d of %d", len(claimed), len(valid))
		}
		done := make([]tracker.Result, len(claimed))
		for i, idx := range claimed {
			done[i] = tracker.Result{Index: idx, Status: tracker.Complete, MappingVersion: "v1"}
		}
		if err := update(func(w tracker.Writer) error { _, err := w.Finish(id, done); return err }); err != nil {
			return err
		}
	}
	return nil
}
