package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/opengw/gateway/internal/metrics"
	"github.com/opengw/gateway/internal/store"
	"github.com/opengw/gateway/sinks"
	"github.com/opengw/gateway/tracker"
)

// This file holds what the pipeline tells operators: metrics, the log line of a completed
// request, the log line of a failed handler, and the readiness checks.

// meteredSink records every write to a sink in the metrics (count by result, records, latency).
type meteredSink struct {
	sinks.Sink
	name    string
	metrics *metrics.Metrics
}

func (s meteredSink) Write(ctx context.Context, records []sinks.Record) error {
	start := time.Now()
	err := s.Sink.Write(ctx, records)
	result := metrics.SinkOK
	switch {
	case errors.Is(err, sinks.ErrPermanent):
		result = metrics.SinkPermanent
	case err != nil:
		result = metrics.SinkError
	}
	s.metrics.SinkWrite(s.name, result, len(records), time.Since(start))
	return err
}

// metered wraps sink so its writes are measured, when the pipeline has metrics.
func (p *Pipeline) metered(name string, sink sinks.Sink) sinks.Sink {
	if p.cfg.Metrics == nil {
		return sink
	}
	return meteredSink{Sink: sink, name: name, metrics: p.cfg.Metrics}
}

// finished is called once a transaction that recorded the terminal outcomes rs of request
// requestID (of clientID, in format) has committed: it counts them and, when they were the
// request's last, logs the request's completion with its summary.
// afterFinished arranges for finished to run once tx has committed: the completion check reads
// committed state (on PostgreSQL a handler's writes commit with its acknowledgement, after the
// handler returns).
func (p *Pipeline) afterFinished(ctx context.Context, tx store.Tx, clientID, format, requestID string, rs []tracker.Result) {
	if len(rs) == 0 {
		return
	}
	rs = slices.Clone(rs)
	ctx = context.WithoutCancel(ctx)
	tx.AfterCommit(func() { go p.finished(ctx, clientID, format, requestID, rs) })
}

func (p *Pipeline) finished(ctx context.Context, clientID, format, requestID string, rs []tracker.Result) {
	if len(rs) == 0 {
		return
	}
	if p.cfg.Metrics != nil {
		byStatus := map[tracker.Status]int{}
		for _, r := range rs {
			byStatus[r.Status]++
		}
		for status, n := range byStatus {
			p.cfg.Metrics.RecordsFinished(format, string(status), n)
		}
	}
	if p.log.Enabled(ctx, slog.LevelInfo) {
		p.logIfComplete(ctx, clientID, requestID)
	}
}

// logIfComplete logs "request completed" with the request's summary if none of its messages is
// Queued or Processing any more. Concurrent deliveries of one request may both see it complete:
// p.completed makes this process log it once.
func (p *Pipeline) logIfComplete(ctx context.Context, clientID, requestID string) {
	trk := p.cfg.Store.Tracker()
	// Page 2 of a one-request search: the count of matching requests, without reading messages.
	open, err := trk.Find(ctx, clientID, tracker.Filter{
		RequestIDs: []string{requestID}, Statuses: []tracker.Status{tracker.Queued, tracker.Processing}, Page: 2, PageSize: 1,
	})
	if err != nil || open.TotalRequests > 0 {
		if err != nil && ctx.Err() == nil {
			p.log.Debug("check whether the request is complete", "request_id", requestID, "err", err)
		}
		return
	}
	page, err := trk.Find(ctx, clientID, tracker.Filter{RequestIDs: []string{requestID}, PageSize: 1, MessagePageSize: 1}) // the summary counts all
	if err != nil || len(page.Requests) == 0 || page.Requests[0].Status != tracker.Complete {
		return
	}
	if !p.completed.add(requestID) {
		return
	}
	v := page.Requests[0]
	p.log.Info("request completed", "request_id", requestID, "client", v.ClientID, "format", v.Format,
		"records", v.Summary.Total, "complete", v.Summary.Complete, "failed", v.Summary.Failed,
		"invalid", v.Summary.Invalid, "cancelled", v.Summary.Cancelled, "ms", p.now().Sub(v.ReceivedAt).Milliseconds())
}

// recentIDs remembers the last few ids added, to log each completed request once.
type recentIDs struct {
	mu   sync.Mutex
	seen map[string]struct{}
	ring []string
	next int
}

// recentCompletions bounds how many completed request ids are remembered.
const recentCompletions = 4096

// add reports whether id is new, remembering it (and forgetting the oldest id when full).
func (r *recentIDs) add(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.seen[id]; dup {
		return false
	}
	if r.seen == nil {
		r.seen = make(map[string]struct{}, recentCompletions)
		r.ring = make([]string, recentCompletions)
	}
	if old := r.ring[r.next]; old != "" {
		delete(r.seen, old)
	}
	r.ring[r.next] = id
	r.next = (r.next + 1) % len(r.ring)
	r.seen[id] = struct{}{}
	return true
}

// logFailures logs each message a handler failed on, once, with its request id; Watermill's own
// "Handler returned error" line is demoted to debug (internal/logging). The message comes back
// (nack) and is tried again.
func (p *Pipeline) logFailures(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		out, err := h(msg)
		if err != nil {
			p.log.Error("handler failed; the message will be tried again", "handler", message.HandlerNameFromCtx(msg.Context()),
				"request_id", msg.Metadata.Get(mdRequest), "message", msg.UUID, "err", err)
		}
		return out, err
	}
}

// CheckRouter reports an error unless the router is running (readiness).
func (p *Pipeline) CheckRouter() error {
	switch {
	case p.router.IsClosed():
		return errors.New("the router is stopped")
	case !p.router.IsRunning():
		return errors.New("the router is not running yet")
	}
	return nil
}

// CheckBacklog reports an error while intake refuses submissions because MaxBacklog fragments
// wait (readiness). Without a limit it never fails.
func (p *Pipeline) CheckBacklog() error {
	if limit := p.cfg.MaxBacklog; limit > 0 {
		if n := p.backlog.Load(); n >= int64(limit) {
			return fmt.Errorf("%d fragments queued, limit %d", n, limit)
		}
	}
	return nil
}
