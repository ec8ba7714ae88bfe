package transports

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/tidwall/gjson"

	"github.com/opengw/gateway/internal/integrations"
	"github.com/opengw/gateway/internal/jsonkind"
)

// The Integrations API (seed 003) and the internal publish endpoint.
//
// Choices where the seed and DESIGN.md are silent:
//   - GET /api/v1/integrations/hubs/{hubId} answers a JSON array of the hub's integrations, by
//     name, each without privateSigningKey (the secret is shown only for one integration:
//     create, update, GET).
//   - Field names of bodies match case-insensitively; read-only fields sent back from a GET
//     (integrationId, hubId, integrationTypeId, the signing keys) are ignored; unknown fields
//     are refused naming the allowed ones. Every problem of a body is reported in one 400.
//   - A hub the caller does not own and an integration of such a hub look missing: 404.
//   - Deliveries: ?page (1-based), ?size (1..1000, default 50), ?status (pending, succeeded,
//     failed); newest first. A delivery's id is its webhook-id.
//   - A retry or recover answers 202: the delivery is due at once (held while the integration
//     is paused).
//   - The stream is a WebSocket of text frames {"id", "type", "timestamp", "data"}; ?after=<id>
//     replays every delivery after that one, without it the undelivered ones come first.
//   - publish: Basic or Bearer credentials with scope internal; errors in the events API's
//     shapes; Event-Type must not be one of the gateway's own (request:*, message:*); the body
//     is at most 1 MiB.

// integrationsScope and internalScope guard the Integrations API and platform publishing.
const (
	integrationsScope = "integrations"
	internalScope     = "internal"
)

// Limits of the Integrations API.
const (
	maxIntegrationBody  = 1 << 20
	maxPublishBody      = 1 << 20
	defaultDeliveryPage = 50
	maxDeliveryPage     = 1000
	streamBatch         = 100
	// streamPoll bounds how long a stream waits for deliveries it was not woken for
	// (enqueued by another node).
	streamPoll = time.Second
	// streamWriteTimeout bounds writing one frame to a stream.
	streamWriteTimeout = 15 * time.Second
)

// IntegrationsAPI serves the Integrations API, its WebSocket streams and the internal publish
// endpoint.
type IntegrationsAPI struct {
	Manager  *integrations.Manager  // its Store is the integrations store
	Platform *integrations.Platform // publishes platform events
	Wake     *integrations.Signal   // notified when deliveries are enqueued; streams wait on it
	Log      *slog.Logger
}

const integrationsPrefix = "/api/v1/integrations/"

// integrationRoutes routes everything under /api/v1/integrations/. One handler for the subtree:
// the seed's /hubs/{id} and /{id}/deliveries would otherwise be patterns of equal precedence.
func (s *Server) integrationRoutes() http.Handler {
	auth := func(h func(http.ResponseWriter, *http.Request, Principal)) http.HandlerFunc {
		return s.authorized(integrationsScope, func(w http.ResponseWriter, r *http.Request, p Principal) {
			if s.Integrations == nil {
				writeProblem(w, http.StatusServiceUnavailable, "integrations are not available on this gateway")
				return
			}
			h(w, r, p)
		})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		parts := strings.Split(strings.TrimPrefix(r.URL.Path, integrationsPrefix), "/")
		var route methods
		switch {
		case len(parts) == 2 && parts[0] == "hubs" && parts[1] != "":
			id := parts[1]
			route = methods{
				"GET":  auth(func(w http.ResponseWriter, r *http.Request, p Principal) { s.listIntegrations(w, r, p, id) }),
				"POST": auth(func(w http.ResponseWriter, r *http.Request, p Principal) { s.createOrUpdateIntegration(w, r, p, id) }),
			}
		case len(parts) == 1 && parts[0] != "":
			id := parts[0]
			route = methods{
				"GET":    auth(func(w http.ResponseWriter, r *http.Request, p Principal) { s.getIntegration(w, r, p, id) }),
				"PUT":    auth(func(w http.ResponseWriter, r *http.Request, p Principal) { s.updateIntegration(w, r, p, id) }),
				"DELETE": auth(func(w http.ResponseWriter, r *http.Request, p Principal) { s.deleteIntegration(w, r, p, id) }),
			}
		case len(parts) == 2 && parts[0] != "" && parts[1] == "deliveries":
			route = methods{"GET": auth(func(w http.ResponseWriter, r *http.Request, p Principal) { s.listDeliveries(w, r, p, parts[0]) })}
		case len(parts) == 4 && parts[0] != "" && parts[1] == "deliveries" && parts[2] != "" && parts[3] == "retry":
			route = methods{"POST": auth(func(w http.ResponseWriter, r *http.Request, p Principal) {
				s.retryDelivery(w, r, p, parts[0], parts[2])
			})}
		case len(parts) == 2 && parts[0] != "" && parts[1] == "recover":
			route = methods{"POST": auth(func(w http.ResponseWriter, r *http.Request, p Principal) { s.recoverDeliveries(w, r, p, parts[0]) })}
		case len(parts) == 2 && parts[0] != "" && parts[1] == "stream":
			route = methods{"GET": auth(func(w http.ResponseWriter, r *http.Request, p Principal) { s.streamDeliveries(w, r, p, parts[0]) })}
		default:
			writeProblem(w, http.StatusNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path)
			return
		}
		route.ServeHTTP(w, r)
	})
}

