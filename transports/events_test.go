package transports

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/opengw/gateway/mappings"
)

// seedEvent is seed 001's example event.
const seedEvent = `{
"eventType": "payment_status_updated",
"payloadVersion": "1.0.0",
"correlationId": "70c6d351-016f-4c9e-b1a9-d581fc3a596b",
"timestamp": "2017-07-25T10:31:28.2519514Z",
"payment": {
"uuid": "967ce1a4-a55a-4765-bd5b-bafcb4178fd3",
"status": "canceled",
"statusReason": "Payment rejected by claimant's bank"
}
}`

const seedPath = "/api/events/v1/dk/external/abcinsurance/send"

// The seed's error bodies, verbatim (seed 001).
var (
	seedUnauthorized = map[string]any{
		"error":             "unauthorized",
		"error_description": "Full authentication is required to access this resource",
	}
	seedInsufficientScope = map[string]any{
		"error":             "insufficient_scope",
		"error_description": "Insufficient scope for this resource",
		"scope":             "events",
	}
)

// exampleMappings loads the shipped example mappings (activity, payment_status_updated).
func exampleMappings(t *testing.T) func() *mappings.Set {
	t.Helper()
	set, err := mappings.Load(filepath.Join("..", "examples", "mappings"), nil)
	if err != nil {
		t.Fatalf("load example mappings: %v", err)
	}
	for _, f := range []string{"activity", "payment_status_updated"} {
		if _, ok := set.Get(f); !ok {
			t.Fatalf("example mappings lack format %q", f)
		}
	}
	return func() *mappings.Set { return set }
}

// eventRequest builds a send request with the seed's headers.
func eventRequest(path, body, bearer string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json;charset=utf-8")
	r.Header.Set("Event-Type", "payment_status_updated")
	if bearer != "" {
		r.Header.Set("Authorization", "Bearer "+bearer)
	}
	return r
}

func TestSendEventSuccess(t *testing.T) {
	e := newEventsEnv(t)
	jwtToken, _, err := e.tokens.Issue("demo", []string{"events"})
	if err != nil {
		t.Fatal(err)
	}
	for i, ct := range []string{"application/json;charset=utf-8", "application/json", "application/json; charset=UTF-8"} {
		bearer := "demo-token"
		if i == 1 {
			bearer = jwtToken
		}
		r := eventRequest(seedPath, seedEvent, bearer)
		r.Header.Set("Content-Type", ct)
		w := e.do(r)
		if w.Code != http.StatusCreated {
			t.Fatalf("Content-Type %q: status %d: %s", ct, w.Code, w.Body)
		}
		// The _id is the pipeline's sequence, increasing per event.
		assertFields(t, decodeJSONObject(t, w), map[string]any{"_id": float64(i + 1)})
	}
	subs := e.intake.submissions()
	if len(subs) != 3 {
		t.Fatalf("%d submissions, want 3", len(subs))
	}
	s := subs[0]
	if s.ClientID != "demo" || s.ClientName != "Demo Partner" || !s.WantSequence {
		t.Errorf("submission = %+v", s)
	}
	if s.Envelope.Format != "payment_status_updated" || s.Envelope.BatchReference != "" {
		t.Errorf("envelope = %+v", s.Envelope)
	}
	if len(s.Envelope.Records) != 1 || !bytes.Equal(s.Envelope.Records[0], []byte(seedEvent)) {
		t.Errorf("records = %q, want the body as the one record", s.Envelope.Records)
	}
}

