package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/opengw/gateway/internal/store"
	"github.com/opengw/gateway/tracker"
)

// RunIntake runs the intake suite: idempotency keys, the durable sequence, and the atomicity
// of a unit of work (tracker row, key, sequence step and queued message commit together or
// not at all). It needs the store's Queue (Tx.Publish and Queue().Depth).
func RunIntake(t *testing.T, b Backend) {
	for _, c := range []struct {
		name string
		fn   func(t *testing.T, b Backend)
	}{
		{"IdempotencyScoped", testIdempotencyScoped},
		{"IdempotencyExpiry", testIdempotencyExpiry},
		{"IdempotencyInFlight", testIdempotencyInFlight},
		{"Sequence", testSequence},
		{"Atomicity", testAtomicity},
	} {
		t.Run(c.name, func(t *testing.T) { c.fn(t, b) })
	}
}

// keyTime is when the suite's keys are remembered (whole seconds: every backend keeps them).
var keyTime = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

func (h *harness) lookup(client, endpoint, key string, since time.Time) (store.Idempotent, bool) {
	h.t.Helper()
	var (
		rec   store.Idempotent
		found bool
	)
	h.must(h.s.Update(h.ctx, func(tx store.Tx) error {
		var err error
		rec, found, err = tx.Idempotency(client, endpoint, key, since)
		return err
	}))
	return rec, found
}

func (h *harness) remember(rec store.Idempotent) {
	h.t.Helper()
	h.must(h.s.Update(h.ctx, func(tx store.Tx) error { return tx.RememberIdempotency(rec) }))
}

func (h *harness) next(name string) int64 {
	h.t.Helper()
	var n int64
	h.must(h.s.Update(h.ctx, func(tx store.Tx) error {
		var err error
		n, err = tx.NextSequence(name)
		return err
	}))
	return n
}

func sameKey(a, b store.Idempotent) bool {
	return a.ClientID == b.ClientID && a.Endpoint == b.Endpoint && a.Key == b.Key && a.BodyHash == b.BodyHash &&
		a.RequestID == b.RequestID && a.Sequence == b.Sequence && a.CreatedAt.Equal(b.CreatedAt)
}

func testIdempotencyScoped(t *testing.T, b Backend) {
	h := open(t, b)
	since := keyTime.Add(-24 * time.Hour)
	push := store.Idempotent{ClientID: "demo", Endpoint: "push", Key: "k1", BodyHash: "aa", RequestID: "req-push", CreatedAt: keyTime}
	if _, found := h.lookup("demo", "push", "k1", since); found {
		t.Fatal("found a key never remembered")
	}
	h.remember(push)
	if got, found := h.lookup("demo", "push", "k1", since); !found || !sameKey(got, push) {
		t.Fatalf("lookup: %v %+v, want %+v", found, got, push)
	}
	for _, k := range [][3]string{{"other", "push", "k1"}, {"demo", "events", "k1"}, {"demo", "push", "k2"}, {"demo", "push", "K1"}} {
		if got, found := h.lookup(k[0], k[1], k[2], since); found {
			t.Fatalf("%v found %+v", k, got)
		}
	}
	// The same key for another client and another endpoint are separate keys.
	other := store.Idempotent{ClientID: "other", Endpoint: "push", Key: "k1", BodyHash: "bb", RequestID: "req-other", CreatedAt: keyTime}
	events := store.Idempotent{ClientID: "demo", Endpoint: "events", Key: "k1", BodyHash: "cc", RequestID: "req-events", Sequence: 7, CreatedAt: keyTime}
	h.remember(other)
	h.remember(events)
	for _, want := range []store.Idempotent{push, other, events} {
		if got, found := h.lookup(want.ClientID, want.Endpoint, want.Key, since); !found || !sameKey(got, want) {
			t.Fatalf("lookup %s/%s/%s: %v %+v, want %+v", want.ClientID, want.Endpoint, want.Key, found, got, want)
		}
	}
}

