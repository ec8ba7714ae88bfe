package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/opengw/gateway/internal/store"
	"github.com/opengw/gateway/mappings"
	"github.com/opengw/gateway/tracker"
)

// Submission is one accepted push or event, ready to be committed.
type Submission struct {
	ClientID   string
	ClientName string
	// Endpoint names the API the submission came through ("push", "events"): Idempotency-Keys
	// are scoped per client and per endpoint.
	Endpoint string
	Envelope Envelope
	// IdempotencyKey, when set, makes a repeated submission of the same client, endpoint and key
	// return the first receipt instead of queueing again.
	IdempotencyKey string
	// Body is hashed to tell a true replay from a different request reusing a key.
	Body []byte
	// WantSequence allocates the next value of the durable event sequence (the events API's _id).
	WantSequence bool
}

// Receipt is what the gateway answers once a submission is durable.
type Receipt struct {
	RequestID string
	Sequence  int64
	Replayed  bool // an earlier submission with the same idempotency key
}

// ErrBacklog means the pipeline is too far behind to accept more now; retry later.
var ErrBacklog = errors.New("the gateway is processing a backlog; retry later")

// ErrIdempotencyConflict means an Idempotency-Key was reused for a different body.
var ErrIdempotencyConflict = errors.New("the Idempotency-Key was already used for a different request body")

// ErrIdempotencyInFlight means the first request with this Idempotency-Key is still being
// committed; the client should retry shortly (409).
var ErrIdempotencyInFlight = store.ErrIdempotencyInFlight

// idempotencyTTL is how long an Idempotency-Key is remembered.
const idempotencyTTL = 24 * time.Hour

// sequenceEvents is the durable sequence behind the events API's _id.
const sequenceEvents = "events"

// Accept commits a submission durably: in one transaction the envelope's fragments are
// enqueued, its request and its messages are recorded in the tracker (Queued, findable by
// their external reference at once), and the idempotency key and event sequence are kept.
// Only when Accept returns nil may the caller answer with success. It returns
// ErrIdempotencyConflict when the key was used for another body, ErrIdempotencyInFlight while a
// submission with the same key is being committed, and ErrBacklog (wrapped) while more than
// MaxBacklog fragments wait. It keeps nothing of s.Body or the envelope's records once it
// returns: the HTTP server recycles the buffer they are sliced from.
func (p *Pipeline) Accept(ctx context.Context, s Submission) (Receipt, error) {
	if limit := p.cfg.MaxBacklog; limit > 0 && p.backlog.Load() >= int64(limit) {
		return Receipt{}, fmt.Errorf("%w (%d fragments queued, limit %d)", ErrBacklog, p.backlog.Load(), limit)
	}
	var hash string
	if s.IdempotencyKey != "" {
		key := [3]string{s.ClientID, s.Endpoint, s.IdempotencyKey}
		if _, busy := p.committing.LoadOrStore(key, struct{}{}); busy {
			return Receipt{}, ErrIdempotencyInFlight
		}
		defer p.committing.Delete(key)
		sum := sha256.Sum256(s.Body)
		hash = hex.EncodeToString(sum[:])
	}
	now := p.now()
	requestID := newTimeOrderedID()
	req := tracker.Request{
		ID:             requestID,
		ClientID:       s.ClientID,
		ClientName:     s.ClientName,
		BatchReference: s.Envelope.BatchReference,
		Format:         s.Envelope.Format,
		ReceivedAt:     now,
		Total:          len(s.Envelope.Records),
	}
	// Records are findable (Queued, by external reference) from the 202 on. For big requests
	// recording every message row here would double the commit a partner waits for (measured:
	// 10,000 rows add 45–85 ms), so theirs are recorded when their fragments are split, soon
	// after; the request itself is findable at once by id and batch reference.
	var news []tracker.NewMessage
	if m, ok := p.cfg.Mappings().Get(s.Envelope.Format); ok && len(s.Envelope.Records) <= p.cfg.TrackAtIntake {
		news = newMessages(m, s.Envelope.Records, 0)
	}
	fragments := p.fragments(requestID, s.ClientID, s.Envelope, news != nil)
	var receipt Receipt
	// One buffer for every fragment's array of records (KeepRecords copies it): a 10 MiB push
	// holds one fragment's copy of its records at a time, not a second copy of its body.
	var kept []byte
	events := p.eventsOf(s.ClientID)
	start := time.Now()
	// Urgent: a partner is waiting for this commit; pipeline writes can wait a little.
	err := p.cfg.Store.Update(store.Urgent(ctx), func(tx store.Tx) error {
		receipt = Receipt{RequestID: requestID}
		if s.IdempotencyKey != "" {
			prev, found, err := tx.Idempotency(s.ClientID, s.Endpoint, s.IdempotencyKey, now.Add(-idempotencyTTL))
			switch {
			case err != nil:
				return err
			case found && prev.BodyHash != hash:
				return ErrIdempotencyConflict
			case found:
				receipt = Receipt{RequestID: prev.RequestID, Sequence: prev.Sequence, Replayed: true}
				return nil
			}
		}
		if s.WantSequence {
			seq, err := tx.NextSequence(sequenceEvents)
			if err != nil {
				return err
			}
			receipt.Sequence = seq
		}
		msgs := make([]*message.Message, len(fragments))
		for i, f := range fragments {
			kept = appendRecords(kept[:0], f.records)
			if err := tx.KeepRecords(requestID, f.offset, kept, now); err != nil {
				return err
			}
			msgs[i] = f.msg
		}
		if err := tx.Publish(TopicFragments, msgs...); err != nil {
			return fmt.Errorf("enqueue request %s: %w", requestID, err)
		}
		if err := tx.Tracker().Accept(req, news...); err != nil {
			return fmt.Errorf("track request %s: %w", requestID, err)
		}
		accepted := Event{Type: EventRequestAccepted, ClientID: s.ClientID, RequestID: requestID,
			BatchReference: req.BatchReference, Format: req.Format, Total: req.Total, At: now.UTC()}
		if s.Endpoint == "events" && len(s.Envelope.Records) == 1 {
			accepted.Record = s.Envelope.Records[0]
		}
		if err := events.publish(tx, requestID+"/accepted", accepted); err != nil {
			return err
		}
		if s.IdempotencyKey != "" {
			return tx.RememberIdempotency(store.Idempotent{
				ClientID: s.ClientID, Endpoint: s.Endpoint, Key: s.IdempotencyKey, BodyHash: hash,
				RequestID: requestID, Sequence: receipt.Sequence, CreatedAt: now,
			})
		}
		return nil
	})
	if err != nil {
		return Receipt{}, err
	}
	if !receipt.Replayed {
		p.cfg.Metrics.IntakeCommitted(s.Endpoint, s.Envelope.Format, len(s.Envelope.Records), time.Since(start))
	}
	return receipt, nil
}

