package transports

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"github.com/tidwall/gjson"

	"github.com/opengw/gateway/internal/integrations"
	"github.com/opengw/gateway/internal/sqlitestore"
	"github.com/opengw/gateway/internal/store"
)

const (
	hubA     = "5f3c1a2e-0d4b-4e8a-9c1f-2a6b7d8e9f01"
	hubB     = "11111111-2222-3333-4444-555555555555"
	hubOther = "99999999-8888-7777-6666-555555555555"
)

func integrationClients() []Client {
	return []Client{
		{ID: "demo", Name: "Demo Partner", Secret: "demo-secret", Tokens: []string{"demo-token"},
			Scopes: []string{"push", "integrations"}, Tenants: []string{"dk/abcinsurance"}, Hubs: []string{hubA, hubB}},
		{ID: "other", Name: "Other Partner", Secret: "other-secret", Scopes: []string{"integrations"}, Hubs: []string{hubOther}},
		{ID: "noscope", Name: "No Scope", Secret: "noscope-secret", Scopes: []string{"push"}, Hubs: []string{"hub-noscope"}},
		{ID: "platform", Name: "Internal Platform", Secret: "platform-secret", Tokens: []string{"platform-token"},
			Scopes: []string{"internal"}, Tenants: []string{"dk/abcinsurance"}},
	}
}

// integrationsEnv is the gateway's HTTP face with the Integrations API on a real SQLite store,
// served over real HTTP.
type integrationsEnv struct {
	t    *testing.T
	url  string
	st   *sqlitestore.Store
	wake *integrations.Signal
}

