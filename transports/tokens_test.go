package transports

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/opengw/gateway/pipeline"
)

// testKey is a 32-byte signing key for tests.
var testKey = []byte("0123456789abcdef0123456789abcdef")

// exampleClients mirror examples/gateway.yaml, plus clients for edge cases.
func exampleClients() []Client {
	return []Client{
		{ID: "demo", Name: "Demo Partner", Secret: "demo-secret", Tokens: []string{"demo-token"},
			Scopes:  []string{"push", "events", "tracking", "integrations"},
			Formats: []string{"activity", "payment_status_updated"}, Tenants: []string{"dk/abcinsurance"}},
		{ID: "other", Name: "Other Partner", Secret: "other-secret", Tokens: []string{"other-token"},
			Scopes: []string{"push", "tracking"}, Formats: []string{"activity"}},
		// May publish events for the tenant, but not payment_status_updated.
		{ID: "third", Name: "Third Partner", Secret: "third-secret", Tokens: []string{"third-token"},
			Scopes: []string{"events"}, Formats: []string{"activity"}, Tenants: []string{"dk/abcinsurance"}},
		// Holds the events scope, but no tenant.
		{ID: "notenant", Name: "No Tenant", Secret: "notenant-secret", Tokens: []string{"notenant-token"},
			Scopes: []string{"events"}, Formats: []string{"payment_status_updated"}},
		// A secret with characters that RFC 6749 §2.3.1 form-encodes in Basic credentials.
		{ID: "odd", Name: "Odd Partner", Secret: "p+q/r:s", Scopes: []string{"push"}},
	}
}

// recordingIntake records submissions and hands out increasing sequence values, replaying the
// receipt of a repeated idempotency key like the real pipeline.
type recordingIntake struct {
	mu   sync.Mutex
	subs []pipeline.Submission
	seq  int64
	keys map[string]pipeline.Receipt
	err  error
}

func (f *recordingIntake) Accept(_ context.Context, s pipeline.Submission) (pipeline.Receipt, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return pipeline.Receipt{}, f.err
	}
	if r, ok := f.keys[s.ClientID+"\x00"+s.IdempotencyKey]; ok && s.IdempotencyKey != "" {
		r.Replayed = true
		return r, nil
	}
	r := pipeline.Receipt{RequestID: fmt.Sprintf("req-%d", len(f.subs)+1)}
	if s.WantSequence {
		f.seq++
		r.Sequence = f.seq
	}
	// Like the real intake, keep nothing of the request's body buffer, which the server recycles.
	s.Body = slices.Clone(s.Body)
	records := make([][]byte, len(s.Envelope.Records))
	for i, r := range s.Envelope.Records {
		records[i] = slices.Clone(r)
	}
	s.Envelope.Records = records
	f.subs = append(f.subs, s)
	if s.IdempotencyKey != "" {
		if f.keys == nil {
			f.keys = map[string]pipeline.Receipt{}
		}
		f.keys[s.ClientID+"\x00"+s.IdempotencyKey] = r
	}
	return r, nil
}

func (f *recordingIntake) submissions() []pipeline.Submission {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.subs)
}

// testIssuer is a TokenIssuer whose clock the test controls.
func testIssuer() *TokenIssuer {
	return &TokenIssuer{Key: testKey, Issuer: "gateway", Audience: "gateway", TTL: time.Hour}
}

type eventsEnv struct {
	srv    *Server
	h      http.Handler
	intake *recordingIntake
	tokens *TokenIssuer
}

func newEventsEnv(t *testing.T) *eventsEnv {
	t.Helper()
	tokens := testIssuer()
	auth := NewAuthenticator(exampleClients())
	auth.VerifyJWT = tokens.Verify
	set := exampleMappings(t)
	intake := &recordingIntake{}
	srv := &Server{
		Auth:     auth,
		Intake:   intake,
		Mappings: set,
		Tracking: &TrackingAPI{},
		Tokens:   tokens,
		Log:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	return &eventsEnv{srv: srv, h: srv.Handler(), intake: intake, tokens: tokens}
}

func (e *eventsEnv) do(r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	return w
}

// tokenRequest builds a POST /connect/token with form and optional Basic credentials.
func tokenRequest(form url.Values, basicUser, basicPass string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/connect/token", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basicUser != "" {
		r.SetBasicAuth(basicUser, basicPass)
	}
	return r
}