// ownsHub reports whether p's client owns hub.
func (s *Server) ownsHub(p Principal, hub string) bool {
	c, ok := s.Auth.Client(p.ClientID)
	return ok && slices.Contains(c.Hubs, hub)
}

// ownedIntegration returns integration id if p's client owns its hub; otherwise it answers
// 404 (another client's integration looks missing) and reports false.
func (s *Server) ownedIntegration(w http.ResponseWriter, r *http.Request, p Principal, id string) (integrations.Integration, bool) {
	in, err := s.Integrations.Manager.Store.Get(r.Context(), id)
	switch {
	case errors.Is(err, integrations.ErrNotFound) || (err == nil && !s.ownsHub(p, in.HubID)):
		writeProblem(w, http.StatusNotFound, "no integration %q among the hubs of client %q", id, p.ClientID)
		return integrations.Integration{}, false
	case err != nil:
		s.integrationError(w, p, "get integration", err)
		return integrations.Integration{}, false
	}
	return in, true
}

func (s *Server) listIntegrations(w http.ResponseWriter, r *http.Request, p Principal, hub string) {
	if !s.ownsHub(p, hub) {
		writeProblem(w, http.StatusNotFound, "no hub %q among the hubs of client %q", hub, p.ClientID)
		return
	}
	list, err := s.Integrations.Manager.Store.List(r.Context(), hub)
	if err != nil {
		s.integrationError(w, p, "list integrations", err)
		return
	}
	out := make([]integrationOut, len(list))
	for i, in := range list {
		out[i] = renderIntegration(in, false)
	}
	writeJSON(w, http.StatusOK, out)
}

// createOrUpdateIntegration is POST /api/v1/integrations/hubs/{id}: create when id is a hub of
// the caller, update when it is one of the caller's integrations (the seed uses the one path
// for both).
func (s *Server) createOrUpdateIntegration(w http.ResponseWriter, r *http.Request, p Principal, id string) {
	if !s.ownsHub(p, id) {
		s.updateIntegration(w, r, p, id)
		return
	}
	body, ok := s.readIntegrationBody(w, r)
	if !ok {
		return
	}
	in, err := integrations.ParseInput(body, "")
	if err != nil {
		s.integrationError(w, p, "create integration", err)
		return
	}
	out, err := s.Integrations.Manager.Create(r.Context(), id, in)
	if err != nil {
		s.integrationError(w, p, "create integration", err)
		return
	}
	s.Integrations.Log.Info("integration created", "client", p.ClientID, "hub", id, "integration", out.ID, "channel", out.Channel)
	writeJSON(w, http.StatusOK, renderIntegration(out, true))
}

