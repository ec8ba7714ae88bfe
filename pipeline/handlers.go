package pipeline

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/opengw/gateway/internal/sqlitequeue"
	"github.com/opengw/gateway/mappings"
	"github.com/opengw/gateway/sinks"
	"github.com/opengw/gateway/tracker"
)

// process validates and maps a fragment's records, then, in ONE transaction: records the
// fragment's messages, ends invalid ones Invalid, claims the valid ones (cancelled messages are
// never claimed), queues the claimed ones for their sinks and acknowledges the fragment. Either
// all of that happens or none of it, so a redelivered fragment finds a consistent state.
func (p *Pipeline) process(msg *message.Message) error {
	ctx := msg.Context()
	requestID, format := msg.Metadata.Get(mdRequest), msg.Metadata.Get(mdFormat)
	offset := atoiOr(msg.Metadata.Get(mdOffset), 0)
	records := splitRecords(msg.Payload)
	m, ok := p.cfg.Mappings().Get(format)
	if !ok {
		return p.failAll(msg, requestID, offset, len(records), fmt.Sprintf("format %q is no longer configured", format))
	}

	// Map outside the transaction: the single writer only does the bookkeeping.
	p.cpu.acquire()
	news := newMessages(m, records, offset)
	var invalid []tracker.Result
	var valid []int
	mapped := make(map[int]mappedRecord, len(records))
	for i, rec := range records {
		o := m.Apply(rec)
		if !o.Valid() {
			invalid = append(invalid, tracker.Result{Index: offset + i, Status: tracker.Invalid, Errors: withMapping(o.Errors, format, m.Version), MappingVersion: m.Version})
			continue
		}
		mapped[offset+i] = mappedRecord{sink: o.Routes[0].Sink, data: o.Routes[0].JSON()}
		valid = append(valid, offset+i)
	}
	p.cpu.release()
	header := deliveryHeader(requestID, format, m.Version)

	var topics []string
	err := p.cfg.DB.Write(ctx, func(tx *sql.Tx) error {
		topics = topics[:0]
		cancelled, err := p.cfg.Tracker.AddMessagesTx(tx, requestID, news)
		if err != nil {
			return fmt.Errorf("record messages of request %s: %w", requestID, err)
		}
		if cancelled {
			return p.cfg.Queue.AckTx(tx, msg)
		}
		if len(invalid) > 0 {
			if err := p.cfg.Tracker.FinishTx(tx, requestID, invalid); err != nil {
				return fmt.Errorf("record invalid messages of request %s: %w", requestID, err)
			}
		}
		claimed, err := p.cfg.Tracker.ClaimTx(tx, requestID, valid)
		if err != nil {
			return fmt.Errorf("claim messages of request %s: %w", requestID, err)
		}
		bySink := map[string][]int{}
		var order []string
		for _, idx := range claimed {
			s := mapped[idx].sink
			if _, seen := bySink[s]; !seen {
				order = append(order, s)
			}
			bySink[s] = append(bySink[s], idx)
		}
		for _, sink := range order {
			if _, ok := p.cfg.Sinks.Get(sink); !ok {
				reason := fmt.Sprintf("sink %q is not configured", sink) + mappingNote(format, m.Version)
				if err := p.cfg.Tracker.FinishTx(tx, requestID, results(bySink[sink], tracker.Failed, m.Version, reason)); err != nil {
					return fmt.Errorf("fail messages of request %s: %w", requestID, err)
				}
				continue
			}
			// A deterministic id: a replayed fragment queues the same deliveries.
			id := uuid.NewSHA1(uuid.NameSpaceOID, []byte(requestID+"/"+strconv.Itoa(offset)+"/"+sink)).String()
			d := message.NewMessage(id, encodeDelivery(header, bySink[sink], mapped))
			if err := p.cfg.Queue.InsertTx(tx, topicDeliverPrefix+sink, d); err != nil {
				return fmt.Errorf("queue delivery to sink %s: %w", sink, err)
			}
			topics = append(topics, topicDeliverPrefix+sink)
		}
		return p.cfg.Queue.AckTx(tx, msg)
	})
	if err != nil {
		return err
	}
	for _, t := range topics {
		p.cfg.Queue.Notify(t)
	}
	return nil
}

// mappedRecord is a valid record's route and mapped fields (a JSON object).
type mappedRecord struct {
	sink string
	data []byte
}

// deliverTo writes deliveries to one sink and records the outcome together with the
// acknowledgement. A retryable failure nacks the message (the queue offers it again after a
// backoff that survives restarts) until DeliveryAttempts is reached; a permanent failure ends
// the records Failed with the sink's message, isolating the bad records of a batch by retrying
// them one at a time.
func (p *Pipeline) deliverTo(name string, sink sinks.Sink) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		var d delivery
		p.cpu.acquire()
		err := json.Unmarshal(msg.Payload, &d)
		p.cpu.release()
		if err != nil {
			// Written by process; unreadable means corrupted storage. Nothing to retry.
			p.log.Error("drop unreadable delivery", "sink", name, "message", msg.UUID, "err", err)
			return nil
		}
		ctx, cancel := context.WithTimeout(msg.Context(), p.cfg.DeliveryTimeout)
		defer cancel()
		err = sink.Write(ctx, d.sinkRecords())
		switch {
		case err == nil:
			return p.settle(msg, d.RequestID, results(d.indexes(), tracker.Complete, d.MappingVersion, ""))
		case errors.Is(err, sinks.ErrPermanent):
			return p.isolate(msg, name, sink, d, err)
		}
		attempt := atoiOr(msg.Metadata.Get(sqlitequeue.AttemptKey), 1)
		if attempt >= p.cfg.DeliveryAttempts {
			reason := fmt.Sprintf("sink %s: gave up after %d attempts: %v", name, attempt, err) + mappingNote(d.Format, d.MappingVersion)
			return p.settle(msg, d.RequestID, results(d.indexes(), tracker.Failed, d.MappingVersion, reason))
		}
		p.log.Warn("sink write failed; will retry", "sink", name, "request_id", d.RequestID, "mapping", d.Format+"@"+d.MappingVersion, "attempt", attempt, "err", err)
		return fmt.Errorf("write to sink %s: %w", name, err)
	}
}

