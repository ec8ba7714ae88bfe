package pipeline

import (
	"context"
	"errors"
	"fmt"
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

// afterFinished arranges for the terminal outcomes rs of request requestID (of clientID, in
// format), recorded in tx, to be counted once tx has committed, and, when completed is set (tx
// completed the request), for the request's completion to be logged with its summary.
func (p *Pipeline) afterFinished(tx store.Tx, clientID, format, requestID string, rs []tracker.Result, completed *tracker.Completion) {
	if len(rs) == 0 {
		return
	}
	var byStatus map[tracker.Status]int
	if p.cfg.Metrics != nil {
		byStatus = make(map[tracker.Status]int, 2)
		for _, r := range rs {
			byStatus[r.Status]++
		}
	}
	tx.AfterCommit(func() {
		for status, n := range byStatus {
			p.cfg.Metrics.RecordsFinished(format, string(status), n)
		}
		if completed != nil {
			s := completed.Summary
			p.log.Info("request completed", "request_id", requestID, "client", clientID, "format", format,
				"records", s.Total, "complete", s.Complete, "failed", s.Failed, "invalid", s.Invalid,
				"cancelled", s.Cancelled, "ms", p.now().Sub(completed.ReceivedAt).Milliseconds())
		}
	})
}

// logFailures logs each message a handler failed on, once, with its request id; Watermill's own
// "Handler returned error" line is demoted to debug (internal/logging). The message comes back
// (nack) and is tried again.
func (p *Pipeline) logFailures(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		out, err := h(msg)
		switch {
		case err == nil:
		case errors.Is(err, context.Canceled) && msg.Context().Err() != nil:
			// The gateway is stopping (or the message's lease ended): nothing failed.
			p.log.Info("handler interrupted; the message will be tried again", "handler", message.HandlerNameFromCtx(msg.Context()),
				"request_id", msg.Metadata.Get(mdRequest), "message", msg.UUID)
		default:
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
