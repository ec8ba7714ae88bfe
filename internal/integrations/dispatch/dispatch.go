// Package dispatch turns what happens to partners' requests (the pipeline's events) and
// platform events into durable webhook deliveries: in ONE transaction with the acknowledgement
// of each event it enqueues a delivery for every integration whose filter wants it, and it
// sends request:completed once every message of a request is terminal.
//
// Events are handled concurrently (Watermill's router), so a request's first message:* delivery
// may be created before its request:accepted when the dispatcher is behind. request:completed
// is created only once the outcomes of every message have been counted (after
// request:accepted, which carries the total), so it always comes after both.
//
// It is the one place that knows both the pipeline's event format and the integrations: the
// integrations package and its stores stay free of the pipeline.
package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/opengw/gateway/internal/logging"

	"github.com/opengw/gateway/internal/integrations"
	"github.com/opengw/gateway/internal/store"
	"github.com/opengw/gateway/pipeline"
	"github.com/opengw/gateway/tracker"
)

// DefaultRetention is how long deliveries are kept (for the log and for streams to catch up).
const DefaultRetention = 30 * 24 * time.Hour

// sweepEvery is how often the dispatcher looks for requests whose completion was not checked
// (a node stopped between an event and its check) and purges old deliveries.
const sweepEvery = 30 * time.Second

// Config wires a Dispatcher. Store, Integrations, Tracker and Directory are required.
type Config struct {
	Store        store.Store        // its queue carries the events; its Update commits deliveries with the ack
	Integrations integrations.Store // shares Store's database
	Tracker      tracker.Store      // request summaries for request:completed
	Directory    *Directory
	Wake         *integrations.Signal // notified when deliveries were enqueued; nil: none
	// Retention is how long deliveries are kept; 0 means DefaultRetention.
	Retention time.Duration
	Log       *slog.Logger
	Now       func() time.Time
}

// Dispatcher turns the pipeline's events and platform events into deliveries, in the
// transaction that acknowledges each event, and sends request:completed once a followed
// request's messages are all terminal. Create it with New, run it with Run.
type Dispatcher struct {
	cfg    Config
	router *message.Router
	// checks carries requests that may have completed from the handlers to checkLoop. The
	// check runs outside the handler: on a backend whose queue delivers each message inside a
	// transaction (PostgreSQL), the handler's writes stay locked until it returns, and a check
	// writing the same rows from the handler would wait for itself.
	checks chan integrations.RequestProgress
}

// checkBacklog bounds the completion checks waiting; beyond it a check is left to the sweep.
const checkBacklog = 1024

// New checks cfg and subscribes the dispatcher's handlers to pipeline.TopicEvents
// and integrations.TopicPlatform.
func New(cfg Config) (*Dispatcher, error) {
	if cfg.Store == nil || cfg.Integrations == nil || cfg.Tracker == nil || cfg.Directory == nil {
		return nil, errors.New("integrations dispatcher: Store, Integrations, Tracker and Directory are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Wake == nil {
		cfg.Wake = &integrations.Signal{}
	}
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultRetention
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 30 * time.Second}, logging.Watermill(cfg.Log))
	if err != nil {
		return nil, fmt.Errorf("create integrations router: %w", err)
	}
	router.AddMiddleware(middleware.Recoverer)
	d := &Dispatcher{cfg: cfg, router: router, checks: make(chan integrations.RequestProgress, checkBacklog)}
	router.AddConsumerHandler("integrations-events", pipeline.TopicEvents, cfg.Store.Queue(), d.onEvent)
	router.AddConsumerHandler("integrations-platform", integrations.TopicPlatform, cfg.Store.Queue(), d.onPlatform)
	return d, nil
}

// Run dispatches until ctx is cancelled or Close is called.
func (d *Dispatcher) Run(ctx context.Context) error {
	go d.sweepLoop(ctx)
	go d.checkLoop(ctx)
	if err := d.router.Run(ctx); err != nil {
		return fmt.Errorf("run integrations router: %w", err)
	}
	return nil
}

// Running is closed once the dispatcher's handlers are subscribed.
func (d *Dispatcher) Running() chan struct{} { return d.router.Running() }

// Close stops the dispatcher, waiting for running handlers.
func (d *Dispatcher) Close() error { return d.router.Close() }

