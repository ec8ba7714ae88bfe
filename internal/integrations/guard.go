package integrations

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// ErrForbiddenTarget is returned (wrapped) when a webhook would go to a private, loopback,
// link-local or otherwise internal address.
var ErrForbiddenTarget = errors.New("webhook targets must be public addresses (set webhooks.allow_private to allow private, loopback and link-local ones)")

// maxURLLength bounds a webhook URL.
const maxURLLength = 2048

// resolveTimeout bounds the DNS lookup of a webhook URL's host at create and update.
const resolveTimeout = 5 * time.Second

// Guard keeps webhooks away from internal networks (SSRF): a URL is checked when an integration
// is saved, and every address the sender dials is checked again at dial time, after DNS, so a
// name that later resolves to an internal address is refused too. The zero value refuses
// internal targets.
type Guard struct {
	// AllowPrivate allows private, loopback and link-local targets (local testing).
	AllowPrivate bool
	// Resolver resolves hosts at save time; nil means net.DefaultResolver.
	Resolver *net.Resolver
}

// internalNets are ranges netip's predicates do not cover but that are not the public internet.
var internalNets = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),     // "this network"
	netip.MustParsePrefix("100.64.0.0/10"), // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),  // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"), // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),   // reserved, broadcast
}

// Forbidden reports whether the guard refuses to send to ip.
func (g *Guard) Forbidden(ip netip.Addr) bool {
	if g.AllowPrivate {
		return false
	}
	ip = ip.Unmap()
	if !ip.IsValid() || ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() {
		return true
	}
	for _, p := range internalNets {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// CheckURL checks a webhook URL before it is saved: http or https, a host, and (unless private
// targets are allowed) every address the host resolves to public. The error says what is wrong
// with the value.
func (g *Guard) CheckURL(ctx context.Context, raw string) error {
	if len(raw) > maxURLLength {
		return fmt.Errorf("is %d characters; the limit is %d", len(raw), maxURLLength)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q is not a URL", raw)
	}
	if s := strings.ToLower(u.Scheme); s != "http" && s != "https" {
		return fmt.Errorf("%q must be an http or https URL", raw)
	}
	host := u.Hostname()
	if host == "" {
		return fmt.Errorf("%q has no host", raw)
	}
	if p := u.Port(); p != "" {
		if _, err := net.LookupPort("tcp", p); err != nil {
			return fmt.Errorf("%q has an invalid port %q", raw, p)
		}
	}
	if g.AllowPrivate {
		return nil
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if g.Forbidden(ip) {
			return fmt.Errorf("%q: %s is an internal address; %w", raw, ip, ErrForbiddenTarget)
		}
		return nil
	}
	resolver := g.Resolver
	if resolver == nil {
		resolver = net.DefaultResolver
	}
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	ips, err := resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return fmt.Errorf("%q: host %s does not resolve: %v", raw, host, err)
	}
	for _, ip := range ips {
		if g.Forbidden(ip) {
			return fmt.Errorf("%q: host %s resolves to the internal address %s; %w", raw, host, ip, ErrForbiddenTarget)
		}
	}
	return nil
}

// control is a net.Dialer Control function: it refuses a connection to a forbidden address,
// after DNS resolution, before any byte is sent.
func (g *Guard) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("dial %s: unexpected address %q", network, address)
	}
	if g.Forbidden(ap.Addr()) {
		return fmt.Errorf("dial %s: %w", ap.Addr(), ErrForbiddenTarget)
	}
	return nil
}

// HTTPClient returns a client for webhooks: every dialed address passes the guard, no proxy
// from the environment (it would dial in the guard's stead), redirects are not followed (the
// 3xx answer is the result), and each request is bounded by timeout.
func (g *Guard) HTTPClient(timeout time.Duration) *http.Client {
	dialer := &net.Dialer{Timeout: min(timeout, 10*time.Second), KeepAlive: 30 * time.Second, Control: g.control}
	transport := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          512,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: timeout,
	}
	return &http.Client{
		Transport:     transport,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
