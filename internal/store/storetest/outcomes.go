package storetest

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/opengw/gateway/internal/store"
	"github.com/opengw/gateway/tracker"
)

// RunOutcomes checks what the pipeline builds fan-out, replay and retention on: part outcomes,
// replayed messages keeping their errors, kept records and the purge.
func RunOutcomes(t *testing.T, b Backend) {
	t.Run("Parts", func(t *testing.T) { testParts(t, b) })
	t.Run("Replay", func(t *testing.T) { testReplay(t, b) })
	t.Run("KeptRecordsAndPurge", func(t *testing.T) { testKeptRecordsAndPurge(t, b) })
	t.Run("RetryingShowsLastError", func(t *testing.T) { testRetrying(t, b) })
}

// testRetrying: a Processing message shows its last delivery error after any earlier errors;
// a later retry replaces it, Finish drops it; other statuses never take it.
func testRetrying(t *testing.T, b Backend) {
	h := open(t, b)
	h.accept(tracker.Request{ID: "req-retry", ClientID: "c", ClientName: "C", Format: "f", ReceivedAt: h.clock.Now(), Total: 5})
	h.add("req-retry", msgs(0, 5, "t"))
	h.claim("req-retry", []int{0, 1, 2, 4})
	h.finish("req-retry", []tracker.Result{{Index: 2, Status: tracker.Complete}, {Index: 4, Status: tracker.Failed, Errors: []string{"first try"}}})
	// Message 4 is replayed: its earlier error stays before the retry error.
	h.must(h.write(func(w tracker.Writer) error { _, err := w.Replay("req-retry", []int{4}); return err }))
	h.claim("req-retry", []int{4})
	retrying := func(msg string) {
		t.Helper()
		h.must(h.write(func(w tracker.Writer) error { return w.Retrying("req-retry", []int{0, 1, 2, 3, 4}, msg) }))
	}
	retrying("sink s: 503 down")
	retrying("sink s: 502 bad gateway")
	errs := func() map[int][]string {
		out := map[int][]string{}
		for _, m := range h.view("c", "req-retry").Messages {
			out[m.Index] = m.Errors
		}
		return out
	}
	got := errs()
	want := map[int][]string{0: {"sink s: 502 bad gateway"}, 1: {"sink s: 502 bad gateway"}, 2: nil, 3: nil, 4: {"first try", "sink s: 502 bad gateway"}}
	for i, w := range want {
		if len(got[i]) != len(w) || (len(w) > 0 && !reflect.DeepEqual(got[i], w)) {
			t.Fatalf("message %d shows %q, want %q", i, got[i], w)
		}
	}
	if v := h.view("c", "req-retry"); v.Summary.Processing != 3 || v.Summary.Complete != 1 || v.Summary.Queued != 1 {
		t.Fatalf("retrying changed the counts: %+v", v.Summary)
	}
	h.finish("req-retry", results(tracker.Complete, 0, 1, 4))
	got = errs()
	if len(got[0]) != 0 || !reflect.DeepEqual(got[4], []string{"first try"}) {
		t.Fatalf("after Finish: message 0 %q (want none), message 4 %q (want its earlier error)", got[0], got[4])
	}
	err := h.write(func(w tracker.Writer) error { return w.Retrying("nope", []int{0}, "x") })
	if !errors.Is(err, tracker.ErrNotFound) {
		t.Fatalf("retrying on an unknown request: %v, want ErrNotFound", err)
	}
}

func testParts(t *testing.T, b Backend) {
	h := open(t, b)
	h.accept(tracker.Request{ID: "req-parts", ClientID: "c", ClientName: "C", Format: "f", ReceivedAt: h.clock.Now(), Total: 2})
	h.add("req-parts", msgs(0, 2, "t"))
	record := func(part string, rs []tracker.Result) map[int][]tracker.Result {
		var got map[int][]tracker.Result
		h.must(h.write(func(w tracker.Writer) error {
			var err error
			got, err = w.RecordParts("req-parts", part, rs)
			return err
		}))
		return got
	}
	got := record("table", results(tracker.Complete, 0, 1))
	if len(got[0]) != 1 || len(got[1]) != 1 || got[0][0].Status != tracker.Complete {
		t.Fatalf("after the first part: %+v", got)
	}
	failed := []tracker.Result{{Index: 1, Status: tracker.Failed, Errors: []string{"api refused"}}}
	got = record("api", failed)
	if len(got[1]) != 2 || got[1][0].Status != tracker.Complete || got[1][1].Status != tracker.Failed ||
		!reflect.DeepEqual(got[1][1].Errors, []string{"api refused"}) {
		t.Fatalf("after the second part: %+v", got[1])
	}
	// Recording a part again keeps its first outcome.
	got = record("api", results(tracker.Complete, 1))
	if len(got[1]) != 2 || got[1][1].Status != tracker.Failed {
		t.Fatalf("a redelivered part changed the outcome: %+v", got[1])
	}
	if fin := tracker.FinishedParts(1, got[1]); fin.Status != tracker.Failed || !reflect.DeepEqual(fin.Errors, []string{"api refused"}) {
		t.Fatalf("FinishedParts = %+v", fin)
	}
}