// onEvent handles a pipeline event of a client's request.
func (d *Dispatcher) onEvent(msg *message.Message) error {
	ctx := msg.Context()
	var ev pipeline.Event
	if err := json.Unmarshal(msg.Payload, &ev); err != nil {
		d.cfg.Log.Error("unreadable pipeline event; acknowledging it", "message", msg.UUID, "err", err)
		return d.ack(ctx, msg)
	}
	ints, err := d.integrationsOf(ctx, ev.ClientID)
	if err != nil {
		return err
	}
	if len(ints) == 0 {
		return d.ack(ctx, msg)
	}
	// Requests are followed to their completion only for clients with an integration that
	// wants request:completed (following costs a tracker read when a request may be done).
	followed := slices.ContainsFunc(ints, func(in integrations.Integration) bool { return in.Wants(EventRequestCompleted) })
	var (
		ds     []integrations.NewDelivery
		follow = integrations.RequestProgress{RequestID: ev.RequestID, ClientID: ev.ClientID, Total: -1}
	)
	switch ev.Type {
	case pipeline.EventRequestAccepted:
		follow.BatchReference, follow.Total = ev.BatchReference, ev.Total
		ds, err = acceptedDeliveries(ev, ints)
	case pipeline.EventMessages:
		follow.Terminal = len(ev.Messages)
		ds, err = messageDeliveries(ev, ints)
	default:
		return d.ack(ctx, msg) // a newer pipeline's event this version does not know
	}
	if err != nil {
		return err
	}
	var progress integrations.RequestProgress
	err = d.cfg.Store.Update(ctx, func(tx store.Tx) error {
		itx, err := d.cfg.Integrations.Bind(tx)
		if err != nil {
			return err
		}
		if err := itx.Enqueue(ds...); err != nil {
			return err
		}
		if followed {
			if progress, err = itx.Follow(follow); err != nil {
				return err
			}
		}
		return tx.Ack(msg)
	})
	if err != nil {
		return fmt.Errorf("dispatch %s event of request %s: %w", ev.Type, ev.RequestID, err)
	}
	if len(ds) > 0 {
		d.cfg.Wake.Notify()
	}
	if followed && progress.Total >= 0 && progress.Terminal >= progress.Total {
		select {
		case d.checks <- progress:
		default: // the sweep will find it
		}
	}
	return nil
}

// checkLoop checks the completion of the requests the handlers hand it.
func (d *Dispatcher) checkLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-d.checks:
			d.checkCompletion(ctx, p)
		}
	}
}

// onPlatform fans a platform event out to the integrations of its tenant's clients.
func (d *Dispatcher) onPlatform(msg *message.Message) error {
	ctx := msg.Context()
	var ev integrations.PlatformEvent
	if err := json.Unmarshal(msg.Payload, &ev); err != nil {
		d.cfg.Log.Error("unreadable platform event; acknowledging it", "message", msg.UUID, "err", err)
		return d.ack(ctx, msg)
	}
	var ds []integrations.NewDelivery
	for _, client := range d.cfg.Directory.Clients(ev.Tenant) {
		ints, err := d.integrationsOf(ctx, client)
		if err != nil {
			return err
		}
		for _, in := range ints {
			if !in.Wants(ev.Type) {
				continue
			}
			b, err := encodeBody(ev.Type, ev.At, ev.Data)
			if err != nil {
				return err
			}
			ds = append(ds, integrations.NewDelivery{ID: integrations.WebhookID(in.ID, "platform/"+ev.ID), IntegrationID: in.ID, Type: ev.Type, Body: b, CreatedAt: ev.At})
		}
	}
	err := d.cfg.Store.Update(ctx, func(tx store.Tx) error {
		itx, err := d.cfg.Integrations.Bind(tx)
		if err != nil {
			return err
		}
		if err := itx.Enqueue(ds...); err != nil {
			return err
		}
		return tx.Ack(msg)
	})
	if err != nil {
		return fmt.Errorf("dispatch platform event %s (%s): %w", ev.ID, ev.Type, err)
	}
	if len(ds) > 0 {
		d.cfg.Wake.Notify()
	}
	return nil
}

func (d *Dispatcher) ack(ctx context.Context, msg *message.Message) error {
	return d.cfg.Store.Update(ctx, func(tx store.Tx) error { return tx.Ack(msg) })
}

