package pipeline

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/opengw/gateway/internal/store"
	"github.com/opengw/gateway/sinks"
	"github.com/opengw/gateway/tracker"
)

// process validates and maps a fragment's records, then, in ONE transaction: records the
// fragment's messages, ends invalid ones Invalid, claims the valid ones (cancelled messages are
// never claimed), queues the claimed ones for their sinks and acknowledges the fragment. Either
// all of that happens or none of it, so a redelivered fragment finds a consistent state.
func (p *Pipeline) process(msg *message.Message) error {
	ctx := msg.Context()
	requestID, clientID, format := msg.Metadata.Get(mdRequest), msg.Metadata.Get(mdClient), msg.Metadata.Get(mdFormat)
	offset := atoiOr(msg.Metadata.Get(mdOffset), 0)
	weight := int64(min(max(atoiOr(msg.Metadata.Get(mdCount), 1), 1), p.cfg.FragmentSize))
	if err := p.records.Acquire(ctx, weight); err != nil {
		return fmt.Errorf("wait to process request %s: %w", requestID, err)
	}
	defer p.records.Release(weight)
	records, err := p.fragmentRecords(ctx, msg, requestID, offset)
	if err != nil {
		return err
	}
	if records == nil {
		return p.failAll(msg, requestID, offset, atoiOr(msg.Metadata.Get(mdCount), 0),
			"the raw records are no longer kept (retention.payloads), so they cannot be processed")
	}
	m, ok := p.cfg.Mappings().Get(format)
	if !ok {
		return p.failAll(msg, requestID, offset, len(records), fmt.Sprintf("format %q is no longer configured", format))
	}
	// A replay processes only the records it names.
	only := map[int]bool{}
	if s := msg.Metadata.Get(mdIndexes); s != "" {
		indexes, err := parseIndexes(s)
		if err != nil {
			// Nothing names the records reliably: fail the whole fragment rather than none.
			msg.Metadata.Set(mdIndexes, "")
			return p.failAll(msg, requestID, offset, len(records), fmt.Sprintf("unreadable replay message: %v", err))
		}
		for _, i := range indexes {
			only[i] = true
		}
	}

	// Map outside the transaction: the single writer only does the bookkeeping.
	p.cpu.acquire()
	news := newMessages(m, records, offset)
	var invalid []tracker.Result
	var valid []int
	mapped := make(map[int]mappedRecord, len(records))
	for i, rec := range records {
		if len(only) > 0 && !only[offset+i] {
			continue
		}
		o := m.Apply(rec)
		if !o.Valid() {
			invalid = append(invalid, tracker.Result{Index: offset + i, Status: tracker.Invalid, Errors: withMapping(o.Errors, format, m.Version), MappingVersion: m.Version})
			continue
		}
		mr := mappedRecord{ref: news[i].ExternalReference, data: make(map[string][]byte, len(o.Routes))}
		for _, r := range o.Routes {
			mr.sinks = append(mr.sinks, r.Sink)
			mr.data[r.Sink] = r.JSON()
		}
		mapped[offset+i] = mr
		valid = append(valid, offset+i)
		news[i].Claimed = true // recorded Processing: Claim below finds it claimed
	}
	p.cpu.release()
	header := deliveryHeader(requestID, clientID, format, m.Version)
	refOf := func(index int) string { return news[index-offset].ExternalReference }
	events := p.eventsOf(clientID)

	return p.cfg.Store.Update(ctx, func(tx store.Tx) error {
		var done []tracker.Result // the terminal outcomes the transaction records
		var completed *tracker.Completion
		trk := tx.Tracker()
		// Messages recorded at intake need only the cancel check AddMessages makes.
		record := news
		if msg.Metadata.Get(mdTracked) == "1" {
			record = nil
		}
		cancelled, err := trk.AddMessages(requestID, record)
		if err != nil {
			return fmt.Errorf("record messages of request %s: %w", requestID, err)
		}
		if cancelled {
			all := make([]int, len(records))
			for i := range all {
				all[i] = offset + i
			}
			done = results(all, tracker.Cancelled, "", "")
			if err := events.outcomes(tx, msg.UUID+"/cancelled", clientID, requestID, done, refOf); err != nil {
				return err
			}
			return tx.Ack(msg)
		}
		if len(invalid) > 0 {
			if completed, err = trk.Finish(requestID, invalid); err != nil {
				return fmt.Errorf("record invalid messages of request %s: %w", requestID, err)
			}
			if err := events.outcomes(tx, msg.UUID+"/invalid", clientID, requestID, invalid, refOf); err != nil {
				return err
			}
			done = append(done, invalid...)
		}
		claimed, err := trk.Claim(requestID, valid)
		if err != nil {
			return fmt.Errorf("claim messages of request %s: %w", requestID, err)
		}
		// A record routed to several sinks (routes_mode: all) goes to each; every sink's delivery
		// is retried on its own and records its part of the outcome.
		bySink := map[string][]int{}
		var order []string
		for _, idx := range claimed {
			for _, sink := range mapped[idx].sinks {
				if _, seen := bySink[sink]; !seen {
					order = append(order, sink)
				}
				bySink[sink] = append(bySink[sink], idx)
			}
		}
		for _, sink := range order {
			if _, ok := p.cfg.Sinks.Get(sink); !ok {
				reason := fmt.Sprintf("sink %q is not configured", sink) + mappingNote(format, m.Version)
				parts := make(map[int]int, len(bySink[sink]))
				for _, idx := range bySink[sink] {
					parts[idx] = len(mapped[idx].sinks)
				}
				final, c, err := p.finish(tx, events, msg.UUID+"/unconfigured/"+sink, clientID, requestID, sink,
					results(bySink[sink], tracker.Failed, m.Version, reason), parts, refOf)
				if err != nil {
					return err
				}
				done = append(done, final...)
				completed = cmp.Or(c, completed)
				continue
			}
			// A deterministic id: a replayed fragment queues the same deliveries.
			id := uuid.NewSHA1(uuid.NameSpaceOID, []byte(requestID+"/"+strconv.Itoa(offset)+"/"+sink)).String()
			d := message.NewMessage(id, encodeDelivery(header, sink, bySink[sink], mapped))
			d.Metadata.Set(mdRequest, requestID)
			d.Metadata.Set(mdClient, clientID)
			d.Metadata.Set(mdFormat, format)
			d.Metadata.Set(mdIndexes, formatIndexes(bySink[sink]))
			if err := tx.Publish(topicDeliverPrefix+sink, d); err != nil {
				return fmt.Errorf("queue delivery to sink %s: %w", sink, err)
			}
		}
		p.afterFinished(tx, clientID, format, requestID, done, completed)
		return tx.Ack(msg)
	})
}

