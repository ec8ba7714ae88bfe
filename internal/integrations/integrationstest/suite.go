// Package integrationstest is the suite every integrations.Store passes, so that the SQLite and
// PostgreSQL backends keep one behaviour: the registry (names unique per hub, whole
// replacement), the outbox (idempotent enqueue inside a store transaction, lanes leased to one
// owner, attempts claimed by compare-and-set, lost leases, pause), the deliveries log, streams,
// request progress and purging; and a real Sender on the backend against real receivers
// (signatures, key rotation, retries, 410, a dead receiver, the dial-time guard). Receiver is
// the verifying webhook receiver the gateway's end-to-end tests use too.
//
// A backend's test runs it with a constructor:
//
//	integrationstest.Run(t, func(t *testing.T) integrationstest.Backend { ... })
package integrationstest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/opengw/gateway/internal/integrations"
	"github.com/opengw/gateway/internal/store"
)

// Backend is a store under test on a fresh, empty database.
type Backend struct {
	Store integrations.Store
	// Update runs fn in one transaction of the store.Store that Store shares its database
	// with (Store.Bind accepts its Tx), committing it if fn returns nil.
	Update func(ctx context.Context, fn func(tx store.Tx) error) error
}

// Run runs the suite; open returns a new backend on a fresh database for each test.
func Run(t *testing.T, open func(t *testing.T) Backend) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, h *harness)
	}{
		{"Registry", testRegistry},
		{"EnqueueInTransaction", testEnqueue},
		{"Lanes", testLanes},
		{"LostLease", testLostLease},
		{"PauseAndResume", testPause},
		{"LanesAreExclusive", testExclusiveLanes},
		{"DeliveriesLog", testLog},
		{"Stream", testStream},
		{"RequestProgress", testProgress},
		{"DeleteAndPurge", testDeleteAndPurge},
		{"Sender/SignedInOrder", testSendsSignedInOrder},
		{"Sender/KeyRotation", testKeyRotation},
		{"Sender/Retries", testRetries},
		{"Sender/GonePausesUntilResumed", testGonePauses},
		{"Sender/DeadReceiverDelaysNoOther", testDeadReceiver},
		{"Sender/InternalTargetRefusedAtSend", testRefusedAtSend},
		{"Sender/TwoNodesSendEachOnce", testTwoNodes},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := open(t)
			tc.fn(t, &harness{t: t, b: b, ctx: context.Background(), base: time.Now().UTC().Truncate(time.Millisecond)})
		})
	}
}

type harness struct {
	t    *testing.T
	b    Backend
	ctx  context.Context
	base time.Time // a time to the millisecond; tests pass times relative to it
}

func (h *harness) at(d time.Duration) time.Time { return h.base.Add(d) }

func (h *harness) must(err error) {
	h.t.Helper()
	if err != nil {
		h.t.Fatal(err)
	}
}

// integration creates an integration of hub named name.
func (h *harness) integration(hub, name string, status integrations.Status, url string) integrations.Integration {
	h.t.Helper()
	keys, err := integrations.NewKeys()
	h.must(err)
	in := integrations.Integration{
		ID: uuid.NewString(), HubID: hub, Channel: integrations.System, Name: name, Status: status,
		Config:    integrations.Config{WebhookURL: url, Events: []string{"*"}},
		Keys:      keys,
		CreatedAt: h.base, UpdatedAt: h.base,
	}
	if url == "" {
		in.Channel = integrations.Direct
		in.Config = integrations.Config{IntegrationType: "Agent", Echo: true}
	}
	h.must(h.b.Store.Create(h.ctx, in))
	return in
}

// tx runs fn on the integration writes of one transaction.
func (h *harness) tx(fn func(tx integrations.Tx) error) error {
	return h.b.Update(h.ctx, func(stx store.Tx) error {
		itx, err := h.b.Store.Bind(stx)
		if err != nil {
			return err
		}
		return fn(itx)
	})
}

// enqueue adds a delivery of in created at created and returns it.
func (h *harness) enqueue(in integrations.Integration, key string, created time.Time) integrations.NewDelivery {
	h.t.Helper()
	d := integrations.NewDelivery{
		ID: integrations.WebhookID(in.ID, key), IntegrationID: in.ID, Type: "test:" + key,
		Body: []byte(`{"type":"test:` + key + `","data":{"key":"` + key + `"}}`), CreatedAt: created,
	}
	h.must(h.tx(func(tx integrations.Tx) error { return tx.Enqueue(d) }))
	return d
}

