package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opengw/gateway/internal/integrations"
)

func TestReceiverVerifies(t *testing.T) {
	keys, err := integrations.NewKeys()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	h, err := newHandler(keys.Secret, keys.PublicKey(), &out)
	if err != nil {
		t.Fatal(err)
	}
	body := `{"type":"message:complete","timestamp":"2024-05-01T00:00:00Z","data":{"requestId":"r1","messages":[{"externalReference":"c1","messageStatus":"Complete"}]}}`
	send := func(body, sig string) int {
		now := time.Now()
		if sig == "" {
			sig, _ = keys.Sign("msg_1", now, []byte(body), now)
		}
		r := httptest.NewRequest("POST", "/hook", strings.NewReader(body))
		r.Header.Set("webhook-id", "msg_1")
		r.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
		r.Header.Set("webhook-signature", sig)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	if code := send(body, ""); code != http.StatusNoContent || !strings.Contains(out.String(), "msg_1 message:complete verified v1+v1a: request r1: c1=Complete") {
		t.Fatalf("%d %q", code, out.String())
	}
	good, _ := keys.Sign("msg_1", time.Now(), []byte(body), time.Now())
	v1Only := strings.Fields(good)[0]
	if code := send(body, v1Only); code != http.StatusUnauthorized || !strings.Contains(out.String(), "no v1a signature") {
		t.Fatalf("without v1a: %d %q", code, out.String())
	}
	if code := send(strings.Replace(body, "Complete", "Failed", 1), good); code != http.StatusUnauthorized {
		t.Fatalf("a tampered body: %d", code)
	}
	if _, err := newHandler("nope", keys.PublicKey(), &out); err == nil {
		t.Fatal("a bad secret is accepted")
	}
}
