package storetest

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opengw/gateway/tracker"
)

// RunTracker runs the tracker suite: the tracker.Writer inside Update and the tracker.Store of
// Tracker().
func RunTracker(t *testing.T, b Backend) {
	for _, c := range []struct {
		name string
		fn   func(t *testing.T, b Backend)
	}{
		{"LifecycleCountsAndIdempotence", testLifecycle},
		{"CompletionReportedOnce", testCompletion},
		{"AddClaimed", testAddClaimed},
		{"AcceptWithMessages", testAcceptWithMessages},
		{"Cancel", testCancel},
		{"ClaimCancelRace", testClaimCancelRace},
		{"FailedUpdateWritesNothing", testFailedUpdate},
		{"FindSemantics", testFindSemantics},
		{"MessagePaging", testMessagePaging},
		{"ClientScoping", testClientScoping},
		{"InvalidUTF8References", testInvalidUTF8References},
	} {
		t.Run(c.name, func(t *testing.T) { c.fn(t, b) })
	}
}

func msgs(from, n int, typ string) []tracker.NewMessage {
	out := make([]tracker.NewMessage, n)
	for i := range out {
		out[i] = tracker.NewMessage{Index: from + i, ExternalReference: fmt.Sprintf("rec-%d", from+i), Type: typ}
	}
	return out
}

func results(status tracker.Status, idx ...int) []tracker.Result {
	out := make([]tracker.Result, len(idx))
	for i, x := range idx {
		out[i] = tracker.Result{Index: x, Status: status, MappingVersion: "v1"}
	}
	return out
}