func testIdempotencyExpiry(t *testing.T, b Backend) {
	h := open(t, b)
	old := store.Idempotent{ClientID: "demo", Endpoint: "push", Key: "k", BodyHash: "aa", RequestID: "old", CreatedAt: keyTime}
	h.remember(old)
	if _, found := h.lookup("demo", "push", "k", keyTime.Add(-time.Second)); !found {
		t.Fatal("a key remembered after since was not found")
	}
	if _, found := h.lookup("demo", "push", "k", keyTime.Add(time.Second)); found {
		t.Fatal("a key remembered before since was found")
	}
	// Expired, the key can be used again: the new receipt replaces the old.
	later := keyTime.Add(25 * time.Hour)
	renewed := store.Idempotent{ClientID: "demo", Endpoint: "push", Key: "k", BodyHash: "bb", RequestID: "new", CreatedAt: later}
	h.must(h.s.Update(h.ctx, func(tx store.Tx) error {
		if _, found, err := tx.Idempotency("demo", "push", "k", later.Add(-24*time.Hour)); err != nil || found {
			return fmt.Errorf("expired key: found %v, err %v", found, err)
		}
		return tx.RememberIdempotency(renewed)
	}))
	if got, found := h.lookup("demo", "push", "k", later.Add(-24*time.Hour)); !found || !sameKey(got, renewed) {
		t.Fatalf("renewed key: %v %+v", found, got)
	}
	// Purging forgets the keys remembered before the cut, and only those.
	kept := store.Idempotent{ClientID: "demo", Endpoint: "push", Key: "kept", BodyHash: "cc", RequestID: "kept", CreatedAt: later.Add(2 * time.Hour)}
	h.remember(kept)
	h.must(h.s.PurgeIdempotencyKeys(h.ctx, later.Add(time.Hour)))
	if _, found := h.lookup("demo", "push", "k", time.Time{}); found {
		t.Fatal("a purged key was found")
	}
	if got, found := h.lookup("demo", "push", "kept", time.Time{}); !found || !sameKey(got, kept) {
		t.Fatalf("a key remembered after the cut was purged: %v %+v", found, got)
	}
}

