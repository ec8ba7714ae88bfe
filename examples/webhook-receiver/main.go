// Command webhook-receiver is a partner's webhook receiver, for trying the gateway's
// integrations: it verifies each webhook's v1 signature (HMAC) with the official Standard
// Webhooks library and its v1a signature (Ed25519) with the integration's public key, answers
// 204 (401 when a signature does not verify) and prints one line per webhook.
//
//	go run ./examples/webhook-receiver --secret whsec_... --public-key whpk_... [--addr 127.0.0.1:9000]
package main

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strings"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/tidwall/gjson"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9000", "listen address; the integration's webhookUrl is http://ADDR/hook")
	secret := flag.String("secret", "", "the integration's privateSigningKey (whsec_...)")
	public := flag.String("public-key", "", "the integration's publicSigningKey (whpk_...)")
	flag.Parse()
	h, err := newHandler(*secret, *public, os.Stdout)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("receiving webhooks at http://%s/hook", *addr)
	log.Fatal(http.ListenAndServe(*addr, h))
}

// newHandler verifies webhooks with secret (whsec_) and public (whpk_) and prints them to out.
func newHandler(secret, public string, out io.Writer) (http.Handler, error) {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil || !strings.HasPrefix(secret, "whsec_") {
		return nil, errors.New("--secret must be the integration's privateSigningKey, whsec_<base64>")
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(public, "whpk_"))
	if err != nil || len(raw) != ed25519.PublicKeySize || !strings.HasPrefix(public, "whpk_") {
		return nil, errors.New("--public-key must be the integration's publicSigningKey, whpk_<base64>")
	}
	pub := ed25519.PublicKey(raw)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 10<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		// v1: HMAC-SHA256, checked by the Standard Webhooks library (it also refuses a
		// webhook-timestamp more than 5 minutes off).
		if err := wh.Verify(body, r.Header); err != nil {
			fmt.Fprintf(out, "REFUSED %s: v1 %v\n", r.Header.Get("webhook-id"), err)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		// v1a: Ed25519 over the same "{id}.{timestamp}.{body}".
		signed := []byte(r.Header.Get("webhook-id") + "." + r.Header.Get("webhook-timestamp") + "." + string(body))
		v1a := false
		for _, sig := range strings.Fields(r.Header.Get("webhook-signature")) {
			if b64, ok := strings.CutPrefix(sig, "v1a,"); ok {
				s, err := base64.StdEncoding.DecodeString(b64)
				v1a = v1a || (err == nil && ed25519.Verify(pub, signed, s))
			}
		}
		if !v1a {
			fmt.Fprintf(out, "REFUSED %s: no v1a signature verifies\n", r.Header.Get("webhook-id"))
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		fmt.Fprintf(out, "%s %s verified v1+v1a: %s\n", r.Header.Get("webhook-id"), gjson.GetBytes(body, "type"), summary(body))
		w.WriteHeader(http.StatusNoContent)
	}), nil
}

// summary is a short line about a webhook's data: each record's reference and status for
// message events, the data itself otherwise.
func summary(body []byte) string {
	data := gjson.GetBytes(body, "data")
	msgs := data.Get("messages")
	if !msgs.IsArray() {
		return data.Raw
	}
	var parts []string
	for _, m := range msgs.Array() {
		parts = append(parts, m.Get("externalReference").String()+"="+m.Get("messageStatus").String())
	}
	return fmt.Sprintf("request %s: %s", data.Get("requestId"), strings.Join(parts, " "))
}