func (h *harness) claim(owner string, now time.Time) []string {
	h.t.Helper()
	ids, err := h.b.Store.ClaimLanes(h.ctx, owner, now, now.Add(time.Minute), 100)
	h.must(err)
	slices.Sort(ids)
	return ids
}

func (h *harness) next(owner, id string, now time.Time) (integrations.Attempt, bool) {
	h.t.Helper()
	a, ok, err := h.b.Store.NextAttempt(h.ctx, owner, id, now, now.Add(time.Minute))
	h.must(err)
	return a, ok
}

func (h *harness) finish(a integrations.Attempt, o integrations.Outcome) {
	h.t.Helper()
	h.must(h.b.Store.FinishAttempt(h.ctx, a, o))
}

func (h *harness) log(id string, f integrations.DeliveryFilter) integrations.DeliveryPage {
	h.t.Helper()
	if f.PageSize == 0 {
		f.PageSize = 100
	}
	p, err := h.b.Store.Deliveries(h.ctx, id, f)
	h.must(err)
	return p
}

// delivery returns the log entry of delivery id of integration in.
func (h *harness) delivery(in integrations.Integration, id string) integrations.Delivery {
	h.t.Helper()
	for _, d := range h.log(in.ID, integrations.DeliveryFilter{}).Deliveries {
		if d.ID == id {
			return d
		}
	}
	h.t.Fatalf("delivery %s of integration %s not in the log", id, in.ID)
	return integrations.Delivery{}
}