// fragmentRecords returns the raw records msg schedules: kept by the store, or carried by the
// message itself (fragments queued by versions before records were kept). nil means they are
// no longer kept.
func (p *Pipeline) fragmentRecords(ctx context.Context, msg *message.Message, requestID string, offset int) ([][]byte, error) {
	if len(msg.Payload) > 0 {
		return splitRecords(msg.Payload), nil
	}
	array, found, err := p.cfg.Store.Records(ctx, requestID, offset)
	if err != nil {
		return nil, fmt.Errorf("read records of request %s: %w", requestID, err)
	}
	if !found {
		return nil, nil
	}
	records := splitRecords(array)
	if records == nil {
		records = [][]byte{}
	}
	return records, nil
}

// mappedRecord is a valid record's route and mapped fields (a JSON object).
type mappedRecord struct {
	sinks []string          // in route order
	data  map[string][]byte // mapped fields (a JSON object) by sink
	ref   string            // the record's external reference, "" if none
}

// deliverTo writes deliveries to one sink and records the outcome together with the
// acknowledgement. A retryable failure schedules the delivery again after RetryBackoff (the
// schedule survives restarts) until DeliveryAttempts is reached; a permanent failure ends the
// records Failed with the sink's message, isolating the bad records of a batch by retrying them
// one at a time. A delivery that cannot even be decoded ends its records Failed: nothing
// accepted is ever dropped.
func (p *Pipeline) deliverTo(name string, sink sinks.Sink) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		var d delivery
		p.cpu.acquire()
		err := json.Unmarshal(msg.Payload, &d)
		p.cpu.release()
		if err != nil {
			return p.failUnreadable(msg, name, err)
		}
		ctx, cancel := context.WithTimeout(msg.Context(), p.cfg.DeliveryTimeout)
		defer cancel()
		err = sink.Write(ctx, d.sinkRecords())
		attempt := atoiOr(msg.Metadata.Get(store.AttemptKey), 1)
		switch {
		case err == nil:
			if attempt > 1 {
				p.log.Info("delivery succeeded after retrying", "sink", name, "request_id", d.RequestID, "records", len(d.Records), "attempt", attempt)
			}
			return p.settle(msg, name, d, results(d.indexes(), tracker.Complete, d.MappingVersion, ""))
		case errors.Is(err, sinks.ErrPermanent):
			return p.isolate(msg, name, sink, d, err)
		}
		if attempt >= p.cfg.DeliveryAttempts {
			reason := fmt.Sprintf("sink %s: gave up after %d attempts: %v", name, attempt, err) + mappingNote(d.Format, d.MappingVersion)
			p.log.Warn("delivery failed for the last time; its records end Failed", "sink", name, "request_id", d.RequestID,
				"records", len(d.Records), "attempt", attempt, "of", p.cfg.DeliveryAttempts, "err", err)
			return p.settle(msg, name, d, results(d.indexes(), tracker.Failed, d.MappingVersion, reason))
		}
		next := p.now().Add(p.cfg.RetryBackoff(attempt))
		p.log.Warn("delivery failed; will retry", "sink", name, "request_id", d.RequestID, "records", len(d.Records),
			"attempt", attempt, "of", p.cfg.DeliveryAttempts, "next_attempt", next.UTC().Format(time.RFC3339), "err", err)
		// Tracking shows the last error while the records wait for their next attempt.
		lastError := fmt.Sprintf("sink %s: attempt %d of %d failed, next at %s: %v", name, attempt, p.cfg.DeliveryAttempts,
			next.UTC().Format(time.RFC3339), err) + mappingNote(d.Format, d.MappingVersion)
		return p.cfg.Store.Update(msg.Context(), func(tx store.Tx) error {
			if err := tx.Tracker().Retrying(d.RequestID, d.indexes(), lastError); err != nil {
				return fmt.Errorf("note retry of request %s: %w", d.RequestID, err)
			}
			return tx.Retry(msg, next)
		})
	}
}

