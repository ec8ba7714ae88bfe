package transports

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/opengw/gateway/pipeline"
)

// RateLimit is a client's allowance (gateway.yaml rate_limit). A zero rate means no limit.
type RateLimit struct {
	RequestsPerSecond float64 // authenticated requests, every endpoint
	Burst             int     // requests above the rate for a moment; 0: the rate, at least 1
	RecordsPerSecond  float64 // records pushed or sent; the burst is max(rate, pipeline.MaxRecords)
}

// maxThrottledAddrs bounds the addresses whose failed authentications are counted one by one;
// past it, new addresses share one bucket until full buckets are swept out.
const maxThrottledAddrs = 10000

// Throttle enforces per-client rate limits and throttles failed authentications per remote
// address (IPv6 per /64). A nil *Throttle limits nothing. It is safe for concurrent use; its
// memory is bounded by the number of clients and maxThrottledAddrs.
type Throttle struct {
	clients map[string]*clientLimits

	failRate  rate.Limit // 0: failed authentications are not throttled
	failBurst int
	mu        sync.Mutex
	addrs     map[netip.Prefix]*rate.Limiter
	overflow  *rate.Limiter

	now func() time.Time
}

type clientLimits struct {
	cfg               RateLimit
	burst             int
	requests, records *rate.Limiter // nil: no limit
}

// NewThrottle builds the limiters of every client with a RateLimit, and, when
// failuresPerSecond > 0, a bucket of failureBurst (at least 1) failed authentications per
// remote address refilled at that rate.
func NewThrottle(clients []Client, failuresPerSecond float64, failureBurst int) *Throttle {
	t := &Throttle{clients: map[string]*clientLimits{}, addrs: map[netip.Prefix]*rate.Limiter{}, now: time.Now}
	for _, c := range clients {
		rl := c.RateLimit
		cl := &clientLimits{cfg: rl}
		if rl.RequestsPerSecond > 0 {
			cl.burst = rl.Burst
			if cl.burst <= 0 {
				cl.burst = max(1, int(math.Ceil(rl.RequestsPerSecond)))
			}
			cl.requests = rate.NewLimiter(rate.Limit(rl.RequestsPerSecond), cl.burst)
		}
		if rl.RecordsPerSecond > 0 {
			cl.records = rate.NewLimiter(rate.Limit(rl.RecordsPerSecond), max(pipeline.MaxRecords, int(math.Ceil(rl.RecordsPerSecond))))
		}
		if cl.requests != nil || cl.records != nil {
			t.clients[c.ID] = cl
		}
	}
	if failuresPerSecond > 0 {
		t.failRate, t.failBurst = rate.Limit(failuresPerSecond), max(1, failureBurst)
		t.overflow = rate.NewLimiter(t.failRate, t.failBurst)
	}
	return t
}

// request takes one request from the client's allowance: a 429 *requestError when it is
// spent.
func (t *Throttle) request(clientID string) error {
	if t == nil || t.clients[clientID] == nil || t.clients[clientID].requests == nil {
		return nil
	}
	cl := t.clients[clientID]
	if wait, ok := take(cl.requests, 1, t.now()); !ok {
		return tooMany(wait, "client %q is over its rate limit of %v requests per second (burst %d)", clientID, cl.cfg.RequestsPerSecond, cl.burst)
	}
	return nil
}

// records takes n records from the client's allowance: a 429 *requestError when they do not
// fit now.
func (t *Throttle) records(clientID string, n int) error {
	if t == nil || n == 0 || t.clients[clientID] == nil || t.clients[clientID].records == nil {
		return nil
	}
	cl := t.clients[clientID]
	if wait, ok := take(cl.records, n, t.now()); !ok {
		return tooMany(wait, "client %q is over its rate limit of %v records per second (this request has %d)", clientID, cl.cfg.RecordsPerSecond, n)
	}
	return nil
}

// take takes n tokens from l now, or reports how long until they would be there.
func take(l *rate.Limiter, n int, now time.Time) (wait time.Duration, ok bool) {
	res := l.ReserveN(now, n)
	if !res.OK() { // n over the burst: never happens for bursts set by NewThrottle
		return time.Duration(float64(n) / float64(l.Limit()) * float64(time.Second)), false
	}
	if wait = res.DelayFrom(now); wait > 0 {
		res.CancelAt(now)
		return wait, false
	}
	return 0, true
}

// checkAddr refuses (429) an address whose failed authentications have spent its bucket,
// before its credentials are even looked at, so guessing gets no answer either way.
func (t *Throttle) checkAddr(r *http.Request) error {
	if t == nil || t.failRate == 0 {
		return nil
	}
	now := t.now()
	t.mu.Lock()
	l := t.addrLimiter(remotePrefix(r), now)
	tokens := l.TokensAt(now)
	t.mu.Unlock()
	if tokens >= 1 {
		return nil
	}
	wait := time.Duration((1 - tokens) / float64(t.failRate) * float64(time.Second))
	return tooMany(wait, "too many failed authentications from this address (limit %v per second, burst %d); check the credentials",
		float64(t.failRate), t.failBurst)
}

// failed counts a failed authentication against the request's address.
func (t *Throttle) failed(r *http.Request) {
	if t == nil || t.failRate == 0 {
		return
	}
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.addrLimiter(remotePrefix(r), now).AllowN(now, 1)
}

// addrLimiter returns the bucket of prefix, creating it; t.mu must be held.
func (t *Throttle) addrLimiter(prefix netip.Prefix, now time.Time) *rate.Limiter {
	if l, ok := t.addrs[prefix]; ok {
		return l
	}
	if len(t.addrs) >= maxThrottledAddrs {
		// A full bucket is the same as no bucket: forget those.
		for p, l := range t.addrs {
			if l.TokensAt(now) >= float64(t.failBurst) {
				delete(t.addrs, p)
			}
		}
		if len(t.addrs) >= maxThrottledAddrs {
			return t.overflow
		}
	}
	l := rate.NewLimiter(t.failRate, t.failBurst)
	t.addrs[prefix] = l
	return l
}

// remotePrefix is the request's remote address: the IPv4 address, or the IPv6 /64 (one
// subscriber's range). An unparsable address counts as the zero prefix.
func remotePrefix(r *http.Request) netip.Prefix {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Prefix{}
	}
	addr = addr.Unmap()
	bits := 32
	if addr.Is6() {
		bits = 64
	}
	p, _ := addr.Prefix(bits)
	return p
}

// tooMany is a 429 with Retry-After: wait rounded up to whole seconds, at least 1.
func tooMany(wait time.Duration, format string, args ...any) *requestError {
	secs := max(1, int(math.Ceil(wait.Seconds())))
	return &requestError{status: http.StatusTooManyRequests, retryAfter: secs,
		msg: fmt.Sprintf(format, args...) + "; retry in " + strconv.Itoa(secs) + " s"}
}