// Wants reports whether client has an integration, so that the events of its requests are
// worth publishing (pipeline.Config.EventsFor). It asks Registry.Exists each time, which is
// true once a Create has returned, so an integration receives the events of what happens once
// it exists. If the lookup fails it answers true: an event too many is acknowledged, one too
// few would be lost.
func (d *Dispatcher) Wants(client string) bool {
	hubs := d.cfg.Directory.Hubs(client)
	if len(hubs) == 0 {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	found, err := d.cfg.Integrations.Exists(ctx, hubs...)
	return err != nil || found
}

// integrationsOf returns the integrations of the hubs client owns.
func (d *Dispatcher) integrationsOf(ctx context.Context, client string) ([]integrations.Integration, error) {
	hubs := d.cfg.Directory.Hubs(client)
	if len(hubs) == 0 {
		return nil, nil
	}
	ints, err := d.cfg.Integrations.List(ctx, hubs...)
	if err != nil {
		return nil, fmt.Errorf("list integrations of client %s: %w", client, err)
	}
	return ints, nil
}

// acceptedDeliveries are request:accepted for the integrations that want it, and the echo of
// an event the client sent for its integrations.Direct integrations with echo.
func acceptedDeliveries(ev pipeline.Event, ints []integrations.Integration) ([]integrations.NewDelivery, error) {
	var ds []integrations.NewDelivery
	var accepted, echo []byte
	for _, in := range ints {
		if in.Wants(EventRequestAccepted) {
			if accepted == nil {
				var err error
				accepted, err = encodeBody(EventRequestAccepted, ev.At, acceptedData{
					FeedID: ev.ClientID, RequestID: ev.RequestID, BatchReference: optional(ev.BatchReference),
					Format: ev.Format, Total: ev.Total, ReceivedDate: ev.At.UTC().Format(time.RFC3339),
				})
				if err != nil {
					return nil, err
				}
			}
			ds = append(ds, integrations.NewDelivery{ID: integrations.WebhookID(in.ID, ev.ID), IntegrationID: in.ID, Type: EventRequestAccepted, Body: accepted, CreatedAt: ev.At})
		}
		if len(ev.Record) > 0 && in.Channel == integrations.Direct && in.Config.Echo {
			if echo == nil {
				var err error
				if echo, err = encodeBody(ev.Format, ev.At, ev.Record); err != nil {
					return nil, err
				}
			}
			ds = append(ds, integrations.NewDelivery{ID: integrations.WebhookID(in.ID, ev.ID+"/echo"), IntegrationID: in.ID, Type: ev.Format, Body: echo, CreatedAt: ev.At})
		}
	}
	return ds, nil
}

// messageDeliveries groups an EventMessages event's outcomes by status and cuts each group into
// webhooks of at most the integration's MessagesPerWebhook messages. Bodies are shared by the
// integrations that take the same cut.
func messageDeliveries(ev pipeline.Event, ints []integrations.Integration) ([]integrations.NewDelivery, error) {
	groups := map[tracker.Status][]messageData{}
	for _, m := range ev.Messages {
		md := messageData{ID: m.ID, Index: m.Index, ExternalReference: optional(m.ExternalReference), MessageStatus: m.Status, Errors: []errorData{}}
		for _, e := range m.Errors {
			md.Errors = append(md.Errors, errorData{ErrorMessage: e})
		}
		groups[m.Status] = append(groups[m.Status], md)
	}
	type cut struct {
		status tracker.Status
		size   int
	}
	bodies := map[cut][][]byte{}
	var ds []integrations.NewDelivery
	for _, st := range tracker.Statuses {
		msgs := groups[st]
		if len(msgs) == 0 {
			continue
		}
		eventType := MessageEventType(st)
		for _, in := range ints {
			if !in.Wants(eventType) {
				continue
			}
			size := in.Config.MessagesPerWebhook
			if size <= 0 {
				size = integrations.MaxMessagesPerWebhook
			}
			c := cut{st, size}
			if _, done := bodies[c]; !done {
				for off := 0; off < len(msgs); off += size {
					b, err := encodeBody(eventType, ev.At, messagesData{FeedID: ev.ClientID, RequestID: ev.RequestID, Messages: msgs[off:min(off+size, len(msgs))]})
					if err != nil {
						return nil, err
					}
					bodies[c] = append(bodies[c], b)
				}
			}
			for i, b := range bodies[c] {
				key := ev.ID + "/" + string(st) + "/" + strconv.Itoa(size) + "/" + strconv.Itoa(i)
				ds = append(ds, integrations.NewDelivery{ID: integrations.WebhookID(in.ID, key), IntegrationID: in.ID, Type: eventType, Body: b, CreatedAt: ev.At})
			}
		}
	}
	return ds, nil
}

// checkCompletion reads request p's summary from the tracker and, if every message is terminal,
// enqueues request:completed (once: its webhook ids are per request) and stops following it.
// Failures are logged: the sweep checks again.
func (d *Dispatcher) checkCompletion(ctx context.Context, p integrations.RequestProgress) {
	log := d.cfg.Log.With("request_id", p.RequestID, "client", p.ClientID)
	page, err := d.cfg.Tracker.Find(ctx, p.ClientID, tracker.Filter{RequestIDs: []string{p.RequestID}, MessagePageSize: 1}) // the summary counts all
	if err != nil {
		log.Warn("check request completion", "err", err)
		return
	}
	if len(page.Requests) == 0 {
		// Not in the tracker: nothing to report.
		if err := d.cfg.Store.Update(ctx, func(tx store.Tx) error {
			itx, err := d.cfg.Integrations.Bind(tx)
			if err != nil {
				return err
			}
			return itx.Unfollow(p.RequestID)
		}); err != nil {
			log.Warn("stop following request", "err", err)
		}
		return
	}
	v := page.Requests[0]
	if v.Status != tracker.Complete {
		if err := d.cfg.Integrations.MarkChecked(ctx, p.RequestID, p.Terminal); err != nil {
			log.Warn("mark request checked", "err", err)
		}
		return
	}
	ints, err := d.integrationsOf(ctx, p.ClientID)
	if err != nil {
		log.Warn("check request completion", "err", err)
		return
	}
	at := v.LastProcessedAt
	if at.IsZero() {
		at = d.cfg.Now()
	}
	s := v.Summary
	var ds []integrations.NewDelivery
	var b []byte
	for _, in := range ints {
		if !in.Wants(EventRequestCompleted) {
			continue
		}
		if b == nil {
			b, err = encodeBody(EventRequestCompleted, at, completedData{
				FeedID: v.ClientID, RequestID: v.ID, BatchReference: optional(v.BatchReference), Format: v.Format,
				ReceivedDate: v.ReceivedAt.UTC().Format(time.RFC3339), RequestStatus: string(v.Status),
				MessageStatusSummary: summaryData{Total: s.Total, Queued: s.Queued, Processing: s.Processing,
					Cancelled: s.Cancelled, Failed: s.Failed, Invalid: s.Invalid, Complete: s.Complete},
			})
			if err != nil {
				log.Error("encode request:completed", "err", err)
				return
			}
		}
		ds = append(ds, integrations.NewDelivery{ID: integrations.WebhookID(in.ID, "completed/"+v.ID), IntegrationID: in.ID, Type: EventRequestCompleted, Body: b, CreatedAt: at})
	}
	err = d.cfg.Store.Update(ctx, func(tx store.Tx) error {
		itx, err := d.cfg.Integrations.Bind(tx)
		if err != nil {
			return err
		}
		if err := itx.Enqueue(ds...); err != nil {
			return err
		}
		return itx.Unfollow(p.RequestID)
	})
	if err != nil {
		log.Warn("enqueue request:completed", "err", err)
		return
	}
	if len(ds) > 0 {
		d.cfg.Wake.Notify()
	}
}

// sweepLoop checks the completion of requests whose check was missed and purges deliveries
// past their retention, at start and every sweepEvery.
func (d *Dispatcher) sweepLoop(ctx context.Context) {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		ps, err := d.cfg.Integrations.CompletionCandidates(ctx, 100)
		if err != nil && ctx.Err() == nil {
			d.cfg.Log.Warn("find requests to check for completion", "err", err)
		}
		for _, p := range ps {
			d.checkCompletion(ctx, p)
		}
		if _, err := d.cfg.Integrations.Purge(ctx, d.cfg.Now().Add(-d.cfg.Retention)); err != nil && ctx.Err() == nil {
			d.cfg.Log.Warn("purge old deliveries", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
