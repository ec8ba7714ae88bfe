package transports

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// throttledEnv is an httpEnv whose Throttle has the given client rate limits and failed-auth
// bucket, on a clock the test moves.
func throttledEnv(t *testing.T, limits map[string]RateLimit, failuresPerSecond float64, failureBurst int) (*httpEnv, *fakeClock) {
	t.Helper()
	e := newHTTPEnv(t)
	clients := exampleClients()
	for i := range clients {
		clients[i].RateLimit = limits[clients[i].ID]
	}
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	e.srv.Throttle = NewThrottle(clients, failuresPerSecond, failureBurst)
	e.srv.Throttle.now = clock.now
	return e, clock
}

func TestClientRequestRateLimit(t *testing.T) {
	e, clock := throttledEnv(t, map[string]RateLimit{"demo": {RequestsPerSecond: 0.5, Burst: 3}}, 0, 0)
	push := `{"format":"activity","payload":[{"id":"a","type":"call"}]}`
	// Every authenticated endpoint draws on the same allowance.
	requests := []struct {
		path, body string
		headers    []string
	}{
		{"/push", push, nil},
		{"/tracking", `{}`, nil},
		{seedPath, seedEvent, []string{"Authorization", "Bearer demo-token", "Event-Type", "payment_status_updated"}},
	}
	for _, r := range requests {
		if status, _, out := e.post(t, r.path, strings.NewReader(r.body), r.headers...); status >= 300 {
			t.Fatalf("%s within the burst: %d %v", r.path, status, out)
		}
	}
	for _, r := range requests {
		status, h, out := e.post(t, r.path, strings.NewReader(r.body), r.headers...)
		if status != http.StatusTooManyRequests || h.Get("Retry-After") != "2" ||
			!strings.Contains(message(out), `client "demo" is over its rate limit of 0.5 requests per second (burst 3); retry in 2 s`) {
			t.Errorf("%s over the limit: %d Retry-After=%q %v", r.path, status, h.Get("Retry-After"), out)
		}
	}
	// The token endpoint counts too, and answers in its own shape.
	form := url.Values{"grant_type": {"client_credentials"}}
	req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/connect/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("demo", "demo-secret")
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("token endpoint over the limit: %d", resp.StatusCode)
	}
	// Another client has its own allowance (here none).
	if status, _, out := e.post(t, "/push", strings.NewReader(push), "Authorization", "Bearer other-token"); status != http.StatusAccepted {
		t.Errorf("other client: %d %v", status, out)
	}
	clock.advance(2 * time.Second)
	if status, _, out := e.post(t, "/push", strings.NewReader(push)); status != http.StatusAccepted {
		t.Errorf("after waiting: %d %v", status, out)
	}
}

func TestClientRecordRateLimit(t *testing.T) {
	e, clock := throttledEnv(t, map[string]RateLimit{"demo": {RecordsPerSecond: 5000}}, 0, 0)
	// The burst is one full push (10,000 records), so any valid push can pass.
	full := `{"format":"activity","payload":[` + strings.Repeat(`{"id":"x","type":"call"},`, 9999) + `{"id":"y","type":"call"}]}`
	if status, _, out := e.post(t, "/push", strings.NewReader(full)); status != http.StatusAccepted {
		t.Fatalf("a full push within the burst: %d %v", status, out)
	}
	status, h, out := e.post(t, "/push", strings.NewReader(`{"format":"activity","payload":[{"id":"a"},{"id":"b"}]}`))
	if status != http.StatusTooManyRequests || h.Get("Retry-After") != "1" ||
		!strings.Contains(message(out), `client "demo" is over its rate limit of 5000 records per second (this request has 2)`) {
		t.Errorf("over the records limit: %d Retry-After=%q %v", status, h.Get("Retry-After"), out)
	}
	status, h, out = e.post(t, seedPath, strings.NewReader(seedEvent), "Authorization", "Bearer demo-token", "Event-Type", "payment_status_updated")
	if status != http.StatusTooManyRequests || h.Get("Retry-After") != "1" || out["status"] != float64(429) ||
		!strings.Contains(message(out), "records per second") {
		t.Errorf("event over the records limit: %d Retry-After=%q %v", status, h.Get("Retry-After"), out)
	}
	clock.advance(time.Second)
	if status, _, out := e.post(t, "/push", strings.NewReader(`{"format":"activity","payload":[{"id":"a"}]}`)); status != http.StatusAccepted {
		t.Errorf("after a second: %d %v", status, out)
	}
}

