// Package sinks delivers mapped records to their destinations: an SQLite table (upserted by key),
// an HTTP endpoint (JSON array POSTs) or an NDJSON file (append-only).
//
// A Sink is the only thing the pipeline sees. Its error contract tells the pipeline what to do:
// nil means every record is stored; an error wrapping ErrPermanent means retrying cannot help and
// the records end Failed with the error's message; any other error is retried later with backoff.
// Delivery is at-least-once, so Write may see records it has already stored. The sqlite and
// http sinks are idempotent for such redeliveries (upsert by key; Idempotency-Key header); the
// file sink is not and may repeat lines.
//
// Sinks are configured by the `sinks:` map of gateway.yaml (Config) and opened together by Open,
// which validates every entry before opening any and fails at start-up on wiring mistakes.
package sinks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
)

// Record is one mapped record bound for a sink.
type Record struct {
	// ClientID is the partner the record came from. Upsert identity is always (ClientID, key):
	// a record never updates or reveals another client's.
	ClientID string
	// ID is the gateway's message id, stable across redeliveries. Sinks use it in error messages,
	// in the http sink's Idempotency-Key, and as the upsert key when the sqlite sink's key field
	// is absent or null.
	ID string
	// Data holds the mapped fields: one JSON object, keys in mapping order. Anything else is
	// rejected with a permanent error.
	Data json.RawMessage
}

// Sink delivers records to one destination.
//
// Write is safe for concurrent use. It returns nil once all records are stored. An error wrapping
// ErrPermanent means retrying cannot help (the records end Failed with err.Error()); any other
// error, including ErrClosed and the context's error, is retried later with backoff. Delivery is
// at-least-once: Write may be called again with records it already stored, and sinks that upsert
// must not duplicate them. An empty batch is a no-op.
//
// Close releases the sink's resources and is idempotent; Write after Close returns an error
// wrapping ErrClosed.
type Sink interface {
	Write(ctx context.Context, records []Record) error
	Close() error
}

// ErrPermanent marks errors that retrying cannot fix: malformed records, field names a table
// cannot hold, constraint violations, 4xx responses. Test with errors.Is.
var ErrPermanent = errors.New("permanent sink error")

// ErrClosed is returned (wrapped) by Write after Close. It is retryable: the records are
// delivered once the gateway runs again.
var ErrClosed = errors.New("sink is closed")

// Permanent wraps err so that errors.Is(result, ErrPermanent) holds, while keeping err's message
// unchanged and err itself reachable by errors.Is and errors.As. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string   { return e.err.Error() }
func (e *permanentError) Unwrap() []error { return []error{ErrPermanent, e.err} }

// precheck holds what every Write checks first: a closed sink refuses (retryably), an empty
// batch is done, a cancelled context stops before any work. done reports whether Write should
// return err at once.
func precheck(ctx context.Context, name string, closed *atomic.Bool, records []Record) (done bool, err error) {
	switch {
	case closed.Load():
		return true, fmt.Errorf("sink %q: %w", name, ErrClosed)
	case len(records) == 0:
		return true, nil
	case ctx.Err() != nil:
		return true, fmt.Errorf("sink %q: %w", name, ctx.Err())
	}
	return false, nil
}