func testRegistry(t *testing.T, h *harness) {
	exists := func(want bool, hubs ...string) {
		t.Helper()
		if got, err := h.b.Store.Exists(h.ctx, hubs...); err != nil || got != want {
			t.Fatalf("Exists(%q) = %v, %v; want %v", hubs, got, err, want)
		}
	}
	exists(false, "hub-1")
	exists(false)
	a := h.integration("hub-1", "alpha", integrations.Active, "https://example.com/a")
	exists(true, "hub-1")          // at once after Create, although it answered false before
	exists(true, "hub-0", "hub-1") // any of the hubs
	exists(false, "hub-2", "hub-0")
	got, err := h.b.Store.Get(h.ctx, a.ID)
	h.must(err)
	if got.Name != "alpha" || got.HubID != "hub-1" || got.Channel != integrations.System || got.Status != integrations.Active ||
		got.Config.WebhookURL != a.Config.WebhookURL || !slices.Equal(got.Config.Events, []string{"*"}) ||
		got.Keys.Secret != a.Keys.Secret || got.Keys.PrivateKey != a.Keys.PrivateKey || !got.CreatedAt.Equal(h.base) {
		t.Fatalf("Get = %+v, want %+v", got, a)
	}

	// Names are unique per hub, not across hubs.
	dup := a
	dup.ID = uuid.NewString()
	if err := h.b.Store.Create(h.ctx, dup); !errors.Is(err, integrations.ErrNameTaken) {
		t.Fatalf("Create with a taken name: %v, want ErrNameTaken", err)
	}
	h.integration("hub-2", "alpha", integrations.Active, "https://example.com/a2")
	b := h.integration("hub-1", "beta", integrations.Paused, "")

	// Replace overwrites everything but hub and creation time.
	next, err := a.Keys.Rotate(h.at(time.Second), time.Hour)
	h.must(err)
	a2 := a
	a2.Name, a2.Status, a2.Keys, a2.UpdatedAt = "alpha-2", integrations.Paused, next, h.at(time.Hour)
	a2.HubID, a2.CreatedAt = "hub-other", h.at(time.Hour)
	a2.Config = integrations.Config{WebhookURL: "https://example.com/new", Events: []string{"request:*", "x"}, MessagesPerWebhook: 7}
	h.must(h.b.Store.Replace(h.ctx, a2))
	got, err = h.b.Store.Get(h.ctx, a.ID)
	h.must(err)
	if got.Name != "alpha-2" || got.Status != integrations.Paused || got.HubID != "hub-1" || !got.CreatedAt.Equal(h.base) ||
		!got.UpdatedAt.Equal(h.at(time.Hour)) || got.Config.WebhookURL != "https://example.com/new" || got.Config.MessagesPerWebhook != 7 ||
		!slices.Equal(got.Config.Events, []string{"request:*", "x"}) || len(got.Keys.Previous) != 1 ||
		got.Keys.Previous[0].Secret != a.Keys.Secret || !got.Keys.Previous[0].Until.Equal(h.at(time.Second+time.Hour)) {
		t.Fatalf("after Replace: %+v", got)
	}
	taken := got
	taken.Name = "beta"
	if err := h.b.Store.Replace(h.ctx, taken); !errors.Is(err, integrations.ErrNameTaken) {
		t.Fatalf("Replace with a taken name: %v, want ErrNameTaken", err)
	}
	ghost := a
	ghost.ID = uuid.NewString()
	ghost.Name = "ghost"
	if err := h.b.Store.Replace(h.ctx, ghost); !errors.Is(err, integrations.ErrNotFound) {
		t.Fatalf("Replace of an unknown integration: %v, want ErrNotFound", err)
	}
	if _, err := h.b.Store.Get(h.ctx, ghost.ID); !errors.Is(err, integrations.ErrNotFound) {
		t.Fatalf("Get of an unknown integration: %v, want ErrNotFound", err)
	}

	// A Direct configuration keeps its start messages as given.
	b.Config.Start = json.RawMessage(`[{"type":"text","text":"Welcome"}]`)
	h.must(h.b.Store.Replace(h.ctx, b))
	got, err = h.b.Store.Get(h.ctx, b.ID)
	h.must(err)
	if got.Channel != integrations.Direct || got.Config.IntegrationType != "Agent" || !got.Config.Echo ||
		string(got.Config.Start) != `[{"type":"text","text":"Welcome"}]` || !got.Streams() {
		t.Fatalf("Direct integration read back as %+v", got)
	}

	list, err := h.b.Store.List(h.ctx, "hub-1", "hub-2")
	h.must(err)
	var names []string
	for _, in := range list {
		names = append(names, in.HubID+"/"+in.Name)
	}
	if !slices.Equal(names, []string{"hub-1/alpha-2", "hub-1/beta", "hub-2/alpha"}) {
		t.Fatalf("List = %v", names)
	}
	if list, err := h.b.Store.List(h.ctx, "hub-none"); err != nil || len(list) != 0 {
		t.Fatalf("List of an empty hub = %v, %v", list, err)
	}
}

