package integrations

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

func TestSignatureVerifiesWithStandardWebhooks(t *testing.T) {
	keys, err := NewKeys()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(keys.Secret, "whsec_") || !strings.HasPrefix(keys.PublicKey(), "whpk_") {
		t.Fatalf("keys %q / %q lack their prefixes", keys.Secret, keys.PublicKey())
	}
	raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(keys.Secret, "whsec_"))
	if len(raw) < 24 || len(raw) > 64 {
		t.Fatalf("secret of %d bytes; Standard Webhooks wants 24 to 64", len(raw))
	}
	now := time.Now()
	body := []byte(`{"type":"request:accepted","timestamp":"2024-05-01T00:00:00Z","data":{"x":1}}`)
	sig, err := keys.Sign("msg_1", now, body, now)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set("webhook-id", "msg_1")
	h.Set("webhook-timestamp", fmt.Sprint(now.Unix()))
	h.Set("webhook-signature", sig)
	wh, err := standardwebhooks.NewWebhook(keys.Secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Verify(body, h); err != nil {
		t.Fatalf("v1 does not verify with the official library: %v (%s)", err, sig)
	}
	if err := wh.Verify([]byte(`{"tampered":true}`), h); err == nil {
		t.Fatal("a tampered body verifies")
	}
	pub, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(keys.PublicKey(), "whpk_"))
	signed := fmt.Appendf(nil, "msg_1.%d.%s", now.Unix(), body)
	var v1a int
	for _, s := range strings.Fields(sig) {
		if b64, ok := strings.CutPrefix(s, "v1a,"); ok {
			raw, _ := base64.StdEncoding.DecodeString(b64)
			if !ed25519.Verify(pub, signed, raw) {
				t.Fatalf("v1a %s does not verify with the public key", s)
			}
			v1a++
		}
	}
	if v1a != 1 {
		t.Fatalf("%d v1a signatures in %q, want 1", v1a, sig)
	}

	// After a rotation both key sets sign until the overlap ends.
	next, err := keys.Rotate(now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	sig, _ = next.Sign("msg_1", now, body, now)
	h.Set("webhook-signature", sig)
	for _, secret := range []string{keys.Secret, next.Secret} {
		wh, _ := standardwebhooks.NewWebhook(secret)
		if err := wh.Verify(body, h); err != nil {
			t.Fatalf("after rotation, %s does not verify: %v", secret[:10], err)
		}
	}
	if n := len(strings.Fields(sig)); n != 4 {
		t.Fatalf("%d signatures during the overlap, want 4: %s", n, sig)
	}
	if sig, _ := next.Sign("msg_1", now, body, now.Add(2*time.Hour)); len(strings.Fields(sig)) != 2 {
		t.Fatalf("old keys still sign after the overlap: %s", sig)
	}
	if rotated, _ := next.Rotate(now.Add(2*time.Hour), 0); len(rotated.Previous) != 0 {
		t.Fatalf("expired or zero-overlap keys kept: %+v", rotated.Previous)
	}
}

func TestFilters(t *testing.T) {
	for _, tc := range []struct {
		filter, event string
		want          bool
	}{
		{"*", "message:complete", true},
		{"*", "payment_status_updated", true},
		{"message:*", "message:failed", true},
		{"message:*", "messages", false},
		{"message:*", "request:accepted", false},
		{"request:completed", "request:completed", true},
		{"request:completed", "request:accepted", false},
		{"claims:*", "claims:opened:v2", true},
	} {
		if got := MatchFilter(tc.filter, tc.event); got != tc.want {
			t.Errorf("MatchFilter(%q, %q) = %v, want %v", tc.filter, tc.event, got, tc.want)
		}
	}
	direct := Integration{Channel: Direct}
	if !direct.Wants("anything") {
		t.Error("a Direct integration without a filter does not take every event")
	}
	system := Integration{Channel: System, Config: Config{Events: []string{"request:*"}}}
	if system.Wants("message:complete") || !system.Wants("request:completed") {
		t.Error("a System integration's filter is not applied")
	}
}