func TestSendEventIdempotencyKey(t *testing.T) {
	e := newEventsEnv(t)
	var ids []any
	for range 2 {
		r := eventRequest(seedPath, seedEvent, "demo-token")
		r.Header.Set("Idempotency-Key", "k1")
		w := e.do(r)
		if w.Code != http.StatusCreated {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		ids = append(ids, decodeJSONObject(t, w)["_id"])
	}
	if ids[0] != ids[1] || len(e.intake.submissions()) != 1 {
		t.Errorf("_ids %v, %d submissions: a retried key must replay", ids, len(e.intake.submissions()))
	}
}

// TestSendEventSeedErrors compares the seed's fixed error bodies field by field.
func TestSendEventSeedErrors(t *testing.T) {
	e := newEventsEnv(t)
	mint := func(mutate func(*TokenIssuer), client string, scopes ...string) string {
		return e.mint(t, mutate, client, scopes...)
	}
	none := unsignedToken(t, "demo", "events")
	basic := eventRequest(seedPath, seedEvent, "")
	basic.SetBasicAuth("demo", "demo-secret")
	emptyBearer := eventRequest(seedPath, seedEvent, "")
	emptyBearer.Header.Set("Authorization", "Bearer ")

	cases := []struct {
		name   string
		req    *http.Request
		status int
		want   map[string]any
	}{
		{"no Authorization", eventRequest(seedPath, seedEvent, ""), 401, seedUnauthorized},
		{"empty Bearer", emptyBearer, 401, seedUnauthorized},
		{"Basic is not accepted", basic, 401, seedUnauthorized},
		{"unknown static token", eventRequest(seedPath, seedEvent, "nope"), 401, seedUnauthorized},
		{"JWT signed with another key", eventRequest(seedPath, seedEvent, mint(func(ti *TokenIssuer) { ti.Key = []byte("another-key-another-key-another-k") }, "demo", "events")), 401, seedUnauthorized},
		{"JWT with alg none", eventRequest(seedPath, seedEvent, none), 401, seedUnauthorized},
		{"expired JWT", eventRequest(seedPath, seedEvent, mint(func(ti *TokenIssuer) { ti.Now = func() time.Time { return time.Now().Add(-2 * time.Hour) } }, "demo", "events")), 401, seedUnauthorized},
		{"JWT for another audience", eventRequest(seedPath, seedEvent, mint(func(ti *TokenIssuer) { ti.Audience = "elsewhere" }, "demo", "events")), 401, seedUnauthorized},
		{"static token without events", eventRequest(seedPath, seedEvent, "other-token"), 403, seedInsufficientScope},
		{"JWT without events", eventRequest(seedPath, seedEvent, mint(nil, "demo", "push", "tracking")), 403, seedInsufficientScope},
		{"JWT claiming a scope its client lacks", eventRequest(seedPath, seedEvent, mint(nil, "other", "events")), 403, seedInsufficientScope},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := e.do(tc.req)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			assertFields(t, decodeJSONObject(t, w), tc.want)
			if auth := w.Header().Get("WWW-Authenticate"); !strings.HasPrefix(auth, "Bearer ") {
				t.Errorf("WWW-Authenticate = %q", auth)
			}
		})
	}
	if n := len(e.intake.submissions()); n != 0 {
		t.Errorf("%d submissions after refused requests", n)
	}
}

func TestSendEventMissingEventType(t *testing.T) {
	e := newEventsEnv(t)
	for _, value := range []string{"", "  "} {
		r := eventRequest(seedPath, seedEvent, "demo-token")
		if value == "" {
			r.Header.Del("Event-Type")
		} else {
			r.Header.Set("Event-Type", value)
		}
		before := time.Now().UTC().Truncate(time.Millisecond)
		w := e.do(r)
		after := time.Now().UTC()
		if w.Code != http.StatusBadRequest {
			t.Fatalf("Event-Type %q: status %d: %s", value, w.Code, w.Body)
		}
		body := decodeJSONObject(t, w)
		ts, _ := body["timestamp"].(string)
		// The seed writes "2017-05-05T11:32:03.535+0000".
		at, err := time.Parse("2006-01-02T15:04:05.000-0700", ts)
		if err != nil || len(ts) != len("2017-05-05T11:32:03.535+0000") || !strings.HasSuffix(ts, "+0000") {
			t.Errorf("timestamp %q is not formatted like the seed's: %v", ts, err)
		} else if at.Before(before) || at.After(after) {
			t.Errorf("timestamp %s is not now (%s .. %s)", at, before, after)
		}
		assertFields(t, body, map[string]any{
			"timestamp": ts,
			"status":    float64(400),
			"error":     "Bad Request",
			"exception": "org.springframework.web.bind.ServletRequestBindingException",
			"message":   "Missing request header 'Event-Type' for method parameter of type String",
			"path":      "/api/events/v1/dk/external/abcinsurance/send",
		})
	}
}

