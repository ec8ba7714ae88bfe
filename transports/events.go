package transports

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"github.com/opengw/gateway/internal/jsonkind"
	"github.com/opengw/gateway/pipeline"
)

// eventsScope is the scope a token needs to publish events.
const eventsScope = "events"

// springTimeLayout is how the seed's Spring-style errors write timestamps:
// "2017-05-05T11:32:03.535+0000".
const springTimeLayout = "2006-01-02T15:04:05.000-0700"

// The seed's fixed error bodies (seed 001); partners match them field for field.
var (
	errUnauthorized = map[string]string{
		"error":             "unauthorized",
		"error_description": "Full authentication is required to access this resource",
	}
	errInsufficientScope = map[string]string{
		"error":             "insufficient_scope",
		"error_description": "Insufficient scope for this resource",
		"scope":             eventsScope,
	}
)

// springError is the Spring Boot error body the seed shows for a missing Event-Type header;
// the endpoint uses it for its other non-OAuth, non-payload errors too.
type springError struct {
	Timestamp string `json:"timestamp"`
	Status    int    `json:"status"`
	Error     string `json:"error"`
	Exception string `json:"exception,omitempty"`
	Message   string `json:"message"`
	Path      string `json:"path"`
}

func writeSpringError(w http.ResponseWriter, r *http.Request, status int, exception, format string, args ...any) {
	writeJSON(w, status, springError{
		Timestamp: time.Now().UTC().Format(springTimeLayout),
		Status:    status,
		Error:     http.StatusText(status),
		Exception: exception,
		Message:   fmt.Sprintf(format, args...),
		Path:      r.URL.Path,
	})
}

// writeSpringRefusal answers a classified error (see classify) in the Spring style.
func writeSpringRefusal(w http.ResponseWriter, r *http.Request, err error) {
	status, retryAfter, msg := classify(err)
	if retryAfter != "" {
		w.Header().Set("Retry-After", retryAfter)
	}
	writeSpringError(w, r, status, "", "%s", msg)
}

// payloadError is the seed's body for an event that fails validation.
type payloadError struct {
	Message string `json:"message"`
	Valid   bool   `json:"valid"`
}

func writePayloadError(w http.ResponseWriter, format string, args ...any) {
	writeJSON(w, http.StatusBadRequest, payloadError{Message: "Incorrect payload, " + fmt.Sprintf(format, args...)})
}

// writeAccessDenied answers 403 in the endpoint's OAuth style for a client that holds the scope
// but not the resource.
func writeAccessDenied(w http.ResponseWriter, format string, args ...any) {
	writeJSON(w, http.StatusForbidden, oauthError{Error: "access_denied", Description: fmt.Sprintf(format, args...)})
}