func testEnqueue(t *testing.T, h *harness) {
	in := h.integration("hub", "a", integrations.Active, "https://example.com/")
	d := h.enqueue(in, "e1", h.base)
	h.enqueue(in, "e1", h.base) // the same event again: nothing added
	// A delivery for an integration that does not exist is skipped.
	h.must(h.tx(func(tx integrations.Tx) error {
		return tx.Enqueue(integrations.NewDelivery{ID: "msg_ghost", IntegrationID: uuid.NewString(), Type: "x", Body: []byte(`{}`), CreatedAt: h.base})
	}))
	// A failed transaction keeps nothing it enqueued.
	boom := errors.New("boom")
	err := h.tx(func(tx integrations.Tx) error {
		if err := tx.Enqueue(integrations.NewDelivery{ID: "msg_rolled_back", IntegrationID: in.ID, Type: "x", Body: []byte(`{}`), CreatedAt: h.base}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update returned %v, want the function's error", err)
	}
	p := h.log(in.ID, integrations.DeliveryFilter{})
	if p.Total != 1 || len(p.Deliveries) != 1 || p.Deliveries[0].ID != d.ID {
		t.Fatalf("log after enqueues = %+v, want only %s", p, d.ID)
	}
	got := p.Deliveries[0]
	if got.State != integrations.Pending || got.Type != d.Type || !got.CreatedAt.Equal(h.base) || !got.NextAttemptAt.Equal(h.base) || len(got.Attempts) != 0 {
		t.Fatalf("enqueued delivery = %+v", got)
	}
}

func testLanes(t *testing.T, h *harness) {
	a := h.integration("hub", "a", integrations.Active, "https://example.com/a")
	paused := h.integration("hub", "paused", integrations.Paused, "https://example.com/p")
	stream := h.integration("hub", "stream", integrations.Active, "")
	later := h.integration("hub", "later", integrations.Active, "https://example.com/l")
	h.integration("hub", "idle", integrations.Active, "https://example.com/i")
	a1 := h.enqueue(a, "1", h.base)
	a2 := h.enqueue(a, "2", h.base)
	h.enqueue(paused, "1", h.base)
	h.enqueue(stream, "1", h.base)
	l1 := h.enqueue(later, "1", h.at(time.Hour)) // due in an hour

	if got := h.claim("n1", h.base); !slices.Equal(got, []string{a.ID}) {
		t.Fatalf("n1 claimed %v, want only the active HTTP lane with due work %s", got, a.ID)
	}
	if got := h.claim("n2", h.base); len(got) != 0 {
		t.Fatalf("n2 claimed %v while n1 holds the lane", got)
	}
	if _, ok := h.next("n2", a.ID, h.base); ok {
		t.Fatal("n2 got an attempt of a lane it does not hold")
	}

	// Oldest first; the attempt carries the integration and the body.
	att, ok := h.next("n1", a.ID, h.base)
	if !ok || att.Delivery.ID != a1.ID || att.N != 1 || att.InRound != 1 || string(att.Delivery.Body) != string(a1.Body) ||
		att.Integration.ID != a.ID || att.Integration.Config.WebhookURL != a.Config.WebhookURL || att.Integration.Keys.Secret != a.Keys.Secret {
		t.Fatalf("first attempt = %+v (ok %v), want %s attempt 1", att, ok, a1.ID)
	}
	if d := h.delivery(a, a1.ID); len(d.Attempts) != 1 || d.Attempts[0].N != 1 || d.Attempts[0].Error != integrations.AttemptInFlight {
		t.Fatalf("attempt in flight logged as %+v", d.Attempts)
	}
	h.finish(att, integrations.Outcome{State: integrations.Pending, NextAt: h.at(time.Minute), ResponseStatus: 503, Error: "503", Duration: 12 * time.Millisecond})

	// a1 waits for its retry; a2 goes meanwhile.
	att2, ok := h.next("n1", a.ID, h.base)
	if !ok || att2.Delivery.ID != a2.ID {
		t.Fatalf("second attempt = %+v (ok %v), want %s", att2, ok, a2.ID)
	}
	h.finish(att2, integrations.Outcome{State: integrations.Succeeded, ResponseStatus: 200})
	if _, ok := h.next("n1", a.ID, h.base); ok {
		t.Fatal("an attempt with nothing due")
	}
	// The lane was released: nothing due now, a1 due after its retry time.
	if got := h.claim("n2", h.base); len(got) != 0 {
		t.Fatalf("claimed %v with nothing due", got)
	}
	if got := h.claim("n2", h.at(2*time.Minute)); !slices.Equal(got, []string{a.ID}) {
		t.Fatalf("n2 claimed %v after the retry time, want %s", got, a.ID)
	}
	att3, ok := h.next("n2", a.ID, h.at(2*time.Minute))
	if !ok || att3.Delivery.ID != a1.ID || att3.N != 2 || att3.InRound != 2 {
		t.Fatalf("retry = %+v (ok %v), want %s attempt 2", att3, ok, a1.ID)
	}
	h.finish(att3, integrations.Outcome{State: integrations.Failed, ResponseStatus: 400, Error: "400"})
	d := h.delivery(a, a1.ID)
	if d.State != integrations.Failed || len(d.Attempts) != 2 || d.Attempts[0].ResponseStatus != 503 || d.Attempts[0].Error != "503" ||
		d.Attempts[0].Duration != 12*time.Millisecond || !d.Attempts[0].At.Equal(h.base) || d.Attempts[1].ResponseStatus != 400 ||
		!d.Attempts[1].At.Equal(h.at(2*time.Minute)) || !d.NextAttemptAt.IsZero() {
		t.Fatalf("a1 in the log = %+v", d)
	}
	if d := h.delivery(a, a2.ID); d.State != integrations.Succeeded || len(d.Attempts) != 1 || d.Attempts[0].Error != "" || d.Attempts[0].ResponseStatus != 200 {
		t.Fatalf("a2 in the log = %+v", d)
	}
	if got := h.claim("n1", h.at(2*time.Hour)); !slices.Equal(got, []string{later.ID}) {
		t.Fatalf("claimed %v two hours on, want the lane of %s", got, l1.ID)
	}
}

func testLostLease(t *testing.T, h *harness) {
	a := h.integration("hub", "a", integrations.Active, "https://example.com/a")
	d := h.enqueue(a, "1", h.base)
	if got := h.claim("n1", h.base); len(got) != 1 {
		t.Fatalf("claimed %v", got)
	}
	first, ok := h.next("n1", a.ID, h.base)
	if !ok {
		t.Fatal("no attempt")
	}
	// n1 stops answering. Its lease (a minute) ends; n2 takes the lane and the attempt.
	if got := h.claim("n2", h.at(30*time.Second)); len(got) != 0 {
		t.Fatalf("n2 claimed %v before the lease ended", got)
	}
	if got := h.claim("n2", h.at(61*time.Second)); !slices.Equal(got, []string{a.ID}) {
		t.Fatalf("n2 claimed %v after the lease ended", got)
	}
	second, ok := h.next("n2", a.ID, h.at(61*time.Second))
	if !ok || second.Delivery.ID != d.ID || second.N != 2 {
		t.Fatalf("n2's attempt = %+v (ok %v), want attempt 2", second, ok)
	}
	if _, ok := h.next("n1", a.ID, h.at(62*time.Second)); ok {
		t.Fatal("n1 got an attempt after losing the lane")
	}
	log := h.delivery(a, d.ID)
	if len(log.Attempts) != 2 || log.Attempts[0].Error != integrations.AttemptAbandoned || log.Attempts[1].Error != integrations.AttemptInFlight {
		t.Fatalf("the abandoned attempt is not marked: %+v", log.Attempts)
	}
	h.finish(second, integrations.Outcome{State: integrations.Failed, ResponseStatus: 500, Error: "gave up"})
	// n1's late answer is logged but does not overwrite the newer attempt's outcome.
	h.finish(first, integrations.Outcome{State: integrations.Succeeded, ResponseStatus: 200})
	log = h.delivery(a, d.ID)
	if log.State != integrations.Failed || len(log.Attempts) != 2 || log.Attempts[0].ResponseStatus != 200 || log.Attempts[1].ResponseStatus != 500 {
		t.Fatalf("after the late answer: %+v", log)
	}
}

func testPause(t *testing.T, h *harness) {
	a := h.integration("hub", "a", integrations.Active, "https://example.com/a")
	d1 := h.enqueue(a, "1", h.base)
	h.claim("n1", h.base)
	att, ok := h.next("n1", a.ID, h.base)
	if !ok {
		t.Fatal("no attempt")
	}
	// 410: the integration is paused, the delivery held.
	h.finish(att, integrations.Outcome{State: integrations.Pending, NextAt: h.base, ResponseStatus: 410, Error: "gone", Pause: true})
	got, err := h.b.Store.Get(h.ctx, a.ID)
	h.must(err)
	if got.Status != integrations.Paused {
		t.Fatalf("status after 410 = %d, want Paused", got.Status)
	}
	d2 := h.enqueue(a, "2", h.at(time.Millisecond))
	if _, ok := h.next("n1", a.ID, h.base); ok {
		t.Fatal("an attempt of a paused integration")
	}
	if ids := h.claim("n1", h.at(time.Hour)); len(ids) != 0 {
		t.Fatalf("claimed %v while paused", ids)
	}
	// Resumed: the held deliveries go in order.
	got.Status = integrations.Active
	h.must(h.b.Store.Replace(h.ctx, got))
	if ids := h.claim("n1", h.at(time.Hour)); !slices.Equal(ids, []string{a.ID}) {
		t.Fatalf("claimed %v after resuming", ids)
	}
	var order []string
	for {
		att, ok := h.next("n1", a.ID, h.at(time.Hour))
		if !ok {
			break
		}
		order = append(order, att.Delivery.ID)
		h.finish(att, integrations.Outcome{State: integrations.Succeeded, ResponseStatus: 204})
	}
	if !slices.Equal(order, []string{d1.ID, d2.ID}) {
		t.Fatalf("sent %v after resuming, want %s then %s", order, d1.ID, d2.ID)
	}
}

func testExclusiveLanes(t *testing.T, h *harness) {
	const lanes, owners = 20, 4
	for i := range lanes {
		in := h.integration("hub", fmt.Sprint("lane-", i), integrations.Active, "https://example.com/")
		h.enqueue(in, "1", h.base)
	}
	var (
		mu  sync.Mutex
		got = map[string][]string{}
		wg  sync.WaitGroup
	)
	for o := range owners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				ids, err := h.b.Store.ClaimLanes(h.ctx, fmt.Sprint("owner-", o), h.base, h.at(time.Minute), 3)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, id := range ids {
					got[id] = append(got[id], fmt.Sprint("owner-", o))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(got) != lanes {
		t.Fatalf("%d of %d lanes claimed", len(got), lanes)
	}
	for id, os := range got {
		if len(os) != 1 {
			t.Fatalf("lane %s claimed by %v", id, os)
		}
	}
}

func testLog(t *testing.T, h *harness) {
	a := h.integration("hub", "a", integrations.Active, "https://example.com/a")
	other := h.integration("hub", "b", integrations.Active, "https://example.com/b")
	var ds []integrations.NewDelivery
	for i := range 5 {
		ds = append(ds, h.enqueue(a, fmt.Sprint(i), h.at(time.Duration(i)*time.Second)))
	}
	h.enqueue(other, "x", h.base)
	h.claim("n", h.at(time.Minute))
	// d0 fails for good, d1 succeeds.
	for i := range 2 {
		att, ok := h.next("n", a.ID, h.at(time.Minute))
		if !ok {
			t.Fatal("no attempt")
		}
		o := integrations.Outcome{State: integrations.Failed, ResponseStatus: 404, Error: "not found"}
		if i == 1 {
			o = integrations.Outcome{State: integrations.Succeeded, ResponseStatus: 200}
		}
		h.finish(att, o)
	}
	p := h.log(a.ID, integrations.DeliveryFilter{PageSize: 2})
	if p.Total != 5 || len(p.Deliveries) != 2 || p.Deliveries[0].ID != ds[4].ID || p.Deliveries[1].ID != ds[3].ID {
		t.Fatalf("page 1 = %+v, want the newest two of 5", p)
	}
	p = h.log(a.ID, integrations.DeliveryFilter{Page: 3, PageSize: 2})
	if p.Total != 5 || len(p.Deliveries) != 1 || p.Deliveries[0].ID != ds[0].ID || len(p.Deliveries[0].Attempts) != 1 || p.Deliveries[0].Attempts[0].ResponseStatus != 404 {
		t.Fatalf("page 3 = %+v", p)
	}
	if p := h.log(a.ID, integrations.DeliveryFilter{Page: 4, PageSize: 2}); p.Total != 5 || len(p.Deliveries) != 0 {
		t.Fatalf("page 4 = %+v", p)
	}
	for st, want := range map[integrations.DeliveryState][]string{
		integrations.Failed: {ds[0].ID}, integrations.Succeeded: {ds[1].ID}, integrations.Pending: {ds[4].ID, ds[3].ID, ds[2].ID},
	} {
		p := h.log(a.ID, integrations.DeliveryFilter{State: st})
		var ids []string
		for _, d := range p.Deliveries {
			ids = append(ids, d.ID)
		}
		if p.Total != len(want) || !slices.Equal(ids, want) {
			t.Fatalf("%s deliveries = %v (total %d), want %v", st, ids, p.Total, want)
		}
	}

	// Resend: pending, due now, a fresh round.
	if _, err := h.b.Store.Resend(h.ctx, a.ID, "msg_unknown", h.base); !errors.Is(err, integrations.ErrDeliveryNotFound) {
		t.Fatalf("Resend of an unknown delivery: %v", err)
	}
	if _, err := h.b.Store.Resend(h.ctx, other.ID, ds[0].ID, h.base); !errors.Is(err, integrations.ErrDeliveryNotFound) {
		t.Fatalf("Resend of another integration's delivery: %v", err)
	}
	got, err := h.b.Store.Resend(h.ctx, a.ID, ds[0].ID, h.at(2*time.Minute))
	h.must(err)
	if got.State != integrations.Pending || !got.NextAttemptAt.Equal(h.at(2*time.Minute)) || len(got.Attempts) != 1 {
		t.Fatalf("resent delivery = %+v", got)
	}
	att, ok := h.next("n", a.ID, h.at(2*time.Minute))
	if !ok || att.Delivery.ID != ds[0].ID || att.N != 2 || att.InRound != 1 {
		t.Fatalf("attempt after Resend = %+v (ok %v), want attempt 2, the first of its round", att, ok)
	}
	h.finish(att, integrations.Outcome{State: integrations.Failed, Error: "again"})

	// Recover: every failed delivery created since.
	if n, err := h.b.Store.Recover(h.ctx, a.ID, h.at(time.Second), h.at(3*time.Minute)); err != nil || n != 0 {
		t.Fatalf("Recover since after the failed one = %d, %v", n, err)
	}
	if n, err := h.b.Store.Recover(h.ctx, a.ID, h.base, h.at(3*time.Minute)); err != nil || n != 1 {
		t.Fatalf("Recover = %d, %v, want 1", n, err)
	}
	if d := h.delivery(a, ds[0].ID); d.State != integrations.Pending || !d.NextAttemptAt.Equal(h.at(3*time.Minute)) {
		t.Fatalf("recovered delivery = %+v", d)
	}
}

func testStream(t *testing.T, h *harness) {
	s := h.integration("hub", "s", integrations.Active, "")
	var ds []integrations.NewDelivery
	for i := range 4 {
		ds = append(ds, h.enqueue(s, fmt.Sprint(i), h.at(time.Duration(i)*time.Millisecond)))
	}
	if ids := h.claim("n", h.at(time.Minute)); len(ids) != 0 {
		t.Fatalf("claimed stream lanes %v", ids)
	}
	ids := func(ds []integrations.Delivery) []string {
		var out []string
		for _, d := range ds {
			out = append(out, d.ID)
		}
		return out
	}
	got, err := h.b.Store.StreamAfter(h.ctx, s.ID, "", 3)
	h.must(err)
	if !slices.Equal(ids(got), []string{ds[0].ID, ds[1].ID, ds[2].ID}) || string(got[0].Body) != string(ds[0].Body) || got[1].Type != ds[1].Type {
		t.Fatalf("first page = %+v", got)
	}
	h.must(h.b.Store.MarkStreamed(h.ctx, s.ID, ids(got[:2]), h.at(time.Second)))
	got, err = h.b.Store.StreamAfter(h.ctx, s.ID, "", 10)
	h.must(err)
	if !slices.Equal(ids(got), []string{ds[2].ID, ds[3].ID}) {
		t.Fatalf("pending after two were streamed = %v", ids(got))
	}
	// Resuming after a delivery replays everything after it, streamed or not.
	got, err = h.b.Store.StreamAfter(h.ctx, s.ID, ds[0].ID, 10)
	h.must(err)
	if !slices.Equal(ids(got), []string{ds[1].ID, ds[2].ID, ds[3].ID}) {
		t.Fatalf("after %s = %v", ds[0].ID, ids(got))
	}
	if _, err := h.b.Store.StreamAfter(h.ctx, s.ID, "msg_unknown", 10); !errors.Is(err, integrations.ErrDeliveryNotFound) {
		t.Fatalf("after an unknown id: %v", err)
	}
	d := h.delivery(s, ds[1].ID)
	if d.State != integrations.Succeeded || len(d.Attempts) != 1 || !d.Attempts[0].At.Equal(h.at(time.Second)) || d.Attempts[0].Error != "" {
		t.Fatalf("streamed delivery in the log = %+v", d)
	}
}

func testProgress(t *testing.T, h *harness) {
	follow := func(p integrations.RequestProgress) integrations.RequestProgress {
		t.Helper()
		var out integrations.RequestProgress
		h.must(h.tx(func(tx integrations.Tx) error {
			var err error
			out, err = tx.Follow(p)
			return err
		}))
		return out
	}
	candidates := func() []string {
		t.Helper()
		ps, err := h.b.Store.CompletionCandidates(h.ctx, 100)
		h.must(err)
		var ids []string
		for _, p := range ps {
			ids = append(ids, p.RequestID)
		}
		slices.Sort(ids)
		return ids
	}
	// Outcomes may be counted before the request's acceptance is seen.
	if p := follow(integrations.RequestProgress{RequestID: "r1", ClientID: "c", Total: -1, Terminal: 2}); p.Total != -1 || p.Terminal != 2 {
		t.Fatalf("progress = %+v", p)
	}
	if got := candidates(); len(got) != 0 {
		t.Fatalf("candidates without a total: %v", got)
	}
	p := follow(integrations.RequestProgress{RequestID: "r1", ClientID: "c", BatchReference: "b1", Total: 3})
	if p != (integrations.RequestProgress{RequestID: "r1", ClientID: "c", BatchReference: "b1", Total: 3, Terminal: 2}) {
		t.Fatalf("progress = %+v", p)
	}
	follow(integrations.RequestProgress{RequestID: "r2", ClientID: "c", Total: 1, Terminal: 1})
	if p := follow(integrations.RequestProgress{RequestID: "r1", ClientID: "c", Total: -1, Terminal: 1}); p.Terminal != 3 || p.BatchReference != "b1" {
		t.Fatalf("progress = %+v", p)
	}
	if got := candidates(); !slices.Equal(got, []string{"r1", "r2"}) {
		t.Fatalf("candidates = %v", got)
	}
	h.must(h.b.Store.MarkChecked(h.ctx, "r1", 3))
	if got := candidates(); !slices.Equal(got, []string{"r2"}) {
		t.Fatalf("candidates after checking r1 = %v", got)
	}
	follow(integrations.RequestProgress{RequestID: "r1", ClientID: "c", Total: -1, Terminal: 1})
	if got := candidates(); !slices.Equal(got, []string{"r1", "r2"}) {
		t.Fatalf("candidates after r1 counted more = %v", got)
	}
	h.must(h.tx(func(tx integrations.Tx) error { return tx.Unfollow("r2") }))
	if got := candidates(); !slices.Equal(got, []string{"r1"}) {
		t.Fatalf("candidates after unfollowing r2 = %v", got)
	}
}

func testDeleteAndPurge(t *testing.T, h *harness) {
	a := h.integration("hub", "a", integrations.Active, "https://example.com/a")
	b := h.integration("hub", "b", integrations.Active, "")
	h.enqueue(a, "1", h.base)
	old := h.enqueue(b, "old", h.at(-48*time.Hour))
	recent := h.enqueue(b, "new", h.base)

	if found, err := h.b.Store.Exists(h.ctx, "hub"); err != nil || !found {
		t.Fatalf("Exists before the deletes = %v, %v", found, err)
	}
	h.must(h.b.Store.Delete(h.ctx, a.ID))
	if err := h.b.Store.Delete(h.ctx, a.ID); !errors.Is(err, integrations.ErrNotFound) {
		t.Fatalf("second Delete: %v", err)
	}
	if found, err := h.b.Store.Exists(h.ctx, "hub"); err != nil || !found {
		t.Fatalf("Exists with one integration left = %v, %v", found, err)
	}
	if p := h.log(a.ID, integrations.DeliveryFilter{}); p.Total != 0 {
		t.Fatalf("a deleted integration's log = %+v", p)
	}
	h.enqueue(a, "2", h.base) // skipped: the integration is gone
	if p := h.log(a.ID, integrations.DeliveryFilter{}); p.Total != 0 {
		t.Fatalf("enqueued for a deleted integration: %+v", p)
	}
	if ids := h.claim("n", h.at(time.Minute)); len(ids) != 0 {
		t.Fatalf("claimed %v after the delete", ids)
	}

	n, err := h.b.Store.Purge(h.ctx, h.at(-24*time.Hour))
	h.must(err)
	p := h.log(b.ID, integrations.DeliveryFilter{})
	if n != 1 || p.Total != 1 || p.Deliveries[0].ID != recent.ID {
		t.Fatalf("Purge removed %d; left %+v (want only %s, not %s)", n, p, recent.ID, old.ID)
	}
	h.must(h.b.Store.Delete(h.ctx, b.ID))
	if found, err := h.b.Store.Exists(h.ctx, "hub"); err != nil || found {
		t.Fatalf("Exists after the last Delete = %v, %v", found, err)
	}
}
