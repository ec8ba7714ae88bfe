package sqlitequeue

import (
"path/filepath"
"sync"
"testing"
"github.com/ThreeDotsLabs/watermill"
"github.com/ThreeDotsLabs/watermill/message"
"github.com/ThreeDotsLabs/watermill/pubsub/tests"
"github.com/opengw/gateway/internal/sqlitedb"
)
func TestScratchStress(t *testing.T) {
	var (
		mu  sync.Mutex
		dbs = map[*testing.T]*sqlitedb.DB{}
	)
	constructor := func(t *testing.T) (message.Publisher, message.Subscriber) {
		mu.Lock()
		db, ok := dbs[t]
		if !ok {
			var err error
			db, err = sqlitedb.Open(filepath.Join(t.TempDir(), "queue.db"))
			if err != nil {
				mu.Unlock()
				t.Fatalf("open database: %v", err)
			}
			dbs[t] = db
			// Registered before any Queue's cleanup, so it runs after all of them.
			t.Cleanup(func() {
				if err := db.Close(); err != nil {
					t.Errorf("close database: %v", err)
				}
			})
		}
		mu.Unlock()
		q, err := New(Config{DB: db, Logger: watermill.NewStdLogger(false, false)})
		if err != nil {
			t.Fatalf("new queue: %v", err)
		}
		t.Cleanup(func() { q.Close() })
		return unclosable{q}, q
	}
	tests.TestPubSubStressTest(t, tests.Features{
		ConsumerGroups:      false, // every subscriber of a topic competes for its messages
		ExactlyOnceDelivery: false, // at-least-once: an expired lease or failed ack redelivers
		GuaranteedOrder:     false, // messages are delivered without waiting for earlier acks
		Persistent:          true,
	}, constructor, nil)
}
