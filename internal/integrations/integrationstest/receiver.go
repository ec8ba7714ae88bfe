package integrationstest

import (
	"crypto/ed25519"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/tidwall/gjson"
)

// Receiver is a webhook receiver as a partner would run one: it verifies every request's v1
// signature with the official Standard Webhooks library and its v1a signature with
// crypto/ed25519, against the keys the integration showed (Trust), and records what arrived.
type Receiver struct {
	URL string

	t      testing.TB
	mu     sync.Mutex
	got    []Received
	calls  int
	trust  []keyPair
	answer func(call int, r *http.Request, w http.ResponseWriter) int
	wake   chan struct{}
}

// Received is one request a Receiver got.
type Received struct {
	ID, Type  string // webhook-id and the body's type
	Body      []byte
	Header    http.Header
	At        time.Time
	Status    int  // what the receiver answered
	V1, V1a   bool // whether a signature of that version verified with a trusted key
	Verified  bool // both did
	Timestamp int64
}

type keyPair struct {
	secret string
	public ed25519.PublicKey
}

// NewReceiver starts a receiver that answers 204 to everything; it stops when t ends.
func NewReceiver(t testing.TB) *Receiver {
	rc := &Receiver{t: t, wake: make(chan struct{}, 1)}
	srv := httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(srv.Close)
	rc.URL = srv.URL + "/hook"
	return rc
}

// Answer sets how the receiver answers: fn gets the 1-based number of the call and may set
// headers; it returns the status code.
func (rc *Receiver) Answer(fn func(call int, r *http.Request, w http.ResponseWriter) int) {
	rc.mu.Lock()
	rc.answer = fn
	rc.mu.Unlock()
}

// Trust adds keys the receiver verifies with: the integration's privateSigningKey (whsec_) and
// publicSigningKey (whpk_).
func (rc *Receiver) Trust(secret, publicKey string) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(publicKey, "whpk_"))
	if err != nil || len(raw) != ed25519.PublicKeySize || !strings.HasPrefix(publicKey, "whpk_") {
		rc.t.Errorf("public signing key %q is not whpk_<base64 of 32 bytes>", publicKey)
		return
	}
	rc.mu.Lock()
	rc.trust = append(rc.trust, keyPair{secret: secret, public: raw})
	rc.mu.Unlock()
}

// Distrust forgets every key.
func (rc *Receiver) Distrust() {
	rc.mu.Lock()
	rc.trust = nil
	rc.mu.Unlock()
}

func (rc *Receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	rc.calls++
	call, answer, trust := rc.calls, rc.answer, rc.trust
	rc.mu.Unlock()
	rec := Received{ID: r.Header.Get("webhook-id"), Type: gjson.GetBytes(body, "type").String(), Body: body,
		Header: r.Header.Clone(), At: time.Now(), Status: http.StatusNoContent}
	rec.Timestamp, _ = strconv.ParseInt(r.Header.Get("webhook-timestamp"), 10, 64)
	for _, k := range trust {
		if wh, err := standardwebhooks.NewWebhook(k.secret); err == nil && wh.Verify(body, r.Header) == nil {
			rec.V1 = true
		}
		signed := []byte(r.Header.Get("webhook-id") + "." + r.Header.Get("webhook-timestamp") + "." + string(body))
		for _, sig := range strings.Fields(r.Header.Get("webhook-signature")) {
			v, b64, ok := strings.Cut(sig, ",")
			raw, err := base64.StdEncoding.DecodeString(b64)
			if ok && v == "v1a" && err == nil && ed25519.Verify(k.public, signed, raw) {
				rec.V1a = true
			}
		}
	}
	rec.Verified = rec.V1 && rec.V1a
	if answer != nil {
		rec.Status = answer(call, r, w)
	}
	rc.mu.Lock()
	rc.got = append(rc.got, rec)
	rc.mu.Unlock()
	select {
	case rc.wake <- struct{}{}:
	default:
	}
	w.WriteHeader(rec.Status)
}

// Got returns what arrived so far, in order.
func (rc *Receiver) Got() []Received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]Received(nil), rc.got...)
}

// Wait waits until done holds for what arrived, failing t after timeout (a bound against a
// hung test, not a speed requirement).
func (rc *Receiver) Wait(t testing.TB, timeout time.Duration, what string, done func([]Received) bool) []Received {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		got := rc.Got()
		if done(got) {
			return got
		}
		select {
		case <-rc.wake:
		case <-time.After(50 * time.Millisecond):
		case <-deadline.C:
			types := make([]string, len(got))
			for i, g := range got {
				types[i] = g.Type + "/" + g.ID
			}
			t.Fatalf("receiver: waited %s for %s; got %d: %v", timeout, what, len(got), types)
		}
	}
}

// WaitN waits for at least n requests that answered 2xx.
func (rc *Receiver) WaitN(t testing.TB, n int, timeout time.Duration) []Received {
	t.Helper()
	return rc.Wait(t, timeout, "webhooks", func(got []Received) bool { return len(Succeeded(got)) >= n })
}

// Succeeded keeps the requests answered 2xx.
func Succeeded(got []Received) []Received {
	var out []Received
	for _, g := range got {
		if g.Status >= 200 && g.Status < 300 {
			out = append(out, g)
		}
	}
	return out
}