func TestFailedAuthenticationsThrottledPerAddress(t *testing.T) {
	e, clock := throttledEnv(t, nil, 1, 3)
	push := `{"format":"activity","payload":[{"id":"a","type":"call"}]}`
	// Requests without credentials (a client waiting to be told the scheme) do not count.
	for range 5 {
		r := httptest.NewRequest(http.MethodPost, "/push", strings.NewReader(push))
		r.RemoteAddr = "127.0.0.1:1"
		if w := e.do(r); w.Code != http.StatusUnauthorized {
			t.Fatalf("without credentials: %d", w.Code)
		}
		r = tokenRequest(url.Values{"grant_type": {"client_credentials"}}, "", "")
		r.RemoteAddr = "127.0.0.1:1"
		if w := e.do(r); w.Code != http.StatusUnauthorized {
			t.Fatalf("token without credentials: %d", w.Code)
		}
	}
	for i := range 3 {
		if status, _, _ := e.post(t, "/push", strings.NewReader(push), "Authorization", "Bearer wrong-"+strconv.Itoa(i)); status != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d, want 401", i+1, status)
		}
	}
	// The bucket is spent: even the right secret gets no answer about itself.
	status, h, out := e.post(t, "/push", strings.NewReader(push))
	if status != http.StatusTooManyRequests || h.Get("Retry-After") != "1" ||
		!strings.Contains(message(out), "too many failed authentications from this address (limit 1 per second, burst 3)") {
		t.Errorf("after 3 failures: %d Retry-After=%q %v", status, h.Get("Retry-After"), out)
	}
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"demo"}, "client_secret": {"guess"}}
	req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/connect/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("token endpoint from a throttled address: %d", resp.StatusCode)
	}

	// Another address is not affected (IPv6 addresses count per /64).
	for _, addr := range []string{"192.0.2.7:5000", "[2001:db8::1]:5000"} {
		r := httptest.NewRequest(http.MethodPost, "/push", strings.NewReader(push))
		r.RemoteAddr = addr
		r.SetBasicAuth("demo", "demo-secret")
		r.Header.Set("Content-Type", "application/json")
		if w := e.do(r); w.Code != http.StatusAccepted {
			t.Errorf("from %s: %d %s", addr, w.Code, w.Body)
		}
	}
	for i := range 4 {
		r := httptest.NewRequest(http.MethodPost, "/tracking", strings.NewReader(`{}`))
		r.RemoteAddr = "[2001:db8::" + strconv.Itoa(i+2) + "]:5000"
		r.SetBasicAuth("demo", "wrong")
		w := e.do(r)
		if want := []int{401, 401, 401, 429}[i]; w.Code != want {
			t.Errorf("failure %d from the same /64: %d, want %d", i+1, w.Code, want)
		}
	}

	clock.advance(time.Second)
	if status, _, out := e.post(t, "/push", strings.NewReader(push)); status != http.StatusAccepted {
		t.Errorf("a second later, right secret: %d %v", status, out)
	}
}

