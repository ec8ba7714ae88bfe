package pgqueue

import (
	"database/sql"
	"sync"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"

	"github.com/opengw/gateway/internal/pgtest"
)

// unclosable is a Queue handed to code that closes what it is given but does not own the
// Queue: the suite closes a constructor's publisher as soon as it only needs the subscriber,
// and both are the same Queue.
type unclosable struct{ *Queue }

func (unclosable) Close() error { return nil }

// TestPubSub runs Watermill's universal Pub/Sub suite. Every constructor call within one test
// returns a new Queue on that test's fresh database, so the persistence tests see one store
// through several instances, as several nodes or restarts would. Closing the subscriber closes
// the Queue.
func TestPubSub(t *testing.T) {
	var (
		mu  sync.Mutex
		dbs = map[*testing.T]*sql.DB{}
	)
	constructor := func(t *testing.T) (message.Publisher, message.Subscriber) {
		mu.Lock()
		db, ok := dbs[t]
		if !ok {
			db, _ = pgtest.Open(t)
			// TestConcurrentSubscribe runs 50 Queues on one database; the server is shared.
			db.SetMaxOpenConns(16)
			dbs[t] = db
		}
		mu.Unlock()
		q, err := New(Config{DB: db, Logger: watermill.NewStdLogger(false, false)})
		if err != nil {
			t.Fatalf("new queue: %v", err)
		}
		t.Cleanup(func() { q.Close() })
		return unclosable{q}, q
	}
	tests.TestPubSub(t, tests.Features{
		ConsumerGroups:      false, // every subscriber of a topic competes for its messages
		ExactlyOnceDelivery: false, // at-least-once: a rolled-back batch is delivered again
		GuaranteedOrder:     false, // consumers handle batches in parallel; nacked messages come back later
		Persistent:          true,
	}, constructor, nil)
}
