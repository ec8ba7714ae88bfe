package integrations

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// DefaultSchedule is how long a delivery waits after each failed attempt before the next one:
// the first attempt is immediate, then these delays (DESIGN.md); after the last one it fails.
var DefaultSchedule = []time.Duration{
	5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour,
}

// DefaultTimeout bounds one webhook request.
const DefaultTimeout = 15 * time.Second

// Defaults of SenderConfig.
const (
	DefaultPoll     = 500 * time.Millisecond
	DefaultMaxLanes = 256
	// jitter spreads each retry delay uniformly over ±20%, so deliveries that failed together
	// (a receiver went down) do not all come back in the same instant.
	jitter = 0.2
	// maxRetryAfter caps how long a receiver's Retry-After may hold a delivery.
	maxRetryAfter = 24 * time.Hour
	// leaseMargin is added to the timeout to make a lane's lease: a node that stops mid-send
	// gives the lane (and the attempt) up that long after it began.
	leaseMargin = 15 * time.Second
	// maxResponseRead is how much of a response body is read (and discarded) so that the
	// connection can be reused.
	maxResponseRead = 64 << 10
)

// SenderConfig wires a Sender. Store is required.
type SenderConfig struct {
	Store Store
	// Guard checks every address the sender dials; nil refuses internal targets.
	Guard    *Guard
	Timeout  time.Duration   // one request; 0 means DefaultTimeout
	Schedule []time.Duration // delays between attempts; nil means DefaultSchedule
	Wake     *Signal         // woken when deliveries may be due; nil: polling only
	// Poll is how often the sender looks for due deliveries it was not woken for (enqueued by
	// another node, retries coming due); 0 means DefaultPoll.
	Poll time.Duration
	// MaxLanes bounds how many integrations this node sends to at once; 0 means
	// DefaultMaxLanes.
	MaxLanes int
	Log      *slog.Logger
	Now      func() time.Time
}

// Sender sends due deliveries: one lane per integration, one attempt at a time per lane, lanes
// in parallel (see the package documentation). Run it on every node.
type Sender struct {
	cfg    SenderConfig
	client *http.Client
	owner  string
}

