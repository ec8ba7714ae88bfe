package pipeline

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/opengw/gateway/tracker"
)

// Submission is one accepted push or event, ready to be committed.
type Submission struct {
	ClientID   string
	ClientName string
	Envelope   Envelope
	// IdempotencyKey, when set, makes a repeated submission of the same client and key return
	// the first receipt instead of queueing again.
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

// ErrIdempotencyConflict means an Idempotency-Key was reused for a different body.
var ErrIdempotencyConflict = errors.New("the Idempotency-Key was already used for a different request body")

// idempotencyTTL is how long an Idempotency-Key is remembered.
const idempotencyTTL = 24 * time.Hour

// bigEnvelopeBytes routes envelopes at least this large through the split stage, whatever their
// record count, so the fragment topic only ever holds small messages.
const bigEnvelopeBytes = 1 << 20

const intakeSchema = `
CREATE TABLE IF NOT EXISTS intake_idempotency (
	client_id  TEXT NOT NULL,
	key        TEXT NOT NULL,
	body_hash  TEXT NOT NULL,
	request_id TEXT NOT NULL,
	sequence   INTEGER NOT NULL,
	created_at INTEGER NOT NULL,
	PRIMARY KEY (client_id, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS intake_idempotency_created ON intake_idempotency (created_at);
CREATE TABLE IF NOT EXISTS intake_sequence (
	name  TEXT PRIMARY KEY,
	value INTEGER NOT NULL
) WITHOUT ROWID;
`

// Accept commits a submission durably: the envelope is enqueued and its request recorded in
// the tracker in one transaction (group-committed with concurrent submissions). Only when
// Accept returns nil may the caller answer with success. It returns ErrIdempotencyConflict
// when the key was used for another body.
func (p *Pipeline) Accept(ctx context.Context, s Submission) (Receipt, error) {
	now := p.now()
	requestID := uuid.NewString()
	topic, msg := p.intakeMessage(requestID, s.Envelope)
	req := tracker.Request{
		ID:             requestID,
		ClientID:       s.ClientID,
		ClientName:     s.ClientName,
		BatchReference: s.Envelope.BatchReference,
		Format:         s.Envelope.Format,
		ReceivedAt:     now,
		Total:          len(s.Envelope.Records),
	}
	var receipt Receipt
	err := p.cfg.DB.Write(ctx, func(tx *sql.Tx) error {
		receipt = Receipt{RequestID: requestID}
		var hash string
		if s.IdempotencyKey != "" {
			sum := sha256.Sum256(s.Body)
			hash = hex.EncodeToString(sum[:])
			var prev Receipt
			var prevHash string
			err := tx.QueryRow(`SELECT request_id, sequence, body_hash FROM intake_idempotency
				WHERE client_id = ? AND key = ? AND created_at > ?`,
				s.ClientID, s.IdempotencyKey, now.Add(-idempotencyTTL).UnixMilli()).Scan(&prev.RequestID, &prev.Sequence, &prevHash)
			switch {
			case err == nil && prevHash != hash:
				return ErrIdempotencyConflict
			case err == nil:
				prev.Replayed = true
				receipt = prev
				return nil
			case !errors.Is(err, sql.ErrNoRows):
				return fmt.Errorf("look up idempotency key: %w", err)
			}
		}
		if s.WantSequence {
			if err := tx.QueryRow(`INSERT INTO intake_sequence (name, value) VALUES ('events', 1)
				ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value`).Scan(&receipt.Sequence); err != nil {
				return fmt.Errorf("allocate event sequence: %w", err)
			}
		}
		if err := p.cfg.Queue.InsertTx(tx, topic, msg); err != nil {
			return fmt.Errorf("enqueue request %s: %w", requestID, err)
		}
		if err := p.cfg.Tracker.AcceptTx(tx, req); err != nil {
			return fmt.Errorf("track request %s: %w", requestID, err)
		}
		if s.IdempotencyKey != "" {
			if _, err := tx.Exec(`INSERT OR REPLACE INTO intake_idempotency
				(client_id, key, body_hash, request_id, sequence, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
				s.ClientID, s.IdempotencyKey, hash, requestID, receipt.Sequence, now.UnixMilli()); err != nil {
				return fmt.Errorf("remember idempotency key: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return Receipt{}, err
	}
	if !receipt.Replayed {
		p.cfg.Queue.Notify(topic)
	}
	return receipt, nil
}

// intakeMessage builds the queue message for a new request: big envelopes go whole to the split
// stage; small ones skip it and go straight to processing as a single fragment.
func (p *Pipeline) intakeMessage(requestID string, env Envelope) (string, *message.Message) {
	payload := joinRecords(env.Records)
	topic, stage := topicFragments, stageNew
	if len(env.Records) > p.cfg.FragmentSize || len(payload) >= bigEnvelopeBytes {
		topic, stage = topicEnvelopes, stageUnsplit
	}
	msg := message.NewMessage(uuid.NewString(), payload)
	msg.Metadata.Set(mdRequest, requestID)
	msg.Metadata.Set(mdFormat, env.Format)
	msg.Metadata.Set(mdOffset, "0")
	msg.Metadata.Set(mdStage, stage)
	return topic, msg
}

// purgeIdempotencyKeys forgets keys older than idempotencyTTL.
func (p *Pipeline) purgeIdempotencyKeys(ctx context.Context) error {
	_, err := p.cfg.DB.Exec(ctx, `DELETE FROM intake_idempotency WHERE created_at < ?`,
		p.now().Add(-idempotencyTTL).UnixMilli())
	if err != nil {
		return fmt.Errorf("purge idempotency keys: %w", err)
	}
	return nil
}

func atoiOr(s string, def int) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return def
	}
	return n
}