func TestSendEventErrors(t *testing.T) {
	e := newEventsEnv(t)
	set := e.srv.Mappings()
	psu, _ := set.Get("payment_status_updated")

	withHeader := func(r *http.Request, k, v string) *http.Request { r.Header.Set(k, v); return r }
	type check func(t *testing.T, body map[string]any)
	// spring checks a Spring-style error body whose message contains msg.
	spring := func(status int, msg string) check {
		return func(t *testing.T, body map[string]any) {
			t.Helper()
			if body["status"] != float64(status) || body["error"] != http.StatusText(status) || body["path"] == nil || body["timestamp"] == nil {
				t.Errorf("not a Spring-style %d body: %v", status, body)
			}
			if m, _ := body["message"].(string); !strings.Contains(m, msg) {
				t.Errorf("message %q does not contain %q", m, msg)
			}
		}
	}
	// denied checks an OAuth-style 403 body whose description contains msg.
	denied := func(msg string) check {
		return func(t *testing.T, body map[string]any) {
			t.Helper()
			desc, _ := body["error_description"].(string)
			assertFields(t, body, map[string]any{"error": "access_denied", "error_description": desc})
			if !strings.Contains(desc, msg) {
				t.Errorf("error_description %q does not contain %q", desc, msg)
			}
		}
	}
	// payload checks the seed's {"message": "Incorrect payload, ...", "valid": false}.
	payload := func(msg string) check {
		return func(t *testing.T, body map[string]any) {
			t.Helper()
			m, _ := body["message"].(string)
			assertFields(t, body, map[string]any{"message": m, "valid": false})
			if !strings.HasPrefix(m, "Incorrect payload, ") || !strings.Contains(m, msg) {
				t.Errorf("message %q, want \"Incorrect payload, ...%s...\"", m, msg)
			}
		}
	}
	exact := func(want map[string]any) check {
		return func(t *testing.T, body map[string]any) { t.Helper(); assertFields(t, body, want) }
	}

	noPayment := `{"eventType": "payment_status_updated", "correlationId": "c1", "payment": {}}`
	wantMissing := psu.Missing([]byte(noPayment))
	for _, p := range []string{"payment.uuid", "payment.status"} {
		if !strings.Contains(strings.Join(wantMissing, ","), p) {
			t.Fatalf("the example mapping does not require %s (requires %v)", p, wantMissing)
		}
	}

	cases := []struct {
		name   string
		req    *http.Request
		status int
		check  check
	}{
		{"tenant not allowed", eventRequest("/api/events/v1/dk/external/budget/send", seedEvent, "demo-token"), 403, denied(`"dk/budget"`)},
		{"country not allowed", eventRequest("/api/events/v1/se/external/abcinsurance/send", seedEvent, "demo-token"), 403, denied(`"se/abcinsurance"`)},
		{"client without tenants", eventRequest(seedPath, seedEvent, "notenant-token"), 403, denied(`"dk/abcinsurance"`)},
		{"charset other than UTF-8", withHeader(eventRequest(seedPath, seedEvent, "demo-token"), "Content-Type", "application/json;charset=iso-8859-1"), 415, spring(415, "iso-8859-1")},
		{"text/plain", withHeader(eventRequest(seedPath, seedEvent, "demo-token"), "Content-Type", "text/plain"), 415, spring(415, "text/plain")},
		{"no Content-Type", withHeader(eventRequest(seedPath, seedEvent, "demo-token"), "Content-Type", ""), 415, spring(415, "Content-Type")},
		{"unknown event type", withHeader(eventRequest(seedPath, seedEvent, "demo-token"), "Event-Type", "claim_opened"), 400, spring(400, `"claim_opened"`)},
		{"event type not assigned to the client", withHeader(eventRequest(seedPath, `{"id": "a1", "type": "call"}`, "third-token"), "Event-Type", "payment_status_updated"), 403, denied("payment_status_updated")},
		{"empty body", eventRequest(seedPath, "", "demo-token"), 400, payload("empty")},
		{"malformed JSON", eventRequest(seedPath, `{"payment": `, "demo-token"), 400, payload("not valid JSON")},
		{"array", eventRequest(seedPath, `[`+seedEvent+`]`, "demo-token"), 400, payload("not an array")},
		{"string", eventRequest(seedPath, `"hello"`, "demo-token"), 400, payload("not a string")},
		{"two objects", eventRequest(seedPath, seedEvent+seedEvent, "demo-token"), 400, payload("not valid JSON")},
		{"missing required fields", eventRequest(seedPath, noPayment, "demo-token"), 400,
			exact(map[string]any{"message": "Incorrect payload, missing [" + strings.Join(wantMissing, ", ") + "]", "valid": false})},
		{"Idempotency-Key too long", withHeader(eventRequest(seedPath, seedEvent, "demo-token"), "Idempotency-Key", strings.Repeat("k", 256)), 400, spring(400, "255")},
		{"body over 10 MiB", eventRequest(seedPath, `{"x":"`+strings.Repeat("a", MaxBodyBytes)+`"}`, "demo-token"), 413, nil},
		{"body over 10 MiB, chunked", eventRequest(seedPath, `{"x":"`+strings.Repeat("a", MaxBodyBytes)+`"}`, "demo-token"), 413, nil},
	}
	// Without a Content-Length the limit is enforced while reading.
	cases[len(cases)-1].req.ContentLength = -1

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := e.do(tc.req)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			if tc.check != nil {
				tc.check(t, decodeJSONObject(t, w))
			}
		})
	}
	if n := len(e.intake.submissions()); n != 0 {
		t.Errorf("%d submissions after refused requests", n)
	}

	t.Run("missing fields are listed in declared order", func(t *testing.T) {
		w := e.do(eventRequest(seedPath, `{"eventType": "payment_status_updated"}`, "demo-token"))
		msg, _ := decodeJSONObject(t, w)["message"].(string)
		if w.Code != 400 || !strings.Contains(msg, "payment.uuid, payment.status") {
			t.Errorf("status %d, message %q", w.Code, msg)
		}
	})
	t.Run("queue failure is 503 and says nothing was queued", func(t *testing.T) {
		e.intake.err = errors.New("disk full")
		defer func() { e.intake.err = nil }()
		w := e.do(eventRequest(seedPath, seedEvent, "demo-token"))
		if w.Code != http.StatusServiceUnavailable || strings.Contains(w.Body.String(), "disk full") {
			t.Errorf("status %d: %s", w.Code, w.Body)
		}
	})
	t.Run("GET is 405 with Allow", func(t *testing.T) {
		w := e.do(httptest.NewRequest(http.MethodGet, seedPath, nil))
		if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "POST" {
			t.Errorf("status %d, Allow %q", w.Code, w.Header().Get("Allow"))
		}
	})
	t.Run("other paths under /api/events are 404", func(t *testing.T) {
		w := e.do(eventRequest("/api/events/v1/dk/internal/abcinsurance/send", seedEvent, "demo-token"))
		if w.Code != http.StatusNotFound {
			t.Errorf("status %d", w.Code)
		}
	})
}