func (s *Server) updateIntegration(w http.ResponseWriter, r *http.Request, p Principal, id string) {
	cur, ok := s.ownedIntegration(w, r, p, id)
	if !ok {
		return
	}
	body, ok := s.readIntegrationBody(w, r)
	if !ok {
		return
	}
	in, err := integrations.ParseInput(body, cur.Channel)
	if err != nil {
		s.integrationError(w, p, "update integration", err)
		return
	}
	out, err := s.Integrations.Manager.Update(r.Context(), cur, in)
	if err != nil {
		s.integrationError(w, p, "update integration", err)
		return
	}
	s.Integrations.Log.Info("integration updated", "client", p.ClientID, "integration", out.ID, "status", int(out.Status), "keys_regenerated", in.RegenerateKeys)
	writeJSON(w, http.StatusOK, renderIntegration(out, true))
}

func (s *Server) getIntegration(w http.ResponseWriter, r *http.Request, p Principal, id string) {
	if in, ok := s.ownedIntegration(w, r, p, id); ok {
		writeJSON(w, http.StatusOK, renderIntegration(in, true))
	}
}

func (s *Server) deleteIntegration(w http.ResponseWriter, r *http.Request, p Principal, id string) {
	if _, ok := s.ownedIntegration(w, r, p, id); !ok {
		return
	}
	if err := s.Integrations.Manager.Store.Delete(r.Context(), id); err != nil && !errors.Is(err, integrations.ErrNotFound) {
		s.integrationError(w, p, "delete integration", err)
		return
	}
	s.Integrations.Log.Info("integration deleted", "client", p.ClientID, "integration", id)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) listDeliveries(w http.ResponseWriter, r *http.Request, p Principal, id string) {
	q := r.URL.Query()
	f := integrations.DeliveryFilter{Page: 1, PageSize: defaultDeliveryPage}
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeProblem(w, http.StatusBadRequest, "page %q must be a whole number from 1", v)
			return
		}
		f.Page = n
	}
	if v := q.Get("size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxDeliveryPage {
			writeProblem(w, http.StatusBadRequest, "size %q must be a whole number from 1 to %d", v, maxDeliveryPage)
			return
		}
		f.PageSize = n
	}
	if v := q.Get("status"); v != "" {
		i := slices.IndexFunc(integrations.DeliveryStates, func(st integrations.DeliveryState) bool { return strings.EqualFold(string(st), v) })
		if i < 0 {
			writeProblem(w, http.StatusBadRequest, "status %q is not one of %s", v, joinStates())
			return
		}
		f.State = integrations.DeliveryStates[i]
	}
	if _, ok := s.ownedIntegration(w, r, p, id); !ok {
		return
	}
	page, err := s.Integrations.Manager.Store.Deliveries(r.Context(), id, f)
	if err != nil {
		s.integrationError(w, p, "list deliveries", err)
		return
	}
	out := deliveriesOut{IntegrationID: id, Paging: deliveryPaging{
		Number: f.Page, Size: f.PageSize, TotalDeliveries: page.Total, TotalPages: (page.Total + f.PageSize - 1) / f.PageSize,
	}, Deliveries: make([]deliveryOut, len(page.Deliveries))}
	for i, d := range page.Deliveries {
		out.Deliveries[i] = renderDelivery(d)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) retryDelivery(w http.ResponseWriter, r *http.Request, p Principal, id, deliveryID string) {
	if _, ok := s.ownedIntegration(w, r, p, id); !ok {
		return
	}
	d, err := s.Integrations.Manager.Resend(r.Context(), id, deliveryID)
	if errors.Is(err, integrations.ErrDeliveryNotFound) {
		writeProblem(w, http.StatusNotFound, "integration %q has no delivery %q", id, deliveryID)
		return
	}
	if err != nil {
		s.integrationError(w, p, "retry delivery", err)
		return
	}
	writeJSON(w, http.StatusAccepted, renderDelivery(d))
}

