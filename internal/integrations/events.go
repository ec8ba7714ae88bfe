package integrations

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/opengw/gateway/internal/store"
)

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

// TopicPlatform carries platform events (Platform.Publish) to the dispatcher.
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
// JSON object) on TopicPlatform and returns its id once it is durable. The dispatcher fans it
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