func TestParseInput(t *testing.T) {
	const hub = ""
	for _, tc := range []struct {
		name    string
		channel Channel
		body    string
		errs    []string // substrings the error must contain; none: valid
	}{
		{"system", hub, `{"channelId":"System","name":"n","configuration":{"webhookUrl":"https://x.example/h","events":["*"]}}`, nil},
		{"direct with seed capitals", hub, `{"channelId":"Direct","name":"n","statusId":3002,"configuration":{"IntegrationType":"agent","Echo":true,"start":[{"type":"text","text":"hi"}]}}`, nil},
		{"not an object", hub, `[1]`, []string{"body: must be a JSON object"}},
		{"missing everything", hub, `{}`, []string{"channelId: is required, one of System, Direct", "name: is required", "configuration: is required"}},
		{"seed channel", hub, `{"channelId":"TwilioSMS","name":"n","configuration":{}}`, []string{`channelId: "TwilioSMS" is not supported; the supported channels are System, Direct`}},
		{"bad status", hub, `{"channelId":"System","name":"n","statusId":3001,"configuration":{"webhookUrl":"https://x","events":["*"]}}`, []string{"statusId: 3001 is not a status; use 3000 (Active) or 3002 (Paused)"}},
		{"system without values", hub, `{"channelId":"System","name":"n","configuration":{}}`, []string{"configuration.webhookUrl: is required for channel System", "configuration.events: is required"}},
		{"bad filters", hub, `{"channelId":"System","name":"n","configuration":{"webhookUrl":"https://x","events":["a b","mess*age",""]}}`,
			[]string{`configuration.events[0]: "a b" contains white space`, `configuration.events[1]: "mess*age"`, "configuration.events[2]: must not be empty"}},
		{"unknown fields", hub, `{"channelId":"System","name":"n","colour":1,"configuration":{"webhookUrl":"https://x","events":["*"],"authToken":"x"}}`,
			[]string{"colour: unknown field", "configuration.authToken: unknown field for channel System"}},
		{"direct without type", hub, `{"channelId":"Direct","name":"n","configuration":{"echo":"yes"}}`,
			[]string{"configuration.integrationType: is required for channel Direct", "configuration.echo: must be true or false"}},
		{"direct bad type", hub, `{"channelId":"Direct","name":"n","configuration":{"integrationType":"Robot"}}`, []string{`configuration.integrationType: "Robot" is not supported; use one of Agent, Bot, Customer`}},
		{"empty name", hub, `{"channelId":"System","name":" ","configuration":{"webhookUrl":"https://x","events":["*"]}}`, []string{"name: must not be empty"}},
		{"batch size", hub, `{"channelId":"System","name":"n","configuration":{"webhookUrl":"https://x","events":["*"],"messagesPerWebhook":0}}`, []string{"configuration.messagesPerWebhook: 0 is not a whole number from 1 to 1000"}},
		{"update keeps absent fields", System, `{"statusId":3002}`, nil},
		{"update replaces configuration whole", System, `{"configuration":{"webhookUrl":"https://x"}}`, []string{"configuration.events: is required"}},
		{"update cannot change channel", System, `{"channelId":"Direct"}`, []string{"channelId: cannot change from System to Direct"}},
		{"update of the seed's example", Direct, `{"name":"Direct","statusId":3002,"configuration":{"Echo":true,"webhookUrl":"http://hubster.io/v1/api/integration?customer=1"}}`,
			[]string{"configuration.integrationType: is required"}},
		{"read-only fields are ignored", System, `{"integrationId":"x","hubId":"y","integrationTypeId":"System","configuration":{"webhookUrl":"https://x","events":["*"],"publicSigningKey":"whpk_","privateSigningKey":"whsec_","regenerateKeys":true}}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, err := ParseInput([]byte(tc.body), tc.channel)
			if len(tc.errs) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %v (input %+v) is not a *ValidationError", err, in)
			}
			for _, want := range tc.errs {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
		})
	}
	in, err := ParseInput([]byte(`{"channelId":"direct","name":"n","configuration":{"integrationType":"bot","ECHO":true,"webhookUrl":" "}}`), "")
	if err != nil || in.Channel != Direct || in.Config.IntegrationType != "Bot" || !in.Config.Echo || in.Config.WebhookURL != "" || in.Status != nil {
		t.Fatalf("parsed %+v, %v", in, err)
	}
	in, err = ParseInput([]byte(`{"configuration":{"webhookUrl":"https://x","events":["*"],"regenerateKeys":true}}`), System)
	if err != nil || !in.RegenerateKeys || in.Name != nil {
		t.Fatalf("parsed %+v, %v", in, err)
	}
}

func TestGuard(t *testing.T) {
	var g Guard
	for _, ip := range []string{"127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "::1", "fe80::1",
		"fc00::1", "0.0.0.0", "100.64.0.1", "::ffff:127.0.0.1", "224.0.0.1", "255.255.255.255"} {
		if !g.Forbidden(netip.MustParseAddr(ip)) {
			t.Errorf("%s is allowed", ip)
		}
	}
	for _, ip := range []string{"8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"} {
		if g.Forbidden(netip.MustParseAddr(ip)) {
			t.Errorf("public %s is refused", ip)
		}
	}
	ctx := context.Background()
	for raw, want := range map[string]string{
		"ftp://example.com/x":           "must be an http or https URL",
		"https:///path":                 "has no host",
		"http://127.0.0.1:8080/hook":    "127.0.0.1 is an internal address",
		"http://[::1]/hook":             "::1 is an internal address",
		"http://169.254.169.254/latest": "internal address",
		"http://localhost:9/hook":       "resolves to the internal address",
		"https://x.example:99999/":      "invalid port",
		"not a url at all":              "must be an http or https URL",
	} {
		err := g.CheckURL(ctx, raw)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckURL(%q) = %v, want %q", raw, err, want)
		}
	}
	if err := g.CheckURL(ctx, "https://93.184.215.14/hook"); err != nil {
		t.Errorf("a public address is refused: %v", err)
	}
	if err := (&Guard{AllowPrivate: true}).CheckURL(ctx, "http://127.0.0.1:8080/hook"); err != nil {
		t.Errorf("allow_private refuses loopback: %v", err)
	}

	// At dial time, whatever the URL said.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { t.Error("the guarded client reached the server") }))
	defer srv.Close()
	resp, err := g.HTTPClient(5*time.Second).Post(srv.URL, "application/json", strings.NewReader("{}"))
	if err == nil {
		resp.Body.Close()
	}
	if !errors.Is(err, ErrForbiddenTarget) {
		t.Fatalf("guarded client to %s: %v, want ErrForbiddenTarget", srv.URL, err)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	for h, want := range map[string]time.Duration{
		"":                              0,
		"30":                            30 * time.Second,
		"-5":                            0,
		"soon":                          0,
		"999999999":                     maxRetryAfter,
		"Wed, 01 May 2024 12:02:00 GMT": 2 * time.Minute,
		"Wed, 01 May 2024 11:00:00 GMT": 0,
	} {
		if got := retryAfter(h, now); got != want {
			t.Errorf("retryAfter(%q) = %s, want %s", h, got, want)
		}
	}
}

func TestCheckEventType(t *testing.T) {
	for typ, want := range map[string]string{
		"claims:opened":          "",
		"":                       "is empty",
		"message:complete":       "is reserved",
		"request:completed":      "is reserved",
		"has space":              "white space",
		"claims:*":               "contains \"*\"",
		strings.Repeat("x", 201): "the limit is 200",
	} {
		err := CheckEventType(typ)
		if (want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Errorf("CheckEventType(%.20q) = %v, want %q", typ, err, want)
		}
	}
}