func seqInts(from, to int) []int {
	var out []int
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

const reqA = "0b9a0c3e-6a51-4f0e-9d37-4b0f1e2f3a01"

// testCompletion checks that exactly the Finish that leaves every message of a request
// terminal reports the request's Completion, with its summary, and no other write does.
func testCompletion(t *testing.T, b Backend) {
	h := open(t, b)
	received := time.Date(2024, 5, 1, 9, 30, 0, 0, time.UTC)
	h.accept(tracker.Request{ID: reqA, ClientID: "demo", ClientName: "Demo", Format: "activity", ReceivedAt: received, Total: 5})
	h.add(reqA, msgs(0, 3, "call")) // 3 of 5 recorded: the other two are not split yet
	h.claim(reqA, seqInts(0, 2))
	if c := h.finish(reqA, results(tracker.Complete, 0, 1, 2)); c != nil {
		t.Fatalf("finishing 3 of 5 messages reported completion %+v", c)
	}
	h.add(reqA, msgs(3, 2, "quote"))
	if c := h.finish(reqA, []tracker.Result{{Index: 3, Status: tracker.Invalid, Errors: []string{"bad"}}}); c != nil {
		t.Fatalf("finishing 4 of 5 messages reported completion %+v", c)
	}
	h.claim(reqA, []int{4})
	c := h.finish(reqA, results(tracker.Failed, 4))
	want := tracker.Summary{Total: 5, Complete: 3, Invalid: 1, Failed: 1}
	if c == nil || c.Summary != want || !c.ReceivedAt.Equal(received) {
		t.Fatalf("the last Finish reported %+v, want summary %+v received %s", c, want, received)
	}
	// A redelivered outcome changes nothing and reports nothing.
	if c := h.finish(reqA, results(tracker.Complete, 4)); c != nil {
		t.Fatalf("a redelivered Finish reported completion again: %+v", c)
	}
}

// testAcceptWithMessages checks messages recorded with their request: Queued, counted,
// findable by reference; accepting the id again changes nothing, its messages included.
func testAcceptWithMessages(t *testing.T, b Backend) {
	h := open(t, b)
	r := tracker.Request{ID: reqA, ClientID: "demo", ClientName: "Demo", Format: "activity", ReceivedAt: time.Now(), Total: 3}
	h.must(h.write(func(w tracker.Writer) error { return w.Accept(r, msgs(0, 3, "call")...) }))
	h.must(h.write(func(w tracker.Writer) error { return w.Accept(r, msgs(0, 5, "quote")...) }))
	v := h.view("demo", reqA)
	if want := (tracker.Summary{Total: 3, Queued: 3}); v.Summary != want || len(v.Messages) != 3 || v.Messages[2].Type != "call" {
		t.Fatalf("summary %+v, messages %+v", v.Summary, v.Messages)
	}
	page := h.find("demo", tracker.Filter{ExternalReferences: []string{"rec-1"}})
	if len(page.Requests) != 1 || len(page.Requests[0].Messages) != 1 || page.Requests[0].Messages[0].Status != tracker.Queued {
		t.Fatalf("by reference: %+v", page)
	}
	// Splitting later records nothing twice.
	h.add(reqA, msgs(0, 3, "call"))
	if got := h.claim(reqA, seqInts(0, 2)); !slices.Equal(got, seqInts(0, 2)) {
		t.Fatalf("claimed %v", got)
	}
	if v := h.view("demo", reqA); v.Summary != (tracker.Summary{Total: 3, Processing: 3}) {
		t.Fatalf("after claim: %+v", v.Summary)
	}
}

// testInvalidUTF8References checks that a reference with bytes that are not UTF-8 (record ids
// are not checked for it) is found by the reference as a search decoded from JSON names it:
// each such byte replaced by U+FFFD (tracker.ValidUTF8).
func testInvalidUTF8References(t *testing.T, b Backend) {
	h := open(t, b)
	r := tracker.Request{ID: reqA, ClientID: "demo", ClientName: "Demo", Format: "activity", ReceivedAt: time.Now(), Total: 3}
	h.accept(r)
	h.add(reqA, []tracker.NewMessage{{Index: 0, ExternalReference: "one-\xff", Type: "call"}})
	h.add(reqA, []tracker.NewMessage{{Index: 1, ExternalReference: "many-\xff\xfe", Type: "call\xfe"}, {Index: 2, ExternalReference: "many-ok", Type: "call"}})
	for ref, index := range map[string]int{"one-\ufffd": 0, "many-\ufffd\ufffd": 1} {
		page := h.find("demo", tracker.Filter{ExternalReferences: []string{ref}})
		if len(page.Requests) != 1 || len(page.Requests[0].Messages) != 1 || page.Requests[0].Messages[0].Index != index {
			t.Fatalf("by reference %q: %+v", ref, page)
		}
	}
	if v := h.view("demo", reqA); v.Messages[1].Type != "call\ufffd" {
		t.Fatalf("type %q", v.Messages[1].Type)
	}
}

// testAddClaimed checks messages recorded already claimed: Processing, counted so, returned by
// Claim, and Cancelled all the same on a cancelled request.
func testAddClaimed(t *testing.T, b Backend) {
	h := open(t, b)
	h.accept(tracker.Request{ID: reqA, ClientID: "demo", ClientName: "Demo", Format: "activity", ReceivedAt: time.Now(), Total: 4})
	m := msgs(0, 4, "call")
	m[0].Claimed, m[1].Claimed, m[3].Claimed = true, true, true
	h.add(reqA, m)
	h.add(reqA, m) // again: recorded messages keep their status, nothing counts twice
	v := h.view("demo", reqA)
	if want := (tracker.Summary{Total: 4, Queued: 1, Processing: 3}); v.Summary != want {
		t.Fatalf("summary %+v, want %+v", v.Summary, want)
	}
	for _, msg := range v.Messages {
		if want := map[bool]tracker.Status{true: tracker.Processing, false: tracker.Queued}[msg.Index != 2]; msg.Status != want {
			t.Fatalf("message %d is %s, want %s", msg.Index, msg.Status, want)
		}
	}
	if got := h.claim(reqA, seqInts(0, 3)); !slices.Equal(got, seqInts(0, 3)) {
		t.Fatalf("claimed %v", got)
	}

	const reqB = "0b9a0c3e-6a51-4f0e-9d37-4b0f1e2f3a0b"
	h.accept(tracker.Request{ID: reqB, ClientID: "demo", ClientName: "Demo", Format: "activity", ReceivedAt: time.Now(), Total: 2})
	if found, _, err := h.s.Tracker().Cancel(h.ctx, "demo", reqB); err != nil || !found {
		t.Fatalf("cancel: %v %v", found, err)
	}
	m = msgs(0, 2, "call")
	m[0].Claimed = true
	if !h.add(reqB, m) {
		t.Fatal("adding to a cancelled request did not report the cancel")
	}
	if v := h.view("demo", reqB); v.Summary != (tracker.Summary{Total: 2, Cancelled: 2}) {
		t.Fatalf("cancelled request: %+v", v.Summary)
	}
}

func testLifecycle(t *testing.T, b Backend) {
	h := open(t, b)
	received := time.Date(2024, 5, 1, 9, 30, 0, 123456000, time.UTC)
	r := tracker.Request{ID: reqA, ClientID: "demo", ClientName: "Demo Partner", BatchReference: "B1", Format: "activity", ReceivedAt: received, Total: 10}
	h.accept(r)
	h.accept(tracker.Request{ID: reqA, ClientID: "demo", ClientName: "Someone else", Format: "x", ReceivedAt: received.Add(time.Hour), Total: 1}) // the first record stands

	// Accepted, not split: no rows, summary from the request's total.
	v := h.view("demo", reqA)
	if want := (tracker.Summary{Total: 10, Queued: 10}); v.Summary != want || v.Status != tracker.Queued || len(v.Messages) != 0 {
		t.Fatalf("before split: %+v %s %d messages", v.Summary, v.Status, len(v.Messages))
	}
	if !v.ReceivedAt.Equal(received) || v.BatchReference != "B1" || v.ClientName != "Demo Partner" || v.ClientID != "demo" || v.Format != "activity" || v.Total != 10 {
		t.Fatalf("request fields: %+v", v.Request)
	}

	// Split in two parts, the first replayed.
	for _, m := range [][]tracker.NewMessage{msgs(0, 6, "call"), msgs(0, 6, "call"), msgs(6, 4, "quote")} {
		if h.add(reqA, m) {
			t.Fatal("add messages reported a cancel")
		}
	}
	v = h.view("demo", reqA)
	if want := (tracker.Summary{Total: 10, Queued: 10}); v.Summary != want || len(v.Messages) != 10 {
		t.Fatalf("after split: %+v, %d messages", v.Summary, len(v.Messages))
	}
	for i, m := range v.Messages {
		if m.Index != i || m.ID != tracker.MessageID(reqA, i) || m.ExternalReference != fmt.Sprintf("rec-%d", i) || m.Status != tracker.Queued || !m.ProcessedAt.IsZero() {
			t.Fatalf("message %d: %+v", i, m)
		}
	}

	// Invalid straight from Queued, then claim (replayed), then finish (replayed).
	h.clock.Add(time.Minute)
	h.finish(reqA, []tracker.Result{{Index: 9, Status: tracker.Invalid, Errors: []string{"type must be call or quote"}}})
	for range 2 {
		if got, want := h.claim(reqA, seqInts(0, 9)), seqInts(0, 8); !slices.Equal(got, want) {
			t.Fatalf("claimed %v, want %v", got, want)
		}
	}
	v = h.view("demo", reqA)
	if want := (tracker.Summary{Total: 10, Processing: 9, Invalid: 1}); v.Summary != want || v.Status != tracker.Processing {
		t.Fatalf("after claim: %+v %s", v.Summary, v.Status)
	}
	h.clock.Add(time.Minute)
	finishAt := h.clock.Now()
	done := append(results(tracker.Complete, 0, 1, 2, 3, 5, 6, 7), tracker.Result{Index: 4, Status: tracker.Failed, Errors: []string{"sink down", "retry later"}, MappingVersion: "v1"})
	done = append(done, results(tracker.Complete, 9)...)                  // already Invalid: stays Invalid
	done = append(done, tracker.Result{Index: 0, Status: tracker.Failed}) // a second result for 0: the first wins
	for range 2 {
		h.finish(reqA, done)
		h.clock.Add(time.Minute)
	}
	v = h.view("demo", reqA)
	if want := (tracker.Summary{Total: 10, Processing: 1, Complete: 7, Failed: 1, Invalid: 1}); v.Summary != want || v.Status != tracker.Processing {
		t.Fatalf("after finish: %+v %s", v.Summary, v.Status)
	}
	if m := v.Messages[4]; m.Status != tracker.Failed || !slices.Equal(m.Errors, []string{"sink down", "retry later"}) || !m.ProcessedAt.Equal(finishAt) || m.MappingVersion != "v1" {
		t.Fatalf("failed message: %+v", m)
	}
	if m := v.Messages[0]; m.Status != tracker.Complete || len(m.Errors) != 0 || !m.ProcessedAt.Equal(finishAt) {
		t.Fatalf("message 0: %+v", m)
	}
	if m := v.Messages[9]; m.Status != tracker.Invalid || len(m.Errors) != 1 || m.MappingVersion != "" {
		t.Fatalf("invalid message: %+v", m)
	}
	if !v.LastProcessedAt.Equal(finishAt) {
		t.Fatalf("last processed %v, want %v", v.LastProcessedAt, finishAt)
	}
	// Claiming terminal messages hands out nothing; a message never recorded is ignored.
	if got := h.claim(reqA, []int{0, 4, 9, 10, 11}); len(got) != 0 {
		t.Fatalf("claimed terminal or unknown messages: %v", got)
	}
	h.finish(reqA, append(results(tracker.Failed, 8), results(tracker.Complete, 42)...))
	v = h.view("demo", reqA)
	if want := (tracker.Summary{Total: 10, Complete: 7, Failed: 2, Invalid: 1}); v.Summary != want || v.Status != tracker.Complete || len(v.Messages) != 10 {
		t.Fatalf("all done: %+v %s %d messages", v.Summary, v.Status, len(v.Messages))
	}

	// Errors for unknown requests and bad input.
	if err := h.write(func(w tracker.Writer) error { _, err := w.AddMessages("nope", msgs(0, 1, "call")); return err }); !errors.Is(err, tracker.ErrNotFound) {
		t.Fatalf("add to unknown request: %v", err)
	}
	if err := h.write(func(w tracker.Writer) error { _, err := w.Claim("nope", []int{0}); return err }); !errors.Is(err, tracker.ErrNotFound) {
		t.Fatalf("claim unknown request: %v", err)
	}
	if err := h.write(func(w tracker.Writer) error { _, err := w.Finish(reqA, results(tracker.Processing, 0)); return err }); err == nil {
		t.Fatal("finish with a non-terminal status succeeded")
	}
	if err := h.write(func(w tracker.Writer) error { return w.Accept(tracker.Request{ID: "x"}) }); err == nil {
		t.Fatal("accept without a client id succeeded")
	}
}

func testCancel(t *testing.T, b Backend) {
	h := open(t, b)
	at := time.Date(2024, 5, 1, 9, 0, 0, 0, time.UTC)
	h.accept(tracker.Request{ID: "r1", ClientID: "demo", Format: "activity", ReceivedAt: at, Total: 10})
	h.accept(tracker.Request{ID: "r2", ClientID: "demo", Format: "activity", ReceivedAt: at, Total: 3})
	h.add("r1", msgs(0, 6, "call")) // 4 not yet recorded
	h.claim("r1", []int{0, 1})
	h.finish("r1", results(tracker.Complete, 0))
	trk := h.s.Tracker()
	// Another client cannot cancel it, nor learn it exists.
	if found, n, err := trk.Cancel(h.ctx, "other", "r1"); err != nil || found || n != 0 {
		t.Fatalf("other client's cancel: %v %d %v", found, n, err)
	}
	if found, _, err := trk.Cancel(h.ctx, "demo", "missing"); err != nil || found {
		t.Fatalf("missing: %v %v", found, err)
	}
	if v := h.view("demo", "r1"); v.Summary.Cancelled != 0 || !v.CancelledAt.IsZero() {
		t.Fatalf("other client's cancel changed the request: %+v", v.Summary)
	}
	h.clock.Add(time.Hour)
	found, n, err := trk.Cancel(h.ctx, "demo", "r1")
	if err != nil || !found || n != 8 { // 4 queued rows + 4 not yet recorded
		t.Fatalf("cancel: %v %d %v", found, n, err)
	}
	if found, n, err := trk.Cancel(h.ctx, "demo", "r1"); err != nil || !found || n != 0 {
		t.Fatalf("second cancel: %v %d %v", found, n, err)
	}
	v := h.view("demo", "r1")
	if want := (tracker.Summary{Total: 10, Processing: 1, Complete: 1, Cancelled: 8}); v.Summary != want || v.Status != tracker.Processing {
		t.Fatalf("after cancel: %+v %s", v.Summary, v.Status)
	}
	if !v.CancelledAt.Equal(h.clock.Now()) || !v.Messages[2].ProcessedAt.Equal(h.clock.Now()) || v.Messages[2].Status != tracker.Cancelled {
		t.Fatalf("cancelled at %v, message %+v", v.CancelledAt, v.Messages[2])
	}
	if !v.LastProcessedAt.Equal(h.clock.Now()) {
		t.Fatalf("last processed %v", v.LastProcessedAt)
	}
	// Cancelled messages are never claimed; finishing them keeps Cancelled.
	if got := h.claim("r1", seqInts(0, 5)); !slices.Equal(got, []int{1}) {
		t.Fatalf("claim after cancel: %v", got)
	}
	h.finish("r1", results(tracker.Invalid, 2, 3))
	// The rest of the envelope is recorded Cancelled.
	if !h.add("r1", msgs(6, 4, "call")) {
		t.Fatal("add after cancel did not report the cancel")
	}
	h.finish("r1", results(tracker.Complete, 1))
	v = h.view("demo", "r1")
	if want := (tracker.Summary{Total: 10, Complete: 2, Cancelled: 8}); v.Summary != want || v.Status != tracker.Complete {
		t.Fatalf("final: %+v %s", v.Summary, v.Status)
	}
	for _, m := range v.Messages[6:] {
		if m.Status != tracker.Cancelled || m.ProcessedAt.IsZero() {
			t.Fatalf("late message: %+v", m)
		}
	}
	// Cancelled before split: everything counts as cancelled at once.
	if found, n, err := trk.Cancel(h.ctx, "demo", "r2"); !found || n != 3 || err != nil {
		t.Fatalf("cancel unsplit: %v %d %v", found, n, err)
	}
	v = h.view("demo", "r2")
	if want := (tracker.Summary{Total: 3, Cancelled: 3}); v.Summary != want || v.Status != tracker.Complete {
		t.Fatalf("unsplit cancelled: %+v %s", v.Summary, v.Status)
	}
	if !h.add("r2", msgs(0, 3, "call")) {
		t.Fatal("split after cancel did not report the cancel")
	}
	if v = h.view("demo", "r2"); v.Summary != (tracker.Summary{Total: 3, Cancelled: 3}) || len(v.Messages) != 3 {
		t.Fatalf("split after cancel: %+v, %d messages", v.Summary, len(v.Messages))
	}
}

// testClaimCancelRace: for every message exactly one of Claim and Cancel wins.
func testClaimCancelRace(t *testing.T, b Backend) {
	h := open(t, b)
	for round := range 10 {
		id := fmt.Sprintf("race-%d", round)
		h.accept(tracker.Request{ID: id, ClientID: "demo", Format: "f", ReceivedAt: h.clock.Now(), Total: 100})
		h.add(id, msgs(0, 100, "call"))
		var claimed []int
		var cancelled int
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			for from := 0; from < 100; from += 10 {
				err := h.write(func(w tracker.Writer) error {
					got, err := w.Claim(id, seqInts(from, from+9))
					if err == nil {
						claimed = append(claimed, got...)
					}
					return err
				})
				if err != nil {
					t.Error(err)
				}
			}
		}()
		go func() {
			defer wg.Done()
			_, n, err := h.s.Tracker().Cancel(h.ctx, "demo", id)
			if err != nil {
				t.Error(err)
			}
			cancelled = n
		}()
		wg.Wait()
		if len(claimed)+cancelled != 100 {
			t.Fatalf("round %d: claimed %d + cancelled %d != 100", round, len(claimed), cancelled)
		}
		v := h.view("demo", id)
		if v.Summary.Processing != len(claimed) || v.Summary.Cancelled != cancelled {
			t.Fatalf("round %d: summary %+v, claimed %d, cancelled %d", round, v.Summary, len(claimed), cancelled)
		}
	}
}

