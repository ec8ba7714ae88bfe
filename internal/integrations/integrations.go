// Package integrations is how events flow back to partners (seed 003): the integrations a
// client manages on the hubs it owns, and the signed webhooks (Standard Webhooks) they receive.
//
// # Flow
//
// The pipeline publishes what happens to each request on pipeline.TopicEvents, in the
// transaction of the status change; internal systems publish platform events on TopicPlatform
// (Platform.Publish). The dispatcher (package dispatch) consumes both and, in ONE transaction
// with the acknowledgement of the event, writes a durable delivery for every integration whose
// filter wants it. A crash therefore never loses an event nor invents one, and a redelivered
// event adds nothing twice: a delivery's id (its webhook-id) is derived from the integration and
// the event (WebhookID).
//
// The Sender sends deliveries. Each integration is a lane: one node at a time holds an
// integration's lane (a lease in the database) and sends that integration's due deliveries one
// after another, in the order they were created. Lanes run in parallel, so a slow or dead
// receiver only ever occupies its own lane. Every attempt is claimed by a compare-and-set on the
// delivery's attempt counter under the lane lease, so exactly one node sends a given attempt.
// A Direct integration without a webhookUrl has no lane: its deliveries are read by a WebSocket
// stream (transports), resumable from the last delivery id the client saw.
//
// # What one webhook carries
//
// The pipeline reports terminal outcomes in groups (one event per delivery batch, fragment or
// cancellation: a 10,000-record request is a few dozen events, not 10,000). Each group becomes
// one webhook per status (message:complete, message:failed, ...) carrying up to
// Config.MessagesPerWebhook messages (default and maximum 1000), so a partner receives a handful
// of calls per big request, and can ask for one call per record with messagesPerWebhook: 1.
// request:completed is sent once per request, with the tracker's summary, once every message
// is terminal.
//
// # Storage
//
// Store is implemented by internal/sqlitestore and internal/pgstore (both pass the suite in
// integrationstest). Its transactional writes (Tx) join the store.Store transaction that
// acknowledges the event: Store.Bind turns a store.Tx of the same database into a Tx.
package integrations

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/opengw/gateway/internal/store"
)

// Status is an integration's status, numbered as the seed numbers them.
type Status int

// The two statuses of seed 003.
const (
	Active Status = 3000
	Paused Status = 3002
)

// Valid reports whether s is Active or Paused.
func (s Status) Valid() bool { return s == Active || s == Paused }

// Channel is an integration's channel (the seed's channelId).
type Channel string

// The supported channels. The seed's other channels (TwilioSMS, Messenger, WebChat, Slack) are
// refused with ErrUnsupportedChannel's message.
const (
	System Channel = "System"
	Direct Channel = "Direct"
)

// Channels lists the supported channels.
var Channels = []Channel{System, Direct}

// Integration is one integration of a hub.
type Integration struct {
	ID      string // a UUID
	HubID   string
	Channel Channel
	Name    string // unique per hub
	Status  Status
	Config  Config
	Keys    Keys
	// CreatedAt and UpdatedAt are kept by the API; stores keep them as given (to the
	// millisecond at least).
	CreatedAt, UpdatedAt time.Time
}

// TypeID is the seed's integrationTypeId: the Direct integration's integrationType, or the
// channel's name.
func (in Integration) TypeID() string {
	if in.Channel == Direct {
		return in.Config.IntegrationType
	}
	return string(in.Channel)
}

// Streams reports whether the integration receives its events over a WebSocket (a Direct
// integration without a webhookUrl) rather than by HTTP POST.
func (in Integration) Streams() bool { return in.Config.WebhookURL == "" }

// Wants reports whether the integration's event filter takes events of type eventType.
func (in Integration) Wants(eventType string) bool {
	filters := in.Config.Events
	if len(filters) == 0 && in.Channel == Direct {
		return true // a Direct integration without a filter takes every event of its client
	}
	for _, f := range filters {
		if MatchFilter(f, eventType) {
			return true
		}
	}
	return false
}

// MatchFilter reports whether filter takes eventType: "*" takes all, "prefix:*" takes the types
// that start with "prefix:", anything else is an exact name.
func MatchFilter(filter, eventType string) bool {
	switch {
	case filter == "*":
		return true
	case strings.HasSuffix(filter, ":*"):
		return strings.HasPrefix(eventType, filter[:len(filter)-1])
	default:
		return filter == eventType
	}
}

// Config is an integration's configuration, as its channel defines it (see ParseConfig).
type Config struct {
	WebhookURL string   `json:"webhookUrl,omitempty"`
	Events     []string `json:"events,omitempty"`
	// Direct only.
	IntegrationType string          `json:"integrationType,omitempty"`
	Echo            bool            `json:"echo,omitempty"`
	Start           json.RawMessage `json:"start,omitempty"`
	// MessagesPerWebhook caps the messages one message:* webhook carries (1..1000); 0 means
	// the default, 1000.
	MessagesPerWebhook int `json:"messagesPerWebhook,omitempty"`
}

