// Package store names the storage contracts the gateway's pipeline and HTTP APIs are built on,
// so that a backend can be swapped without touching them. Two backends implement it:
// internal/sqlitestore (one node, embedded SQLite, the default) and internal/pgstore (several
// nodes sharing PostgreSQL through watermill-sql). Only cmd/gateway picks one; everything else
// sees these interfaces. Every backend must pass the shared suites in store/storetest and
// Watermill's universal pub/sub suite for its Queue.
//
// The unit of work is a transaction (Tx): what a handler or intake does in one Update commits
// together with the queue messages it publishes and acknowledges, so that
//
//   - a 202/201 means the request's fragments, its tracker row, its idempotency key and its
//     event sequence are all committed (intake), and
//   - a handler's tracker transitions and the acknowledgement of the message that caused them
//     commit together: a message redelivered after a crash finds a consistent state.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/opengw/gateway/tracker"
)

// Store is one storage backend. It is safe for concurrent use.
type Store interface {
	// Update runs fn in one transaction and commits it if fn returns nil; otherwise nothing fn
	// did is kept and fn's error is returned. fn may be called more than once (a backend may
	// retry a transaction that lost a serialization race), so it must not have side effects
	// outside tx. ctx marked with Urgent asks the backend to serve the write before background
	// work (a partner is waiting for it). Messages published in tx are delivered to
	// subscribers only after the commit.
	Update(ctx context.Context, fn func(tx Tx) error) error
	// Queue is the durable pub/sub the pipeline's router consumes. Its Close does nothing:
	// Watermill's router closes subscribers before its handlers finish, which would give back
	// every message in flight; the backend stops the queue itself after the router has stopped.
	Queue() Queue
	// Tracker answers tracking searches and cancels requests.
	Tracker() tracker.Store
	// PurgeIdempotencyKeys forgets idempotency keys remembered before before.
	PurgeIdempotencyKeys(ctx context.Context, before time.Time) error
	// Records returns the raw records kept (Tx.KeepRecords) for the fragment of request
	// requestID starting at record offset; found is false once purged or if never kept.
	Records(ctx context.Context, requestID string, offset int) (records []byte, found bool, err error)
	// RecordOffsets lists, ascending, the offsets of the fragments of request requestID whose
	// records are kept.
	RecordOffsets(ctx context.Context, requestID string) ([]int, error)
	// Purge deletes at most limit rows of each kind: kept records of requests received before
	// recordsBefore and tracked requests (with their messages) received before trackingBefore.
	// A zero time skips that kind. It returns how many rows it deleted, so a caller purges in
	// small batches until 0 without ever holding the writer long.
	Purge(ctx context.Context, recordsBefore, trackingBefore time.Time, limit int) (int, error)
	// Ping reports whether the database is reachable and writable (readiness).
	Ping(ctx context.Context) error
	// Close releases the backend after the router has stopped. It is idempotent.
	Close() error
}

// Tx is one transaction of a Store. It must be used only inside the Update call that made it,
// from one goroutine.
type Tx interface {
	// Tracker records status changes in this transaction.
	Tracker() tracker.Writer

	// AfterCommit runs fn once this transaction has committed, and never if it rolls back: for
	// what must only see committed state (a completion check, a log line). fn must not block.
	AfterCommit(fn func())

	// Publish stores msgs on topic in this transaction; subscribers see them after the commit.
	Publish(topic string, msgs ...*message.Message) error
	// Ack settles msg, a message the Queue delivered, in this transaction: once committed it is
	// never delivered again. The handler still returns nil (Watermill then acks, at no cost).
	// If msg's claim was lost meanwhile (its lease expired and another consumer has it), Ack
	// changes nothing and the other consumer's outcome wins.
	Ack(msg *message.Message) error
	// Retry settles msg in this transaction and offers it again, not before notBefore, as
	// delivery attempt AttemptOf(msg)+1. The handler then returns nil. It survives restarts.
	Retry(msg *message.Message, notBefore time.Time) error

	// KeepRecords stores the raw records (a JSON array) of the fragment of request requestID
	// starting at record offset, for processing and for replay, until Purge removes them.
	// Keeping the same fragment again replaces it. It keeps nothing of records once it returns:
	// the caller may reuse the buffer at once.
	KeepRecords(requestID string, offset int, records []byte, receivedAt time.Time) error

	// Idempotency returns the receipt remembered for (client, endpoint, key) since since.
	Idempotency(clientID, endpoint, key string, since time.Time) (Idempotent, bool, error)
	// RememberIdempotency remembers rec. If another transaction remembered the same (client,
	// endpoint, key) and is not yet committed or has committed since this one began, it returns
	// ErrIdempotencyInFlight (the caller answers 409) or, for a committed one, the caller sees it
	// on its next attempt.
	RememberIdempotency(rec Idempotent) error
	// NextSequence allocates the next value (1, 2, ...) of the durable sequence name.
	NextSequence(name string) (int64, error)
}

// Queue is the durable pub/sub behind the pipeline's router: at-least-once, competing
// consumers (every subscription of a topic, on every node, shares its messages). Each
// delivered message carries its 1-based delivery attempt in metadata AttemptKey.
type Queue interface {
	message.Subscriber
	// Depth counts the messages of topic not yet settled.
	Depth(ctx context.Context, topic string) (int, error)
	// OldestAge is how long the oldest unsettled message of topic has waited (0 if none).
	OldestAge(ctx context.Context, topic string) (time.Duration, error)
}

// AttemptKey is the metadata key every delivered message carries: its 1-based delivery
// attempt ("1" the first time, "2" after one Retry or redelivery, ...).
const AttemptKey = "_gateway_attempt"

// Idempotent is an Idempotency-Key remembered with the receipt it produced.
type Idempotent struct {
	ClientID  string
	Endpoint  string // "push", "events", ...: keys are scoped per client and per endpoint
	Key       string
	BodyHash  string // hex SHA-256 of the request body, to tell a replay from a reuse
	RequestID string
	Sequence  int64 // the events API's _id, 0 for a push
	CreatedAt time.Time
}

// ErrIdempotencyInFlight is returned by RememberIdempotency when a concurrent transaction holds
// the same key: the first request with that key is still being committed.
var ErrIdempotencyInFlight = errors.New("a request with this Idempotency-Key is still being processed")

type urgentKey struct{}

// Urgent marks ctx so that Update serves it before background writes. Intake uses it.
func Urgent(ctx context.Context) context.Context { return context.WithValue(ctx, urgentKey{}, true) }

// IsUrgent reports whether ctx was marked by Urgent.
func IsUrgent(ctx context.Context) bool { v, _ := ctx.Value(urgentKey{}).(bool); return v }

// TopicConfig tunes how a backend's queue serves one topic.
type TopicConfig struct {
	// BatchSize is the most messages one claim or poll takes: small for big payloads.
	BatchSize int
	// MaxInFlight is the most messages one process holds delivered and not yet settled.
	MaxInFlight int
	// MaxInFlightBytes, when positive, also bounds the payload bytes they hold (give or take
	// one batch), so that a topic whose messages are mostly small can keep many in flight
	// without holding as many big ones. A backend whose consumers hold few messages at a time
	// may ignore it.
	MaxInFlightBytes int64
	// Large says each of the topic's messages is much work (a fragment of up to 1,000 records,
	// whose writes lock its request): a backend whose consumers hold each claimed batch in a
	// transaction claims them one at a time.
	Large bool
}
