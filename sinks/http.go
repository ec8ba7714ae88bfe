package sinks

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

var _ Sink = (*HTTPSink)(nil)

// maxRetryAfter caps how long one Write waits on a server's Retry-After.
const maxRetryAfter = 30 * time.Second

// bodySnippet is how much of an error response goes into the error message.
const bodySnippet = 200

// HTTPSink POSTs records to a URL as JSON arrays of their Data objects, each with the client id
// added as its first member (`[{"_client_id":"demo",...},...]`), at most BatchSize records per
// request. One request carries the records of one client only, named again in the
// X-Gateway-Client header. Requests have Content-Type application/json and an Idempotency-Key
// header that is the same whenever the same sink sends a chunk of the same client's same record
// IDs, so a receiver can drop redelivered chunks. The receiver should also upsert by the client
// and the record's own id: a batch regrouped after a restart gets new keys.
//
// Each request may take Timeout. A Write retries a request up to MaxAttempts times on 5xx, 408,
// 429, timeouts and connection errors, waiting as the response's Retry-After says (seconds or an
// HTTP date) or else with jittered exponential backoff; no wait exceeds 30s, and if the next
// attempt would fall after ctx's deadline the Write returns at once. It then returns a retryable
// error naming the last status and the URL (shown without password or query string). Any other
// non-2xx response (4xx, a redirect that would turn the POST into a GET) is a permanent error
// with the status and the first 200 bytes of the body. Chunks are sent in order; when one
// fails, Write returns and a later retry of the whole batch resends the earlier chunks with
// their same Idempotency-Key.
//
// Write is safe for concurrent use; all Writes share one http.Client.
type HTTPSink struct {
	name        string
	url         string
	shownURL    string // url without its password, for messages
	headers     http.Header
	timeout     time.Duration
	batchSize   int
	maxAttempts int
	client      *http.Client

	// Without Retry-After, the wait before attempt n+1 is about baseBackoff·2^(n-1), at most
	// maxBackoff.
	baseBackoff time.Duration
	maxBackoff  time.Duration

	closed atomic.Bool
}

// NewHTTPSink returns the http sink called name. cfg.Type may be empty or "http"; cfg is
// validated and its zero fields get their defaults.
func NewHTTPSink(name string, cfg Config) (*HTTPSink, error) {
	if cfg.Type == "" {
		cfg.Type = TypeHTTP
	}
	if cfg.Type != TypeHTTP {
		return nil, fmt.Errorf("sink %q: type %q is not http", name, cfg.Type)
	}
	if err := cfg.Validate(name); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults(name)
	headers := http.Header{}
	headers.Set("User-Agent", "opengw-gateway")
	for k, v := range cfg.Headers {
		headers.Set(k, v)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	// Concurrent Writes go to one host; the default of 2 idle connections would make most of
	// them dial anew.
	transport.MaxIdleConnsPerHost = 32
	return &HTTPSink{
		name:        name,
		url:         cfg.URL,
		shownURL:    redactURL(cfg.URL),
		headers:     headers,
		timeout:     cfg.Timeout,
		batchSize:   cfg.BatchSize,
		maxAttempts: cfg.MaxAttempts,
		client: &http.Client{
			Transport: transport,
			// 307/308 keep the POST and its body; 301/302/303 would turn it into a GET that
			// "succeeds" without delivering anything, so those come back as responses.
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if req.Method != http.MethodPost {
					return http.ErrUseLastResponse
				}
				if len(via) >= 10 {
					return errors.New("stopped after 10 redirects")
				}
				return nil
			},
		},
		baseBackoff: 200 * time.Millisecond,
		maxBackoff:  5 * time.Second,
	}, nil
}

// Write sends records in chunks of BatchSize; see HTTPSink for retries and error kinds.
func (s *HTTPSink) Write(ctx context.Context, records []Record) error {
	if done, err := precheck(ctx, s.name, &s.closed, records); done {
		return err
	}
	// Encode every chunk first, so a malformed record fails the batch before anything is sent.
	type chunk struct {
		client string
		body   []byte
		key    string
		n      int
	}
	var chunks []chunk
	for _, group := range byClient(records) {
		client := group[0].ClientID
		if strings.ContainsFunc(client, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			return fmt.Errorf("sink %q: %w", s.name, Permanent(fmt.Errorf("record %s: client id %q cannot be sent in a header", group[0].ID, client)))
		}
		for first := 0; first < len(group); first += s.batchSize {
			part := group[first:min(first+s.batchSize, len(group))]
			body, err := encodeArray(part)
			if err != nil {
				return fmt.Errorf("sink %q: %w", s.name, err)
			}
			chunks = append(chunks, chunk{client, body, idempotencyKey(s.name, client, part), len(part)})
		}
	}
	sent := 0
	for _, c := range chunks {
		if err := s.post(ctx, c.client, c.body, c.key); err != nil {
			if len(chunks) == 1 {
				return fmt.Errorf("sink %q: %w", s.name, err)
			}
			return fmt.Errorf("sink %q: request of %d records of client %s (%d of %d records sent before): %w",
				s.name, c.n, c.client, sent, len(records), err)
		}
		sent += c.n
	}
	return nil
}