// Delivery states.
type DeliveryState string

// A delivery is pending until it succeeds or its attempts are exhausted (or a permanent error
// ends it failed). A paused integration's deliveries stay pending.
const (
	Pending   DeliveryState = "pending"
	Succeeded DeliveryState = "succeeded"
	Failed    DeliveryState = "failed"
)

// DeliveryStates lists the states, for messages naming them.
var DeliveryStates = []DeliveryState{Pending, Succeeded, Failed}

// NewDelivery is a webhook to send, as the dispatcher creates it.
type NewDelivery struct {
	ID            string // the webhook-id, the same on every attempt; unique
	IntegrationID string
	Type          string // the event type
	Body          []byte // the JSON body, fixed at creation: {"type", "timestamp", "data"}
	CreatedAt     time.Time
}

// Delivery is a delivery as the deliveries log shows it.
type Delivery struct {
	ID            string
	IntegrationID string
	Type          string
	State         DeliveryState
	CreatedAt     time.Time
	// NextAttemptAt is when a pending delivery is due (zero once it is settled).
	NextAttemptAt time.Time
	Attempts      []AttemptLog // oldest first
	Body          []byte       // only where a method says so
}

// AttemptLog is one attempt to send a delivery.
type AttemptLog struct {
	N              int // 1-based
	At             time.Time
	ResponseStatus int    // 0 without an HTTP response
	Error          string // "" on success
	Duration       time.Duration
}

// Attempt log errors of attempts without an answer, as every Store writes them.
const (
	// AttemptInFlight is the error of an attempt whose answer is awaited.
	AttemptInFlight = "in flight: no answer yet"
	// AttemptAbandoned is the error of an attempt whose sender stopped before the receiver
	// answered (the delivery was attempted again).
	AttemptAbandoned = "abandoned: the sending node stopped before the receiver answered"
)

// DeliveryFilter selects deliveries of one integration for the log, newest first.
type DeliveryFilter struct {
	State DeliveryState // "" for all
	// Page is 1-based (0 means 1); PageSize must be positive.
	Page, PageSize int
}

// DeliveryPage is one page of the deliveries log.
type DeliveryPage struct {
	Total      int // deliveries matching the filter, over all pages
	Deliveries []Delivery
}

// Attempt is a delivery claimed for sending by a lane (Store.NextAttempt).
type Attempt struct {
	Integration Integration
	Delivery    NewDelivery
	// N is this attempt's number (1-based, over the delivery's life); InRound is its number
	// since the delivery was last resent by hand (Store.Resend, Store.Recover), which is what
	// the retry schedule counts.
	N, InRound int
}

// Outcome is what an attempt came to, for Store.FinishAttempt.
type Outcome struct {
	State          DeliveryState // Pending: try again at NextAt
	NextAt         time.Time
	ResponseStatus int
	Error          string
	Duration       time.Duration
	// Pause pauses the integration (the receiver answered 410 Gone); the delivery stays pending.
	Pause bool
}

// RequestProgress follows a request of a client that has integrations until every message of
// it is terminal, to send request:completed once.
type RequestProgress struct {
	RequestID      string
	ClientID       string
	BatchReference string
	Total          int // -1 until request:accepted is seen
	Terminal       int // terminal outcomes reported so far
}

// Errors of Store.
var (
	ErrNotFound  = errors.New("no such integration")
	ErrNameTaken = errors.New("an integration of this hub already has this name")
	// ErrDeliveryNotFound is returned for a delivery id the integration does not have.
	ErrDeliveryNotFound = errors.New("no such delivery")
)

// Store keeps integrations and their deliveries. It is safe for concurrent use. Times are kept
// to the millisecond at least.
type Store interface {
	Registry
	Outbox
	Log
}

// Registry keeps the integrations themselves.
type Registry interface {
	// Create stores in. It returns ErrNameTaken when another integration of in.HubID has
	// in.Name (names compare exactly).
	Create(ctx context.Context, in Integration) error
	// Replace overwrites every field of the integration in.ID but its HubID and CreatedAt.
	// It returns ErrNotFound or ErrNameTaken.
	Replace(ctx context.Context, in Integration) error
	// Get returns the integration id, or ErrNotFound.
	Get(ctx context.Context, id string) (Integration, error)
	// List returns the integrations of the given hubs, by hub and name.
	List(ctx context.Context, hubIDs ...string) ([]Integration, error)
	// Exists reports whether any integration belongs to one of hubIDs: once Create has
	// returned, true; once Delete of the last one has returned, false (a backend that sees
	// every write may answer from memory).
	Exists(ctx context.Context, hubIDs ...string) (bool, error)
	// Delete removes the integration id with all its deliveries, or returns ErrNotFound.
	Delete(ctx context.Context, id string) error
}