// testFailedUpdate: the tracker writes of an Update whose fn fails are not kept.
func testFailedUpdate(t *testing.T, b Backend) {
	h := open(t, b)
	boom := errors.New("boom")
	h.accept(tracker.Request{ID: "kept", ClientID: "demo", Format: "f", ReceivedAt: h.clock.Now(), Total: 2})
	h.add("kept", msgs(0, 2, "call"))
	err := h.write(func(w tracker.Writer) error {
		if err := w.Accept(tracker.Request{ID: "lost", ClientID: "demo", Format: "f", ReceivedAt: h.clock.Now(), Total: 1}); err != nil {
			return err
		}
		if _, err := w.Claim("kept", []int{0, 1}); err != nil {
			return err
		}
		if _, err := w.Finish("kept", results(tracker.Complete, 0)); err != nil {
			return err
		}
		return fmt.Errorf("handler: %w", boom)
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update returned %v, want fn's error", err)
	}
	if p := h.find("demo", tracker.Filter{RequestIDs: []string{"lost"}}); p.TotalRequests != 0 {
		t.Fatal("a request accepted in a failed Update was kept")
	}
	if v := h.view("demo", "kept"); v.Summary != (tracker.Summary{Total: 2, Queued: 2}) || v.Messages[0].Status != tracker.Queued {
		t.Fatalf("transitions of a failed Update were kept: %+v", v.Summary)
	}
}

// searchFixture: two clients, requests on three days.
//
//	a1 demo BATCH-1 May 1: call Complete, quote Failed, call Queued
//	a2 demo BATCH-2 May 2: quote Processing, quote Complete
//	a3 demo (none)  May 3: call Queued
//	b1 other BATCH-1 May 2: call Failed, call Failed
func searchFixture(t *testing.T, b Backend) *harness {
	h := open(t, b)
	day := func(d, hr int) time.Time { return time.Date(2024, 5, d, hr, 0, 0, 0, time.UTC) }
	type req struct {
		id, client, batch string
		at                time.Time
		types             []string
	}
	for _, r := range []req{
		{"a1", "demo", "BATCH-1", day(1, 8), []string{"call", "quote", "call"}},
		{"a2", "demo", "BATCH-2", day(2, 8), []string{"quote", "quote"}},
		{"a3", "demo", "", day(3, 8), []string{"call"}},
		{"b1", "other", "BATCH-1", day(2, 9), []string{"call", "call"}},
	} {
		h.accept(tracker.Request{ID: r.id, ClientID: r.client, ClientName: r.client, BatchReference: r.batch, Format: "activity", ReceivedAt: r.at, Total: len(r.types)})
		var ms []tracker.NewMessage
		for i, typ := range r.types {
			ms = append(ms, tracker.NewMessage{Index: i, ExternalReference: fmt.Sprintf("%s-rec-%d", r.id[:1], i), Type: typ})
		}
		h.add(r.id, ms)
	}
	h.claim("a1", []int{0, 1})
	h.finish("a1", append(results(tracker.Complete, 0), results(tracker.Failed, 1)...))
	h.claim("a2", []int{0})
	h.clock.Add(time.Hour)
	h.finish("a2", results(tracker.Complete, 1))
	h.finish("b1", results(tracker.Failed, 0, 1))
	return h
}

// ids renders a page as "request:idx,idx request:..." for compact comparisons.
func ids(p tracker.Page) string {
	var parts []string
	for _, r := range p.Requests {
		var idx []string
		for _, m := range r.Messages {
			idx = append(idx, fmt.Sprint(m.Index))
		}
		parts = append(parts, r.ID+":"+strings.Join(idx, ","))
	}
	return strings.Join(parts, " ")
}

func testFindSemantics(t *testing.T, b Backend) {
	h := searchFixture(t, b)
	may1 := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	type F = tracker.Filter
	type S = []tracker.Status
	cases := []struct {
		name  string
		f     F
		want  string
		total int
	}{
		{"everything, newest first", F{}, "a3:0 a2:0,1 a1:0,1,2", 3},
		{"by id", F{RequestIDs: []string{"a2"}}, "a2:0,1", 1},
		{"by ids (OR)", F{RequestIDs: []string{"a1", "a3", "nope"}}, "a3:0 a1:0,1,2", 2},
		{"other client's id", F{RequestIDs: []string{"b1"}}, "", 0},
		{"external reference as batch: every message", F{ExternalReferences: []string{"BATCH-1"}}, "a1:0,1,2", 1},
		{"record reference: that message", F{ExternalReferences: []string{"a-rec-2"}}, "a1:2", 1},
		{"record references OR batch", F{ExternalReferences: []string{"BATCH-2", "a-rec-1"}}, "a2:0,1 a1:1", 2},
		{"other client's reference", F{ExternalReferences: []string{"b-rec-0"}}, "", 0},
		{"batch reference", F{BatchReferences: []string{"BATCH-1"}}, "a1:0,1,2", 1},
		{"batch references OR", F{BatchReferences: []string{"BATCH-2", "BATCH-1", "nope"}}, "a2:0,1 a1:0,1,2", 2},
		{"batch reference is exact", F{BatchReferences: []string{"batch-1"}}, "", 0},
		{"batch reference never matches a record id", F{BatchReferences: []string{"a-rec-0"}}, "", 0},
		{"batch reference AND status", F{BatchReferences: []string{"BATCH-1", "BATCH-2"}, Statuses: S{tracker.Queued}}, "a1:2", 1},
		{"batch reference AND record reference", F{BatchReferences: []string{"BATCH-1"}, ExternalReferences: []string{"a-rec-1"}}, "a1:1", 1},
		{"batch reference AND date", F{BatchReferences: []string{"BATCH-1", "BATCH-2"}, ReceivedFrom: may1.Add(24 * time.Hour)}, "a2:0,1", 1},
		{"batch reference AND id", F{BatchReferences: []string{"BATCH-1"}, RequestIDs: []string{"a2"}}, "", 0},
		{"type", F{MessageTypes: []string{"QUOTE"}}, "a2:0,1 a1:1", 2},
		{"types OR", F{MessageTypes: []string{"quote", "call"}}, "a3:0 a2:0,1 a1:0,1,2", 3},
		{"status", F{Statuses: S{tracker.Failed}}, "a1:1", 1},
		{"statuses OR", F{Statuses: S{tracker.Queued, tracker.Processing}}, "a3:0 a2:0 a1:2", 3},
		{"status AND type on one message", F{Statuses: S{tracker.Complete}, MessageTypes: []string{"quote"}}, "a2:1", 1},
		{"status AND type, no single message", F{Statuses: S{tracker.Failed}, MessageTypes: []string{"call"}}, "", 0},
		{"one day", F{ReceivedFrom: may1, ReceivedTo: may1.Add(24*time.Hour - 1)}, "a1:0,1,2", 1},
		{"range inclusive", F{ReceivedFrom: may1.Add(8 * time.Hour), ReceivedTo: may1.Add(32 * time.Hour)}, "a2:0,1 a1:0,1,2", 2},
		{"range exclusive of neighbours", F{ReceivedFrom: may1.Add(8*time.Hour + time.Microsecond), ReceivedTo: may1.Add(32*time.Hour - time.Microsecond)}, "", 0},
		{"range AND status", F{ReceivedFrom: may1.Add(24 * time.Hour), Statuses: S{tracker.Queued}}, "a3:0", 1},
		{"external batch AND status", F{ExternalReferences: []string{"BATCH-1"}, Statuses: S{tracker.Queued}}, "a1:2", 1},
		{"external batch AND status, none", F{ExternalReferences: []string{"BATCH-2"}, Statuses: S{tracker.Failed}}, "", 0},
		{"record AND type", F{ExternalReferences: []string{"a-rec-0"}, MessageTypes: []string{"quote"}}, "a2:0", 1},
		{"id AND reference", F{RequestIDs: []string{"a1"}, ExternalReferences: []string{"a-rec-1"}}, "a1:1", 1},
		{"sort batch asc, none last", F{Sorts: []tracker.Sort{{By: tracker.SortBatchReference}}}, "a1:0,1,2 a2:0,1 a3:0", 3},
		{"sort batch desc, none last", F{Sorts: []tracker.Sort{{By: tracker.SortBatchReference, Desc: true}}}, "a2:0,1 a1:0,1,2 a3:0", 3},
		{"sort received asc", F{Sorts: []tracker.Sort{{By: tracker.SortReceivedDate}}}, "a1:0,1,2 a2:0,1 a3:0", 3},
		{"sort processed desc, unprocessed last", F{Sorts: []tracker.Sort{{By: tracker.SortProcessedDate, Desc: true}}}, "a2:0,1 a1:0,1,2 a3:0", 3},
		{"sort processed asc, unprocessed last", F{Sorts: []tracker.Sort{{By: tracker.SortProcessedDate}}}, "a1:0,1,2 a2:0,1 a3:0", 3},
		{"sort key repeated: first counts", F{Sorts: []tracker.Sort{{By: tracker.SortReceivedDate}, {By: tracker.SortReceivedDate, Desc: true}}}, "a1:0,1,2 a2:0,1 a3:0", 3},
		{"page 2 of size 2", F{Page: 2, PageSize: 2}, "a1:0,1,2", 3},
		{"page beyond end", F{Page: 3, PageSize: 2}, "", 3},
		{"range beyond int64 nanoseconds", F{ReceivedFrom: time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), ReceivedTo: time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)}, "a3:0 a2:0,1 a1:0,1,2", 3},
		{"range before the requests", F{ReceivedFrom: time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), ReceivedTo: may1.Add(-1)}, "", 0},
		{"message page 1 of size 2", F{MessagePageSize: 2}, "a3:0 a2:0,1 a1:0,1", 3},
		{"message page 2 of size 2", F{MessagePage: 2, MessagePageSize: 2}, "a3: a2: a1:2", 3},
		{"message page far beyond the end", F{MessagePage: math.MaxInt, MessagePageSize: 1000}, "a3: a2: a1:", 3},
		{"message page of a status search", F{Statuses: S{tracker.Queued, tracker.Complete}, MessagePage: 2, MessagePageSize: 1}, "a3: a2: a1:2", 3},
		{"message page of a type search", F{MessageTypes: []string{"call"}, MessagePage: 2, MessagePageSize: 1}, "a3: a1:2", 2},
		{"message page of record references", F{ExternalReferences: []string{"a-rec-0", "a-rec-1", "BATCH-2"}, MessagePage: 2, MessagePageSize: 1}, "a3: a2:1 a1:1", 3},
		{"message and request pages", F{Page: 2, PageSize: 1, MessagePage: 2, MessagePageSize: 1}, "a2:1", 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := h.s.Tracker().Find(h.ctx, "demo", c.f)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(p); got != c.want || p.TotalRequests != c.total {
				t.Fatalf("got %q (total %d), want %q (total %d)", got, p.TotalRequests, c.want, c.total)
			}
			wantPages := 0
			switch {
			case c.f.PageSize > 0:
				wantPages = (c.total + c.f.PageSize - 1) / c.f.PageSize
			case c.total > 0:
				wantPages = 1
			}
			if p.TotalPages != wantPages {
				t.Fatalf("total pages %d, want %d", p.TotalPages, wantPages)
			}
		})
	}
	// Summaries are over the whole request whatever the payload shows, message pages included.
	for _, f := range []tracker.Filter{{Statuses: []tracker.Status{tracker.Failed}}, {RequestIDs: []string{"a1"}, MessagePage: 3, MessagePageSize: 2}} {
		p := h.find("demo", f)
		if want := (tracker.Summary{Total: 3, Queued: 1, Complete: 1, Failed: 1}); len(p.Requests) != 1 || p.Requests[0].Summary != want || p.Requests[0].Status != tracker.Processing {
			t.Fatalf("%+v: %+v", f, p.Requests)
		}
	}
	// Fields of a selected request and its messages.
	v := h.view("demo", "a2")
	if v.ClientID != "demo" || v.BatchReference != "BATCH-2" || v.Format != "activity" || !v.ReceivedAt.Equal(may1.Add(32*time.Hour)) ||
		!v.LastProcessedAt.Equal(time.Date(2024, 5, 1, 13, 0, 0, 0, time.UTC)) || !v.CancelledAt.IsZero() {
		t.Fatalf("a2: %+v", v)
	}
	if m := v.Messages[1]; m.ID != tracker.MessageID("a2", 1) || m.ExternalReference != "a-rec-1" || m.Type != "quote" || m.Status != tracker.Complete || m.MappingVersion != "v1" {
		t.Fatalf("a2 message 1: %+v", m)
	}
	// Invalid filters.
	for _, f := range []tracker.Filter{{Statuses: []tracker.Status{"Lost"}}, {Sorts: []tracker.Sort{{By: "size"}}}, {PageSize: -1}, {Page: -1}, {MessagePage: -1}, {MessagePageSize: -1}} {
		if _, err := h.s.Tracker().Find(h.ctx, "demo", f); !errors.Is(err, tracker.ErrInvalidFilter) {
			t.Fatalf("%+v: %v", f, err)
		}
	}
}

