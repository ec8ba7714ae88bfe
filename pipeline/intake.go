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

	"github.com/opengw/gateway/internal/sqlitedb"
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

// ErrBacklog means the pipeline is too far behind to accept more now; retry later.
var ErrBacklog = errors.New("the gateway is processing a backlog; retry later")

// ErrIdempotencyConflict means an Idempotency-Key was reused for a different body.
var ErrIdempotencyConflict = errors.New("the Idempotency-Key was already used for a different request body")

// idempotencyTTL is how long an Idempotency-Key is remembered.
const idempotencyTTL = 24 * time.Hour

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
// when the key was used for another body, and ErrBacklog (wrapped) while more than
// MaxBacklog fragments wait.
func (p *Pipeline) Accept(ctx context.Context, s Submission) (Receipt, error) {
	if limit := p.cfg.MaxBacklog; limit > 0 && p.backlog.Load() >= int64(limit) {
		return Receipt{}, fmt.Errorf("%w (%d fragments queued, limit %d)", ErrBacklog, p.backlog.Load(), limit)
	}
	now := p.now()
	requestID := uuid.NewString()
	fragments := p.fragments(requestID, s.Envelope)
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
	// Urgent: a partner is waiting for this commit; pipeline writes can wait a little.
	err := p.cfg.DB.Write(sqlitedb.Urgent(ctx), func(tx *sql.Tx) error {
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
		if err := p.cfg.Queue.InsertTx(tx, topicFragments, fragments...); err != nil {
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
		p.cfg.Queue.Notify(topicFragments)
	}
	return receipt, nil
}

// fragments cuts a new request's records into fragments of at most FragmentSize records, the
// unit of processing. Cutting here, while the records are already parsed, writes each byte to
// the queue once; a separate split stage would write a big envelope twice and delete it once,
// all through SQLite's single writer that every 202 waits for.
func (p *Pipeline) fragments(requestID string, env Envelope) []*message.Message {
	size := p.cfg.FragmentSize
	out := make([]*message.Message, 0, (len(env.Records)+size-1)/size)
	for off := 0; off < len(env.Records); off += size {
		end := min(off+size, len(env.Records))
		f := message.NewMessage(uuid.NewString(), joinRecords(env.Records[off:end]))
		f.Metadata.Set(mdRequest, requestID)
		f.Metadata.Set(mdFormat, env.Format)
		f.Metadata.Set(mdOffset, strconv.Itoa(off))
		out = append(out, f)
	}
	return out
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