// decodeJSONObject decodes a JSON object body, failing the test otherwise.
func decodeJSONObject(t *testing.T, w *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", w.Body.String(), err)
	}
	return m
}

// assertFields compares a decoded body with want field by field: same keys, same values.
func assertFields(t *testing.T, got, want map[string]any) {
	t.Helper()
	for k, wv := range want {
		gv, ok := got[k]
		if !ok {
			t.Errorf("field %q missing; body %v", k, got)
			continue
		}
		if !reflect.DeepEqual(gv, wv) {
			t.Errorf("field %q = %#v, want %#v", k, gv, wv)
		}
	}
	for k, gv := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected field %q = %#v", k, gv)
		}
	}
}

func TestTokenIssuerVerify(t *testing.T) {
	now := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	issuer := testIssuer()
	issuer.Now = func() time.Time { return now }

	good, expiresIn, err := issuer.Issue("demo", []string{"events", "push"})
	if err != nil {
		t.Fatal(err)
	}
	if expiresIn != 3600 {
		t.Errorf("expiresIn = %d, want 3600", expiresIn)
	}
	id, scopes, err := issuer.Verify(good)
	if err != nil || id != "demo" || !slices.Equal(scopes, []string{"events", "push"}) {
		t.Fatalf("Verify(good) = %q, %v, %v", id, scopes, err)
	}

	// The claims the issue asks for, checked on the wire.
	var claims map[string]any
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(good, ".")[1])
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"sub", "scope", "iat", "exp", "iss", "aud", "jti"} {
		if _, ok := claims[c]; !ok {
			t.Errorf("claim %q missing from %v", c, claims)
		}
	}
	if claims["exp"].(float64)-claims["iat"].(float64) != 3600 {
		t.Errorf("exp - iat = %v, want 3600", claims["exp"].(float64)-claims["iat"].(float64))
	}
	other, _, _ := issuer.Issue("demo", nil)
	if jti2 := claimOf(t, other, "jti"); jti2 == claims["jti"] {
		t.Errorf("two tokens share jti %v", jti2)
	}

	sign := func(method jwt.SigningMethod, key any, mutate func(jwt.MapClaims)) string {
		t.Helper()
		c := jwt.MapClaims{}
		for k, v := range claims {
			c[k] = v
		}
		if mutate != nil {
			mutate(c)
		}
		s, err := jwt.NewWithClaims(method, c).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	later := func(d time.Duration) *TokenIssuer {
		i := *issuer
		i.Now = func() time.Time { return now.Add(d) }
		return &i
	}
	refused := []struct {
		name   string
		token  string
		issuer *TokenIssuer
	}{
		{"another key", sign(jwt.SigningMethodHS256, []byte("another-key-another-key-another-k"), nil), issuer},
		{"alg none", sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, nil), issuer},
		{"HS512 with the right key (algorithm not pinned)", sign(jwt.SigningMethodHS512, testKey, nil), issuer},
		{"expired", good, later(time.Hour + time.Second)},
		{"wrong audience", sign(jwt.SigningMethodHS256, testKey, func(c jwt.MapClaims) { c["aud"] = []string{"elsewhere"} }), issuer},
		{"no audience", sign(jwt.SigningMethodHS256, testKey, func(c jwt.MapClaims) { delete(c, "aud") }), issuer},
		{"wrong issuer", sign(jwt.SigningMethodHS256, testKey, func(c jwt.MapClaims) { c["iss"] = "evil" }), issuer},
		{"no exp", sign(jwt.SigningMethodHS256, testKey, func(c jwt.MapClaims) { delete(c, "exp") }), issuer},
		{"no sub", sign(jwt.SigningMethodHS256, testKey, func(c jwt.MapClaims) { delete(c, "sub") }), issuer},
		{"issued in the future", good, later(-time.Hour)},
		{"tampered payload", tamper(t, good), issuer},
		{"garbage", "a.b.c", issuer},
		{"empty key on the verifier", good, &TokenIssuer{Issuer: "gateway", Audience: "gateway"}},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			if id, _, err := tc.issuer.Verify(tc.token); err == nil {
				t.Errorf("Verify accepted the token for %q", id)
			}
		})
	}
}