// Outbox is the delivery queue: the dispatcher's transactional writes, the sender's lanes and
// the streams' reads.
type Outbox interface {
	// Bind returns the integration writes of tx, a transaction of the store.Store this Store
	// shares its database with; they commit or roll back with tx. It fails for a transaction of
	// another kind.
	Bind(tx store.Tx) (Tx, error)

	// ClaimLanes leases, to owner until until, up to limit lanes with work: active HTTP
	// integrations that have a pending delivery due at now and whose lane is not leased (or
	// its lease expired before now). It returns their ids. Two owners never hold one lane.
	ClaimLanes(ctx context.Context, owner string, now, until time.Time, limit int) ([]string, error)
	// NextAttempt claims the next attempt of owner's lane integrationID: the oldest (by
	// creation) pending delivery due at now. It counts the attempt, records it as in flight,
	// makes the delivery due again at busyUntil (should this node stop before it finishes) and
	// extends the lane's lease to busyUntil. found is false, and the lane is released, when no
	// delivery is due, when the integration is no longer active or gone, or when owner no
	// longer holds the lane.
	NextAttempt(ctx context.Context, owner, integrationID string, now, busyUntil time.Time) (a Attempt, found bool, err error)
	// FinishAttempt records the outcome of attempt a. If the delivery has been attempted again
	// since (a lease was lost), only a's log entry is written.
	FinishAttempt(ctx context.Context, a Attempt, o Outcome) error

	// StreamAfter returns up to limit deliveries of a streaming integration, with their
	// bodies, oldest first: those created after the delivery afterID (ErrDeliveryNotFound if
	// it has none such), or with afterID "" those still pending.
	StreamAfter(ctx context.Context, integrationID, afterID string, limit int) ([]Delivery, error)
	// MarkStreamed records that the deliveries ids were written to a stream at at: they are
	// succeeded, with one attempt logged.
	MarkStreamed(ctx context.Context, integrationID string, ids []string, at time.Time) error

	// CompletionCandidates returns up to limit followed requests whose terminal count has
	// reached their total and grown since they were last checked.
	CompletionCandidates(ctx context.Context, limit int) ([]RequestProgress, error)
	// MarkChecked records that request requestID was found not complete with terminal
	// outcomes counted: it is a candidate again only once more are counted.
	MarkChecked(ctx context.Context, requestID string, terminal int) error
	// Purge forgets the deliveries (whatever their state) and followed requests created before
	// before, and returns how many deliveries it removed.
	Purge(ctx context.Context, before time.Time) (int, error)
}

// Log is the deliveries log of the API.
type Log interface {
	// Deliveries returns a page of integrationID's deliveries, newest first, with their
	// attempts (not their bodies).
	Deliveries(ctx context.Context, integrationID string, f DeliveryFilter) (DeliveryPage, error)
	// Resend makes the delivery deliveryID of integrationID pending and due at now, with a
	// fresh round of retries, and returns it. ErrDeliveryNotFound if it has no such delivery.
	Resend(ctx context.Context, integrationID, deliveryID string, now time.Time) (Delivery, error)
	// Recover resends (as Resend) every failed delivery of integrationID created at or after
	// since, and returns how many.
	Recover(ctx context.Context, integrationID string, since, now time.Time) (int, error)
}

// Tx is the integrations' part of one store transaction (Outbox.Bind). It is used from one
// goroutine, inside the Update call whose transaction it belongs to.
type Tx interface {
	// Enqueue adds deliveries, pending and due at their CreatedAt. A delivery whose id exists
	// already, or whose integration does not exist (any more), is skipped, so that an event
	// dispatched twice adds nothing twice.
	Enqueue(ds ...NewDelivery) error
	// Follow adds p's counts to the request's progress, creating it if needed: Total when p's
	// is not -1, Terminal added, BatchReference when p's is not "". It returns the progress as
	// it now stands.
	Follow(p RequestProgress) (RequestProgress, error)
	// Unfollow forgets request requestID's progress (its request:completed is enqueued).
	Unfollow(requestID string) error
}

// Problem is one invalid value of a request, named by its JSON path.
type Problem struct {
	Field   string // e.g. "configuration.webhookUrl"
	Message string
}

// ValidationError lists every problem found in one request; its message names each field.
type ValidationError struct{ Problems []Problem }

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.Field + ": " + p.Message
	}
	return strings.Join(parts, "; ")
}

// problems collects Problems; err returns them as a *ValidationError, or nil.
type problems []Problem

func (ps *problems) add(field, format string, args ...any) {
	*ps = append(*ps, Problem{Field: field, Message: fmt.Sprintf(format, args...)})
}

func (ps problems) err() error {
	if len(ps) == 0 {
		return nil
	}
	return &ValidationError{Problems: slices.Clone(ps)}
}
