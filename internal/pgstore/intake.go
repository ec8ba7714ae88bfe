package pgstore

import (
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/opengw/gateway/internal/store"
)

// keyLockClass is the first key of the advisory locks (pg_try_advisory_xact_lock's two-int
// form, a namespace apart from the bigint form of schemaLock) that hold Idempotency-Keys.
const keyLockClass int32 = 0x67770001

// holdKey locks (client, endpoint, key) until the transaction ends, or returns
// ErrIdempotencyInFlight when another transaction holds it. The lock is re-entrant, and a
// hash collision between two keys in flight at the same moment costs a needless 409, never a
// lost request.
func (t *txn) holdKey(clientID, endpoint, key string) error {
	h := fnv.New32a()
	for _, s := range []string{clientID, endpoint, key} {
		fmt.Fprintf(h, "%d:%s", len(s), s)
	}
	var held bool
	if err := t.tx.QueryRowContext(t.ctx, `SELECT pg_try_advisory_xact_lock($1, $2)`, keyLockClass, int32(h.Sum32())).Scan(&held); err != nil {
		return fmt.Errorf("pgstore: lock idempotency key: %w", err)
	}
	if !held {
		return fmt.Errorf("idempotency key %q of client %s (%s): %w", key, clientID, endpoint, store.ErrIdempotencyInFlight)
	}
	return nil
}

// Idempotency returns the receipt remembered for (client, endpoint, key) at or after since. It
// first locks the key until the transaction ends, so that a concurrent request with the same
// key gets store.ErrIdempotencyInFlight (from this call or RememberIdempotency) until this
// transaction commits, and sees its receipt afterwards.
func (t *txn) Idempotency(clientID, endpoint, key string, since time.Time) (store.Idempotent, bool, error) {
	if err := t.holdKey(clientID, endpoint, key); err != nil {
		return store.Idempotent{}, false, err
	}
	rec := store.Idempotent{ClientID: clientID, Endpoint: endpoint, Key: key}
	err := t.tx.QueryRowContext(t.ctx, `SELECT body_hash, request_id, sequence, created_at FROM intake_idempotency
		WHERE client_id = $1 AND endpoint = $2 AND key = $3 AND created_at >= $4`,
		text(clientID), text(endpoint), text(key), since).Scan(&rec.BodyHash, &rec.RequestID, &rec.Sequence, &rec.CreatedAt)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return store.Idempotent{}, false, nil
	case err != nil:
		return store.Idempotent{}, false, fmt.Errorf("pgstore: look up idempotency key: %w", err)
	}
	rec.CreatedAt = rec.CreatedAt.UTC()
	return rec, true, nil
}

// RememberIdempotency remembers rec, replacing an expired receipt for the same key (the caller
// looked the key up first in this transaction, holding it). It returns
// store.ErrIdempotencyInFlight when another uncommitted transaction holds the key.
func (t *txn) RememberIdempotency(rec store.Idempotent) error {
	if err := t.holdKey(rec.ClientID, rec.Endpoint, rec.Key); err != nil {
		return err
	}
	_, err := t.tx.ExecContext(t.ctx, `INSERT INTO intake_idempotency
		(client_id, endpoint, key, body_hash, request_id, sequence, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (client_id, endpoint, key) DO UPDATE SET body_hash = excluded.body_hash,
			request_id = excluded.request_id, sequence = excluded.sequence, created_at = excluded.created_at`,
		text(rec.ClientID), text(rec.Endpoint), text(rec.Key), rec.BodyHash, rec.RequestID, rec.Sequence, rec.CreatedAt)
	if err != nil {
		return fmt.Errorf("pgstore: remember idempotency key: %w", err)
	}
	return nil
}

// NextSequence allocates the next value of sequence name. It is a row, not a PostgreSQL
// SEQUENCE, so that a rolled-back transaction takes no step (values have no gaps); the row
// stays locked until the transaction ends, so concurrent allocations of one name serialize.
func (t *txn) NextSequence(name string) (int64, error) {
	var n int64
	err := t.tx.QueryRowContext(t.ctx, `INSERT INTO intake_sequence (name, value) VALUES ($1, 1)
		ON CONFLICT (name) DO UPDATE SET value = intake_sequence.value + 1 RETURNING value`, text(name)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("pgstore: allocate sequence %s: %w", name, err)
	}
	return n, nil
}
