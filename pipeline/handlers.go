package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/opengw/gateway/internal/sqlitequeue"
	"github.com/opengw/gateway/mappings"
	"github.com/opengw/gateway/sinks"
	"github.com/opengw/gateway/tracker"
)

// process validates and maps a fragment's records, records invalid ones, claims valid ones
// (cancelled messages are never claimed) and hands them to their sinks' topics.
func (p *Pipeline) process(msg *message.Message) error {
	ctx := msg.Context()
	requestID, format := msg.Metadata.Get(mdRequest), msg.Metadata.Get(mdFormat)
	offset := atoiOr(msg.Metadata.Get(mdOffset), 0)
	records := splitRecords(msg.Payload)
	m, ok := p.cfg.Mappings().Get(format)
	if !ok {
		return p.failAll(ctx, requestID, offset, len(records), fmt.Sprintf("format %q is no longer configured", format))
	}
	cancelled, err := p.cfg.Tracker.AddMessages(ctx, requestID, newMessages(m, records, offset))
	if err != nil {
		return fmt.Errorf("record messages of request %s: %w", requestID, err)
	}
	if cancelled {
		return nil
	}
	var invalid []tracker.Result
	var valid []int
	outcomes := make(map[int]mappings.Outcome, len(records))
	for i, rec := range records {
		o := m.Apply(rec)
		if !o.Valid() {
			invalid = append(invalid, tracker.Result{Index: offset + i, Status: tracker.Invalid, Errors: withMapping(o.Errors, format, m.Version), MappingVersion: m.Version})
			continue
		}
		outcomes[offset+i] = o
		valid = append(valid, offset+i)
	}
	if len(invalid) > 0 {
		if err := p.cfg.Tracker.Finish(ctx, requestID, invalid); err != nil {
			return fmt.Errorf("record invalid messages of request %s: %w", requestID, err)
		}
	}
	if len(valid) == 0 {
		return nil
	}
	claimed, err := p.cfg.Tracker.Claim(ctx, requestID, valid)
	if err != nil {
		return fmt.Errorf("claim messages of request %s: %w", requestID, err)
	}
	bySink := map[string][]deliveryRecord{}
	var order []string
	for _, idx := range claimed {
		o := outcomes[idx]
		if _, seen := bySink[o.Sink]; !seen {
			order = append(order, o.Sink)
		}
		bySink[o.Sink] = append(bySink[o.Sink], deliveryRecord{Index: idx, Data: o.JSON()})
	}
	for _, sink := range order {
		if _, ok := p.cfg.Sinks.Get(sink); !ok {
			if err := p.finish(ctx, requestID, bySink[sink], tracker.Failed, m.Version, fmt.Sprintf("sink %q is not configured", sink)+mappingNote(format, m.Version)); err != nil {
				return err
			}
			continue
		}
		d := delivery{RequestID: requestID, Format: format, MappingVersion: m.Version, Records: bySink[sink]}
		payload, err := json.Marshal(d)
		if err != nil {
			return fmt.Errorf("encode delivery for sink %s: %w", sink, err)
		}
		id := uuid.NewSHA1(uuid.NameSpaceOID, []byte(fmt.Sprintf("%s/%d/%s", requestID, offset, sink))).String()
		if err := p.cfg.Queue.Publish(topicDeliverPrefix+sink, message.NewMessage(id, payload)); err != nil {
			return fmt.Errorf("queue delivery to sink %s: %w", sink, err)
		}
	}
	return nil
}

// deliverTo writes deliveries to one sink. A retryable failure nacks the message (the queue
// offers it again after a backoff that survives restarts) until DeliveryAttempts is reached;
// a permanent failure ends the records Failed with the sink's message, isolating the bad
// records of a batch by retrying them one at a time.
func (p *Pipeline) deliverTo(name string, sink sinks.Sink) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		var d delivery
		if err := json.Unmarshal(msg.Payload, &d); err != nil {
			// Written by process; unreadable means corrupted storage. Nothing to retry.
			p.log.Error("drop unreadable delivery", "sink", name, "message", msg.UUID, "err", err)
			return nil
		}
		ctx, cancel := context.WithTimeout(msg.Context(), p.cfg.DeliveryTimeout)
		defer cancel()
		err := sink.Write(ctx, d.sinkRecords())
		switch {
		case err == nil:
			return p.finish(msg.Context(), d.RequestID, d.Records, tracker.Complete, d.MappingVersion, "")
		case errors.Is(err, sinks.ErrPermanent):
			return p.isolate(msg.Context(), name, sink, d, err)
		}
		attempt := atoiOr(msg.Metadata.Get(sqlitequeue.AttemptKey), 1)
		if attempt >= p.cfg.DeliveryAttempts {
			reason := fmt.Sprintf("sink %s: gave up after %d attempts: %v", name, attempt, err) + mappingNote(d.Format, d.MappingVersion)
			return p.finish(msg.Context(), d.RequestID, d.Records, tracker.Failed, d.MappingVersion, reason)
		}
		p.log.Warn("sink write failed; will retry", "sink", name, "request_id", d.RequestID, "mapping", d.Format+"@"+d.MappingVersion, "attempt", attempt, "err", err)
		return fmt.Errorf("write to sink %s: %w", name, err)
	}
}