func TestTokenIssuerMisconfigured(t *testing.T) {
	for name, ti := range map[string]*TokenIssuer{
		"short key":   {Key: []byte("short"), Issuer: "gateway", Audience: "gateway"},
		"no issuer":   {Key: testKey, Audience: "gateway"},
		"no audience": {Key: testKey, Issuer: "gateway"},
	} {
		if _, _, err := ti.Issue("demo", nil); err == nil {
			t.Errorf("%s: Issue succeeded", name)
		}
	}
}

// claimOf returns one claim of a token without verifying it.
func claimOf(t *testing.T, token, claim string) any {
	t.Helper()
	var c map[string]any
	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	return c[claim]
}

// tamper widens a token's scope while keeping its signature.
func tamper(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var c map[string]any
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	c["scope"] = "push events tracking integrations"
	c["sub"] = "other"
	b, _ := json.Marshal(c)
	parts[1] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}

func TestLoadOrCreateKey(t *testing.T) {
	t.Run("generated once, 0600, same key on the next start", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data")
		k1, err := LoadOrCreateKey(dir, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(k1) < MinKeyBytes {
			t.Errorf("key is %d bytes", len(k1))
		}
		fi, err := os.Stat(filepath.Join(dir, "jwt.key"))
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o600 {
			t.Errorf("jwt.key permissions = %o, want 600", perm)
		}
		k2, err := LoadOrCreateKey(dir, "")
		if err != nil {
			t.Fatal(err)
		}
		if string(k1) != string(k2) {
			t.Error("second call returned another key")
		}
		if left, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(left) > 0 {
			t.Errorf("temporary files left behind: %v", left)
		}

		// A token issued before a restart verifies after it.
		before := &TokenIssuer{Key: k1, Issuer: "gateway", Audience: "gateway"}
		tok, _, err := before.Issue("demo", []string{"events"})
		if err != nil {
			t.Fatal(err)
		}
		after := &TokenIssuer{Key: k2, Issuer: "gateway", Audience: "gateway"}
		if _, _, err := after.Verify(tok); err != nil {
			t.Errorf("token did not survive a restart: %v", err)
		}
	})
	t.Run("concurrent first starts agree", func(t *testing.T) {
		dir := t.TempDir()
		keys := make([][]byte, 8)
		var wg sync.WaitGroup
		for i := range keys {
			wg.Go(func() {
				k, err := LoadOrCreateKey(dir, "")
				if err != nil {
					t.Error(err)
				}
				keys[i] = k
			})
		}
		wg.Wait()
		for _, k := range keys[1:] {
			if string(k) != string(keys[0]) {
				t.Fatal("concurrent callers got different keys")
			}
		}
	})
	t.Run("configured key wins and no file is written", func(t *testing.T) {
		dir := t.TempDir()
		configured := strings.Repeat("k", 40)
		k, err := LoadOrCreateKey(dir, configured)
		if err != nil || string(k) != configured {
			t.Fatalf("LoadOrCreateKey = %q, %v", k, err)
		}
		if _, err := os.Stat(filepath.Join(dir, "jwt.key")); !os.IsNotExist(err) {
			t.Errorf("jwt.key written although a key is configured: %v", err)
		}
	})
	t.Run("short configured key names the limit", func(t *testing.T) {
		_, err := LoadOrCreateKey(t.TempDir(), "too-short")
		if err == nil || !strings.Contains(err.Error(), "32") || !strings.Contains(err.Error(), "auth.jwt.key") {
			t.Errorf("err = %v, want one naming auth.jwt.key and 32 bytes", err)
		}
	})
	t.Run("short key file is refused", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "jwt.key"), []byte("abc\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadOrCreateKey(dir, ""); err == nil || !strings.Contains(err.Error(), "32") {
			t.Errorf("err = %v, want one naming the 32-byte limit", err)
		}
	})
}

