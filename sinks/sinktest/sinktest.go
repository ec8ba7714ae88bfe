// Package sinktest is the test suite every sinks.Sink implementation must pass. A sink's tests
// call Run with a function that opens a fresh sink over a fresh, empty destination:
//
//	func TestFileSink(t *testing.T) {
//		sinktest.Run(t, func(t *testing.T) sinktest.Harness { ... })
//	}
//
// The suite writes flat records of the form {"id": "r-…", "seq": n, "name": "…"}, mostly of
// client Client, and compares what the destination holds, as (client id, JSON value) pairs, in
// any order.
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

// Client is the client id of the suite's records, unless a test says otherwise.
const Client = "client-a"

// Harness is one sink under test and a view of its destination.
type Harness struct {
	// Sink is the sink under test, over an empty destination. The suite closes it (Close is
	// idempotent); open releases the destination itself with t.Cleanup.
	Sink sinks.Sink
	// Stored returns every record the destination holds: the client id stored with it and a
	// JSON object of the fields the suite wrote (without the client id), in any order. It must
	// work before the first Write.
	Stored func(t *testing.T) []Row
	// Upserts reports that the sink stores a redelivered record (same client, "id" field and
	// Record.ID) once, and that a changed record with the same client and id replaces the
	// stored one.
	Upserts bool
}

// Row is one record as the destination holds it.
type Row struct {
	Client string
	Data   json.RawMessage
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
		{"ClientsAreIsolated", testClientsAreIsolated},
		{"RefusesRecordWithoutClient", testRefusesRecordWithoutClient},
		{"ClientFieldIsReserved", testClientFieldIsReserved},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := open(t)
			t.Cleanup(func() { h.Sink.Close() })
			tt.fn(t, h)
		})
	}
}

// Records returns n suite records of client Client whose ids and Record.IDs start with prefix.
func Records(prefix string, n int) []sinks.Record { return RecordsOf(Client, prefix, n) }

// RecordsOf returns n suite records of client whose ids and Record.IDs start with prefix: two
// clients' records of the same prefix have the same ids, and names that differ.
func RecordsOf(client, prefix string, n int) []sinks.Record {
	out := make([]sinks.Record, n)
	for i := range out {
		name := fmt.Sprintf("name %s %d", prefix, i)
		if client != Client {
			name += " of " + client
		}
		out[i] = sinks.Record{
			ClientID: client,
			ID:       fmt.Sprintf("msg-%s-%d", prefix, i),
			Data:     json.RawMessage(fmt.Sprintf(`{"id":"r-%s-%d","seq":%d,"name":%q}`, prefix, i, i, name)),
		}
	}
	return out
}

func testStoresBatch(t *testing.T, h Harness) {
	recs := Records("batch", 5)
	if err := h.Sink.Write(context.Background(), recs); err != nil {
		t.Fatalf("Write: %v", err)
	}
	assertStored(t, h, rows(recs))
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
		assertHolds(t, h, rows(recs)) // repeats are allowed; losses are not
		return
	}
	assertStored(t, h, rows(recs))

	changed := recs[1]
	changed.Data = json.RawMessage(`{"id":"r-again-1","seq":1,"name":"changed"}`)
	if err := h.Sink.Write(ctx, []sinks.Record{changed}); err != nil {
		t.Fatalf("Write of a changed record: %v", err)
	}
	want := rows(recs)
	want[1].Data = changed.Data
	assertStored(t, h, want)
}

