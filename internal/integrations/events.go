package integrations

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/opengw/gateway/internal/store"
	"github.com/opengw/gateway/tracker"
)

// Event types of a client's own requests.
const (
	EventRequestAccepted  = "request:accepted"
	EventRequestCompleted = "request:completed"
)

// MessageEventType is the event type of messages that ended in status st: message:complete,
// message:failed, message:invalid or message:cancelled.
func MessageEventType(st tracker.Status) string { return "message:" + strings.ToLower(string(st)) }

// reservedPrefixes are the event types the gateway itself sends; platform events may not use
// them (a platform event must never pass for a client's own tracking event).
var reservedPrefixes = []string{"request:", "message:"}

const maxEventTypeLength = 200

// CheckEventType checks the type of a platform event: 1 to 200 characters, no white space or
// control characters, not one of the gateway's own (request:*, message:*).
func CheckEventType(t string) error {
	switch {
	case t == "":
		return fmt.Errorf("is empty")
	case len(t) > maxEventTypeLength:
		return fmt.Errorf("is %d characters; the limit is %d", len(t), maxEventTypeLength)
	case strings.IndexFunc(t, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return fmt.Errorf("%q contains white space or control characters", t)
	case t == "*" || strings.Contains(t, "*"):
		return fmt.Errorf("%q contains \"*\", which filters use", t)
	}
	for _, p := range reservedPrefixes {
		if strings.HasPrefix(t, p) {
			return fmt.Errorf("%q is reserved: the gateway itself sends %s* events", t, p)
		}
	}
	return nil
}

// webhookNamespace derives webhook ids: the id of the delivery of one event to one integration
// is always the same, so a redelivered event is recognised (Tx.Enqueue skips it) and receivers
// can deduplicate by webhook-id.
var webhookNamespace = uuid.MustParse("6f8d2d3c-5a1e-4f57-9c55-1f0e1b6f3a10")

// WebhookID is the webhook-id of the delivery of the event identified by key to integrationID.
func WebhookID(integrationID, key string) string {
	return "msg_" + strings.ReplaceAll(uuid.NewSHA1(webhookNamespace, []byte(integrationID+"\x00"+key)).String(), "-", "")
}

// body is a webhook's JSON body.
type body struct {
	Type      string `json:"type"`
	Timestamp string `json:"timestamp"`
	Data      any    `json:"data"`
}

// encodeBody returns the body of a webhook of eventType that happened at at.
func encodeBody(eventType string, at time.Time, data any) ([]byte, error) {
	b, err := json.Marshal(body{Type: eventType, Timestamp: at.UTC().Format(time.RFC3339Nano), Data: data})
	if err != nil {
		return nil, fmt.Errorf("encode %s webhook: %w", eventType, err)
	}
	return b, nil
}

// acceptedData is the data of request:accepted.
type acceptedData struct {
	FeedID         string  `json:"feedId"`
	RequestID      string  `json:"requestId"`
	BatchReference *string `json:"batchReference"`
	Format         string  `json:"format"`
	Total          int     `json:"total"`
	ReceivedDate   string  `json:"receivedDate"`
}

// messagesData is the data of message:* webhooks: messages of one request that ended in the
// same status, in the shape of the Tracking API's payload items.
type messagesData struct {
	FeedID    string        `json:"feedId"`
	RequestID string        `json:"requestId"`
	Messages  []messageData `json:"messages"`
}

type messageData struct {
	ID                string         `json:"id"`
	Index             int            `json:"index"`
	ExternalReference *string        `json:"externalReference"`
	MessageStatus     tracker.Status `json:"messageStatus"`
	Errors            []errorData    `json:"errors"`
}

type errorData struct {
	ErrorMessage string `json:"errorMessage"`
}

// completedData is the data of request:completed: the Tracking API's request summary.
type completedData struct {
	FeedID               string      `json:"feedId"`
	RequestID            string      `json:"requestId"`
	BatchReference       *string     `json:"batchReference"`
	Format               string      `json:"format"`
	ReceivedDate         string      `json:"receivedDate"`
	RequestStatus        string      `json:"requestStatus"`
	MessageStatusSummary summaryData `json:"messageStatusSummary"`
}

type summaryData struct {
	Total      int `json:"total"`
	Queued     int `json:"queued"`
	Processing int `json:"processing"`
	Cancelled  int `json:"cancelled"`
	Failed     int `json:"failed"`
	Invalid    int `json:"invalid"`
	Complete   int `json:"complete"`
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// TopicPlatform carries platform events (Platform.Publish) to the Dispatcher.
const TopicPlatform = "platform"

// PlatformEvent is an event an internal system publishes for a tenant, the payload of a
// TopicPlatform message.
type PlatformEvent struct {
	ID     string          `json:"id"`
	Tenant string          `json:"tenant"` // "country/tenant"
	Type   string          `json:"type"`
	At     time.Time       `json:"at"`
	Data   json.RawMessage `json:"data"` // a JSON object, sent as the webhook's data
}

// Platform publishes platform events durably.
type Platform struct {
	Store store.Store
	Now   func() time.Time // nil: time.Now
}

// Publish commits a platform event of eventType for tenant ("country/tenant") with data (a
// JSON object) on TopicPlatform and returns its id once it is durable. The Dispatcher fans it
// out to the integrations of the tenant's clients whose filter takes eventType.
func (p *Platform) Publish(ctx context.Context, tenant, eventType string, data json.RawMessage) (string, error) {
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	ev := PlatformEvent{ID: uuid.NewString(), Tenant: tenant, Type: eventType, At: now().UTC(), Data: data}
	payload, err := json.Marshal(ev)
	if err != nil {
		return "", fmt.Errorf("encode platform event: %w", err)
	}
	msg := message.NewMessage(ev.ID, payload)
	if err := p.Store.Update(store.Urgent(ctx), func(tx store.Tx) error { return tx.Publish(TopicPlatform, msg) }); err != nil {
		return "", fmt.Errorf("publish platform event %s for %s: %w", eventType, tenant, err)
	}
	return ev.ID, nil
}

// Directory says which hubs each client owns and which clients each tenant has, as the
// gateway's configuration declares them.
type Directory struct {
	hubs    map[string][]string // client id -> hub ids
	clients map[string][]string // "country/tenant" -> client ids
}

// Client is one client's entry of a Directory.
type Client struct {
	ID      string
	Hubs    []string
	Tenants []string // "country/tenant"
}

// NewDirectory indexes clients.
func NewDirectory(clients []Client) *Directory {
	d := &Directory{hubs: map[string][]string{}, clients: map[string][]string{}}
	for _, c := range clients {
		d.hubs[c.ID] = slices.Clone(c.Hubs)
		for _, t := range c.Tenants {
			d.clients[t] = append(d.clients[t], c.ID)
		}
	}
	return d
}

// Hubs returns the hubs client owns.
func (d *Directory) Hubs(client string) []string { return d.hubs[client] }

// Clients returns the clients allowed for tenant.
func (d *Directory) Clients(tenant string) []string { return d.clients[tenant] }