// testMessagePaging: a request of 2,500 messages is read 1,000 at a time, under every kind of
// search; its summary always counts all of them.
func testMessagePaging(t *testing.T, b Backend) {
	h := open(t, b)
	const n = 2500
	h.accept(tracker.Request{ID: "big", ClientID: "demo", BatchReference: "BIG", Format: "f", ReceivedAt: h.clock.Now(), Total: n})
	types := []string{"call", "quote"}
	for off := 0; off < n; off += 500 {
		part := msgs(off, 500, "")
		for i := range part {
			part[i].Type = types[(off+i)%2]
		}
		h.add("big", part)
	}
	var failed []tracker.Result
	for i := 0; i < n; i += 3 {
		failed = append(failed, tracker.Result{Index: i, Status: tracker.Failed, Errors: []string{"no"}})
	}
	h.finish("big", failed)
	whole := tracker.Summary{Total: n, Queued: n - len(failed), Failed: len(failed)}

	// pages returns the indexes of every message page until an empty one.
	pages := func(f tracker.Filter) [][]int {
		var out [][]int
		for page := 1; ; page++ {
			f.MessagePage, f.MessagePageSize = page, 1000
			p := h.find("demo", f)
			if len(p.Requests) != 1 || p.Requests[0].Summary != whole {
				t.Fatalf("%+v page %d: %d requests, %+v", f, page, len(p.Requests), p.Requests)
			}
			var idx []int
			for _, m := range p.Requests[0].Messages {
				idx = append(idx, m.Index)
			}
			if len(idx) == 0 {
				return out
			}
			out = append(out, idx)
		}
	}
	check := func(name string, f tracker.Filter, want []int) {
		t.Helper()
		got := pages(f)
		var all []int
		for i, p := range got {
			if len(p) > 1000 || (i < len(got)-1 && len(p) != 1000) {
				t.Fatalf("%s: page %d holds %d messages", name, i+1, len(p))
			}
			all = append(all, p...)
		}
		if !slices.Equal(all, want) {
			t.Fatalf("%s: %d messages over %d pages, want %d in index order", name, len(all), len(got), len(want))
		}
	}
	var every, calls, failedIdx, failedCalls []int
	for i := range n {
		every = append(every, i)
		if i%2 == 0 {
			calls = append(calls, i)
		}
		if i%3 == 0 {
			failedIdx = append(failedIdx, i)
			if i%2 == 0 {
				failedCalls = append(failedCalls, i)
			}
		}
	}
	check("by id", tracker.Filter{RequestIDs: []string{"big"}}, every)
	check("by batch reference", tracker.Filter{BatchReferences: []string{"BIG"}}, every)
	check("by external reference as batch", tracker.Filter{ExternalReferences: []string{"BIG"}}, every)
	check("by status", tracker.Filter{Statuses: []tracker.Status{tracker.Failed}}, failedIdx)
	check("by type", tracker.Filter{MessageTypes: []string{"CALL"}}, calls)
	check("by type and status", tracker.Filter{MessageTypes: []string{"call"}, Statuses: []tracker.Status{tracker.Failed}}, failedCalls)
	var refs []string
	for i := 0; i < n; i += 2 {
		refs = append(refs, fmt.Sprintf("rec-%d", i))
	}
	check("by record references", tracker.Filter{ExternalReferences: refs[:1000]}, calls[:1000])
	// Without message paging every selected message comes back.
	if p := h.find("demo", tracker.Filter{RequestIDs: []string{"big"}}); len(p.Requests[0].Messages) != n {
		t.Fatalf("unpaged: %d messages", len(p.Requests[0].Messages))
	}
}