// TestThrottleForgetsFullBuckets: the table of addresses stays bounded; buckets that have
// refilled are dropped first, and past the bound new addresses share one bucket.
func TestThrottleForgetsFullBuckets(t *testing.T) {
	th := NewThrottle(nil, 1, 2)
	clock := &fakeClock{t: time.Unix(0, 0)}
	th.now = clock.now
	fail := func(addr string) {
		r := httptest.NewRequest(http.MethodPost, "/push", nil)
		r.RemoteAddr = addr
		th.failed(r)
	}
	for i := range maxThrottledAddrs {
		fail("10.0." + strconv.Itoa(i/256) + "." + strconv.Itoa(i%256) + ":1")
	}
	if len(th.addrs) != maxThrottledAddrs {
		t.Fatalf("%d addresses tracked", len(th.addrs))
	}
	fail("192.0.2.1:1")
	if len(th.addrs) != maxThrottledAddrs || th.overflow.TokensAt(clock.now()) >= 2 {
		t.Errorf("a new address past the bound: %d tracked, overflow tokens %v", len(th.addrs), th.overflow.TokensAt(clock.now()))
	}
	clock.advance(2 * time.Second) // every bucket refills
	fail("192.0.2.2:1")
	if len(th.addrs) != 1 {
		t.Errorf("%d addresses tracked after the sweep, want 1", len(th.addrs))
	}
}

// TestUnknownClientComparesLikeAKnownOne: with bcrypt clients, a Basic or token request naming
// a client that does not exist runs one bcrypt comparison, against a hash at the clients' cost,
// exactly as a wrong secret does, so the answer's timing does not reveal which ids exist.
func TestUnknownClientComparesLikeAKnownOne(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost+1)
	if err != nil {
		t.Fatal(err)
	}
	e := newHTTPEnv(t)
	clients := []Client{{ID: "hashed", Name: "Hashed", SecretBcrypt: string(hash), Scopes: []string{"push", "tracking"}, Formats: []string{"activity"}}}
	auth := NewAuthenticator(clients)
	var mu sync.Mutex
	var compared [][]byte
	auth.compareHash = func(h, pw []byte) error {
		mu.Lock()
		compared = append(compared, h)
		mu.Unlock()
		return bcrypt.CompareHashAndPassword(h, pw)
	}
	e.srv.Auth = auth
	if cost, err := bcrypt.Cost([]byte(auth.unknown.SecretBcrypt)); err != nil || cost != bcrypt.MinCost+1 {
		t.Fatalf("the stand-in hash has cost %d (%v), want the clients' %d", cost, err, bcrypt.MinCost+1)
	}
	take := func() [][]byte {
		mu.Lock()
		defer mu.Unlock()
		out := compared
		compared = nil
		return out
	}

	basic := func(id, secret string) int {
		req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/tracking", strings.NewReader(`{}`))
		req.SetBasicAuth(id, secret)
		req.Header.Set("Content-Type", "application/json")
		resp, err := e.ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if status := basic("hashed", "wrong"); status != http.StatusUnauthorized {
		t.Fatalf("wrong secret: %d", status)
	}
	if c := take(); len(c) != 1 || string(c[0]) != string(hash) {
		t.Fatalf("a wrong secret compared %d hashes", len(c))
	}
	if status := basic("nobody", "wrong"); status != http.StatusUnauthorized {
		t.Fatalf("unknown client: %d", status)
	}
	if c := take(); len(c) != 1 || string(c[0]) != auth.unknown.SecretBcrypt {
		t.Fatalf("an unknown client compared %d hashes (%q)", len(c), c)
	}
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"nobody"}, "client_secret": {"wrong"}}
	req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/connect/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if c := take(); resp.StatusCode != http.StatusUnauthorized || len(c) != 1 || string(c[0]) != auth.unknown.SecretBcrypt {
		t.Fatalf("token endpoint, unknown client: %d, %d comparisons", resp.StatusCode, len(c))
	}
	if status := basic("hashed", "s3cret"); status != http.StatusOK {
		t.Fatalf("right secret: %d", status)
	}

	// Without bcrypt clients, unknown ids are compared with a plain stand-in secret.
	plain := NewAuthenticator(exampleClients())
	if plain.unknown.SecretBcrypt != "" || plain.unknown.Secret == "" {
		t.Errorf("stand-in without bcrypt clients = %+v", plain.unknown)
	}
	if _, ok := plain.CheckClient("nobody", plain.unknown.Secret); ok {
		t.Error("the stand-in's own secret authenticated an unknown client")
	}
}
