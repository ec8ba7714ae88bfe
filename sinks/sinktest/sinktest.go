// Package sinktest is the test suite every sinks.Sink implementation must pass. A sink's tests
// call Run with a function that opens a fresh sink over a fresh, empty destination:
//
//	func TestFileSink(t *testing.T) {
//		sinktest.Run(t, func(t *testing.T) sinktest.Harness { ... })
//	}
//
// The suite writes flat records of the form {"id": "r-…", "seq": n, "name": "…"} and compares
// what the destination holds, as JSON values, in any order.
package sinktest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opengw/gateway/sinks"
)

// Harness is one sink under test and a view of its destination.
type Harness struct {
	// Sink is the sink under test, over an empty destination. The suite closes it (Close is
	// idempotent); open releases the destination itself with t.Cleanup.
	Sink sinks.Sink
	// Stored returns every record the destination holds, as JSON objects with the fields the
	// suite wrote, in any order. It must work before the first Write.
	Stored func(t *testing.T) []json.RawMessage
	// Upserts reports that the sink stores a redelivered record (same "id" field and Record.ID)
	// once, and that a changed record with the same id replaces the stored one.
	Upserts bool
}

// Run runs the suite. open is called once per subtest with that subtest's t.
func Run(t *testing.T, open func(t *testing.T) Harness) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, h Harness)
	}{
		{"StoresBatchExactly", testStoresBatch},
		{"EmptyBatchIsNoop", testEmptyBatch},
		{"Redelivery", testRedelivery},
		{"ConcurrentWrites", testConcurrentWrites},
		{"CancelledContext", testCancelledContext},
		{"CloseIsIdempotent", testClose},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := open(t)
			t.Cleanup(func() { h.Sink.Close() })
			tt.fn(t, h)
		})
	}
}

// Records returns n suite records whose ids and Record.IDs start with prefix.
func Records(prefix string, n int) []sinks.Record {
	out := make([]sinks.Record, n)
	for i := range out {
		out[i] = sinks.Record{
			ID:   fmt.Sprintf("msg-%s-%d", prefix, i),
			Data: json.RawMessage(fmt.Sprintf(`{"id":"r-%s-%d","seq":%d,"name":"name %s %d"}`, prefix, i, i, prefix, i)),
		}
	}
	return out
}

func testStoresBatch(t *testing.T, h Harness) {
	recs := Records("batch", 5)
	if err := h.Sink.Write(context.Background(), recs); err != nil {
		t.Fatalf("Write: %v", err)
	}
	assertStored(t, h, datas(recs))
}

func testEmptyBatch(t *testing.T, h Harness) {
	ctx := context.Background()
	if err := h.Sink.Write(ctx, nil); err != nil {
		t.Fatalf("Write(nil): %v", err)
	}
	if err := h.Sink.Write(ctx, []sinks.Record{}); err != nil {
		t.Fatalf("Write([]): %v", err)
	}
	assertStored(t, h, nil)
}

func testRedelivery(t *testing.T, h Harness) {
	ctx := context.Background()
	recs := Records("again", 4)
	if err := h.Sink.Write(ctx, recs); err != nil {
		t.Fatalf("first Write: %v", err)
	}
	if err := h.Sink.Write(ctx, recs); err != nil {
		t.Fatalf("redelivery: %v", err)
	}
	if !h.Upserts {
		// Repeats are allowed; losses are not.
		got := canonical(t, h.Stored(t))
		for _, want := range canonical(t, datas(recs)) {
			if !slices.Contains(got, want) {
				t.Fatalf("after redelivery, %s is missing from %v", want, got)
			}
		}
		return
	}
	assertStored(t, h, datas(recs))

	changed := recs[1]
	changed.Data = json.RawMessage(`{"id":"r-again-1","seq":1,"name":"changed"}`)
	if err := h.Sink.Write(ctx, []sinks.Record{changed}); err != nil {
		t.Fatalf("Write of a changed record: %v", err)
	}
	want := datas(recs)
	want[1] = changed.Data
	assertStored(t, h, want)
}

func testConcurrentWrites(t *testing.T, h Harness) {
	const writers, per = 8, 10
	var all []json.RawMessage
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for w := range writers {
		recs := Records(fmt.Sprintf("w%d", w), per)
		all = append(all, datas(recs)...)
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Several small Writes per goroutine, so Writes really interleave.
			for i := 0; i < per; i += 2 {
				if err := h.Sink.Write(context.Background(), recs[i:i+2]); err != nil {
					errs[w] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent Writes: %v", err)
	}
	assertStored(t, h, all)
}

func testCancelledContext(t *testing.T, h Harness) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := h.Sink.Write(ctx, Records("cancelled", 2))
	if err == nil {
		t.Fatal("Write with a cancelled context returned nil")
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Write with a cancelled context: %v; want it to wrap context.Canceled", err)
	}
	if errors.Is(err, sinks.ErrPermanent) {
		t.Errorf("Write with a cancelled context: %v is permanent; the records must be retried", err)
	}
	assertStored(t, h, nil)

	ctx, cancel = context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	if err := h.Sink.Write(ctx, Records("expired", 1)); !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, sinks.ErrPermanent) {
		t.Errorf("Write after the deadline: %v; want a retryable error wrapping context.DeadlineExceeded", err)
	}
}

func testClose(t *testing.T, h Harness) {
	if err := h.Sink.Write(context.Background(), Records("close", 1)); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := h.Sink.Close(); err != nil {
		t.Fatalf("first Close: %v", err)
	}
	if err := h.Sink.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	err := h.Sink.Write(context.Background(), Records("closed", 1))
	if !errors.Is(err, sinks.ErrClosed) || errors.Is(err, sinks.ErrPermanent) {
		t.Fatalf("Write after Close: %v; want a retryable error wrapping sinks.ErrClosed", err)
	}
}

func datas(recs []sinks.Record) []json.RawMessage {
	out := make([]json.RawMessage, len(recs))
	for i, r := range recs {
		out[i] = r.Data
	}
	return out
}

// assertStored checks that the destination holds exactly want, in any order.
func assertStored(t *testing.T, h Harness, want []json.RawMessage) {
	t.Helper()
	got, exp := canonical(t, h.Stored(t)), canonical(t, want)
	if !slices.Equal(got, exp) {
		t.Fatalf("destination holds %d records:\n%s\nwant %d:\n%s", len(got), lines(got), len(exp), lines(exp))
	}
}

// canonical re-encodes JSON values (map keys sorted) and sorts them, so sets compare as slices.
func canonical(t *testing.T, vals []json.RawMessage) []string {
	t.Helper()
	out := make([]string, 0, len(vals))
	for _, v := range vals {
		var x any
		if err := json.Unmarshal(v, &x); err != nil {
			t.Fatalf("stored value %s: %v", v, err)
		}
		b, err := json.Marshal(x)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	slices.Sort(out)
	return out
}

func lines(vals []string) string {
	if len(vals) == 0 {
		return "  (none)"
	}
	return "  " + strings.Join(vals, "\n  ")
}