// testClientScoping: a client never sees, counts or cancels another client's requests, under
// any criterion, even when ids, batch references and record ids coincide.
func testClientScoping(t *testing.T, b Backend) {
	h := open(t, b)
	at := time.Date(2024, 5, 2, 10, 0, 0, 0, time.UTC)
	for _, c := range []string{"demo", "other"} {
		id := c + "-req"
		h.accept(tracker.Request{ID: id, ClientID: c, ClientName: c, BatchReference: "SHARED", Format: "activity", ReceivedAt: at, Total: 2})
		h.add(id, []tracker.NewMessage{{Index: 0, ExternalReference: "same-rec", Type: "call"}, {Index: 1, ExternalReference: c + "-rec", Type: "call"}})
		h.finish(id, results(tracker.Failed, 0))
	}
	S := []tracker.Status{tracker.Failed, tracker.Queued}
	for _, f := range []tracker.Filter{
		{},
		{RequestIDs: []string{"demo-req", "other-req"}},
		{ExternalReferences: []string{"SHARED"}},
		{ExternalReferences: []string{"same-rec", "demo-rec", "other-rec"}},
		{BatchReferences: []string{"SHARED"}},
		{Statuses: S},
		{MessageTypes: []string{"call"}, Statuses: S},
		{ReceivedFrom: at.Add(-time.Hour), ReceivedTo: at.Add(time.Hour)},
		{Sorts: []tracker.Sort{{By: tracker.SortBatchReference}}, PageSize: 10},
	} {
		for _, c := range []string{"demo", "other"} {
			p := h.find(c, f)
			if p.TotalRequests != 1 || len(p.Requests) != 1 || p.Requests[0].ID != c+"-req" || p.Requests[0].ClientID != c {
				t.Fatalf("%s searching %+v: %q total %d", c, f, ids(p), p.TotalRequests)
			}
			for _, m := range p.Requests[0].Messages {
				if m.ExternalReference != "same-rec" && m.ExternalReference != c+"-rec" {
					t.Fatalf("%s sees message %+v", c, m)
				}
			}
		}
	}
	if p := h.find("demo", tracker.Filter{RequestIDs: []string{"other-req"}}); p.TotalRequests != 0 {
		t.Fatal("demo found other's request by id")
	}
	if p := h.find("demo", tracker.Filter{ExternalReferences: []string{"other-rec"}}); p.TotalRequests != 0 {
		t.Fatal("demo found other's record by reference")
	}
	if p := h.find("nobody", tracker.Filter{}); p.TotalRequests != 0 || len(p.Requests) != 0 {
		t.Fatal("a client without requests found some")
	}
	if found, n, err := h.s.Tracker().Cancel(h.ctx, "demo", "other-req"); found || n != 0 || err != nil {
		t.Fatalf("demo cancelled other's request: %v %d %v", found, n, err)
	}
	if v := h.view("other", "other-req"); v.Summary != (tracker.Summary{Total: 2, Queued: 1, Failed: 1}) || !v.CancelledAt.IsZero() {
		t.Fatalf("other's request after demo's cancel: %+v", v.Summary)
	}
}