// isolate retries a permanently failed batch record by record, so only the records the sink
// refuses end Failed.
func (p *Pipeline) isolate(msg *message.Message, name string, sink sinks.Sink, d delivery, batchErr error) error {
	note := mappingNote(d.Format, d.MappingVersion)
	if len(d.Records) == 1 {
		return p.settle(msg, d.RequestID, results(d.indexes(), tracker.Failed, d.MappingVersion, fmt.Sprintf("sink %s: %v", name, batchErr)+note))
	}
	var rs []tracker.Result
	recs := d.sinkRecords()
	for i, r := range d.Records {
		wctx, cancel := context.WithTimeout(msg.Context(), p.cfg.DeliveryTimeout)
		err := sink.Write(wctx, recs[i:i+1])
		cancel()
		switch {
		case err == nil:
			rs = append(rs, tracker.Result{Index: r.Index, Status: tracker.Complete, MappingVersion: d.MappingVersion})
		case errors.Is(err, sinks.ErrPermanent):
			rs = append(rs, tracker.Result{Index: r.Index, Status: tracker.Failed, MappingVersion: d.MappingVersion,
				Errors: []string{fmt.Sprintf("sink %s: %v", name, err) + note}})
		default:
			// The sink went away meanwhile: retry the whole batch later (upserts make it safe).
			return fmt.Errorf("write to sink %s: %w", name, err)
		}
	}
	return p.settle(msg, d.RequestID, rs)
}

// settle records terminal outcomes and acknowledges msg in one transaction.
func (p *Pipeline) settle(msg *message.Message, requestID string, rs []tracker.Result) error {
	return p.cfg.DB.Write(msg.Context(), func(tx *sql.Tx) error {
		if err := p.cfg.Tracker.FinishTx(tx, requestID, rs); err != nil {
			return fmt.Errorf("record outcomes for request %s: %w", requestID, err)
		}
		return p.cfg.Queue.AckTx(tx, msg)
	})
}

// results gives every index the same terminal outcome.
func results(indexes []int, status tracker.Status, version, reason string) []tracker.Result {
	out := make([]tracker.Result, len(indexes))
	for i, idx := range indexes {
		out[i] = tracker.Result{Index: idx, Status: status, MappingVersion: version}
		if reason != "" {
			out[i].Errors = []string{reason}
		}
	}
	return out
}

// failAll ends records [offset, offset+n) Failed, recording them first if needed.
func (p *Pipeline) failAll(msg *message.Message, requestID string, offset, n int, reason string) error {
	news := make([]tracker.NewMessage, n)
	indexes := make([]int, n)
	for i := range n {
		news[i] = tracker.NewMessage{Index: offset + i}
		indexes[i] = offset + i
	}
	return p.cfg.DB.Write(msg.Context(), func(tx *sql.Tx) error {
		if _, err := p.cfg.Tracker.AddMessagesTx(tx, requestID, news); err != nil {
			return fmt.Errorf("record messages of request %s: %w", requestID, err)
		}
		if err := p.cfg.Tracker.FinishTx(tx, requestID, results(indexes, tracker.Failed, "", reason)); err != nil {
			return fmt.Errorf("fail messages of request %s: %w", requestID, err)
		}
		return p.cfg.Queue.AckTx(tx, msg)
	})
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
	Format         string           `json:"format,omitempty"`
	MappingVersion string           `json:"mapping_version"`
	Records        []deliveryRecord `json:"records"`
}

type deliveryRecord struct {
	Index int             `json:"index"`
	Data  json.RawMessage `json:"data"`
}

// deliveryHeader is the start of a delivery payload, up to its records array.
func deliveryHeader(requestID, format, version string) []byte {
	h, _ := json.Marshal(struct {
		RequestID      string `json:"request_id"`
		Format         string `json:"format"`
		MappingVersion string `json:"mapping_version"`
	}{requestID, format, version})
	return append(h[:len(h)-1], `,"records":[`...)
}

// encodeDelivery appends the records at indexes (mapped fields are already JSON) to header,
// without re-encoding them: this runs inside the writer's transaction.
func encodeDelivery(header []byte, indexes []int, mapped map[int]mappedRecord) []byte {
	size := len(header) + 2
	for _, idx := range indexes {
		size += len(mapped[idx].data) + 32
	}
	out := make([]byte, 0, size)
	out = append(out, header...)
	for i, idx := range indexes {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, `{"index":`...)
		out = strconv.AppendInt(out, int64(idx), 10)
		out = append(out, `,"data":`...)
		out = append(out, mapped[idx].data...)
		out = append(out, '}')
	}
	return append(out, "]}"...)
}

func (d delivery) indexes() []int {
	out := make([]int, len(d.Records))
	for i, r := range d.Records {
		out[i] = r.Index
	}
	return out
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