// failUnreadable ends the records of a delivery whose payload cannot be decoded Failed, found
// through the delivery's metadata. Nothing can repair such a payload, so it is not retried.
func (p *Pipeline) failUnreadable(msg *message.Message, sinkName string, decodeErr error) error {
	requestID := msg.Metadata.Get(mdRequest)
	indexes, err := parseIndexes(msg.Metadata.Get(mdIndexes))
	if requestID == "" || err != nil {
		// Written by an older version without metadata: nothing names its records.
		p.log.Error("unreadable delivery names no records; acknowledging it", "sink", sinkName, "message", msg.UUID, "err", decodeErr)
		return p.cfg.Store.Update(msg.Context(), func(tx store.Tx) error { return tx.Ack(msg) })
	}
	reason := fmt.Sprintf("sink %s: the mapped record could not be decoded for delivery: %v", sinkName, decodeErr)
	p.log.Error("unreadable delivery; its records end Failed", "sink", sinkName, "request_id", requestID, "records", len(indexes), "err", decodeErr)
	// Its parts are unknown: the record fails whatever its other sinks do (a terminal status is final).
	return p.settle(msg, sinkName, delivery{RequestID: requestID, ClientID: msg.Metadata.Get(mdClient), Format: msg.Metadata.Get(mdFormat)},
		results(indexes, tracker.Failed, "", reason))
}