func (s *Server) recoverDeliveries(w http.ResponseWriter, r *http.Request, p Principal, id string) {
	if _, ok := s.ownedIntegration(w, r, p, id); !ok {
		return
	}
	body, ok := s.readIntegrationBody(w, r)
	if !ok {
		return
	}
	var req struct {
		Since *string `json:"since"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeProblem(w, http.StatusBadRequest, "the body must be a JSON object {\"since\": \"<RFC 3339 time>\"}")
		return
	}
	if req.Since == nil {
		writeProblem(w, http.StatusBadRequest, "since is required: the RFC 3339 time from which failed deliveries are resent")
		return
	}
	since, err := time.Parse(time.RFC3339Nano, *req.Since)
	if err != nil {
		writeProblem(w, http.StatusBadRequest, "since %q is not an RFC 3339 time such as 2024-05-01T00:00:00Z", *req.Since)
		return
	}
	n, err := s.Integrations.Manager.Recover(r.Context(), id, since)
	if err != nil {
		s.integrationError(w, p, "recover deliveries", err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]int{"recovered": n})
}

// streamDeliveries is GET /api/v1/integrations/{id}/stream: the deliveries of a Direct
// integration without webhookUrl over a WebSocket, each marked delivered once written.
func (s *Server) streamDeliveries(w http.ResponseWriter, r *http.Request, p Principal, id string) {
	in, ok := s.ownedIntegration(w, r, p, id)
	if !ok {
		return
	}
	if !in.Streams() {
		writeProblem(w, http.StatusConflict, "integration %q delivers to its webhookUrl; only a Direct integration without webhookUrl streams", id)
		return
	}
	store := s.Integrations.Manager.Store
	cursor := r.URL.Query().Get("after")
	if cursor != "" {
		if _, err := store.StreamAfter(r.Context(), id, cursor, 1); errors.Is(err, integrations.ErrDeliveryNotFound) {
			writeProblem(w, http.StatusNotFound, "after: integration %q has no delivery %q", id, cursor)
			return
		}
	}
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return // Accept has answered
	}
	defer conn.CloseNow()
	ctx := conn.CloseRead(r.Context())
	log := s.Integrations.Log.With("client", p.ClientID, "integration", id)
	poll := time.NewTicker(streamPoll)
	defer poll.Stop()
	for {
		woken := s.Integrations.Wake.Wait()
		ds, err := store.StreamAfter(ctx, id, cursor, streamBatch)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("read stream", "err", err)
				conn.Close(websocket.StatusInternalError, "the gateway could not read deliveries; reconnect with ?after=<last id>")
			}
			return
		}
		ids := make([]string, 0, len(ds))
		for _, d := range ds {
			wctx, cancel := context.WithTimeout(ctx, streamWriteTimeout)
			err := conn.Write(wctx, websocket.MessageText, streamFrame(d))
			cancel()
			if err != nil {
				break
			}
			ids = append(ids, d.ID)
		}
		if err := store.MarkStreamed(context.WithoutCancel(ctx), id, ids, time.Now()); err != nil {
			log.Warn("mark deliveries streamed", "err", err)
		}
		if len(ids) > 0 {
			cursor = ids[len(ids)-1]
		}
		if len(ids) < len(ds) {
			return // the peer went away
		}
		if len(ds) == streamBatch {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-woken:
		case <-poll.C:
			// Deleted, or given a webhookUrl, meanwhile: nothing more will come here.
			if cur, err := store.Get(ctx, id); errors.Is(err, integrations.ErrNotFound) || (err == nil && !cur.Streams()) {
				conn.Close(websocket.StatusNormalClosure, "the integration was deleted or now delivers to its webhookUrl")
				return
			}
		}
	}
}

// streamFrame is a delivery as a stream frame: its body with its id first.
func streamFrame(d integrations.Delivery) []byte {
	id, _ := json.Marshal(d.ID)
	frame := append([]byte(`{"id":`), id...)
	if body := strings.TrimSpace(string(d.Body)); len(body) > 2 {
		frame = append(frame, ',')
		frame = append(frame, body[1:]...)
		return frame
	}
	return append(frame, '}')
}

// publishEvent is POST /api/events/v1/{country}/internal/{tenant}/publish: an internal system
// publishes an event for a tenant; 202 {"id"} once it is durable. Errors use the events API's
// shapes.
func (s *Server) publishEvent(w http.ResponseWriter, r *http.Request) {
	p, ok := s.Auth.Authenticate(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Basic realm="gateway", Bearer realm="gateway"`)
		writeJSON(w, http.StatusUnauthorized, errUnauthorized)
		return
	}
	if !p.HasScope(internalScope) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="gateway", error="insufficient_scope", scope="internal"`)
		writeJSON(w, http.StatusForbidden, map[string]string{
			"error": "insufficient_scope", "error_description": "Insufficient scope for this resource", "scope": internalScope,
		})
		return
	}
	tenant := r.PathValue("country") + "/" + r.PathValue("tenant")
	if !slices.Contains(p.Tenants, tenant) {
		writeAccessDenied(w, "client %q may not publish events for tenant %q", p.ClientID, tenant)
		return
	}
	if s.Integrations == nil {
		writeSpringError(w, r, http.StatusServiceUnavailable, "", "integrations are not available on this gateway")
		return
	}
	if msg, ok := checkJSONContentType(r.Header.Get("Content-Type"), "application/json"); !ok {
		writeSpringError(w, r, http.StatusUnsupportedMediaType, "org.springframework.web.HttpMediaTypeNotSupportedException",
			"%s; send application/json;charset=utf-8", msg)
		return
	}
	eventType := strings.TrimSpace(r.Header.Get("Event-Type"))
	if eventType == "" {
		writeSpringError(w, r, http.StatusBadRequest, "org.springframework.web.bind.ServletRequestBindingException",
			"Missing request header 'Event-Type' for method parameter of type String")
		return
	}
	if err := integrations.CheckEventType(eventType); err != nil {
		writeSpringError(w, r, http.StatusBadRequest, "", "Event-Type %v", err)
		return
	}
	body, err := s.readSmallBody(w, r, maxPublishBody)
	if err != nil {
		writeSpringRefusal(w, r, err)
		return
	}
	switch root := gjson.ParseBytes(body); {
	case len(strings.TrimSpace(string(body))) == 0:
		writePayloadError(w, "the body is empty; send one JSON object")
		return
	case !gjson.ValidBytes(body):
		writePayloadError(w, "the body is not valid JSON")
		return
	case !root.IsObject():
		writePayloadError(w, "the body must be one JSON object, not %s", jsonkind.Of(root))
		return
	}
	id, err := s.Integrations.Platform.Publish(r.Context(), tenant, eventType, json.RawMessage(body))
	if err != nil {
		s.Log.Error("publish platform event", "client", p.ClientID, "tenant", tenant, "type", eventType, "err", err)
		writeSpringError(w, r, http.StatusServiceUnavailable, "", "the event could not be stored; retry later")
		return
	}
	s.Log.Info("platform event published", "client", p.ClientID, "tenant", tenant, "type", eventType, "id", id)
	writeJSON(w, http.StatusAccepted, map[string]string{"id": id})
}

// readIntegrationBody reads a JSON body of the Integrations API (415 for another type, 413
// over the limit).
func (s *Server) readIntegrationBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if msg, ok := checkJSONContentType(r.Header.Get("Content-Type"), "application/json"); !ok {
		writeProblem(w, http.StatusUnsupportedMediaType, "%s", msg)
		return nil, false
	}
	body, err := s.readSmallBody(w, r, maxIntegrationBody)
	if err != nil {
		writeError(w, err)
		return nil, false
	}
	return body, true
}

// integrationError answers an error of the integrations domain: 400 for invalid input (every
// problem named) or a taken name, 404 for a missing integration, 500 (logged) otherwise.
func (s *Server) integrationError(w http.ResponseWriter, p Principal, doing string, err error) {
	var invalid *integrations.ValidationError
	switch {
	case errors.As(err, &invalid):
		writeProblem(w, http.StatusBadRequest, "%v", invalid)
	case errors.Is(err, integrations.ErrNameTaken):
		writeProblem(w, http.StatusBadRequest, "name: %v", err)
	case errors.Is(err, integrations.ErrNotFound):
		writeProblem(w, http.StatusNotFound, "%v", err)
	default:
		s.Log.Error(doing, "client", p.ClientID, "err", err)
		writeProblem(w, http.StatusInternalServerError, "could not %s; try again", doing)
	}
}

func joinStates() string {
	names := make([]string, len(integrations.DeliveryStates))
	for i, st := range integrations.DeliveryStates {
		names[i] = string(st)
	}
	return strings.Join(names, ", ")
}

// integrationOut is an integration in the seed's shape.
type integrationOut struct {
	IntegrationID     string           `json:"integrationId"`
	HubID             string           `json:"hubId"`
	IntegrationTypeID string           `json:"integrationTypeId"`
	ChannelID         string           `json:"channelId"`
	Name              string           `json:"name"`
	StatusID          int              `json:"statusId"`
	Configuration     configurationOut `json:"configuration"`
}

type configurationOut struct {
	IntegrationType    string          `json:"integrationType,omitempty"`
	Echo               *bool           `json:"echo,omitempty"`
	WebhookURL         string          `json:"webhookUrl,omitempty"`
	Events             []string        `json:"events,omitempty"`
	Start              json.RawMessage `json:"start,omitempty"`
	MessagesPerWebhook int             `json:"messagesPerWebhook,omitempty"`
	PublicSigningKey   string          `json:"publicSigningKey"`
	PrivateSigningKey  string          `json:"privateSigningKey,omitempty"`
}

// renderIntegration shows in; withSecret adds its HMAC secret (privateSigningKey).
func renderIntegration(in integrations.Integration, withSecret bool) integrationOut {
	c := in.Config
	out := integrationOut{
		IntegrationID: in.ID, HubID: in.HubID, IntegrationTypeID: in.TypeID(), ChannelID: string(in.Channel),
		Name: in.Name, StatusID: int(in.Status),
		Configuration: configurationOut{
			IntegrationType: c.IntegrationType, WebhookURL: c.WebhookURL, Events: c.Events, Start: c.Start,
			MessagesPerWebhook: c.MessagesPerWebhook, PublicSigningKey: in.Keys.PublicKey(),
		},
	}
	if in.Channel == integrations.Direct {
		echo := c.Echo
		out.Configuration.Echo = &echo
	}
	if withSecret {
		out.Configuration.PrivateSigningKey = in.Keys.Secret
	}
	return out
}

type deliveriesOut struct {
	IntegrationID string         `json:"integrationId"`
	Paging        deliveryPaging `json:"paging"`
	Deliveries    []deliveryOut  `json:"deliveries"`
}

type deliveryPaging struct {
	Number          int `json:"number"`
	Size            int `json:"size"`
	TotalDeliveries int `json:"totalDeliveries"`
	TotalPages      int `json:"totalPages"`
}

type deliveryOut struct {
	DeliveryID    string       `json:"deliveryId"` // the webhook-id
	EventType     string       `json:"eventType"`
	Status        string       `json:"status"`
	CreatedAt     string       `json:"createdAt"`
	NextAttemptAt *string      `json:"nextAttemptAt"`
	Attempts      []attemptOut `json:"attempts"`
}

type attemptOut struct {
	Attempt        int     `json:"attempt"`
	At             string  `json:"at"`
	ResponseStatus *int    `json:"responseStatus"`
	Error          *string `json:"error"`
	DurationMs     int64   `json:"durationMs"`
}

func renderDelivery(d integrations.Delivery) deliveryOut {
	out := deliveryOut{
		DeliveryID: d.ID, EventType: d.Type, Status: string(d.State), CreatedAt: d.CreatedAt.UTC().Format(time.RFC3339Nano),
		Attempts: make([]attemptOut, len(d.Attempts)),
	}
	if !d.NextAttemptAt.IsZero() {
		next := d.NextAttemptAt.UTC().Format(time.RFC3339Nano)
		out.NextAttemptAt = &next
	}
	for i, a := range d.Attempts {
		ao := attemptOut{Attempt: a.N, At: a.At.UTC().Format(time.RFC3339Nano), DurationMs: a.Duration.Milliseconds()}
		if a.ResponseStatus != 0 {
			ao.ResponseStatus = &a.ResponseStatus
		}
		if a.Error != "" {
			ao.Error = &a.Error
		}
		out.Attempts[i] = ao
	}
	return out
}