// sendEvent is POST /api/events/v1/{country}/external/{tenant}/send (seed 001): one event,
// authenticated by a Bearer token with scope "events" for a client allowed for
// {country}/{tenant}. The Event-Type header names the format mapping; the mapping's required
// fields are checked before the event is committed, and 201 {"_id": n} (n from the durable
// event sequence) is answered only once it is. Error bodies are the seed's: OAuth style for 401
// and 403, Spring style for a bad request, {"message", "valid": false} for a bad payload.
func (s *Server) sendEvent(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	p, ok := s.bearer(w, r)
	if !ok {
		return
	}
	if !p.HasScope(eventsScope) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="gateway", error="insufficient_scope", scope="events"`)
		writeJSON(w, http.StatusForbidden, errInsufficientScope)
		return
	}
	tenant := r.PathValue("country") + "/" + r.PathValue("tenant")
	if !slices.Contains(p.Tenants, tenant) {
		writeAccessDenied(w, "client %q may not publish events for tenant %q", p.ClientID, tenant)
		return
	}
	if msg, ok := checkJSONContentType(r.Header.Get("Content-Type"), "application/json"); !ok {
		writeSpringError(w, r, http.StatusUnsupportedMediaType, "org.springframework.web.HttpMediaTypeNotSupportedException",
			"%s; send application/json;charset=utf-8", msg)
		return
	}
	// An Event-Type sent empty is as missing as one not sent at all.
	eventType := strings.TrimSpace(r.Header.Get("Event-Type"))
	if eventType == "" {
		writeSpringError(w, r, http.StatusBadRequest, "org.springframework.web.bind.ServletRequestBindingException",
			"Missing request header 'Event-Type' for method parameter of type String")
		return
	}
	m, ok := s.Mappings().Get(eventType)
	if !ok {
		writeSpringError(w, r, http.StatusBadRequest, "", "Unknown Event-Type %q: no format mapping has that name (client %q may send: %s)",
			eventType, p.ClientID, strings.Join(p.Formats, ", "))
		return
	}
	if !p.MayUseFormat(eventType) {
		writeAccessDenied(w, "client %q may not publish events of type %q", p.ClientID, eventType)
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if len(key) > maxIdempotencyKey {
		writeSpringError(w, r, http.StatusBadRequest, "", "Idempotency-Key is %d characters; the limit is %d", len(key), maxIdempotencyKey)
		return
	}
	body, release, err := s.readBody(w, r)
	defer release()
	if err != nil {
		writeSpringRefusal(w, r, err)
		return
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		writePayloadError(w, "the body is empty; send one JSON object")
		return
	}
	var deep *jsonkind.DepthError
	if err := jsonkind.Check(body, s.Limits.maxDepth()); errors.As(err, &deep) {
		writePayloadError(w, "the event is nested deeper than the limit of %d levels (limits.max_depth) at %s", deep.Limit, jsonkind.FormatPath(deep.Path, 8))
		return
	} else if err != nil {
		writePayloadError(w, "the body is not valid JSON: %v", err)
		return
	}
	if root := gjson.ParseBytes(body); !root.IsObject() {
		writePayloadError(w, "the body must be one JSON object, not %s", jsonkind.Of(root))
		return
	}
	if missing := m.Missing(body); len(missing) > 0 {
		writePayloadError(w, "missing [%s]", strings.Join(missing, ", "))
		return
	}
	if err := s.Throttle.records(p.ClientID, 1); err != nil {
		writeSpringRefusal(w, r, err)
		return
	}
	receipt, err := s.Intake.Accept(r.Context(), pipeline.Submission{
		ClientID:       p.ClientID,
		ClientName:     p.ClientName,
		Endpoint:       "events",
		Envelope:       pipeline.Envelope{Format: eventType, Records: [][]byte{body}},
		IdempotencyKey: key,
		Body:           body,
		WantSequence:   true,
	})
	if err != nil {
		if notQueued(err) != err {
			s.Log.Error("accept event", "client", p.ClientID, "format", eventType, "tenant", tenant, "err", err)
		}
		writeSpringRefusal(w, r, notQueued(err))
		return
	}
	s.logAccepted(r, "events", p, receipt, eventType, 1, len(body), start)
	if receipt.Replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	// The tracking request id, so the partner can follow the event at once.
	w.Header().Set("X-Request-Id", receipt.RequestID)
	writeJSON(w, http.StatusCreated, map[string]int64{"_id": receipt.Sequence})
}

// bearer authenticates a Bearer token (static or JWT; Basic is not accepted here). Without a
// valid one it answers 401 with the seed's body, when throttled 429, and reports false.
func (s *Server) bearer(w http.ResponseWriter, r *http.Request) (Principal, bool) {
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if strings.EqualFold(scheme, "Bearer") && strings.TrimSpace(token) != "" {
		p, ok, err := s.authenticate(r)
		if err != nil {
			writeSpringRefusal(w, r, err)
			return Principal{}, false
		}
		if ok {
			return p, true
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="gateway", error="invalid_token"`)
	} else {
		w.Header().Set("WWW-Authenticate", `Bearer realm="gateway"`)
	}
	writeJSON(w, http.StatusUnauthorized, errUnauthorized)
	return Principal{}, false
}
