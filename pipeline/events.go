package pipeline

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/opengw/gateway/internal/store"
	"github.com/opengw/gateway/tracker"
)

// TopicEvents carries what happened to every request, for the integrations dispatcher that
// turns it into webhooks. Each event is published in the same transaction as the status change
// it reports, so a crash never loses or invents one. Events are published only when
// Config.PublishEvents is set (something consumes the topic).
const TopicEvents = "events"

// Event types on TopicEvents.
const (
	EventRequestAccepted = "request:accepted"
	// EventMessages reports messages that reached a terminal status in one transaction (a
	// delivery batch, a fragment's invalid records, a cancelled fragment): one event for many
	// messages, so a 10,000-record request is a handful of events, not 10,000.
	EventMessages = "messages"
)

// Event is the payload of a TopicEvents message (JSON).
type Event struct {
	Type           string         `json:"type"`
	ID             string         `json:"id"` // unique per event; redelivery keeps it
	ClientID       string         `json:"client_id"`
	RequestID      string         `json:"request_id"`
	BatchReference string         `json:"batch_reference,omitempty"`
	Format         string         `json:"format,omitempty"`
	Total          int            `json:"total,omitempty"` // request:accepted: records in the request
	At             time.Time      `json:"at"`
	Messages       []EventMessage `json:"messages,omitempty"`
	// Record is, on request:accepted of an event sent through the events API, the event
	// itself (its Format is the Event-Type), so integrations can echo it to its sender.
	Record json.RawMessage `json:"record,omitempty"`
}

// EventMessage is one message's terminal outcome in an EventMessages event.
type EventMessage struct {
	ID                string         `json:"id"` // tracker.MessageID
	Index             int            `json:"index"`
	ExternalReference string         `json:"externalReference,omitempty"`
	Status            tracker.Status `json:"messageStatus"`
	Errors            []string       `json:"errors,omitempty"`
}

// eventPublisher publishes the events of one client's requests; a nil one publishes nothing.
// Handlers get it from eventsOf before their transaction, so that whether anyone wants the
// events (a database read) is not asked on the single writer's time.
type eventPublisher struct{ p *Pipeline }

// eventsOf returns the publisher of clientID's events, or nil when they are not published
// (Config.PublishEvents, Config.EventsFor).
func (p *Pipeline) eventsOf(clientID string) *eventPublisher {
	if !p.cfg.PublishEvents || (p.cfg.EventsFor != nil && !p.cfg.EventsFor(clientID)) {
		return nil
	}
	return &eventPublisher{p}
}

// publish publishes ev on TopicEvents in tx. Its message id is derived from key, so a redone
// transaction publishes the same event id.
func (e *eventPublisher) publish(tx store.Tx, key string, ev Event) error {
	if e == nil {
		return nil
	}
	ev.ID = uuid.NewSHA1(uuid.NameSpaceOID, []byte("event/"+key)).String()
	if ev.At.IsZero() {
		ev.At = e.p.now().UTC()
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode %s event of request %s: %w", ev.Type, ev.RequestID, err)
	}
	msg := message.NewMessage(ev.ID, body)
	msg.Metadata.Set(mdRequest, ev.RequestID)
	msg.Metadata.Set(mdClient, ev.ClientID)
	if err := tx.Publish(TopicEvents, msg); err != nil {
		return fmt.Errorf("publish %s event of request %s: %w", ev.Type, ev.RequestID, err)
	}
	return nil
}

// outcomes publishes an EventMessages event for rs, terminal outcomes of request requestID of
// client clientID; refs gives external references by index (may be nil).
func (e *eventPublisher) outcomes(tx store.Tx, key, clientID, requestID string, rs []tracker.Result, refs func(index int) string) error {
	if e == nil || len(rs) == 0 {
		return nil
	}
	ev := Event{Type: EventMessages, ClientID: clientID, RequestID: requestID, Messages: make([]EventMessage, len(rs))}
	for i, r := range rs {
		ev.Messages[i] = EventMessage{ID: tracker.MessageID(requestID, r.Index), Index: r.Index, Status: r.Status, Errors: r.Errors}
		if refs != nil {
			ev.Messages[i].ExternalReference = refs(r.Index)
		}
	}
	return e.publish(tx, key, ev)
}