func testConcurrentWrites(t *testing.T, h Harness) {
	const writers, per = 8, 10
	var all []Row
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for w := range writers {
		recs := Records(fmt.Sprintf("w%d", w), per)
		all = append(all, rows(recs)...)
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

// testClientsAreIsolated: two clients write records with the same ids (and Record.IDs), in one
// Write and in separate ones; each keeps its own, and an update by one never touches the other's.
func testClientsAreIsolated(t *testing.T, h Harness) {
	ctx := context.Background()
	a, b := RecordsOf("client-a", "same", 3), RecordsOf("client-b", "same", 3)
	if err := h.Sink.Write(ctx, append(slices.Clone(a[:2]), b[:2]...)); err != nil {
		t.Fatalf("Write of two clients' records: %v", err)
	}
	if err := h.Sink.Write(ctx, b[2:]); err != nil {
		t.Fatalf("Write of client-b's record: %v", err)
	}
	if err := h.Sink.Write(ctx, a[2:]); err != nil {
		t.Fatalf("Write of client-a's record: %v", err)
	}
	want := append(rows(a), rows(b)...)
	if !h.Upserts {
		assertHolds(t, h, want)
		return
	}
	assertStored(t, h, want)

	changed := a[0]
	changed.Data = json.RawMessage(`{"id":"r-same-0","seq":0,"name":"changed by client-a"}`)
	if err := h.Sink.Write(ctx, []sinks.Record{changed}); err != nil {
		t.Fatalf("Write of a changed record: %v", err)
	}
	want[0].Data = changed.Data
	assertStored(t, h, want)
}

func testRefusesRecordWithoutClient(t *testing.T, h Harness) {
	recs := Records("anonymous", 2)
	recs[1].ClientID = ""
	err := h.Sink.Write(context.Background(), recs)
	if !errors.Is(err, sinks.ErrPermanent) || !strings.Contains(err.Error(), "record msg-anonymous-1: no client id") {
		t.Fatalf("Write of a record without client id: %v; want a permanent error naming record msg-anonymous-1", err)
	}
	assertStored(t, h, nil)
}

func testClientFieldIsReserved(t *testing.T, h Harness) {
	recs := Records("spoof", 2)
	recs[1].Data = json.RawMessage(`{"id":"r-spoof-1","` + sinks.ClientField + `":"client-b"}`)
	err := h.Sink.Write(context.Background(), recs)
	if !errors.Is(err, sinks.ErrPermanent) || !strings.Contains(err.Error(), `record msg-spoof-1: field "`+sinks.ClientField+`" is reserved`) {
		t.Fatalf("Write of a record carrying %s: %v; want a permanent error naming record msg-spoof-1", sinks.ClientField, err)
	}
	assertStored(t, h, nil)
}

// rows is what the destination should hold for recs.
func rows(recs []sinks.Record) []Row {
	out := make([]Row, len(recs))
	for i, r := range recs {
		out[i] = Row{Client: r.ClientID, Data: r.Data}
	}
	return out
}

// assertStored checks that the destination holds exactly want, in any order.
func assertStored(t *testing.T, h Harness, want []Row) {
	t.Helper()
	got, exp := canonical(t, h.Stored(t)), canonical(t, want)
	if !slices.Equal(got, exp) {
		t.Fatalf("destination holds %d records:\n%s\nwant %d:\n%s", len(got), lines(got), len(exp), lines(exp))
	}
}

// assertHolds checks that the destination holds at least want (a sink that does not upsert may
// hold repeats).
func assertHolds(t *testing.T, h Harness, want []Row) {
	t.Helper()
	got := canonical(t, h.Stored(t))
	for _, w := range canonical(t, want) {
		if !slices.Contains(got, w) {
			t.Fatalf("%s is missing from what the destination holds:\n%s", w, lines(got))
		}
	}
}

// canonical renders rows as "client <JSON, map keys sorted>" and sorts them, so sets compare
// as slices.
func canonical(t *testing.T, rows []Row) []string {
	t.Helper()
	out := make([]string, 0, len(rows))
	for _, r := range rows {
		var x any
		if err := json.Unmarshal(r.Data, &x); err != nil {
			t.Fatalf("stored value %s: %v", r.Data, err)
		}
		b, err := json.Marshal(x)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%q %s", r.Client, b))
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
