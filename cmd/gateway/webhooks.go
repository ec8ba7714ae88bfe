package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/opengw/gateway/internal/config"
	"github.com/opengw/gateway/internal/integrations"
	"github.com/opengw/gateway/internal/integrations/dispatch"
	"github.com/opengw/gateway/internal/store"
	"github.com/opengw/gateway/transports"
)

// webhooks is one node's share of the integrations: the dispatcher that turns events into
// deliveries, the sender that sends them, and the HTTP API over them. It runs on either backend:
// st and integ must share one database.
type webhooks struct {
	dispatcher *dispatch.Dispatcher
	sender     *integrations.Sender
	api        *transports.IntegrationsAPI
	done       chan error
}

func newWebhooks(cfg *config.Config, st store.Store, integ integrations.Store, log *slog.Logger) (*webhooks, error) {
	wake := &integrations.Signal{}
	guard := &integrations.Guard{AllowPrivate: cfg.Webhooks.AllowPrivate}
	clients := make([]dispatch.Client, len(cfg.Clients))
	for i, c := range cfg.Clients {
		clients[i] = dispatch.Client{ID: c.ID, Hubs: c.Hubs, Tenants: c.Tenants}
	}
	d, err := dispatch.New(dispatch.Config{
		Store: st, Integrations: integ, Tracker: st.Tracker(), Directory: dispatch.NewDirectory(clients), Wake: wake, Log: log,
	})
	if err != nil {
		return nil, err
	}
	sender := integrations.NewSender(integrations.SenderConfig{
		Store: integ, Guard: guard, Timeout: cfg.Webhooks.Timeout, Schedule: cfg.Webhooks.Schedule, Wake: wake, Log: log,
	})
	api := &transports.IntegrationsAPI{
		Manager:  &integrations.Manager{Store: integ, Guard: guard, KeyOverlap: cfg.Webhooks.KeyOverlap, Wake: wake},
		Platform: &integrations.Platform{Store: st},
		Wake:     wake,
		Log:      log,
	}
	return &webhooks{dispatcher: d, sender: sender, api: api, done: make(chan error, 2)}, nil
}

// start runs the dispatcher and the sender until ctx is cancelled.
func (w *webhooks) start(ctx context.Context) {
	go func() { w.done <- w.dispatcher.Run(ctx) }()
	go func() { w.done <- w.sender.Run(ctx) }()
}

// stop waits for both to return once ctx is cancelled; it closes the dispatcher first so that
// its running handlers finish.
func (w *webhooks) stop(cancel context.CancelFunc) error {
	closeErr := w.dispatcher.Close()
	cancel()
	return errors.Join(closeErr, <-w.done, <-w.done)
}