func testReplay(t *testing.T, b Backend) {
	h := open(t, b)
	h.accept(tracker.Request{ID: "req-replay", ClientID: "c", ClientName: "C", Format: "f", ReceivedAt: h.clock.Now(), Total: 4})
	h.add("req-replay", msgs(0, 4, "t"))
	h.claim("req-replay", []int{0, 1, 2})
	h.finish("req-replay", []tracker.Result{
		{Index: 0, Status: tracker.Complete},
		{Index: 1, Status: tracker.Failed, Errors: []string{"sink down"}},
		{Index: 2, Status: tracker.Invalid, Errors: []string{"bad type"}},
	})
	var replayed []int
	h.must(h.write(func(w tracker.Writer) error {
		var err error
		replayed, err = w.Replay("req-replay", []int{0, 1, 2, 3})
		return err
	}))
	if !reflect.DeepEqual(replayed, []int{1, 2}) {
		t.Fatalf("replayed %v, want only the Failed and Invalid messages [1 2]", replayed)
	}
	v := h.view("c", "req-replay")
	if v.Summary.Queued != 3 || v.Summary.Complete != 1 || v.Summary.Failed != 0 || v.Summary.Invalid != 0 || v.Status != tracker.Processing {
		t.Fatalf("after replay: %+v %s", v.Summary, v.Status)
	}
	h.claim("req-replay", []int{1, 2})
	h.finish("req-replay", []tracker.Result{
		{Index: 1, Status: tracker.Complete},
		{Index: 2, Status: tracker.Invalid, Errors: []string{"still bad"}},
	})
	v = h.view("c", "req-replay")
	byIndex := map[int]tracker.MessageView{}
	for _, m := range v.Messages {
		byIndex[m.Index] = m
	}
	if m := byIndex[1]; m.Status != tracker.Complete || !reflect.DeepEqual(m.Errors, []string{"sink down"}) {
		t.Fatalf("message 1 after replay: %s %q; want Complete keeping its earlier error", m.Status, m.Errors)
	}
	if m := byIndex[2]; m.Status != tracker.Invalid || !reflect.DeepEqual(m.Errors, []string{"bad type", "still bad"}) {
		t.Fatalf("message 2 after replay: %s %q; want both errors", m.Status, m.Errors)
	}
	if v.Summary.Complete != 2 || v.Summary.Invalid != 1 || v.Summary.Queued != 1 {
		t.Fatalf("summary = %+v", v.Summary)
	}
}

func testKeptRecordsAndPurge(t *testing.T, b Backend) {
	h := open(t, b)
	old := h.clock.Now()
	recent := old.Add(2 * time.Hour)
	for _, r := range []struct {
		id string
		at time.Time
	}{{"req-old", old}, {"req-new", recent}} {
		h.accept(tracker.Request{ID: r.id, ClientID: "c", ClientName: "C", Format: "f", ReceivedAt: r.at, Total: 3})
		h.add(r.id, msgs(0, 3, "t"))
		// One buffer for both fragments, scribbled over before the commit, as intake reuses
		// its own: the store keeps nothing of it.
		h.must(h.s.Update(h.ctx, func(tx store.Tx) error {
			buf := []byte(`[{"a":1},{"a":2}]`)
			if err := tx.KeepRecords(r.id, 0, buf, r.at); err != nil {
				return err
			}
			buf = append(buf[:0], `[{"a":3}]`...)
			if err := tx.KeepRecords(r.id, 2, buf, r.at); err != nil {
				return err
			}
			clear(buf[:cap(buf)])
			return nil
		}))
	}
	records, found, err := h.s.Records(h.ctx, "req-old", 2)
	if err != nil || !found || string(records) != `[{"a":3}]` {
		t.Fatalf("Records = %q %v %v", records, found, err)
	}
	if _, found, err := h.s.Records(h.ctx, "req-old", 1); err != nil || found {
		t.Fatalf("Records of a fragment never kept: found=%v %v", found, err)
	}
	if offs, err := h.s.RecordOffsets(h.ctx, "req-old"); err != nil || !reflect.DeepEqual(offs, []int{0, 2}) {
		t.Fatalf("RecordOffsets = %v %v", offs, err)
	}
	// Keeping a fragment again replaces it.
	h.must(h.s.Update(h.ctx, func(tx store.Tx) error { return tx.KeepRecords("req-new", 2, []byte(`[{"b":2}]`), recent) }))
	for offset, want := range map[int]string{0: `[{"a":1},{"a":2}]`, 2: `[{"b":2}]`} {
		if records, found, err := h.s.Records(h.ctx, "req-new", offset); err != nil || !found || string(records) != want {
			t.Fatalf("Records %d.. after keeping again = %q %v %v, want %s", offset, records, found, err, want)
		}
	}
	// Purge in batches of one until nothing is left: records first, then tracking.
	cut := old.Add(time.Hour)
	total := 0
	for i := 0; ; i++ {
		n, err := h.s.Purge(h.ctx, cut, cut, 1)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if n > 4 { // at most one row of each kind (records, messages, request) and one part batch
			t.Fatalf("one purge of limit 1 deleted %d rows", n)
		}
		total += n
		if i > 50 {
			t.Fatal("purge never finished")
		}
	}
	if total < 2+3+1 {
		t.Fatalf("purged %d rows, want at least the 2 kept fragments, 3 messages and the request", total)
	}
	if offs, _ := h.s.RecordOffsets(h.ctx, "req-old"); len(offs) != 0 {
		t.Fatalf("old records kept: %v", offs)
	}
	if offs, _ := h.s.RecordOffsets(h.ctx, "req-new"); len(offs) != 2 {
		t.Fatalf("recent records purged: %v", offs)
	}
	p := h.find("c", tracker.Filter{RequestIDs: []string{"req-old", "req-new"}})
	if len(p.Requests) != 1 || p.Requests[0].ID != "req-new" || len(p.Requests[0].Messages) != 3 {
		t.Fatalf("after purge: %+v", p)
	}
}