// TestSendEventWithIssuedToken is the seed's flow: get a token at /connect/token, send the
// seed's example event with it.
func TestSendEventWithIssuedToken(t *testing.T) {
	e := newEventsEnv(t)
	w := e.do(tokenRequest(map[string][]string{"grant_type": {"client_credentials"}, "scope": {"events"}}, "demo", "demo-secret"))
	if w.Code != http.StatusOK {
		t.Fatalf("token: %d %s", w.Code, w.Body)
	}
	tok := decodeJSONObject(t, w)["access_token"].(string)
	w = e.do(eventRequest(seedPath, seedEvent, tok))
	if w.Code != http.StatusCreated {
		t.Fatalf("send: %d %s", w.Code, w.Body)
	}
	assertFields(t, decodeJSONObject(t, w), map[string]any{"_id": float64(1)})
}

// mint issues a token for client with e's issuer, changed by mutate first when given.
func (e *eventsEnv) mint(t *testing.T, mutate func(*TokenIssuer), client string, scopes ...string) string {
	t.Helper()
	ti := *e.tokens
	if mutate != nil {
		mutate(&ti)
	}
	tok, _, err := ti.Issue(client, scopes)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// unsignedToken is an otherwise valid token with "alg": "none", which must be refused.
func unsignedToken(t *testing.T, client, scope string) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{
		"sub": client, "scope": scope, "iss": "gateway", "aud": "gateway",
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(),
	}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