func TestTokenEndpoint(t *testing.T) {
	e := newEventsEnv(t)
	form := func(kv ...string) url.Values {
		v := url.Values{}
		for i := 0; i < len(kv); i += 2 {
			v.Add(kv[i], kv[i+1])
		}
		return v
	}
	cc := "client_credentials"
	encodedBasic := func(r *http.Request) *http.Request {
		r.SetBasicAuth(url.QueryEscape("odd"), url.QueryEscape("p+q/r:s"))
		return r
	}
	ok := []struct {
		name      string
		req       *http.Request
		client    string
		wantScope string
	}{
		{"Basic", tokenRequest(form("grant_type", cc), "demo", "demo-secret"), "demo", "push events tracking integrations"},
		{"form fields", tokenRequest(form("grant_type", cc, "client_id", "demo", "client_secret", "demo-secret"), "", ""), "demo", "push events tracking integrations"},
		{"scope subset", tokenRequest(form("grant_type", cc, "scope", "events"), "demo", "demo-secret"), "demo", "events"},
		{"scope subset keeps order, drops repeats", tokenRequest(form("grant_type", cc, "scope", "tracking  events tracking"), "demo", "demo-secret"), "demo", "tracking events"},
		{"blank scope means all", tokenRequest(form("grant_type", cc, "scope", " "), "other", "other-secret"), "other", "push tracking"},
		{"Basic credentials not form-encoded", tokenRequest(form("grant_type", cc), "odd", "p+q/r:s"), "odd", "push"},
		{"Basic credentials form-encoded (RFC 6749 §2.3.1)", encodedBasic(tokenRequest(form("grant_type", cc), "", "")), "odd", "push"},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
			w := e.do(tc.req)
			if w.Code != http.StatusOK {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", cc)
			}
			if p := w.Header().Get("Pragma"); p != "no-cache" {
				t.Errorf("Pragma = %q, want no-cache", p)
			}
			if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type = %q", ct)
			}
			body := decodeJSONObject(t, w)
			tok, _ := body["access_token"].(string)
			if tok == "" {
				t.Fatalf("no access_token in %v", body)
			}
			assertFields(t, body, map[string]any{
				"access_token": tok, "token_type": "Bearer", "expires_in": float64(3600), "scope": tc.wantScope,
			})
			id, scopes, err := e.tokens.Verify(tok)
			if err != nil || id != tc.client || strings.Join(scopes, " ") != tc.wantScope {
				t.Errorf("issued token verifies as %q %v %v", id, scopes, err)
			}
		})
	}

	withQuery := tokenRequest(form("grant_type", cc, "client_id", "demo"), "", "")
	withQuery.URL.RawQuery = "client_secret=demo-secret"
	jsonBody := tokenRequest(form(), "demo", "demo-secret")
	jsonBody.Body = io.NopCloser(strings.NewReader(`{"grant_type":"client_credentials"}`))
	jsonBody.Header.Set("Content-Type", "application/json")
	bearer := tokenRequest(form("grant_type", cc), "", "")
	bearer.Header.Set("Authorization", "Bearer demo-token")
	huge := tokenRequest(form("grant_type", cc, "scope", strings.Repeat("x", 70<<10)), "demo", "demo-secret")

	bad := []struct {
		name   string
		req    *http.Request
		status int
		code   string
	}{
		{"missing grant_type", tokenRequest(form(), "demo", "demo-secret"), 400, "invalid_request"},
		{"password grant", tokenRequest(form("grant_type", "password", "username", "u", "password", "p"), "demo", "demo-secret"), 400, "unsupported_grant_type"},
		{"repeated grant_type", tokenRequest(form("grant_type", cc, "grant_type", cc), "demo", "demo-secret"), 400, "invalid_request"},
		{"JSON body", jsonBody, 400, "invalid_request"},
		{"Basic and form credentials", tokenRequest(form("grant_type", cc, "client_id", "demo", "client_secret", "demo-secret"), "demo", "demo-secret"), 400, "invalid_request"},
		{"Basic and form secret", tokenRequest(form("grant_type", cc, "client_secret", "demo-secret"), "demo", "demo-secret"), 400, "invalid_request"},
		{"secret in the URL", withQuery, 400, "invalid_request"},
		{"body over the limit", huge, 413, "invalid_request"},
		{"wrong Basic secret", tokenRequest(form("grant_type", cc), "demo", "nope"), 401, "invalid_client"},
		{"wrong form secret", tokenRequest(form("grant_type", cc, "client_id", "demo", "client_secret", "nope"), "", ""), 401, "invalid_client"},
		{"form id without secret", tokenRequest(form("grant_type", cc, "client_id", "demo"), "", ""), 401, "invalid_client"},
		{"unknown client", tokenRequest(form("grant_type", cc), "nobody", "demo-secret"), 401, "invalid_client"},
		{"no client authentication", tokenRequest(form("grant_type", cc), "", ""), 401, "invalid_client"},
		{"a Bearer token is not client authentication", bearer, 401, "invalid_client"},
		{"unknown scope", tokenRequest(form("grant_type", cc, "scope", "events admin"), "demo", "demo-secret"), 400, "invalid_scope"},
		{"scope the client lacks", tokenRequest(form("grant_type", cc, "scope", "events"), "other", "other-secret"), 400, "invalid_scope"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			w := e.do(tc.req)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			body := decodeJSONObject(t, w)
			desc, _ := body["error_description"].(string)
			if desc == "" {
				t.Errorf("no error_description in %v", body)
			}
			assertFields(t, body, map[string]any{"error": tc.code, "error_description": desc})
			if got := w.Header().Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", got)
			}
			auth := w.Header().Get("WWW-Authenticate")
			if tc.status == 401 && auth != `Basic realm="gateway"` {
				t.Errorf("WWW-Authenticate = %q", auth)
			}
			if tc.status != 401 && auth != "" {
				t.Errorf("WWW-Authenticate = %q on a %d", auth, tc.status)
			}
		})
	}

	t.Run("invalid_scope names the scope", func(t *testing.T) {
		w := e.do(tokenRequest(form("grant_type", cc, "scope", "events admin"), "demo", "demo-secret"))
		if desc := decodeJSONObject(t, w)["error_description"].(string); !strings.Contains(desc, `"admin"`) {
			t.Errorf("error_description %q does not name the scope", desc)
		}
	})
	t.Run("GET is 405 with Allow", func(t *testing.T) {
		w := e.do(httptest.NewRequest(http.MethodGet, "/connect/token", nil))
		if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "POST" {
			t.Errorf("status %d, Allow %q", w.Code, w.Header().Get("Allow"))
		}
	})
	t.Run("no issuer configured", func(t *testing.T) {
		srv := &Server{Auth: e.srv.Auth, Intake: e.srv.Intake, Mappings: e.srv.Mappings, Tracking: e.srv.Tracking, Log: e.srv.Log}
		w := httptest.NewRecorder()
		srv.Handler().ServeHTTP(w, tokenRequest(form("grant_type", cc), "demo", "demo-secret"))
		if w.Code != http.StatusServiceUnavailable {
			t.Errorf("status %d: %s", w.Code, w.Body)
		}
	})
}

