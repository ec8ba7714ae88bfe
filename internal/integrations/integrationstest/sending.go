package integrationstest

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opengw/gateway/internal/integrations"
)

// These tests run a real Sender on the backend against real HTTP receivers.

// shortSchedule keeps retries fast in tests.
var shortSchedule = []time.Duration{50 * time.Millisecond, 50 * time.Millisecond}

// sender starts a Sender on h's store; it stops when the test ends.
func (h *harness) sender(guard *integrations.Guard, timeout time.Duration) *integrations.Signal {
	h.t.Helper()
	wake := &integrations.Signal{}
	s := integrations.NewSender(integrations.SenderConfig{
		Store: h.b.Store, Guard: guard, Timeout: timeout, Schedule: shortSchedule, Wake: wake, Poll: 20 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	h.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			h.t.Error(err)
		}
	})
	return wake
}

var allowPrivate = &integrations.Guard{AllowPrivate: true}

// webhook enqueues a delivery for in like the dispatcher does: a body of eventType.
func (h *harness) webhook(in integrations.Integration, key string) integrations.NewDelivery {
	h.t.Helper()
	body := fmt.Sprintf(`{"type":"test:event","timestamp":%q,"data":{"key":%q}}`, h.base.Format(time.RFC3339Nano), key)
	d := integrations.NewDelivery{ID: integrations.WebhookID(in.ID, key), IntegrationID: in.ID, Type: "test:event", Body: []byte(body), CreatedAt: time.Now()}
	h.must(h.tx(func(tx integrations.Tx) error { return tx.Enqueue(d) }))
	return d
}