// isolate retries a permanently failed batch record by record, so only the records the sink
// refuses end Failed.
func (p *Pipeline) isolate(msg *message.Message, name string, sink sinks.Sink, d delivery, batchErr error) error {
	note := mappingNote(d.Format, d.MappingVersion)
	if len(d.Records) == 1 {
		return p.settle(msg, name, d, results(d.indexes(), tracker.Failed, d.MappingVersion, fmt.Sprintf("sink %s: %v", name, batchErr)+note))
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
	return p.settle(msg, name, d, rs)
}

// settle records the outcomes of delivery d to sink (and their event) and acknowledges msg in
// one transaction.
func (p *Pipeline) settle(msg *message.Message, sink string, d delivery, rs []tracker.Result) error {
	events := p.eventsOf(d.ClientID)
	return p.cfg.Store.Update(msg.Context(), func(tx store.Tx) error {
		final, completed, err := p.finish(tx, events, msg.UUID+"/settled", d.ClientID, d.RequestID, sink, rs, d.parts(), d.refs())
		if err != nil {
			return err
		}
		p.afterFinished(tx, d.ClientID, d.Format, d.RequestID, final, completed)
		return tx.Ack(msg)
	})
}

// finish records rs, outcomes at sink of messages of request requestID, in tx, publishes the
// terminal ones through events and returns them, with the request's Completion if they
// completed it. A message routed to several sinks (parts[index] > 1) records its part and
// reaches its terminal status only with the outcome of its last part: Complete if every sink
// took it, Failed with each failing sink's errors otherwise.
func (p *Pipeline) finish(tx store.Tx, events *eventPublisher, eventKey, clientID, requestID, sink string, rs []tracker.Result, parts map[int]int, refs func(int) string) ([]tracker.Result, *tracker.Completion, error) {
	var final, partial []tracker.Result
	for _, r := range rs {
		if parts[r.Index] > 1 {
			partial = append(partial, r)
		} else {
			final = append(final, r)
		}
	}
	if len(partial) > 0 {
		recorded, err := tx.Tracker().RecordParts(requestID, sink, partial)
		if err != nil {
			return nil, nil, fmt.Errorf("record outcomes at sink %s for request %s: %w", sink, requestID, err)
		}
		for _, r := range partial {
			if got := recorded[r.Index]; len(got) >= parts[r.Index] {
				final = append(final, tracker.FinishedParts(r.Index, got))
			}
		}
	}
	if len(final) == 0 {
		return nil, nil, nil
	}
	completed, err := tx.Tracker().Finish(requestID, final)
	if err != nil {
		return nil, nil, fmt.Errorf("record outcomes for request %s: %w", requestID, err)
	}
	return final, completed, events.outcomes(tx, eventKey, clientID, requestID, final, refs)
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

// failAll ends Failed every record msg schedules — the replayed ones it names, else records
// [offset, offset+n) — recording them first if needed.
func (p *Pipeline) failAll(msg *message.Message, requestID string, offset, n int, reason string) error {
	indexes, err := parseIndexes(msg.Metadata.Get(mdIndexes))
	if err != nil {
		indexes = make([]int, n)
		for i := range n {
			indexes[i] = offset + i
		}
	}
	news := make([]tracker.NewMessage, len(indexes))
	for i, idx := range indexes {
		news[i] = tracker.NewMessage{Index: idx}
	}
	rs := results(indexes, tracker.Failed, "", reason)
	events := p.eventsOf(msg.Metadata.Get(mdClient))
	return p.cfg.Store.Update(msg.Context(), func(tx store.Tx) error {
		if _, err := tx.Tracker().AddMessages(requestID, news); err != nil {
			return fmt.Errorf("record messages of request %s: %w", requestID, err)
		}
		completed, err := tx.Tracker().Finish(requestID, rs)
		if err != nil {
			return fmt.Errorf("fail messages of request %s: %w", requestID, err)
		}
		if err := events.outcomes(tx, msg.UUID+"/failed", msg.Metadata.Get(mdClient), requestID, rs, nil); err != nil {
			return err
		}
		p.afterFinished(tx, msg.Metadata.Get(mdClient), msg.Metadata.Get(mdFormat), requestID, rs, completed)
		return tx.Ack(msg)
	})
}

// delivery is the payload of a deliver.<sink> message.
type delivery struct {
	RequestID      string           `json:"request_id"`
	ClientID       string           `json:"client_id"`
	Format         string           `json:"format,omitempty"`
	MappingVersion string           `json:"mapping_version"`
	Records        []deliveryRecord `json:"records"`
}

type deliveryRecord struct {
	Index int             `json:"index"`
	Parts int             `json:"parts,omitempty"` // sinks the record goes to, if more than one
	Ref   string          `json:"ref,omitempty"`   // external reference, for status events
	Data  json.RawMessage `json:"data"`
}

// deliveryHeader is the start of a delivery payload, up to its records array.
func deliveryHeader(requestID, clientID, format, version string) []byte {
	h, _ := json.Marshal(struct {
		RequestID      string `json:"request_id"`
		ClientID       string `json:"client_id"`
		Format         string `json:"format"`
		MappingVersion string `json:"mapping_version"`
	}{requestID, clientID, format, version})
	return append(h[:len(h)-1], `,"records":[`...)
}

// encodeDelivery appends the records at indexes, as mapped for sink (mapped fields are already
// JSON), to header without re-encoding them: this runs inside the writer's transaction.
func encodeDelivery(header []byte, sink string, indexes []int, mapped map[int]mappedRecord) []byte {
	size := len(header) + 2
	for _, idx := range indexes {
		size += len(mapped[idx].data[sink]) + 48
	}
	out := make([]byte, 0, size)
	out = append(out, header...)
	for i, idx := range indexes {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, `{"index":`...)
		out = strconv.AppendInt(out, int64(idx), 10)
		if parts := len(mapped[idx].sinks); parts > 1 {
			out = append(out, `,"parts":`...)
			out = strconv.AppendInt(out, int64(parts), 10)
		}
		if ref := mapped[idx].ref; ref != "" {
			quoted, _ := json.Marshal(ref) // a string always encodes
			out = append(out, `,"ref":`...)
			out = append(out, quoted...)
		}
		out = append(out, `,"data":`...)
		out = append(out, mapped[idx].data[sink]...)
		out = append(out, '}')
	}
	return append(out, "]}"...)
}

// parts returns how many sinks each of d's records goes to, by index (absent: one).
func (d delivery) parts() map[int]int {
	out := map[int]int{}
	for _, r := range d.Records {
		if r.Parts > 1 {
			out[r.Index] = r.Parts
		}
	}
	return out
}

// refs returns the external reference of each of d's records by index ("" if unknown).
func (d delivery) refs() func(index int) string {
	byIndex := make(map[int]string, len(d.Records))
	for _, r := range d.Records {
		byIndex[r.Index] = r.Ref
	}
	return func(index int) string { return byIndex[index] }
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
		out[i] = sinks.Record{ClientID: d.ClientID, ID: tracker.MessageID(d.RequestID, r.Index), Data: r.Data}
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

// formatIndexes writes ascending indexes compactly as ranges: "0-999" or "3,5-7".
func formatIndexes(indexes []int) string {
	var b strings.Builder
	for i := 0; i < len(indexes); {
		j := i
		for j+1 < len(indexes) && indexes[j+1] == indexes[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(indexes[i]))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(indexes[j]))
		}
		i = j + 1
	}
	return b.String()
}

// parseIndexes reads what formatIndexes wrote.
func parseIndexes(s string) ([]int, error) {
	if s == "" {
		return nil, errors.New("no indexes")
	}
	var out []int
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("index range %q: %w", part, err)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a || b-a > MaxRecords {
				return nil, fmt.Errorf("index range %q is not a range", part)
			}
		}
		if len(out)+b-a >= MaxRecords {
			return nil, fmt.Errorf("more than %d indexes", MaxRecords)
		}
		for i := a; i <= b; i++ {
			out = append(out, i)
		}
	}
	return out, nil
}