// TestTokensAtAuthorizedRoutes checks that issued tokens pass the authorized middleware only
// when valid and carrying the route's scope.
func TestTokensAtAuthorizedRoutes(t *testing.T) {
	e := newEventsEnv(t)
	mint := func(mutate func(*TokenIssuer), client string, scopes ...string) string {
		return e.mint(t, mutate, client, scopes...)
	}
	none := unsignedToken(t, "demo", "push tracking")
	cases := []struct {
		name   string
		token  string
		status int
	}{
		{"valid with tracking", mint(nil, "demo", "tracking"), 200},
		{"another key", mint(func(ti *TokenIssuer) { ti.Key = []byte("another-key-another-key-another-k") }, "demo", "tracking"), 401},
		{"alg none", none, 401},
		{"expired", mint(func(ti *TokenIssuer) { ti.Now = func() time.Time { return time.Now().Add(-2 * time.Hour) } }, "demo", "tracking"), 401},
		{"wrong audience", mint(func(ti *TokenIssuer) { ti.Audience = "elsewhere" }, "demo", "tracking"), 401},
		{"unknown client", mint(nil, "ghost", "tracking"), 401},
		{"missing scope", mint(nil, "demo", "push"), 403},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/tracking", strings.NewReader(`{}`))
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("Authorization", "Bearer "+tc.token)
			if w := e.do(r); w.Code != tc.status {
				t.Errorf("/tracking: status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
		})
	}
	t.Run("push needs the push scope", func(t *testing.T) {
		for _, tc := range []struct {
			scope  string
			status int
		}{{"tracking", 403}, {"push", 400}} {
			r := httptest.NewRequest(http.MethodPost, "/push", strings.NewReader(`{}`))
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("Authorization", "Bearer "+mint(nil, "demo", tc.scope))
			// 400: past authorization, the empty envelope is refused.
			if w := e.do(r); w.Code != tc.status {
				t.Errorf("scope %s: status %d, want %d: %s", tc.scope, w.Code, tc.status, w.Body)
			}
		}
	})
}