// waitState waits for delivery id of in to reach state.
func (h *harness) waitState(in integrations.Integration, id string, state integrations.DeliveryState) integrations.Delivery {
	h.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		d := h.delivery(in, id)
		if d.State == state {
			return d
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("delivery %s stayed %s (want %s): %+v", id, d.State, state, d.Attempts)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testSendsSignedInOrder(t *testing.T, h *harness) {
	rc := NewReceiver(t)
	in := h.integration("hub", "a", integrations.Active, rc.URL)
	rc.Trust(in.Keys.Secret, in.Keys.PublicKey())
	var want []string
	var bodies []string
	for i := range 5 {
		d := h.webhook(in, fmt.Sprint("e", i))
		want, bodies = append(want, d.ID), append(bodies, string(d.Body))
	}
	h.sender(allowPrivate, 5*time.Second).Notify()
	got := rc.WaitN(t, 5, 20*time.Second)
	for i, g := range got {
		if g.ID != want[i] || string(g.Body) != bodies[i] || !g.V1 || !g.V1a || g.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("webhook %d: id %s (want %s), body %s, v1 %v, v1a %v", i, g.ID, want[i], g.Body, g.V1, g.V1a)
		}
		if age := time.Since(time.Unix(g.Timestamp, 0)); age < -time.Minute || age > time.Minute {
			t.Fatalf("webhook-timestamp %d is not now", g.Timestamp)
		}
	}
	h.waitState(in, want[4], integrations.Succeeded)
	// A receiver holding other keys refuses them: the check above is not vacuous.
	rc.Distrust()
	other, err := integrations.NewKeys()
	h.must(err)
	rc.Trust(other.Secret, other.PublicKey())
	h.webhook(in, "e5")
	if g := rc.WaitN(t, 6, 20*time.Second)[5]; g.V1 || g.V1a {
		t.Fatalf("a webhook verified with keys it was not signed with: v1 %v v1a %v", g.V1, g.V1a)
	}
}

func testKeyRotation(t *testing.T, h *harness) {
	rc := NewReceiver(t)
	in := h.integration("hub", "a", integrations.Active, rc.URL)
	wake := h.sender(allowPrivate, 5*time.Second)
	old := in.Keys
	next, err := old.Rotate(time.Now(), time.Hour)
	h.must(err)
	in.Keys = next
	h.must(h.b.Store.Replace(h.ctx, in))
	h.webhook(in, "after-rotation")
	wake.Notify()
	rc.WaitN(t, 1, 20*time.Second)
	// Both the receiver that has not switched yet and the one that has verify it.
	for name, keys := range map[string]integrations.Keys{"old": old, "new": next} {
		rc.Distrust()
		rc.Trust(keys.Secret, keys.PublicKey())
		h.webhook(in, "check-"+name)
		wake.Notify()
		got := rc.Wait(t, 20*time.Second, "the check webhook", func(got []Received) bool {
			return slices.ContainsFunc(got, func(g Received) bool { return strings.Contains(string(g.Body), "check-"+name) })
		})
		g := got[len(got)-1]
		if !g.Verified {
			t.Fatalf("after the rotation, the %s keys do not verify: v1 %v v1a %v (%s)", name, g.V1, g.V1a, g.Header.Get("webhook-signature"))
		}
	}
	// Once the overlap is over only the new keys sign.
	expired, err := old.Rotate(time.Now().Add(-2*time.Hour), time.Hour)
	h.must(err)
	in.Keys = expired
	h.must(h.b.Store.Replace(h.ctx, in))
	rc.Distrust()
	rc.Trust(old.Secret, old.PublicKey())
	h.webhook(in, "expired")
	wake.Notify()
	got := rc.Wait(t, 20*time.Second, "the last webhook", func(got []Received) bool {
		return slices.ContainsFunc(got, func(g Received) bool { return strings.Contains(string(g.Body), "expired") })
	})
	if g := got[len(got)-1]; g.V1 || g.V1a || len(strings.Fields(g.Header.Get("webhook-signature"))) != 2 {
		t.Fatalf("keys past their overlap still sign: %s", g.Header.Get("webhook-signature"))
	}
}

func testRetries(t *testing.T, h *harness) {
	rc := NewReceiver(t)
	rc.Answer(func(call int, _ *http.Request, w http.ResponseWriter) int {
		if call == 1 {
			w.Header().Set("Retry-After", "1")
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	in := h.integration("hub", "a", integrations.Active, rc.URL)
	d := h.webhook(in, "e")
	h.sender(allowPrivate, 5*time.Second).Notify()
	got := rc.WaitN(t, 1, 20*time.Second)
	if len(got) != 2 || got[0].ID != d.ID || got[1].ID != d.ID || string(got[0].Body) != string(got[1].Body) {
		t.Fatalf("attempts = %+v, want two with webhook-id %s", got, d.ID)
	}
	// The receiver asked for a second; the schedule alone would have retried after 50ms.
	if gap := got[1].At.Sub(got[0].At); gap < 900*time.Millisecond {
		t.Fatalf("retried %s after a 503 with Retry-After: 1", gap)
	}
	log := h.waitState(in, d.ID, integrations.Succeeded)
	if len(log.Attempts) != 2 || log.Attempts[0].ResponseStatus != 503 || !strings.Contains(log.Attempts[0].Error, "503") ||
		log.Attempts[1].ResponseStatus != 200 || log.Attempts[1].Error != "" {
		t.Fatalf("log = %+v", log.Attempts)
	}

	// 5xx every time: attempts run out (1 + the schedule's 2), then it fails.
	always := NewReceiver(t)
	always.Answer(func(int, *http.Request, http.ResponseWriter) int { return http.StatusBadGateway })
	in2 := h.integration("hub", "b", integrations.Active, always.URL)
	d2 := h.webhook(in2, "e")
	log = h.waitState(in2, d2.ID, integrations.Failed)
	if len(log.Attempts) != 3 || !strings.Contains(log.Attempts[2].Error, "gave up after 3 attempts") {
		t.Fatalf("log = %+v", log.Attempts)
	}
	// Another 4xx is not retried.
	bad := NewReceiver(t)
	bad.Answer(func(int, *http.Request, http.ResponseWriter) int { return http.StatusUnauthorized })
	in3 := h.integration("hub", "c", integrations.Active, bad.URL)
	d3 := h.webhook(in3, "e")
	if log := h.waitState(in3, d3.ID, integrations.Failed); len(log.Attempts) != 1 || log.Attempts[0].ResponseStatus != 401 {
		t.Fatalf("log = %+v", log.Attempts)
	}
	// Nothing listening: a network error is retried like a 5xx.
	refused := h.integration("hub", "d", integrations.Active, "http://127.0.0.1:1/hook")
	d4 := h.webhook(refused, "e")
	if log := h.waitState(refused, d4.ID, integrations.Failed); len(log.Attempts) != 3 || log.Attempts[0].ResponseStatus != 0 ||
		!strings.Contains(log.Attempts[0].Error, "refused") || strings.Contains(log.Attempts[0].Error, "127.0.0.1:1/hook") {
		t.Fatalf("log = %+v", log.Attempts)
	}
}

func testGonePauses(t *testing.T, h *harness) {
	rc := NewReceiver(t)
	var gone atomic.Bool
	gone.Store(true)
	rc.Answer(func(int, *http.Request, http.ResponseWriter) int {
		if gone.Load() {
			return http.StatusGone
		}
		return http.StatusOK
	})
	in := h.integration("hub", "a", integrations.Active, rc.URL)
	d1 := h.webhook(in, "1")
	wake := h.sender(allowPrivate, 5*time.Second)
	wake.Notify()
	rc.Wait(t, 20*time.Second, "the 410", func(got []Received) bool { return len(got) == 1 })
	deadline := time.Now().Add(20 * time.Second)
	for {
		cur, err := h.b.Store.Get(h.ctx, in.ID)
		h.must(err)
		if cur.Status == integrations.Paused {
			in = cur
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the integration was not paused after a 410")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Held while paused, in order on resume.
	d2 := h.webhook(in, "2")
	d3 := h.webhook(in, "3")
	if d := h.delivery(in, d2.ID); d.State != integrations.Pending || len(d.Attempts) != 0 {
		t.Fatalf("a paused integration's delivery = %+v", d)
	}
	gone.Store(false)
	in.Status = integrations.Active
	h.must(h.b.Store.Replace(h.ctx, in))
	wake.Notify()
	got := Succeeded(rc.WaitN(t, 3, 20*time.Second))
	if ids := []string{got[0].ID, got[1].ID, got[2].ID}; !slices.Equal(ids, []string{d1.ID, d2.ID, d3.ID}) {
		t.Fatalf("after resume sent %v, want %s %s %s", ids, d1.ID, d2.ID, d3.ID)
	}
}

// testDeadReceiver: a receiver that never answers holds its own lane only. The live one gets
// everything while the dead one still has its first request open.
func testDeadReceiver(t *testing.T, h *harness) {
	release := make(chan struct{})
	var open atomic.Int32
	dead := NewReceiver(t)
	dead.Answer(func(int, *http.Request, http.ResponseWriter) int {
		open.Add(1)
		<-release
		return http.StatusOK
	})
	t.Cleanup(func() { close(release) })
	live := NewReceiver(t)
	deadIn := h.integration("hub", "dead", integrations.Active, dead.URL)
	liveIn := h.integration("hub", "live", integrations.Active, live.URL)
	for i := range 20 {
		h.webhook(deadIn, fmt.Sprint("d", i))
		h.webhook(liveIn, fmt.Sprint("l", i))
	}
	h.sender(allowPrivate, time.Minute).Notify()
	live.WaitN(t, 20, 20*time.Second)
	// The dead lane may not have reached its receiver yet when the live one is done: the two
	// run side by side, and neither waits for the other.
	for deadline := time.Now().Add(10 * time.Second); open.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if n := open.Load(); n != 1 || len(dead.Got()) != 0 {
		t.Fatalf("the dead receiver has %d requests open and %d answered; want its first one still open", n, len(dead.Got()))
	}
}

// testRefusedAtSend: a target that turned internal (DNS changed since the integration was
// saved) is refused at dial time; nothing reaches it.
func testRefusedAtSend(t *testing.T, h *harness) {
	rc := NewReceiver(t)
	in := h.integration("hub", "a", integrations.Active, rc.URL) // saved directly: 127.0.0.1
	d := h.webhook(in, "e")
	h.sender(&integrations.Guard{}, 5*time.Second).Notify()
	log := h.waitState(in, d.ID, integrations.Failed)
	if len(log.Attempts) != 1 || !strings.Contains(log.Attempts[0].Error, "refused to send") || len(rc.Got()) != 0 {
		t.Fatalf("log = %+v; the receiver got %d", log.Attempts, len(rc.Got()))
	}
}

// testTwoNodes: two senders (two nodes) on one database send every delivery exactly once.
func testTwoNodes(t *testing.T, h *harness) {
	rc := NewReceiver(t)
	var want []string
	for i := range 10 {
		in := h.integration("hub", fmt.Sprint("n", i), integrations.Active, rc.URL)
		for j := range 5 {
			want = append(want, h.webhook(in, fmt.Sprint("e", j)).ID)
		}
	}
	first, second := h.sender(allowPrivate, 5*time.Second), h.sender(allowPrivate, 5*time.Second)
	first.Notify()
	second.Notify()
	got := rc.WaitN(t, len(want), 30*time.Second)
	seen := map[string]int{}
	for _, g := range got {
		seen[g.ID]++
	}
	for _, id := range want {
		if seen[id] != 1 {
			t.Fatalf("webhook %s sent %d times by two nodes", id, seen[id])
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d requests for %d deliveries", len(got), len(want))
	}
}