// testIdempotencyInFlight: while one transaction holding a key is uncommitted, another using
// the same key gets ErrIdempotencyInFlight (or, on a backend that cannot tell, waits and then
// replays the committed receipt); once committed, the key replays.
func testIdempotencyInFlight(t *testing.T, b Backend) {
	h := open(t, b)
	since := keyTime.Add(-24 * time.Hour)
	first := store.Idempotent{ClientID: "demo", Endpoint: "push", Key: "k", BodyHash: "aa", RequestID: "first", CreatedAt: keyTime}
	var heldOnce sync.Once
	held, release, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		done <- h.s.Update(h.ctx, func(tx store.Tx) error {
			if _, found, err := tx.Idempotency("demo", "push", "k", since); err != nil || found {
				return fmt.Errorf("first lookup: found %v, err %v", found, err)
			}
			if err := tx.RememberIdempotency(first); err != nil {
				return err
			}
			heldOnce.Do(func() { close(held) })
			<-release
			return nil
		})
	}()
	select {
	case <-held:
	case err := <-done:
		t.Fatalf("first transaction ended early: %v", err)
	}
	// use runs what intake does with key k for client c: replay a remembered receipt, or
	// remember a new one. Its context ends after a minute, so that a backend that waits for
	// the first transaction where it claims to detect it fails instead of hanging.
	use := func(c, endpoint string) (store.Idempotent, bool, error) {
		var (
			rec    store.Idempotent
			replay bool
		)
		ctx, cancel := context.WithTimeout(h.ctx, time.Minute)
		defer cancel()
		err := h.s.Update(ctx, func(tx store.Tx) error {
			var err error
			if rec, replay, err = tx.Idempotency(c, endpoint, "k", since); err != nil || replay {
				return err
			}
			rec = store.Idempotent{ClientID: c, Endpoint: endpoint, Key: "k", BodyHash: "aa", RequestID: "second", CreatedAt: keyTime}
			return tx.RememberIdempotency(rec)
		})
		return rec, replay, err
	}
	if b.DetectsInFlight {
		if _, _, err := use("demo", "push"); !errors.Is(err, store.ErrIdempotencyInFlight) {
			t.Fatalf("same key while the first is uncommitted: %v, want ErrIdempotencyInFlight", err)
		}
		// Other clients and endpoints are other keys: not held.
		for _, k := range [][2]string{{"other", "push"}, {"demo", "events"}} {
			if _, replay, err := use(k[0], k[1]); err != nil || replay {
				t.Fatalf("key of %v while demo/push holds k: replay %v, err %v", k, replay, err)
			}
		}
		close(release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	} else {
		type result struct {
			rec    store.Idempotent
			replay bool
			err    error
		}
		second := make(chan result, 1)
		go func() {
			rec, replay, err := use("demo", "push")
			second <- result{rec, replay, err}
		}()
		close(release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if r := <-second; r.err != nil || !r.replay || !sameKey(r.rec, first) {
			t.Fatalf("same key after waiting: %+v, want a replay of %+v", r, first)
		}
	}
	if rec, replay, err := use("demo", "push"); err != nil || !replay || !sameKey(rec, first) {
		t.Fatalf("same key once committed: replay %v %+v %v, want %+v", replay, rec, err, first)
	}
}

func testSequence(t *testing.T, b Backend) {
	h := open(t, b)
	for want := int64(1); want <= 3; want++ {
		if got := h.next("events"); got != want {
			t.Fatalf("events: %d, want %d", got, want)
		}
	}
	if got := h.next("other"); got != 1 {
		t.Fatalf("a second sequence starts at %d", got)
	}
	// A failed Update takes no step.
	boom := errors.New("boom")
	err := h.s.Update(h.ctx, func(tx store.Tx) error {
		if n, err := tx.NextSequence("events"); err != nil || n != 4 {
			return fmt.Errorf("inside: %d %v", n, err)
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	// Two steps in one Update; then concurrent Updates never share a value nor leave a gap.
	h.must(h.s.Update(h.ctx, func(tx store.Tx) error {
		for want := int64(4); want <= 5; want++ {
			if n, err := tx.NextSequence("events"); err != nil || n != want {
				return fmt.Errorf("events in one Update: %d %v, want %d", n, err, want)
			}
		}
		return nil
	}))
	var (
		mu  sync.Mutex
		got []int64
		wg  sync.WaitGroup
	)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				var n int64
				err := h.s.Update(h.ctx, func(tx store.Tx) error {
					var err error
					n, err = tx.NextSequence("events")
					return err
				})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				got = append(got, n)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	slices.Sort(got)
	var want []int64
	for n := int64(6); n <= 25; n++ {
		want = append(want, n)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("concurrent steps: %v", got)
	}
	if b.Reopen == nil {
		t.Log("not run: the sequence and keys surviving a restart (Backend.Reopen is nil)")
		return
	}
	key := store.Idempotent{ClientID: "demo", Endpoint: "events", Key: "k", BodyHash: "aa", RequestID: "r", Sequence: 25, CreatedAt: keyTime}
	h.remember(key)
	h.s = b.Reopen(t, h.s, h.clock.Now)
	if got := h.next("events"); got != 26 {
		t.Fatalf("after a restart: %d, want 26", got)
	}
	if got, found := h.lookup("demo", "events", "k", keyTime.Add(-time.Hour)); !found || !sameKey(got, key) {
		t.Fatalf("key after a restart: %v %+v", found, got)
	}
}

// testAtomicity: an Update's tracker rows, idempotency key, sequence step and published
// messages commit together, or, when fn fails, none of them is kept.
func testAtomicity(t *testing.T, b Backend) {
	h := open(t, b)
	const topic = "storetest_intake"
	boom := errors.New("boom")
	intake := func(id string, fail bool) (int64, error) {
		var seq int64
		err := h.s.Update(store.Urgent(h.ctx), func(tx store.Tx) error {
			var err error
			if seq, err = tx.NextSequence("events"); err != nil {
				return err
			}
			msg := message.NewMessage(id+"-fragment", []byte(`[{"id":"x"}]`))
			msg.Metadata.Set("request", id)
			if err := tx.Publish(topic, msg); err != nil {
				return err
			}
			if err := tx.Tracker().Accept(tracker.Request{ID: id, ClientID: "demo", Format: "f", ReceivedAt: keyTime, Total: 1}); err != nil {
				return err
			}
			if err := tx.RememberIdempotency(store.Idempotent{ClientID: "demo", Endpoint: "events", Key: id, BodyHash: "aa", RequestID: id, Sequence: seq, CreatedAt: keyTime}); err != nil {
				return err
			}
			if fail {
				return fmt.Errorf("after everything: %w", boom)
			}
			return nil
		})
		return seq, err
	}
	depth := func() int {
		t.Helper()
		n, err := h.s.Queue().Depth(h.ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if _, err := intake("failed", true); !errors.Is(err, boom) {
		t.Fatalf("failed Update returned %v, want fn's error", err)
	}
	if p := h.find("demo", tracker.Filter{RequestIDs: []string{"failed"}}); p.TotalRequests != 0 {
		t.Fatal("a failed Update's tracker row was kept")
	}
	if _, found := h.lookup("demo", "events", "failed", time.Time{}); found {
		t.Fatal("a failed Update's idempotency key was kept")
	}
	if n := depth(); n != 0 {
		t.Fatalf("a failed Update's message was queued: depth %d", n)
	}
	seq, err := intake("committed", false)
	if err != nil {
		t.Fatal(err)
	}
	if seq != 1 {
		t.Fatalf("sequence after a failed Update: %d, want 1 (the failed step is not kept)", seq)
	}
	if v := h.view("demo", "committed"); v.Summary != (tracker.Summary{Total: 1, Queued: 1}) {
		t.Fatalf("committed request: %+v", v.Summary)
	}
	if got, found := h.lookup("demo", "events", "committed", time.Time{}); !found || got.Sequence != 1 || got.RequestID != "committed" {
		t.Fatalf("committed key: %v %+v", found, got)
	}
	if n := depth(); n != 1 {
		t.Fatalf("committed message: depth %d, want 1", n)
	}
}