// isolate retries a permanently failed batch record by record, so only the records the sink
// refuses end Failed.
func (p *Pipeline) isolate(ctx context.Context, name string, sink sinks.Sink, d delivery, batchErr error) error {
	if len(d.Records) == 1 {
		return p.finish(ctx, d.RequestID, d.Records, tracker.Failed, d.MappingVersion, fmt.Sprintf("sink %s: %v", name, batchErr)+mappingNote(d.Format, d.MappingVersion))
	}
	var results []tracker.Result
	recs := d.sinkRecords()
	for i, r := range d.Records {
		wctx, cancel := context.WithTimeout(ctx, p.cfg.DeliveryTimeout)
		err := sink.Write(wctx, recs[i:i+1])
		cancel()
		switch {
		case err == nil:
			results = append(results, tracker.Result{Index: r.Index, Status: tracker.Complete, MappingVersion: d.MappingVersion})
		case errors.Is(err, sinks.ErrPermanent):
			results = append(results, tracker.Result{Index: r.Index, Status: tracker.Failed, MappingVersion: d.MappingVersion,
				Errors: []string{fmt.Sprintf("sink %s: %v", name, err) + mappingNote(d.Format, d.MappingVersion)}})
		default:
			// The sink went away meanwhile: retry the whole batch later (upserts make it safe).
			return fmt.Errorf("write to sink %s: %w", name, err)
		}
	}
	if err := p.cfg.Tracker.Finish(ctx, d.RequestID, results); err != nil {
		return fmt.Errorf("record delivery results of request %s: %w", d.RequestID, err)
	}
	return nil
}

func (p *Pipeline) finish(ctx context.Context, requestID string, recs []deliveryRecord, status tracker.Status, version, reason string) error {
	results := make([]tracker.Result, len(recs))
	for i, r := range recs {
		results[i] = tracker.Result{Index: r.Index, Status: status, MappingVersion: version}
		if reason != "" {
			results[i].Errors = []string{reason}
		}
	}
	if err := p.cfg.Tracker.Finish(ctx, requestID, results); err != nil {
		return fmt.Errorf("record %s for request %s: %w", status, requestID, err)
	}
	return nil
}

// failAll ends records [offset, offset+n) Failed, recording them first if needed.
func (p *Pipeline) failAll(ctx context.Context, requestID string, offset, n int, reason string) error {
	msgs := make([]tracker.NewMessage, n)
	results := make([]tracker.Result, n)
	for i := range n {
		msgs[i] = tracker.NewMessage{Index: offset + i}
		results[i] = tracker.Result{Index: offset + i, Status: tracker.Failed, Errors: []string{reason}}
	}
	if _, err := p.cfg.Tracker.AddMessages(ctx, requestID, msgs); err != nil {
		return fmt.Errorf("record messages of request %s: %w", requestID, err)
	}
	if err := p.cfg.Tracker.Finish(ctx, requestID, results); err != nil {
		return fmt.Errorf("fail messages of request %s: %w", requestID, err)
	}
	return nil
}

func newMessages(m *mappings.Mapping, records [][]byte, offset int) []tracker.NewMessage {
	out := make([]tracker.NewMessage, len(records))
	for i, rec := range records {
		out[i] = tracker.NewMessage{Index: offset + i, ExternalReference: m.RecordID(rec), Type: m.RecordType(rec)}
	}
	return out
}

// delivery is the payload of a deliver.<sink> message.
type delivery struct {
	RequestID      string           `json:"request_id"`
	Format         string           `json:"format,omitempty"` // absent in deliveries queued before it was added
	MappingVersion string           `json:"mapping_version"`
	Records        []deliveryRecord `json:"records"`
}

type deliveryRecord struct {
	Index int             `json:"index"`
	Data  json.RawMessage `json:"data"`
}

func (d delivery) sinkRecords() []sinks.Record {
	out := make([]sinks.Record, len(d.Records))
	for i, r := range d.Records {
		out[i] = sinks.Record{ID: tracker.MessageID(d.RequestID, r.Index), Data: r.Data}
	}
	return out
}

// mappingNote names the mapping revision that processed a record, " (mapping activity@1a2b3c4d5e6f)",
// for the error messages tracking shows: after a hot reload, it tells which version a failure
// came from.
func mappingNote(format, version string) string {
	switch {
	case version == "":
		return ""
	case format == "":
		return " (mapping " + version + ")"
	}
	return " (mapping " + format + "@" + version + ")"
}

// withMapping returns msgs, each followed by mappingNote.
func withMapping(msgs []string, format, version string) []string {
	note := mappingNote(format, version)
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m + note
	}
	return out
}
