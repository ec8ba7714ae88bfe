package pgqueue

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/jackc/pgx/v5/stdlib"
)

// hub is what the Queues on one *sql.DB share: one connection in LISTEN on notifyChannel,
// which wakes the consumers of the topic each notification names, and the set of topic tables
// known to exist. Every publish (PublishTx) notifies in its own transaction, so consumers on
// every node see a message as soon as it is committed instead of at their next poll.
type hub struct {
	db     *sql.DB
	logger watermill.LoggerAdapter
	refs   int // guarded by hubs.mu
	cancel context.CancelFunc
	done   chan struct{}

	// tables holds the topics whose table was ensured, so that a Queue needs no connection to
	// subscribe to a topic another Queue on the same database created (consumers hold
	// connections while they wait for the subscriber to take a message).
	tables sync.Map

	mu     sync.Mutex
	topics map[string]*signal
}

// signal is a topic's wake-up: gen counts notifications, ch is closed (and replaced) at each.
type signal struct {
	gen uint64
	ch  chan struct{}
}

var hubs = struct {
	mu sync.Mutex
	m  map[*sql.DB]*hub
}{m: map[*sql.DB]*hub{}}

// acquireHub returns db's hub, starting its listener if it is the first user.
func acquireHub(db *sql.DB, logger watermill.LoggerAdapter) *hub {
	hubs.mu.Lock()
	defer hubs.mu.Unlock()
	l := hubs.m[db]
	if l == nil {
		ctx, cancel := context.WithCancel(context.Background())
		l = &hub{db: db, logger: logger, cancel: cancel, done: make(chan struct{}), topics: map[string]*signal{}}
		hubs.m[db] = l
		go l.run(ctx)
	}
	l.refs++
	return l
}

// release stops the listener when the hub's last user releases it, and waits for that.
func (l *hub) release() {
	hubs.mu.Lock()
	l.refs--
	last := l.refs == 0
	if last {
		delete(hubs.m, l.db)
	}
	hubs.mu.Unlock()
	if last {
		l.cancel()
		<-l.done
	}
}

// generation is topic's notification count; pass it to wakeup to wait for the next one.
func (l *hub) generation(topic string) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.signal(topic).gen
}

// wakeup returns a channel closed by the first notification of topic after generation seen
// (already closed if there was one).
func (l *hub) wakeup(topic string, seen uint64) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.signal(topic)
	if s.gen != seen {
		return closed
	}
	return s.ch
}

var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (l *hub) signal(topic string) *signal {
	s := l.topics[topic]
	if s == nil {
		s = &signal{ch: make(chan struct{})}
		l.topics[topic] = s
	}
	return s
}

// wake wakes topic's waiters, or every topic's when all is true.
func (l *hub) wake(topic string, all bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for t, s := range l.topics {
		if all || t == topic {
			s.gen++
			close(s.ch)
			s.ch = make(chan struct{})
		}
	}
}

// run listens until ctx is cancelled, reconnecting after a failure.
func (l *hub) run(ctx context.Context) {
	defer close(l.done)
	for {
		err := l.listen(ctx)
		if ctx.Err() != nil {
			return
		}
		l.logger.Error("LISTEN connection failed; consumers fall back to polling until it is back", err, nil)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// listen takes a connection of the pool, LISTENs on it and dispatches notifications until ctx is
// cancelled or the connection fails. The connection is then discarded rather than returned to
// the pool still listening.
func (l *hub) listen(ctx context.Context) error {
	conn, err := l.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("get a connection to listen on: %w", err)
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("listen: connection is a %T, not pgx's stdlib.Conn", dc)
		}
		pc := sc.Conn()
		if _, err := pc.Exec(ctx, `LISTEN `+notifyChannel); err != nil {
			return errors.Join(fmt.Errorf("listen: %w", err), driver.ErrBadConn)
		}
		// Whatever was published while nobody listened is found by the consumers' next query.
		l.wake("", true)
		for {
			n, err := pc.WaitForNotification(ctx)
			if err != nil {
				return errors.Join(fmt.Errorf("wait for notification: %w", err), driver.ErrBadConn)
			}
			l.wake(n.Payload, false)
		}
	})
	return err
}
