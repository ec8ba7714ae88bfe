package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/opengw/gateway/internal/integrations/integrationstest"
	"github.com/opengw/gateway/internal/pgtest"
)

// The integrations end to end: the real gateway (run(), or the real binary where it is killed),
// partners' receivers verifying every webhook with the official Standard Webhooks library (v1)
// and crypto/ed25519 (v1a).

const demoHub = "5f3c1a2e-0d4b-4e8a-9c1f-2a6b7d8e9f01"

// webhookBackends are the storage backends the end-to-end webhook tests run on; each returns
// the configuration to start the gateway with, given the webhooks.schedule to use.
var webhookBackends = []struct {
	name   string
	config func(t *testing.T, schedule string) string
}{
	{"SQLite", webhookConfig},
	{"PostgreSQL", func(t *testing.T, schedule string) string {
		return withDatabase(t, webhookConfig(t, schedule), pgtest.New(t))
	}},
}

var scheduleLine = regexp.MustCompile(`schedule: \[[^\]]*\]`)

// webhookConfig writes the example configuration with webhooks.schedule replaced (tests retry
// in a fraction of a second, not minutes) and returns its path.
func webhookConfig(t *testing.T, schedule string) string {
	t.Helper()
	data, err := os.ReadFile(exampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	mappings, err := filepath.Abs(filepath.Join(filepath.Dir(exampleConfig), "mappings"))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(data), "mappings: mappings", "mappings: "+mappings, 1)
	if !scheduleLine.MatchString(s) {
		t.Fatal("the example configuration has no webhooks.schedule line")
	}
	s = scheduleLine.ReplaceAllString(s, "schedule: "+schedule)
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// api calls the gateway as client demo with a JSON body ("" for none).
func (g *gateway) api(t *testing.T, method, path, body string) (int, gjson.Result) {
	t.Helper()
	ct := ""
	if body != "" {
		ct = "application/json"
	}
	status, _, out := g.do(t, method, path, "demo", "demo-secret", ct, []byte(body))
	return status, gjson.ParseBytes(out)
}

// integration creates an integration on the demo hub and tells rc to trust its keys.
func (g *gateway) integration(t *testing.T, rc *integrationstest.Receiver, body string) gjson.Result {
	t.Helper()
	status, out := g.api(t, "POST", "/api/v1/integrations/hubs/"+demoHub, body)
	if status != http.StatusOK {
		t.Fatalf("create integration: %d %s", status, out.Raw)
	}
	if rc != nil {
		rc.Trust(out.Get("configuration.privateSigningKey").String(), out.Get("configuration.publicSigningKey").String())
	}
	return out
}

// deliveries polls the deliveries log of integration id (query: "?status=..." etc.) until ok
// holds for it, and returns it.
func (g *gateway) deliveries(t *testing.T, id, query, what string, ok func(log gjson.Result) bool) gjson.Result {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, log := g.api(t, "GET", "/api/v1/integrations/"+id+"/deliveries"+query, "")
		if status == http.StatusOK && ok(log) {
			return log
		}
		if time.Now().After(deadline) {
			t.Fatalf("deliveries log never showed %s: %d %s", what, status, log.Raw)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func systemIntegration(name, url string, events ...string) string {
	return fmt.Sprintf(`{"channelId":"System","name":%q,"configuration":{"webhookUrl":%q,"events":[%s]}}`,
		name, url, `"`+strings.Join(events, `","`)+`"`)
}

// ofRequest keeps the webhooks about request id.
func ofRequest(got []integrationstest.Received, id string) []integrationstest.Received {
	var out []integrationstest.Received
	for _, g := range got {
		if gjson.GetBytes(g.Body, "data.requestId").String() == id {
			out = append(out, g)
		}
	}
	return out
}

func hasType(got []integrationstest.Received, typ string) bool {
	return slices.ContainsFunc(got, func(g integrationstest.Received) bool { return g.Type == typ })
}

// TestWebhooksEndToEnd: a partner creates an integration with curl's calls, pushes records and
// receives their fates as signed webhooks, across a key regeneration; a platform event and the
// echo of the partner's own event arrive too.
func TestWebhooksEndToEnd(t *testing.T) {
	for _, b := range webhookBackends {
		t.Run(b.name, func(t *testing.T) {
			g := startGateway(t, b.config(t, "[100ms, 100ms]"), t.TempDir())
			rc := integrationstest.NewReceiver(t)
			created := g.integration(t, rc, systemIntegration("records", rc.URL, "*"))
			id := created.Get("integrationId").String()

			// Two valid records and an invalid one.
			reqID := g.push(t, []byte(`{"format":"activity","request_id":"batch-1","payload":[`+
				`{"id":"c1","type":"call","timestamp":"2020-05-18T21:15:00-05:00","duration":"PT1M","user_email":"a@b.c","contact":"+1","direction":"outbound"},`+
				`{"id":"c2","type":"call","timestamp":"2020-05-18T21:16:00-05:00","duration":"PT2M","user_email":"a@b.c","contact":"+1","direction":"inbound"},`+
				`{"id":"x1","type":"fax"}]}`))
			got := rc.Wait(t, 30*time.Second, "request:completed", func(got []integrationstest.Received) bool {
				return hasType(ofRequest(got, reqID), "request:completed")
			})
			mine := ofRequest(got, reqID)
			fates := map[string]string{}
			for _, w := range mine {
				if !w.Verified {
					t.Fatalf("%s webhook %s did not verify: v1 %v v1a %v", w.Type, w.ID, w.V1, w.V1a)
				}
				for _, m := range gjson.GetBytes(w.Body, "data.messages").Array() {
					fates[m.Get("externalReference").String()] = w.Type + "/" + m.Get("messageStatus").String()
				}
			}
			if fates["c1"] != "message:complete/Complete" || fates["c2"] != "message:complete/Complete" || fates["x1"] != "message:invalid/Invalid" {
				t.Fatalf("record fates = %v", fates)
			}
			if mine[0].Type != "request:accepted" || gjson.GetBytes(mine[0].Body, "data.batchReference").String() != "batch-1" ||
				gjson.GetBytes(mine[0].Body, "data.total").Int() != 3 {
				t.Fatalf("first webhook = %s", mine[0].Body)
			}
			done := mine[len(mine)-1]
			if done.Type != "request:completed" || gjson.GetBytes(done.Body, "data.messageStatusSummary").Raw !=
				`{"total":3,"queued":0,"processing":0,"cancelled":0,"failed":0,"invalid":1,"complete":2}` ||
				gjson.GetBytes(done.Body, "data.requestStatus").String() != "Complete" {
				t.Fatalf("request:completed = %s", done.Body)
			}
			if n := strings.Count(strings.Join(typesOf(mine), " "), "request:completed"); n != 1 {
				t.Fatalf("request:completed sent %d times", n)
			}

			// Keys regenerated: during the overlap, receivers holding either set verify.
			status, up := g.api(t, "PUT", "/api/v1/integrations/"+id,
				`{"configuration":{"webhookUrl":"`+rc.URL+`","events":["request:accepted"],"regenerateKeys":true}}`)
			if status != http.StatusOK || up.Get("configuration.privateSigningKey").String() == created.Get("configuration.privateSigningKey").String() {
				t.Fatalf("regenerate: %d %s", status, up.Raw)
			}
			for _, keys := range []gjson.Result{created, up} {
				rc.Distrust()
				rc.Trust(keys.Get("configuration.privateSigningKey").String(), keys.Get("configuration.publicSigningKey").String())
				next := g.push(t, callsEnvelope("k", 1))
				w := rc.Wait(t, 30*time.Second, "request:accepted", func(got []integrationstest.Received) bool {
					return len(ofRequest(got, next)) == 1
				})
				if r := ofRequest(w, next)[0]; !r.Verified {
					t.Fatalf("after regenerateKeys, a receiver with the %s keys cannot verify: v1 %v v1a %v",
						map[bool]string{true: "old", false: "new"}[keys.Raw == created.Raw], r.V1, r.V1a)
				}
			}

			// The log shows every delivery succeeded, with its attempt.
			log := g.deliveries(t, id, "?size=100", "every delivery succeeded", func(log gjson.Result) bool {
				return log.Get("paging.totalDeliveries").Int() >= 6 && !log.Get(`deliveries.#(status!="succeeded")`).Exists()
			})
			if log.Get("deliveries.0.attempts.#").Int() != 1 || log.Get("deliveries.0.attempts.0.responseStatus").Int() != http.StatusNoContent {
				t.Fatalf("deliveries: %s", log.Raw)
			}
		})
	}
}

func typesOf(got []integrationstest.Received) []string {
	out := make([]string, len(got))
	for i, g := range got {
		out[i] = g.Type
	}
	return out
}

// TestPlatformEventsAndEcho: an internal system publishes an event for the tenant; the
// integrations of the tenant's clients whose filter takes it receive it. A Direct integration
// with echo receives the events its own client sends.
func TestPlatformEventsAndEcho(t *testing.T) {
	for _, b := range webhookBackends {
		t.Run(b.name, func(t *testing.T) {
			g := startGateway(t, b.config(t, "[100ms]"), t.TempDir())
			claims := integrationstest.NewReceiver(t)
			g.integration(t, claims, systemIntegration("claims", claims.URL, "claims:*"))
			echo := integrationstest.NewReceiver(t)
			g.integration(t, echo, `{"channelId":"Direct","name":"desk","configuration":{"integrationType":"Agent","echo":true,"webhookUrl":"`+echo.URL+`","events":["claims:opened"]}}`)

			status, _, out := g.do(t, "POST", "/api/events/v1/dk/internal/abcinsurance/publish", "", "", "application/json",
				[]byte(`{"claim":"C-7","state":"opened"}`), "Authorization", "Bearer platform-token", "Event-Type", "claims:opened")
			if status != http.StatusAccepted || gjson.GetBytes(out, "id").String() == "" {
				t.Fatalf("publish: %d %s", status, out)
			}
			status, _, _ = g.do(t, "POST", "/api/events/v1/dk/internal/abcinsurance/publish", "platform", "platform-secret", "application/json",
				[]byte(`{"claim":"C-7"}`), "Event-Type", "claims:closed")
			if status != http.StatusAccepted {
				t.Fatalf("publish claims:closed: %d", status)
			}
			got := claims.Wait(t, 30*time.Second, "both claim events", func(got []integrationstest.Received) bool { return len(got) == 2 })
			for _, w := range got {
				if !w.Verified || !strings.HasPrefix(w.Type, "claims:") || gjson.GetBytes(w.Body, "data.claim").String() != "C-7" {
					t.Fatalf("platform webhook %s: %s (verified %v)", w.Type, w.Body, w.Verified)
				}
			}

			// The partner sends an event; its Direct integration with echo gets it back.
			event, err := os.ReadFile("testdata/seed001_event.json")
			if err != nil {
				t.Fatal(err)
			}
			status, _, out = g.do(t, "POST", "/api/events/v1/dk/external/abcinsurance/send", "", "", "application/json", event,
				"Authorization", "Bearer demo-token", "Event-Type", "payment_status_updated")
			if status != http.StatusCreated {
				t.Fatalf("send: %d %s", status, out)
			}
			got = echo.Wait(t, 30*time.Second, "the echo", func(got []integrationstest.Received) bool { return hasType(got, "payment_status_updated") })
			var types []string
			for _, w := range got {
				types = append(types, w.Type)
				if w.Type == "payment_status_updated" && (!w.Verified || gjson.GetBytes(w.Body, "data.payment.uuid").String() != "967ce1a4-a55a-4765-bd5b-bafcb4178fd3") {
					t.Fatalf("echo = %s (verified %v)", w.Body, w.Verified)
				}
			}
			// Its filter took claims:opened, not claims:closed.
			if !slices.Contains(types, "claims:opened") || slices.Contains(types, "claims:closed") {
				t.Fatalf("the Direct integration got %v", types)
			}
		})
	}
}

// TestWebhooksPauseAndResume: a paused integration's deliveries are held (logged pending, never
// sent) and sent in order once it is set Active.
func TestWebhooksPauseAndResume(t *testing.T) {
	for _, b := range webhookBackends {
		t.Run(b.name, func(t *testing.T) {
			g := startGateway(t, b.config(t, "[100ms]"), t.TempDir())
			rc := integrationstest.NewReceiver(t)
			body := systemIntegration("paused", rc.URL, "request:*")
			body = strings.Replace(body, `"name"`, `"statusId":3002,"name"`, 1)
			id := g.integration(t, rc, body).Get("integrationId").String()
			var reqs []string
			for i := range 3 {
				reqs = append(reqs, g.push(t, callsEnvelope(fmt.Sprint("p", i, "-"), 2)))
			}
			for _, r := range reqs {
				g.waitComplete(t, r, 30*time.Second)
			}
			// Held: six deliveries (accepted and completed of each request), no attempt.
			held := g.deliveries(t, id, "?status=pending", "six held deliveries", func(log gjson.Result) bool {
				return log.Get("paging.totalDeliveries").Int() == 6
			})
			if held.Get("deliveries.#(attempts.#>0)").Exists() {
				t.Fatalf("a paused integration's delivery was attempted: %s", held.Raw)
			}
			if n := len(rc.Got()); n != 0 {
				t.Fatalf("a paused integration received %d webhooks", n)
			}
			if status, out := g.api(t, "POST", "/api/v1/integrations/hubs/"+id, `{"statusId":3000}`); status != http.StatusOK {
				t.Fatalf("resume: %d %s", status, out.Raw)
			}
			got := rc.WaitN(t, 6, 30*time.Second)
			// Sent in the order they were created (the log lists the newest first).
			var sent, created []string
			for _, w := range got {
				if !w.Verified {
					t.Fatalf("webhook %s did not verify", w.ID)
				}
				sent = append(sent, w.ID)
			}
			for _, d := range held.Get("deliveries").Array() {
				created = append([]string{d.Get("deliveryId").String()}, created...)
			}
			if !slices.Equal(sent, created) {
				t.Fatalf("sent %v after resume, created %v", sent, created)
			}
			for _, r := range reqs {
				mine := typesOf(ofRequest(got, r))
				if !slices.Equal(mine, []string{"request:accepted", "request:completed"}) {
					t.Fatalf("request %s: %v", r, mine)
				}
			}
		})
	}
}

// TestWebhookRetryAndDeadReceiver: a 503 and a receiver that never answers: the 503 is retried with the same
// webhook-id while another integration whose receiver hangs delays nobody.
func TestWebhookRetryAndDeadReceiver(t *testing.T) {
	for _, b := range webhookBackends {
		t.Run(b.name, func(t *testing.T) {
			g := startGateway(t, b.config(t, "[200ms, 200ms]"), t.TempDir())
			release := make(chan struct{})
			dead := integrationstest.NewReceiver(t)
			dead.Answer(func(int, *http.Request, http.ResponseWriter) int { <-release; return http.StatusOK })
			t.Cleanup(func() { close(release) })
			g.integration(t, dead, systemIntegration("dead", dead.URL, "*"))

			flaky := integrationstest.NewReceiver(t)
			flaky.Answer(func(call int, _ *http.Request, _ http.ResponseWriter) int {
				if call == 1 {
					return http.StatusServiceUnavailable
				}
				return http.StatusOK
			})
			id := g.integration(t, flaky, systemIntegration("flaky", flaky.URL, "request:accepted")).Get("integrationId").String()
			live := integrationstest.NewReceiver(t)
			g.integration(t, live, systemIntegration("live", live.URL, "request:*"))

			var reqs []string
			for i := range 5 {
				reqs = append(reqs, g.push(t, callsEnvelope(fmt.Sprint("d", i, "-"), 3)))
			}
			// Every request's accepted and completed reach the live receiver while the dead one
			// still holds its first request.
			live.Wait(t, 30*time.Second, "every request completed", func(got []integrationstest.Received) bool {
				n := 0
				for _, r := range reqs {
					if hasType(ofRequest(got, r), "request:completed") {
						n++
					}
				}
				return n == len(reqs)
			})
			if n := len(dead.Got()); n != 0 {
				t.Fatalf("the dead receiver answered %d", n)
			}
			got := flaky.Wait(t, 30*time.Second, "the retried webhook", func(got []integrationstest.Received) bool {
				return len(integrationstest.Succeeded(got)) == len(reqs)
			})
			if got[0].Status != http.StatusServiceUnavailable || !slices.ContainsFunc(got[1:], func(r integrationstest.Received) bool {
				return r.ID == got[0].ID && r.Status == http.StatusOK && r.Verified
			}) {
				t.Fatalf("the 503 was not retried with the same webhook-id: %v", typesOf(got))
			}
			log := g.deliveries(t, id, "?size=10", "the retry recorded", func(log gjson.Result) bool {
				return log.Get(`deliveries.#(attempts.#==2).status`).String() == "succeeded"
			})
			retried := log.Get(`deliveries.#(attempts.#==2)`)
			if retried.Get("attempts.0.responseStatus").Int() != 503 || retried.Get("attempts.1.responseStatus").Int() != 200 ||
				retried.Get("deliveryId").String() != got[0].ID || retried.Get("status").String() != "succeeded" {
				t.Fatalf("log of the retried delivery: %s", log.Raw)
			}
		})
	}
}

// TestWebhookRetryAcrossRestart: the gateway is killed (SIGKILL) between two attempts of a
// delivery; after a restart the retry goes out with the same webhook-id.
func TestWebhookRetryAcrossRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the real binary")
	}
	for _, b := range webhookBackends {
		t.Run(b.name, func(t *testing.T) {
			cfg := b.config(t, "[2s]")
			dataDir := t.TempDir()
			g, cmd := startProcess(t, cfg, dataDir)
			rc := integrationstest.NewReceiver(t)
			rc.Answer(func(call int, _ *http.Request, _ http.ResponseWriter) int {
				if call == 1 {
					return http.StatusServiceUnavailable
				}
				return http.StatusOK
			})
			id := g.integration(t, rc, systemIntegration("restart", rc.URL, "request:accepted")).Get("integrationId").String()
			reqID := g.push(t, callsEnvelope("r-", 1))
			// Wait until the 503 is recorded: the delivery waits for its retry.
			g.deliveries(t, id, "", "the 503", func(log gjson.Result) bool {
				return log.Get("deliveries.0.attempts.0.responseStatus").Int() == 503 && log.Get("deliveries.0.status").String() == "pending"
			})
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			cmd.Wait()

			g2, _ := startProcess(t, cfg, dataDir)
			got := rc.WaitN(t, 1, 60*time.Second)
			if len(got) != 2 || got[0].ID != got[1].ID || !got[1].Verified || gjson.GetBytes(got[1].Body, "data.requestId").String() != reqID ||
				string(got[0].Body) != string(got[1].Body) {
				t.Fatalf("after the restart: %d webhooks %v", len(got), typesOf(got))
			}
			d := g2.deliveries(t, id, "", "the delivery succeeded", func(log gjson.Result) bool {
				return log.Get("deliveries.0.status").String() == "succeeded"
			}).Get("deliveries.0")
			if d.Get("attempts.#").Int() != 2 || d.Get("attempts.0.responseStatus").Int() != 503 || d.Get("attempts.1.responseStatus").Int() != 200 {
				t.Fatalf("log after the restart: %s", d.Raw)
			}
		})
	}
}

// TestBigPushIsFewWebhooks: 2,500 records become a handful of message:complete webhooks, not
// 2,500 calls, and every record is in one of them exactly once.
func TestBigPushIsFewWebhooks(t *testing.T) {
	for _, b := range webhookBackends {
		t.Run(b.name, func(t *testing.T) {
			g := startGateway(t, b.config(t, "[100ms]"), t.TempDir())
			rc := integrationstest.NewReceiver(t)
			g.integration(t, rc, systemIntegration("big", rc.URL, "message:*", "request:completed"))
			reqID := g.push(t, callsEnvelope("big-", 2500))
			got := rc.Wait(t, 60*time.Second, "request:completed", func(got []integrationstest.Received) bool {
				return hasType(ofRequest(got, reqID), "request:completed")
			})
			seen := map[string]int{}
			calls := 0
			for _, w := range ofRequest(got, reqID) {
				if w.Type != "message:complete" {
					continue
				}
				calls++
				for _, m := range gjson.GetBytes(w.Body, "data.messages").Array() {
					seen[m.Get("externalReference").String()]++
				}
			}
			if len(seen) != 2500 || calls > 10 {
				t.Fatalf("%d records in %d message:complete webhooks", len(seen), calls)
			}
			for ref, n := range seen {
				if n != 1 {
					t.Fatalf("record %s reported %d times", ref, n)
				}
			}
			t.Logf("2,500 records: %d message:complete webhooks", calls)
		})
	}
}