// fragment is a slice of a request's records: the unit of processing.
type fragment struct {
	offset  int
	records [][]byte // the raw records, sliced from the request body
	msg     *message.Message
}

// fragments cuts a new request's records into fragments of at most FragmentSize records.
// Cutting here, while the records are already parsed, writes each byte once: the records are
// kept by the store (for processing, and for replay until retention purges them) and the queue
// message that schedules a fragment carries only its coordinates. A separate split stage would
// write a big envelope twice, through the writer every 202 waits for. tracked says intake
// records the request's messages, so processing need not.
func (p *Pipeline) fragments(requestID, clientID string, env Envelope, tracked bool) []fragment {
	size := p.cfg.FragmentSize
	out := make([]fragment, 0, (len(env.Records)+size-1)/size)
	for off := 0; off < len(env.Records); off += size {
		end := min(off+size, len(env.Records))
		msg := fragmentMessage(requestID, clientID, env.Format, off, end-off, nil)
		if tracked {
			msg.Metadata.Set(mdTracked, "1")
		}
		out = append(out, fragment{offset: off, records: env.Records[off:end], msg: msg})
	}
	return out
}

// fragmentMessage schedules the processing of count records of a request from offset; indexes,
// if not nil, limits it to those records (a replay).
func fragmentMessage(requestID, clientID, format string, offset, count int, indexes []int) *message.Message {
	m := message.NewMessage(newTimeOrderedID(), nil)
	m.Metadata.Set(mdRequest, requestID)
	m.Metadata.Set(mdClient, clientID)
	m.Metadata.Set(mdFormat, format)
	m.Metadata.Set(mdOffset, strconv.Itoa(offset))
	m.Metadata.Set(mdCount, strconv.Itoa(count))
	if indexes != nil {
		m.Metadata.Set(mdIndexes, formatIndexes(indexes))
	}
	return m
}

// newTimeOrderedID returns a new time-ordered (version 7) UUID, for request and fragment ids.
// Request ids key the tracker's request index and the kept records; ids that grow with time
// append to those B-trees instead of landing on a random leaf page each, so a commit of many
// requests rewrites fewer pages. They are still unguessable: 74 of their bits are random.
func newTimeOrderedID() string {
	id, err := uuid.NewV7()
	if err != nil { // the system's random source failed: a random id is the best left
		return uuid.NewString()
	}
	return id.String()
}

// newMessages describes records (starting at index offset) for the tracker: their external
// reference and message type as m reads them.
func newMessages(m *mappings.Mapping, records [][]byte, offset int) []tracker.NewMessage {
	out := make([]tracker.NewMessage, len(records))
	for i, rec := range records {
		out[i] = tracker.NewMessage{Index: offset + i, ExternalReference: m.RecordID(rec), Type: m.RecordType(rec)}
	}
	return out
}

// purgeIdempotencyKeys forgets keys older than idempotencyTTL.
func (p *Pipeline) purgeIdempotencyKeys(ctx context.Context) error {
	return p.cfg.Store.PurgeIdempotencyKeys(ctx, p.now().Add(-idempotencyTTL))
}

func atoiOr(s string, def int) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return def
	}
	return n
}
