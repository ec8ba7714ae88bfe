// Package storetest is the suite every store.Store backend passes, so that the backends keep
// one behaviour: the tracker (every search of seed 002 as tracker.Filter defines it, summaries
// and counts, idempotent compare-and-set transitions, cancel, client scoping) and intake
// (idempotency keys, the durable sequence, the atomicity of a unit of work with the queue).
//
// A backend's test runs it with the backend's constructor:
//
//	storetest.Run(t, storetest.Backend{Open: ..., Reopen: ..., DetectsInFlight: true})
//
// The suite only uses store.Store: writes through Update and tx.Tracker(), searches and
// cancels through Tracker(). Times it writes are whole microseconds, the precision every
// backend must keep.
package storetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/opengw/gateway/internal/store"
	"github.com/opengw/gateway/tracker"
)

// Backend describes the store under test.
type Backend struct {
	// Open returns a store on a fresh, empty database. Its tracker takes processed and
	// cancelled times from now. The test owns the store (Open may register its Close with
	// t.Cleanup; Close is idempotent).
	Open func(t *testing.T, now func() time.Time) store.Store
	// Reopen closes s and opens the same database again, as a restarted node would. nil: the
	// checks of what survives a restart are reported as not run (t.Log) and skipped.
	Reopen func(t *testing.T, s store.Store, now func() time.Time) store.Store
	// DetectsInFlight says that while a transaction holding an Idempotency-Key is not yet
	// committed, another transaction using the same key fails with
	// store.ErrIdempotencyInFlight instead of waiting for it (a backend with one writer
	// waits, and then sees the committed key).
	DetectsInFlight bool
}

// Run runs the tracker and intake suites.
func Run(t *testing.T, b Backend) {
	t.Run("Tracker", func(t *testing.T) { RunTracker(t, b) })
	t.Run("Intake", func(t *testing.T) { RunIntake(t, b) })
	t.Run("Outcomes", func(t *testing.T) { RunOutcomes(t, b) })
}

// clock is a settable clock handed to Backend.Open.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// harness is a store under test with helpers that fail the test on error.
type harness struct {
	t     *testing.T
	s     store.Store
	clock *clock
	ctx   context.Context
}

func open(t *testing.T, b Backend) *harness {
	t.Helper()
	c := newClock()
	return &harness{t: t, s: b.Open(t, c.Now), clock: c, ctx: context.Background()}
}

// write runs fn on the tracker writer of one Update.
func (h *harness) write(fn func(w tracker.Writer) error) error {
	return h.s.Update(h.ctx, func(tx store.Tx) error { return fn(tx.Tracker()) })
}

func (h *harness) must(err error) {
	h.t.Helper()
	if err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) accept(r tracker.Request) {
	h.t.Helper()
	h.must(h.write(func(w tracker.Writer) error { return w.Accept(r) }))
}

func (h *harness) add(id string, msgs []tracker.NewMessage) (cancelled bool) {
	h.t.Helper()
	h.must(h.write(func(w tracker.Writer) error {
		var err error
		cancelled, err = w.AddMessages(id, msgs)
		return err
	}))
	return cancelled
}

func (h *harness) claim(id string, idx []int) []int {
	h.t.Helper()
	var got []int
	h.must(h.write(func(w tracker.Writer) error {
		var err error
		got, err = w.Claim(id, idx)
		return err
	}))
	return got
}

func (h *harness) finish(id string, results []tracker.Result) *tracker.Completion {
	h.t.Helper()
	var completed *tracker.Completion
	h.must(h.write(func(w tracker.Writer) error {
		var err error
		completed, err = w.Finish(id, results)
		return err
	}))
	return completed
}

func (h *harness) find(client string, f tracker.Filter) tracker.Page {
	h.t.Helper()
	p, err := h.s.Tracker().Find(h.ctx, client, f)
	if err != nil {
		h.t.Fatalf("find %+v: %v", f, err)
	}
	return p
}

// view finds request id of client by id; it must be there.
func (h *harness) view(client, id string) tracker.RequestView {
	h.t.Helper()
	p := h.find(client, tracker.Filter{RequestIDs: []string{id}})
	if len(p.Requests) != 1 {
		h.t.Fatalf("search by id %s: %d requests", id, len(p.Requests))
	}
	return p.Requests[0]
}