// byClient splits records into groups of one client each, in order of first appearance,
// keeping their order within a group.
func byClient(records []Record) [][]Record {
	var groups [][]Record
	index := map[string]int{}
	for _, r := range records {
		g, ok := index[r.ClientID]
		if !ok {
			g = len(groups)
			index[r.ClientID] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], r)
	}
	return groups
}

// Close marks the sink closed and drops idle connections. It is idempotent.
func (s *HTTPSink) Close() error {
	s.closed.Store(true)
	s.client.CloseIdleConnections()
	return nil
}

// post sends one chunk, retrying as HTTPSink describes.
func (s *HTTPSink) post(ctx context.Context, client string, body []byte, key string) error {
	for attempt := 1; ; attempt++ {
		retryAfter, err := s.attempt(ctx, client, body, key)
		if err == nil || errors.Is(err, ErrPermanent) || ctx.Err() != nil {
			return err
		}
		if attempt >= s.maxAttempts {
			return fmt.Errorf("%w (gave up after %d attempts)", err, attempt)
		}
		wait := retryAfter
		if wait < 0 {
			wait = s.backoff(attempt)
		}
		wait = min(wait, maxRetryAfter)
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
			return fmt.Errorf("%w (attempt %d; not retried: the next attempt is due in %s, after the deadline)",
				err, attempt, wait.Round(time.Millisecond))
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("%w (attempt %d; retry abandoned: %w)", err, attempt, ctx.Err())
		case <-timer.C:
		}
	}
}

// attempt makes one request. It returns the server's Retry-After (negative if none) and nil, a
// permanent error, or a retryable one.
func (s *HTTPSink) attempt(ctx context.Context, client string, body []byte, key string) (time.Duration, error) {
	actx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return -1, Permanent(fmt.Errorf("POST %s: %w", s.shownURL, err))
	}
	req.Header = s.headers.Clone()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	req.Header.Set(ClientHeader, client)
	resp, err := s.client.Do(req)
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return -1, fmt.Errorf("POST %s: %w", s.shownURL, ctx.Err())
		case actx.Err() != nil:
			return -1, fmt.Errorf("POST %s: no response within %s: %w", s.shownURL, s.timeout, actx.Err())
		}
		if uerr := (*url.Error)(nil); errors.As(err, &uerr) {
			err = uerr.Err // drop url.Error's `Post "<url>":` prefix: the URL is named already
		}
		return -1, fmt.Errorf("POST %s: %w", s.shownURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		// Drain (boundedly) so the connection can be reused.
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return -1, nil
	}
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, bodySnippet))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	err = fmt.Errorf("POST %s: %s", s.shownURL, resp.Status)
	if text := strings.Join(strings.Fields(strings.ToValidUTF8(string(snippet), "")), " "); text != "" {
		err = fmt.Errorf("%w: %s", err, text)
	}
	switch code := resp.StatusCode; {
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests, code >= 500:
		if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			return d, err
		}
		return -1, err
	default:
		return -1, Permanent(err)
	}
}

// backoff is the jittered wait after failed attempt n (1-based) when the server gave no
// Retry-After: uniformly between half and all of baseBackoff·2^(n-1), capped at maxBackoff.
func (s *HTTPSink) backoff(n int) time.Duration {
	d := s.maxBackoff
	if n-1 < 30 {
		d = min(s.baseBackoff<<(n-1), s.maxBackoff)
	}
	if half := d / 2; half > 0 {
		return half + rand.N(half)
	}
	return d
}

// parseRetryAfter reads a Retry-After value: delay-seconds or an HTTP date (RFC 9110 §10.2.3).
// A date in the past means no wait.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		return time.Duration(min(secs, int64(24*time.Hour/time.Second))) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// encodeArray joins the Data objects of records of one client into a JSON array, checking each
// (parseObject) and adding the client id to each (appendWithClient).
func encodeArray(records []Record) ([]byte, error) {
	size := 2
	for _, r := range records {
		size += len(r.Data) + len(ClientField) + len(r.ClientID) + 8
	}
	body := make([]byte, 0, size)
	body = append(body, '[')
	for i, r := range records {
		if _, err := parseObject(r); err != nil {
			return nil, err
		}
		if i > 0 {
			body = append(body, ',')
		}
		body = appendWithClient(body, r.ClientID, r.Data)
	}
	return append(body, ']'), nil
}

// idempotencyKey derives a chunk's Idempotency-Key from the sink's name, the client and the
// chunk's record IDs: hex SHA-256 over length-prefixed strings, so no two distinct lists share
// an encoding.
func idempotencyKey(sink, client string, records []Record) string {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	write := func(s string) {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
		io.WriteString(h, s)
	}
	write(sink)
	write(client)
	for _, r := range records {
		write(r.ID)
	}
	return hex.EncodeToString(h.Sum(nil))
}
