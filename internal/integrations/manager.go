package integrations

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// DefaultKeyOverlap is how long replaced keys keep signing after regenerateKeys.
const DefaultKeyOverlap = 24 * time.Hour

// Manager applies the Integrations API's rules: it creates and changes integrations (checking
// webhook URLs, generating and rotating keys) and resends deliveries, waking the sender when
// deliveries may have become due. Callers decide who may touch which integration.
type Manager struct {
	Store Store
	Guard *Guard
	// KeyOverlap is how long old keys keep signing after a regeneration (0: DefaultKeyOverlap;
	// negative: not at all).
	KeyOverlap time.Duration
	Wake       *Signal          // nil: nobody to wake
	Now        func() time.Time // nil: time.Now
}

func (m *Manager) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

func (m *Manager) wake() {
	if m.Wake != nil {
		m.Wake.Notify()
	}
}

func (m *Manager) overlap() time.Duration {
	switch {
	case m.KeyOverlap == 0:
		return DefaultKeyOverlap
	case m.KeyOverlap < 0:
		return 0
	}
	return m.KeyOverlap
}

// Create creates an integration of hubID from in, a create body (ParseInput with channel "").
// It returns a *ValidationError for a webhook URL the guard refuses, ErrNameTaken for a name
// the hub already has.
func (m *Manager) Create(ctx context.Context, hubID string, in Input) (Integration, error) {
	if in.Name == nil || in.Config == nil || in.Channel == "" {
		return Integration{}, fmt.Errorf("create integration: incomplete input")
	}
	if err := m.checkURL(ctx, in.Config.WebhookURL); err != nil {
		return Integration{}, err
	}
	keys, err := NewKeys()
	if err != nil {
		return Integration{}, err
	}
	now := m.now().UTC()
	out := Integration{
		ID: uuid.NewString(), HubID: hubID, Channel: in.Channel, Name: *in.Name, Status: Active,
		Config: *in.Config, Keys: keys, CreatedAt: now, UpdatedAt: now,
	}
	if in.Status != nil {
		out.Status = *in.Status
	}
	if err := m.Store.Create(ctx, out); err != nil {
		return Integration{}, err
	}
	return out, nil
}

// Update applies in, an update body of cur's channel, to cur: given fields replace theirs (the
// configuration whole), regenerateKeys rotates the keys (the old ones keep signing for the
// overlap). Errors as Create, and ErrNotFound if cur was deleted meanwhile.
func (m *Manager) Update(ctx context.Context, cur Integration, in Input) (Integration, error) {
	next := cur
	if in.Name != nil {
		next.Name = *in.Name
	}
	if in.Status != nil {
		next.Status = *in.Status
	}
	if in.Config != nil {
		if err := m.checkURL(ctx, in.Config.WebhookURL); err != nil {
			return Integration{}, err
		}
		next.Config = *in.Config
	}
	now := m.now().UTC()
	if in.RegenerateKeys {
		keys, err := cur.Keys.Rotate(now, m.overlap())
		if err != nil {
			return Integration{}, err
		}
		next.Keys = keys
	}
	next.UpdatedAt = now
	if err := m.Store.Replace(ctx, next); err != nil {
		return Integration{}, err
	}
	if next.Status == Active && cur.Status != Active {
		m.wake() // resumed: its held deliveries are due
	}
	return next, nil
}

// Resend makes one delivery of integrationID due now with a fresh round of retries.
func (m *Manager) Resend(ctx context.Context, integrationID, deliveryID string) (Delivery, error) {
	d, err := m.Store.Resend(ctx, integrationID, deliveryID, m.now())
	if err == nil {
		m.wake()
	}
	return d, err
}

// Recover resends every failed delivery of integrationID created at or after since.
func (m *Manager) Recover(ctx context.Context, integrationID string, since time.Time) (int, error) {
	n, err := m.Store.Recover(ctx, integrationID, since, m.now())
	if err == nil && n > 0 {
		m.wake()
	}
	return n, err
}

// checkURL checks a webhook URL ("" means none: a stream) with the guard.
func (m *Manager) checkURL(ctx context.Context, raw string) error {
	if raw == "" {
		return nil
	}
	g := m.Guard
	if g == nil {
		g = &Guard{}
	}
	if err := g.CheckURL(ctx, raw); err != nil {
		return &ValidationError{Problems: []Problem{{Field: "configuration.webhookUrl", Message: err.Error()}}}
	}
	return nil
}
