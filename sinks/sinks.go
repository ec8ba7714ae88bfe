// Package sinks delivers mapped records to their destinations: an SQLite or PostgreSQL table
// (upserted by client and key), an HTTP endpoint (JSON array POSTs) or an NDJSON file
// (append-only). docs/sinks.md describes every type and key for operators.
//
// A Sink is the only thing the pipeline sees. Its error contract tells the pipeline what to do:
// nil means every record is stored; an error wrapping ErrPermanent means retrying cannot help and
// the records end Failed with the error's message; any other error is retried later with backoff.
// Delivery is at-least-once, so Write may see records it has already stored. The table and http
// sinks are idempotent for such redeliveries (upsert by client and key; Idempotency-Key header);
// the file sink is not and may repeat lines.
//
// Clients are kept apart in every sink: the upsert identity is (Record.ClientID, key), so a
// record from one client never updates another client's row whatever ids they send, and every
// destination receives the client id with each record (see ClientField).
//
// Sinks are configured by the `sinks:` map of gateway.yaml (Config) and opened together by Open,
// which validates every entry before opening any and fails at start-up on wiring mistakes.
package sinks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/tidwall/gjson"

	"github.com/opengw/gateway/internal/jsonkind"
)

// ClientField names the client id beside the mapped fields in every destination: the column of
// the table sinks, the member the http and file sinks add to each record object. A mapped record
// must not carry a field of that name (the sinks refuse it, permanently).
const ClientField = "_client_id"

// Record is one mapped record bound for a sink.
type Record struct {
	// ClientID is the client (partner) that sent the record. It is part of the upsert identity,
	// (ClientID, key), and travels with the record to its destination. Required: a record
	// without one is refused with a permanent error.
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

// parseObject checks what every sink requires of a record, permanently refusing a record without
// a client id, Data that is not one JSON object, or Data that carries ClientField itself, and
// returns the parsed object.
func parseObject(r Record) (gjson.Result, error) {
	if r.ClientID == "" {
		return gjson.Result{}, Permanent(fmt.Errorf("record %s: no client id (Record.ClientID is empty)", r.ID))
	}
	if !gjson.ValidBytes(r.Data) {
		return gjson.Result{}, Permanent(fmt.Errorf("record %s: data is not valid JSON", r.ID))
	}
	doc := gjson.ParseBytes(r.Data)
	if !doc.IsObject() {
		return gjson.Result{}, Permanent(fmt.Errorf("record %s: data is %s, want a JSON object", r.ID, jsonkind.Of(doc)))
	}
	var clash string
	doc.ForEach(func(k, _ gjson.Result) bool {
		if strings.EqualFold(k.String(), ClientField) {
			clash = k.String()
		}
		return clash == ""
	})
	if clash != "" {
		return gjson.Result{}, Permanent(fmt.Errorf("record %s: field %q is reserved for the client id the sink adds", r.ID, clash))
	}
	return doc, nil
}

// appendWithClient appends the JSON object obj (valid, compact or not) with ClientField set to
// client as its first member.
func appendWithClient(dst []byte, client string, obj []byte) []byte {
	quoted, _ := json.Marshal(client) // a string always encodes
	dst = append(dst, `{"`+ClientField+`":`...)
	dst = append(dst, quoted...)
	body := bytes.TrimLeft(obj[bytes.IndexByte(obj, '{')+1:], " \t\r\n")
	if len(body) > 0 && body[0] != '}' {
		dst = append(dst, ',')
	}
	return append(dst, body...)
}