func newIntegrationsEnv(t *testing.T, allowPrivate bool) *integrationsEnv {
	t.Helper()
	st, err := sqlitestore.Open(sqlitestore.Config{Path: filepath.Join(t.TempDir(), "gateway.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	wake := &integrations.Signal{}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := &Server{
		Auth: NewAuthenticator(integrationClients()), Intake: &recordingIntake{}, Mappings: exampleMappings(t), Tracking: &TrackingAPI{}, Log: log,
		Integrations: &IntegrationsAPI{
			Manager:  &integrations.Manager{Store: st.Integrations(), Guard: &integrations.Guard{AllowPrivate: allowPrivate}, Wake: wake},
			Platform: &integrations.Platform{Store: st},
			Wake:     wake,
			Log:      log,
		},
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return &integrationsEnv{t: t, url: hs.URL, st: st, wake: wake}
}

// call sends a request; creds is "client:secret" (Basic), "Bearer <token>" or "".
func (e *integrationsEnv) call(method, path, creds, body string, headers ...string) (int, http.Header, gjson.Result) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if strings.HasPrefix(creds, "Bearer ") {
		req.Header.Set("Authorization", creds)
	} else if user, pass, ok := strings.Cut(creds, ":"); ok {
		req.SetBasicAuth(user, pass)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if len(out) > 0 && !json.Valid(out) {
		e.t.Fatalf("%s %s answered %d with a body that is not JSON: %s", method, path, resp.StatusCode, out)
	}
	return resp.StatusCode, resp.Header, gjson.ParseBytes(out)
}

// create creates an integration on hub as client demo and returns it.
func (e *integrationsEnv) create(hub, body string) gjson.Result {
	e.t.Helper()
	status, _, out := e.call("POST", "/api/v1/integrations/hubs/"+hub, "demo:demo-secret", body)
	if status != http.StatusOK {
		e.t.Fatalf("create: %d %s", status, out.Raw)
	}
	return out
}

func systemBody(name, url string) string {
	return fmt.Sprintf(`{"channelId":"System","name":%q,"configuration":{"webhookUrl":%q,"events":["*"]}}`, name, url)
}

// enqueue adds deliveries to integration id as the dispatcher would, and wakes streams.
func (e *integrationsEnv) enqueue(id string, keys ...string) []string {
	e.t.Helper()
	var ids []string
	err := e.st.Update(context.Background(), func(tx store.Tx) error {
		itx, err := e.st.Integrations().Bind(tx)
		if err != nil {
			return err
		}
		for _, k := range keys {
			d := integrations.NewDelivery{ID: integrations.WebhookID(id, k), IntegrationID: id, Type: "test:" + k,
				Body: []byte(`{"type":"test:` + k + `","timestamp":"2024-05-01T00:00:00Z","data":{"k":"` + k + `"}}`), CreatedAt: time.Now()}
			ids = append(ids, d.ID)
			if err := itx.Enqueue(d); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.wake.Notify()
	return ids
}

func TestIntegrationLifecycle(t *testing.T) {
	e := newIntegrationsEnv(t, true)
	created := e.create(hubA, systemBody("My cool integration name.", "http://127.0.0.1:9/hook"))
	id := created.Get("integrationId").String()
	if _, err := uuid.Parse(id); err != nil {
		t.Fatalf("integrationId %q is not a UUID", id)
	}
	cfg := created.Get("configuration")
	if created.Get("hubId").String() != hubA || created.Get("integrationTypeId").String() != "System" || created.Get("channelId").String() != "System" ||
		created.Get("name").String() != "My cool integration name." || created.Get("statusId").Int() != 3000 ||
		cfg.Get("webhookUrl").String() != "http://127.0.0.1:9/hook" || cfg.Get("events").Raw != `["*"]` ||
		!strings.HasPrefix(cfg.Get("publicSigningKey").String(), "whpk_") || !strings.HasPrefix(cfg.Get("privateSigningKey").String(), "whsec_") {
		t.Fatalf("created = %s", created.Raw)
	}

	// GET shows the secret to its owner; the list never does.
	status, _, got := e.call("GET", "/api/v1/integrations/"+id, "Bearer demo-token", "")
	if status != http.StatusOK || got.Get("configuration.privateSigningKey").String() != cfg.Get("privateSigningKey").String() {
		t.Fatalf("GET: %d %s", status, got.Raw)
	}
	e.create(hubA, `{"channelId":"Direct","name":"agent desk","statusId":3002,"configuration":{"integrationType":"Agent","echo":true,"start":[{"type":"text","text":"Welcome"}]}}`)
	e.create(hubB, systemBody("elsewhere", "https://example.com/h"))
	status, _, list := e.call("GET", "/api/v1/integrations/hubs/"+hubA, "demo:demo-secret", "")
	if status != http.StatusOK || len(list.Array()) != 2 || strings.Contains(list.Raw, "whsec_") ||
		list.Get("0.name").String() != "My cool integration name." || list.Get("1.integrationTypeId").String() != "Agent" ||
		list.Get("1.configuration.echo").Bool() != true || list.Get("1.statusId").Int() != 3002 ||
		list.Get("1.configuration.start.0.text").String() != "Welcome" || !strings.HasPrefix(list.Get("0.configuration.publicSigningKey").String(), "whpk_") {
		t.Fatalf("list: %d %s", status, list.Raw)
	}

	// Update as the seed writes it (POST .../hubs/{integrationId}): name and status only; the
	// configuration stays.
	status, _, up := e.call("POST", "/api/v1/integrations/hubs/"+id, "demo:demo-secret", `{"name":"renamed","statusId":3002}`)
	if status != http.StatusOK || up.Get("name").String() != "renamed" || up.Get("statusId").Int() != 3002 ||
		up.Get("configuration.webhookUrl").String() != "http://127.0.0.1:9/hook" || up.Get("configuration.privateSigningKey").String() != cfg.Get("privateSigningKey").String() {
		t.Fatalf("update: %d %s", status, up.Raw)
	}
	// PUT replaces the configuration whole and regenerates the keys.
	status, _, up = e.call("PUT", "/api/v1/integrations/"+id, "demo:demo-secret",
		`{"statusId":3000,"configuration":{"webhookUrl":"http://127.0.0.1:9/new","events":["request:*","claims:opened"],"regenerateKeys":true}}`)
	if status != http.StatusOK || up.Get("configuration.events").Raw != `["request:*","claims:opened"]` || up.Get("statusId").Int() != 3000 ||
		up.Get("configuration.webhookUrl").String() != "http://127.0.0.1:9/new" ||
		up.Get("configuration.privateSigningKey").String() == cfg.Get("privateSigningKey").String() ||
		up.Get("configuration.publicSigningKey").String() == cfg.Get("publicSigningKey").String() || up.Get("configuration.regenerateKeys").Exists() {
		t.Fatalf("PUT: %d %s", status, up.Raw)
	}
	stored, err := e.st.Integrations().Get(context.Background(), id)
	if err != nil || len(stored.Keys.Previous) != 1 || stored.Keys.Previous[0].Secret != cfg.Get("privateSigningKey").String() ||
		time.Until(stored.Keys.Previous[0].Until) < 23*time.Hour {
		t.Fatalf("old keys after regeneration: %+v, %v", stored.Keys.Previous, err)
	}

	if status, _, out := e.call("DELETE", "/api/v1/integrations/"+id, "demo:demo-secret", ""); status != http.StatusNoContent || out.Raw != "" {
		t.Fatalf("DELETE: %d %s", status, out.Raw)
	}
	for _, m := range []string{"GET", "DELETE"} {
		if status, _, _ := e.call(m, "/api/v1/integrations/"+id, "demo:demo-secret", ""); status != http.StatusNotFound {
			t.Fatalf("%s after delete: %d", m, status)
		}
	}
}

func TestIntegrationErrors(t *testing.T) {
	e := newIntegrationsEnv(t, true)
	mine := e.create(hubA, systemBody("taken", "http://127.0.0.1:9/hook")).Get("integrationId").String()
	status, _, theirs := e.call("POST", "/api/v1/integrations/hubs/"+hubOther, "other:other-secret", systemBody("theirs", "http://127.0.0.1:9/h"))
	if status != http.StatusOK {
		t.Fatalf("other's create: %d %s", status, theirs.Raw)
	}
	theirID := theirs.Get("integrationId").String()
	valid := systemBody("n", "http://127.0.0.1:9/hook")
	for _, tc := range []struct {
		name, method, path, creds, body string
		status                          int
		want                            []string // substrings of the body
	}{
		{"no credentials", "GET", "/api/v1/integrations/" + mine, "", "", 401, []string{"credentials"}},
		{"wrong secret", "GET", "/api/v1/integrations/" + mine, "demo:nope", "", 401, nil},
		{"no scope", "GET", "/api/v1/integrations/hubs/hub-noscope", "noscope:noscope-secret", "", 403, []string{`"integrations" scope`}},
		{"another client's hub", "POST", "/api/v1/integrations/hubs/" + hubOther, "demo:demo-secret", valid, 404, nil},
		{"unknown hub", "GET", "/api/v1/integrations/hubs/" + uuid.NewString(), "demo:demo-secret", "", 404, []string{"no hub"}},
		{"another client's integration", "GET", "/api/v1/integrations/" + theirID, "demo:demo-secret", "", 404, []string{"no integration"}},
		{"update another's", "PUT", "/api/v1/integrations/" + theirID, "demo:demo-secret", `{"name":"x"}`, 404, nil},
		{"update another's the seed's way", "POST", "/api/v1/integrations/hubs/" + theirID, "demo:demo-secret", `{"name":"x"}`, 404, nil},
		{"delete another's", "DELETE", "/api/v1/integrations/" + theirID, "demo:demo-secret", "", 404, nil},
		{"another's deliveries", "GET", "/api/v1/integrations/" + theirID + "/deliveries", "demo:demo-secret", "", 404, nil},
		{"another's retry", "POST", "/api/v1/integrations/" + theirID + "/deliveries/msg_x/retry", "demo:demo-secret", "", 404, nil},
		{"another's recover", "POST", "/api/v1/integrations/" + theirID + "/recover", "demo:demo-secret", `{"since":"2024-01-01T00:00:00Z"}`, 404, nil},
		{"another's stream", "GET", "/api/v1/integrations/" + theirID + "/stream", "demo:demo-secret", "", 404, nil},
		{"name taken in the hub", "POST", "/api/v1/integrations/hubs/" + hubA, "demo:demo-secret", systemBody("taken", "http://127.0.0.1:9/h"), 400, []string{"name:", "already has this name"}},
		{"rename to a taken name", "PUT", "/api/v1/integrations/" + mine, "demo:demo-secret", `{"name":"also"}`, 200, nil},
		{"seed channel", "POST", "/api/v1/integrations/hubs/" + hubA, "demo:demo-secret",
			`{"channelId":"Slack","name":"s","configuration":{"code":"x","state":"y"}}`, 400, []string{"channelId", "Slack", "System, Direct"}},
		{"required values", "POST", "/api/v1/integrations/hubs/" + hubA, "demo:demo-secret", `{"channelId":"System"}`, 400,
			[]string{"name: is required", "configuration: is required"}},
		{"update config without its required values", "PUT", "/api/v1/integrations/" + mine, "demo:demo-secret", `{"configuration":{"events":["*"]}}`, 400,
			[]string{"configuration.webhookUrl: is required"}},
		{"not JSON", "POST", "/api/v1/integrations/hubs/" + hubA, "demo:demo-secret", `{"channelId":`, 400, []string{"body: must be a JSON object"}},
		{"not a URL", "POST", "/api/v1/integrations/hubs/" + hubA, "demo:demo-secret", systemBody("u", "ftp://x/y"), 400, []string{"configuration.webhookUrl", "http or https"}},
		{"big body", "POST", "/api/v1/integrations/hubs/" + hubA, "demo:demo-secret", `{"name":"` + strings.Repeat("x", 1<<20) + `"}`, 413, []string{"1 MiB"}},
		{"unknown path", "GET", "/api/v1/integrations/" + mine + "/nothing", "demo:demo-secret", "", 404, nil},
		{"hubs without id", "GET", "/api/v1/integrations/hubs/", "demo:demo-secret", "", 404, nil},
		{"wrong method", "PATCH", "/api/v1/integrations/" + mine, "demo:demo-secret", `{}`, 405, []string{"DELETE or GET or PUT"}},
		{"bad page", "GET", "/api/v1/integrations/" + mine + "/deliveries?page=0", "demo:demo-secret", "", 400, []string{`page "0"`}},
		{"bad size", "GET", "/api/v1/integrations/" + mine + "/deliveries?size=1001", "demo:demo-secret", "", 400, []string{`size "1001"`, "1000"}},
		{"bad status", "GET", "/api/v1/integrations/" + mine + "/deliveries?status=done", "demo:demo-secret", "", 400, []string{"pending, succeeded, failed"}},
		{"unknown delivery", "POST", "/api/v1/integrations/" + mine + "/deliveries/msg_nope/retry", "demo:demo-secret", "", 404, []string{"msg_nope"}},
		{"recover without since", "POST", "/api/v1/integrations/" + mine + "/recover", "demo:demo-secret", `{}`, 400, []string{"since is required"}},
		{"recover with a bad since", "POST", "/api/v1/integrations/" + mine + "/recover", "demo:demo-secret", `{"since":"yesterday"}`, 400, []string{`since "yesterday"`, "RFC 3339"}},
		{"stream of a webhook integration", "GET", "/api/v1/integrations/" + mine + "/stream", "demo:demo-secret", "", 409, []string{"webhookUrl"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, hdr, out := e.call(tc.method, tc.path, tc.creds, tc.body)
			if status != tc.status {
				t.Fatalf("%s %s: %d %s, want %d", tc.method, tc.path, status, out.Raw, tc.status)
			}
			for _, w := range tc.want {
				if !strings.Contains(out.Raw, w) && !strings.Contains(out.Get("message").String(), w) {
					t.Errorf("body %s lacks %q", out.Raw, w)
				}
			}
			if status == 401 && hdr.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if status == 405 && hdr.Get("Allow") != "DELETE, GET, PUT" {
				t.Errorf("Allow = %q", hdr.Get("Allow"))
			}
		})
	}
	// Unsupported media type.
	req, _ := http.NewRequest("POST", e.url+"/api/v1/integrations/hubs/"+hubA, strings.NewReader(valid))
	req.SetBasicAuth("demo", "demo-secret")
	req.Header.Set("Content-Type", "text/plain")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("text/plain body: %v %v", resp.StatusCode, err)
	}
	// The same name in another hub is fine.
	e.create(hubB, systemBody("taken", "http://127.0.0.1:9/hook"))

	// Without allow_private, internal targets are refused when saved.
	strict := newIntegrationsEnv(t, false)
	for _, url := range []string{"http://127.0.0.1:8080/hook", "http://localhost/hook", "http://169.254.169.254/latest/meta-data", "http://[::1]/x"} {
		status, _, out := strict.call("POST", "/api/v1/integrations/hubs/"+hubA, "demo:demo-secret", systemBody("n", url))
		if status != http.StatusBadRequest || !strings.Contains(out.Get("message").String(), "configuration.webhookUrl") ||
			!strings.Contains(out.Get("message").String(), "allow_private") {
			t.Errorf("%s: %d %s", url, status, out.Raw)
		}
	}
}

func TestDeliveriesLogRetryRecover(t *testing.T) {
	e := newIntegrationsEnv(t, true)
	id := e.create(hubA, systemBody("a", "http://127.0.0.1:9/hook")).Get("integrationId").String()
	ids := e.enqueue(id, "1", "2", "3")
	ctx := context.Background()
	integ := e.st.Integrations()
	// Attempt two of them: one fails for good, one is to be retried.
	now := time.Now()
	if lanes, err := integ.ClaimLanes(ctx, "test", now, now.Add(time.Minute), 10); err != nil || len(lanes) != 1 {
		t.Fatalf("lanes %v, %v", lanes, err)
	}
	for i, o := range []integrations.Outcome{
		{State: integrations.Failed, ResponseStatus: 400, Error: "the receiver answered 400 Bad Request", Duration: 3 * time.Millisecond},
		{State: integrations.Pending, ResponseStatus: 503, Error: "the receiver answered 503", NextAt: now.Add(time.Hour)},
	} {
		a, ok, err := integ.NextAttempt(ctx, "test", id, now, now.Add(time.Minute))
		if err != nil || !ok || a.Delivery.ID != ids[i] {
			t.Fatalf("attempt %d: %+v %v %v", i, a, ok, err)
		}
		if err := integ.FinishAttempt(ctx, a, o); err != nil {
			t.Fatal(err)
		}
	}

	status, _, out := e.call("GET", "/api/v1/integrations/"+id+"/deliveries?size=2", "demo:demo-secret", "")
	if status != http.StatusOK || out.Get("integrationId").String() != id || out.Get("paging").Raw != `{"number":1,"size":2,"totalDeliveries":3,"totalPages":2}` ||
		out.Get("deliveries.#").Int() != 2 || out.Get("deliveries.0.deliveryId").String() != ids[2] || out.Get("deliveries.0.attempts").Raw != "[]" ||
		out.Get("deliveries.0.status").String() != "pending" || out.Get("deliveries.1.attempts.0.responseStatus").Int() != 503 ||
		out.Get("deliveries.1.nextAttemptAt").String() == "" || out.Get("deliveries.0.eventType").String() != "test:3" {
		t.Fatalf("deliveries: %d %s", status, out.Raw)
	}
	status, _, out = e.call("GET", "/api/v1/integrations/"+id+"/deliveries?status=Failed", "demo:demo-secret", "")
	if status != http.StatusOK || out.Get("deliveries.#").Int() != 1 || out.Get("deliveries.0.deliveryId").String() != ids[0] ||
		out.Get("deliveries.0.attempts.0.attempt").Int() != 1 || out.Get("deliveries.0.attempts.0.error").String() != "the receiver answered 400 Bad Request" ||
		out.Get("deliveries.0.attempts.0.durationMs").Int() != 3 || out.Get("deliveries.0.nextAttemptAt").Type != gjson.Null {
		t.Fatalf("failed deliveries: %d %s", status, out.Raw)
	}

	// Retry one: due now, woken.
	woken := e.wake.Wait()
	status, _, out = e.call("POST", "/api/v1/integrations/"+id+"/deliveries/"+ids[0]+"/retry", "demo:demo-secret", "")
	if status != http.StatusAccepted || out.Get("status").String() != "pending" || out.Get("deliveryId").String() != ids[0] || out.Get("attempts.#").Int() != 1 {
		t.Fatalf("retry: %d %s", status, out.Raw)
	}
	select {
	case <-woken:
	default:
		t.Fatal("a retry did not wake the sender")
	}
	// It fails again; recover resends every failed one since a time.
	a, ok, err := integ.NextAttempt(ctx, "test", id, time.Now(), time.Now().Add(time.Minute))
	if err != nil || !ok || a.Delivery.ID != ids[0] {
		t.Fatalf("attempt after retry: %+v %v %v", a, ok, err)
	}
	if err := integ.FinishAttempt(ctx, a, integrations.Outcome{State: integrations.Failed, ResponseStatus: 400}); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	if status, _, out := e.call("POST", "/api/v1/integrations/"+id+"/recover", "demo:demo-secret", `{"since":"`+future+`"}`); status != 202 || out.Get("recovered").Int() != 0 {
		t.Fatalf("recover since the future: %d %s", status, out.Raw)
	}
	if status, _, out := e.call("POST", "/api/v1/integrations/"+id+"/recover", "demo:demo-secret", `{"since":"2020-01-01T00:00:00Z"}`); status != 202 || out.Get("recovered").Int() != 1 {
		t.Fatalf("recover: %d %s", status, out.Raw)
	}
	if _, _, out := e.call("GET", "/api/v1/integrations/"+id+"/deliveries?status=failed", "demo:demo-secret", ""); out.Get("paging.totalDeliveries").Int() != 0 {
		t.Fatalf("failed deliveries after recover: %s", out.Raw)
	}
}

func TestPublishEndpoint(t *testing.T) {
	e := newIntegrationsEnv(t, true)
	const path = "/api/events/v1/dk/internal/abcinsurance/publish"
	for _, tc := range []struct {
		name, path, creds, body string
		headers                 []string
		status                  int
		want                    []string
	}{
		{"no credentials", path, "", `{}`, []string{"Event-Type", "claims:opened"}, 401, []string{`"error":"unauthorized"`}},
		{"a partner lacks the scope", path, "demo:demo-secret", `{}`, []string{"Event-Type", "claims:opened"}, 403, []string{"insufficient_scope", `"scope":"internal"`}},
		{"another tenant", "/api/events/v1/se/internal/other/publish", "Bearer platform-token", `{}`, []string{"Event-Type", "claims:opened"}, 403, []string{"access_denied", "se/other"}},
		{"no Event-Type", path, "Bearer platform-token", `{}`, nil, 400, []string{"Missing request header 'Event-Type'", `"status":400`, `"path":"` + path + `"`}},
		{"reserved Event-Type", path, "Bearer platform-token", `{}`, []string{"Event-Type", "message:complete"}, 400, []string{"reserved"}},
		{"not an object", path, "Bearer platform-token", `[1,2]`, []string{"Event-Type", "claims:opened"}, 400, []string{"Incorrect payload", "one JSON object, not an array"}},
		{"not JSON", path, "Bearer platform-token", `{"a":`, []string{"Event-Type", "claims:opened"}, 400, []string{"not valid JSON"}},
		{"too big", path, "Bearer platform-token", `{"a":"` + strings.Repeat("x", 1<<20) + `"}`, []string{"Event-Type", "claims:opened"}, 413, []string{"1 MiB"}},
		{"wrong type", path, "Bearer platform-token", `{}`, []string{"Event-Type", "claims:opened", "Content-Type", "text/plain"}, 415, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, _, out := e.call("POST", tc.path, tc.creds, tc.body, tc.headers...)
			if status != tc.status {
				t.Fatalf("%d %s, want %d", status, out.Raw, tc.status)
			}
			for _, w := range tc.want {
				if !strings.Contains(out.Raw, w) {
					t.Errorf("body %s lacks %q", out.Raw, w)
				}
			}
		})
	}
	if status, hdr, _ := e.call("GET", path, "Bearer platform-token", ""); status != 405 || hdr.Get("Allow") != "POST" {
		t.Fatalf("GET publish: %d Allow %q", status, hdr.Get("Allow"))
	}
	if n, _ := e.st.Queue().Depth(context.Background(), integrations.TopicPlatform); n != 0 {
		t.Fatalf("%d platform events stored by refused requests", n)
	}
	status, _, out := e.call("POST", path, "platform:platform-secret", `{"claim":"c-1","state":"opened"}`, "Event-Type", "claims:opened")
	if status != http.StatusAccepted {
		t.Fatalf("publish: %d %s", status, out.Raw)
	}
	if _, err := uuid.Parse(out.Get("id").String()); err != nil {
		t.Fatalf("publish answered %s", out.Raw)
	}
	if n, err := e.st.Queue().Depth(context.Background(), integrations.TopicPlatform); err != nil || n != 1 {
		t.Fatalf("%d platform events stored (%v), want 1", n, err)
	}
}

func TestStreamResumes(t *testing.T) {
	e := newIntegrationsEnv(t, true)
	id := e.create(hubA, `{"channelId":"Direct","name":"ws","configuration":{"integrationType":"Agent"}}`).Get("integrationId").String()
	ids := e.enqueue(id, "1", "2", "3")
	wsURL := "ws" + strings.TrimPrefix(e.url, "http") + "/api/v1/integrations/" + id + "/stream"
	dial := func(query string) *websocket.Conn {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, resp, err := websocket.Dial(ctx, wsURL+query, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer demo-token"}}})
		if err != nil {
			t.Fatalf("dial %s: %v (%v)", query, err, resp)
		}
		t.Cleanup(func() { conn.CloseNow() })
		return conn
	}
	read := func(conn *websocket.Conn, n int) []gjson.Result {
		t.Helper()
		var out []gjson.Result
		for range n {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			typ, data, err := conn.Read(ctx)
			cancel()
			if err != nil || typ != websocket.MessageText {
				t.Fatalf("read frame %d: %v", len(out), err)
			}
			out = append(out, gjson.ParseBytes(data))
		}
		return out
	}
	conn := dial("")
	frames := read(conn, 3)
	for i, f := range frames {
		if f.Get("id").String() != ids[i] || f.Get("type").String() != fmt.Sprint("test:", i+1) || f.Get("data.k").String() != fmt.Sprint(i+1) ||
			f.Get("timestamp").String() != "2024-05-01T00:00:00Z" {
			t.Fatalf("frame %d = %s", i, f.Raw)
		}
	}
	// Live: a new delivery arrives without reconnecting.
	ids = append(ids, e.enqueue(id, "4")...)
	if f := read(conn, 1)[0]; f.Get("id").String() != ids[3] {
		t.Fatalf("live frame = %s", f.Raw)
	}
	conn.Close(websocket.StatusNormalClosure, "")

	// Missed while disconnected; a client that lost frames 3 and 4 resumes after 2.
	ids = append(ids, e.enqueue(id, "5", "6")...)
	conn = dial("?after=" + ids[1])
	var got []string
	for _, f := range read(conn, 4) {
		got = append(got, f.Get("id").String())
	}
	if strings.Join(got, " ") != strings.Join(ids[2:], " ") {
		t.Fatalf("resumed after %s: %v, want %v", ids[1], got, ids[2:])
	}
	conn.Close(websocket.StatusNormalClosure, "")

	// Everything streamed is succeeded in the log.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, _, out := e.call("GET", "/api/v1/integrations/"+id+"/deliveries?status=succeeded", "demo:demo-secret", "")
		if out.Get("paging.totalDeliveries").Int() == 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("streamed deliveries in the log: %s", out.Raw)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if status, _, out := e.call("GET", "/api/v1/integrations/"+id+"/stream?after=msg_unknown", "demo:demo-secret", ""); status != 404 || !strings.Contains(out.Raw, "msg_unknown") {
		t.Fatalf("after an unknown id: %d %s", status, out.Raw)
	}
	// A stream ends when its integration is deleted.
	conn = dial("")
	if status, _, _ := e.call("DELETE", "/api/v1/integrations/"+id, "demo:demo-secret", ""); status != http.StatusNoContent {
		t.Fatalf("delete: %d", status)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := conn.Read(ctx); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Fatalf("stream of a deleted integration: %v", err)
	}
	if status, _, out := e.call("GET", "/api/v1/integrations/"+id+"/stream", "demo:demo-secret", ""); status != 404 || !strings.Contains(out.Raw, "no integration") {
		t.Fatalf("stream of a deleted integration: %d %s", status, out.Raw)
	}
	if !strings.HasPrefix(ids[0], "msg_") {
		t.Fatalf("delivery id %s is not a webhook id", ids[0])
	}
}