// NewSender applies cfg's defaults.
func NewSender(cfg SenderConfig) *Sender {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Guard == nil {
		cfg.Guard = &Guard{}
	}
	if cfg.Schedule == nil {
		cfg.Schedule = DefaultSchedule
	}
	if cfg.Wake == nil {
		cfg.Wake = &Signal{}
	}
	if cfg.Poll <= 0 {
		cfg.Poll = DefaultPoll
	}
	if cfg.MaxLanes <= 0 {
		cfg.MaxLanes = DefaultMaxLanes
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Sender{cfg: cfg, client: cfg.Guard.HTTPClient(cfg.Timeout), owner: "sender-" + uuid.NewString()}
}

// Run sends until ctx is cancelled; it then abandons the requests in flight (their deliveries
// come due again when their lease ends) and returns once every lane has stopped.
func (s *Sender) Run(ctx context.Context) error {
	running := map[string]bool{}
	// again marks lanes claimed while their goroutine was finishing: they are restarted.
	again := map[string]bool{}
	done := make(chan string)
	start := func(id string) {
		running[id] = true
		go func() {
			s.lane(ctx, id)
			done <- id
		}()
	}
	poll := time.NewTicker(s.cfg.Poll)
	defer poll.Stop()
	for {
		woken := s.cfg.Wake.Wait()
		if free := s.cfg.MaxLanes - len(running); free > 0 && ctx.Err() == nil {
			now := s.cfg.Now()
			ids, err := s.cfg.Store.ClaimLanes(ctx, s.owner, now, now.Add(s.cfg.Timeout+leaseMargin), free)
			if err != nil && ctx.Err() == nil {
				s.cfg.Log.Warn("claim webhook lanes", "err", err)
			}
			for _, id := range ids {
				if running[id] {
					again[id] = true
				} else {
					start(id)
				}
			}
		}
		select {
		case <-ctx.Done():
			for len(running) > 0 {
				delete(running, <-done)
			}
			return nil
		case id := <-done:
			delete(running, id)
			if again[id] {
				delete(again, id)
				start(id)
			}
		case <-woken:
		case <-poll.C:
		}
	}
}

// lane sends integration id's due deliveries one after another while this node holds its lane.
func (s *Sender) lane(ctx context.Context, id string) {
	for ctx.Err() == nil {
		now := s.cfg.Now()
		a, found, err := s.cfg.Store.NextAttempt(ctx, s.owner, id, now, now.Add(s.cfg.Timeout+leaseMargin))
		if err != nil {
			if ctx.Err() == nil {
				s.cfg.Log.Warn("claim webhook attempt", "integration", id, "err", err)
			}
			return
		}
		if !found {
			return
		}
		o, ok := s.attempt(ctx, a)
		if !ok {
			return // shutting down: the attempt comes due again when its lease ends
		}
		if err := s.cfg.Store.FinishAttempt(context.WithoutCancel(ctx), a, o); err != nil {
			s.cfg.Log.Error("record webhook attempt", "integration", id, "webhook_id", a.Delivery.ID, "err", err)
			return
		}
	}
}

// attempt sends a once and says what came of it; ok is false if ctx was cancelled meanwhile.
func (s *Sender) attempt(ctx context.Context, a Attempt) (o Outcome, ok bool) {
	start := s.cfg.Now()
	log := s.cfg.Log.With("integration", a.Integration.ID, "webhook_id", a.Delivery.ID, "type", a.Delivery.Type)
	sig, err := a.Integration.Keys.Sign(a.Delivery.ID, start, a.Delivery.Body, start)
	if err != nil {
		log.Error("sign webhook", "err", err)
		return Outcome{State: Failed, Error: "could not be signed: " + err.Error()}, true
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.Integration.Config.WebhookURL, bytes.NewReader(a.Delivery.Body))
	if err != nil {
		return Outcome{State: Failed, Error: "invalid webhook URL: " + err.Error()}, true
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "opengw-gateway-webhooks/1")
	req.Header.Set("webhook-id", a.Delivery.ID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(start.Unix(), 10))
	req.Header.Set("webhook-signature", sig)
	resp, err := s.client.Do(req)
	o.Duration = s.cfg.Now().Sub(start)
	if err != nil {
		if ctx.Err() != nil {
			return Outcome{}, false
		}
		if errors.Is(err, ErrForbiddenTarget) {
			o.State, o.Error = Failed, "refused to send: "+describeSendError(err, s.cfg.Timeout)
			log.Warn("webhook refused", "err", o.Error)
			return o, true
		}
		return s.retry(log, a, o, describeSendError(err, s.cfg.Timeout), 0), true
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseRead))
	resp.Body.Close()
	o.ResponseStatus = resp.StatusCode
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		o.State = Succeeded
	case code == http.StatusGone:
		o.State, o.NextAt, o.Pause = Pending, s.cfg.Now(), true
		o.Error = "the receiver answered 410 Gone: the integration is paused until it is set Active again"
		log.Warn("webhook receiver is gone; integration paused")
	case code == http.StatusTooManyRequests || code == http.StatusRequestTimeout || code >= 500:
		wait := retryAfter(resp.Header.Get("Retry-After"), s.cfg.Now())
		return s.retry(log, a, o, fmt.Sprintf("the receiver answered %d %s", code, http.StatusText(code)), wait), true
	default:
		o.State = Failed
		o.Error = fmt.Sprintf("the receiver answered %d %s; not retried (only 408, 429 and 5xx are)", code, http.StatusText(code))
	}
	return o, true
}

// retry schedules the next attempt after failed attempt a (not before wait, the receiver's
// Retry-After), or fails the delivery when the schedule is exhausted.
func (s *Sender) retry(log *slog.Logger, a Attempt, o Outcome, reason string, wait time.Duration) Outcome {
	o.Error = reason
	total := len(s.cfg.Schedule) + 1
	if a.InRound >= total {
		o.State = Failed
		o.Error = fmt.Sprintf("%s; gave up after %d attempts", reason, a.InRound)
		log.Warn("webhook failed; giving up", "attempt", a.InRound, "of", total, "err", reason)
		return o
	}
	delay := s.cfg.Schedule[a.InRound-1]
	delay += time.Duration((rand.Float64()*2 - 1) * jitter * float64(delay))
	delay = max(delay, min(wait, maxRetryAfter))
	o.State, o.NextAt = Pending, s.cfg.Now().Add(delay)
	log.Warn("webhook failed; will retry", "attempt", a.InRound, "of", total,
		"next_attempt", o.NextAt.UTC().Format(time.RFC3339), "err", reason)
	return o
}

// retryAfter reads a Retry-After header: seconds or an HTTP date; 0 if absent or unreadable.
func retryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(h, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return min(time.Duration(min(secs, int64(maxRetryAfter/time.Second)))*time.Second, maxRetryAfter)
	}
	if t, err := http.ParseTime(h); err == nil && t.After(now) {
		return min(t.Sub(now), maxRetryAfter)
	}
	return 0
}

// describeSendError says why a request got no response, without the URL (which the partner
// may have put credentials in).
func describeSendError(err error, timeout time.Duration) string {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		if uerr.Timeout() {
			return fmt.Sprintf("no response within %s", timeout)
		}
		err = uerr.Err
	}
	return err.Error()
}
