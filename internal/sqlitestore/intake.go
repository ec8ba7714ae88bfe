package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/opengw/gateway/internal/sqlitedb"
	"github.com/opengw/gateway/internal/store"
)

// intakeSchema holds what intake remembers besides the queue and the tracker. Idempotency keys
// are scoped per client and per endpoint. The single writer serialises intake transactions, so
// a key is never held by two uncommitted transactions at once (ErrIdempotencyInFlight never
// arises here; the pipeline detects a concurrent duplicate before it gets this far).
const intakeSchema = `
CREATE TABLE IF NOT EXISTS intake_idempotency (
	client_id  TEXT NOT NULL,
	endpoint   TEXT NOT NULL DEFAULT 'push',
	key        TEXT NOT NULL,
	body_hash  TEXT NOT NULL,
	request_id TEXT NOT NULL,
	sequence   INTEGER NOT NULL,
	created_at INTEGER NOT NULL,
	PRIMARY KEY (client_id, endpoint, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS intake_idempotency_created ON intake_idempotency (created_at);
-- The raw records of every fragment, kept for processing and replay until purged. A rowid
-- table: its rows are big (a fragment's records, up to megabytes), which SQLite stores in
-- overflow pages, and a WITHOUT ROWID table wrote 10 fragments of 240 kB in 18 ms where this
-- takes 7 (see migrateIntake).
CREATE TABLE IF NOT EXISTS intake_records (
	request_id  TEXT    NOT NULL,
	offset      INTEGER NOT NULL,
	received_at INTEGER NOT NULL, -- unix ms
	records     BLOB    NOT NULL,
	PRIMARY KEY (request_id, offset)
);
CREATE INDEX IF NOT EXISTS intake_records_received ON intake_records (received_at);
CREATE TABLE IF NOT EXISTS intake_sequence (
	name  TEXT PRIMARY KEY,
	value INTEGER NOT NULL
) WITHOUT ROWID;
`

// migrateIntake creates the intake tables, first moving a key table from before keys were
// scoped per endpoint (primary key (client_id, key)): its keys, all remembered by /push or the
// events API, are kept as push keys until they expire; and kept records from a WITHOUT ROWID
// table into the rowid table that replaced it.
func migrateIntake(db *sqlitedb.DB) error {
	ctx := context.Background()
	var recordsSQL string
	if err := db.Reader().QueryRowContext(ctx, `SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'intake_records'`).
		Scan(&recordsSQL); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("read the schema of %s: %w", db.Path(), err)
	}
	if strings.Contains(strings.ToUpper(recordsSQL), "WITHOUT ROWID") {
		if _, err := db.Exec(ctx, `DROP INDEX IF EXISTS intake_records_received;
			ALTER TABLE intake_records RENAME TO intake_records_without_rowid;`+intakeSchema+`
			INSERT INTO intake_records (request_id, offset, received_at, records)
				SELECT request_id, offset, received_at, records FROM intake_records_without_rowid;
			DROP TABLE intake_records_without_rowid;`); err != nil {
			return fmt.Errorf("move kept records into a rowid table in %s: %w", db.Path(), err)
		}
	}
	if _, err := db.Reader().ExecContext(ctx, `SELECT endpoint FROM intake_idempotency LIMIT 0`); err != nil &&
		strings.Contains(err.Error(), "no such column") {
		if _, err := db.Exec(ctx, `ALTER TABLE intake_idempotency RENAME TO intake_idempotency_v1;
			DROP INDEX IF EXISTS intake_idempotency_created`); err != nil {
			return fmt.Errorf("migrate idempotency keys: %w", err)
		}
		if _, err := db.Exec(ctx, intakeSchema+`
			INSERT INTO intake_idempotency SELECT client_id, 'push', key, body_hash, request_id, sequence, created_at
				FROM intake_idempotency_v1;
			DROP TABLE intake_idempotency_v1;`); err != nil {
			return fmt.Errorf("migrate idempotency keys: %w", err)
		}
	}
	if _, err := db.Exec(ctx, intakeSchema); err != nil {
		return fmt.Errorf("create intake tables in %s: %w", db.Path(), err)
	}
	return nil
}

func (t *tx) Idempotency(clientID, endpoint, key string, since time.Time) (store.Idempotent, bool, error) {
	rec := store.Idempotent{ClientID: clientID, Endpoint: endpoint, Key: key}
	var created int64
	err := t.tx.QueryRow(`SELECT body_hash, request_id, sequence, created_at FROM intake_idempotency
		WHERE client_id = ? AND endpoint = ? AND key = ? AND created_at > ?`,
		clientID, endpoint, key, since.UnixMilli()).Scan(&rec.BodyHash, &rec.RequestID, &rec.Sequence, &created)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return store.Idempotent{}, false, nil
	case err != nil:
		return store.Idempotent{}, false, fmt.Errorf("look up idempotency key: %w", err)
	}
	rec.CreatedAt = time.UnixMilli(created)
	return rec, true, nil
}

func (t *tx) RememberIdempotency(rec store.Idempotent) error {
	_, err := t.tx.Exec(`INSERT OR REPLACE INTO intake_idempotency
		(client_id, endpoint, key, body_hash, request_id, sequence, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		rec.ClientID, rec.Endpoint, rec.Key, rec.BodyHash, rec.RequestID, rec.Sequence, rec.CreatedAt.UnixMilli())
	if err != nil {
		return fmt.Errorf("remember idempotency key: %w", err)
	}
	return nil
}

func (t *tx) NextSequence(name string) (int64, error) {
	var v int64
	if err := t.tx.QueryRow(`INSERT INTO intake_sequence (name, value) VALUES (?, 1)
		ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value`, name).Scan(&v); err != nil {
		return 0, fmt.Errorf("allocate sequence %s: %w", name, err)
	}
	return v, nil
}

func (t *tx) KeepRecords(requestID string, offset int, records []byte, receivedAt time.Time) error {
	if _, err := t.tx.Exec(`INSERT OR REPLACE INTO intake_records (request_id, offset, received_at, records) VALUES (?, ?, ?, ?)`,
		requestID, offset, receivedAt.UnixMilli(), records); err != nil {
		return fmt.Errorf("keep records %d.. of request %s: %w", offset, requestID, err)
	}
	return nil
}

// Records reads kept records through the read pool.
func (s *Store) Records(ctx context.Context, requestID string, offset int) ([]byte, bool, error) {
	var records []byte
	err := s.db.Reader().QueryRowContext(ctx, `SELECT records FROM intake_records WHERE request_id = ? AND offset = ?`,
		requestID, offset).Scan(&records)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("read records %d.. of request %s: %w", offset, requestID, err)
	}
	return records, true, nil
}

// RecordOffsets lists the kept fragments of a request through the read pool.
func (s *Store) RecordOffsets(ctx context.Context, requestID string) ([]int, error) {
	rows, err := s.db.Reader().QueryContext(ctx, `SELECT offset FROM intake_records WHERE request_id = ? ORDER BY offset`, requestID)
	if err != nil {
		return nil, fmt.Errorf("list kept records of request %s: %w", requestID, err)
	}
	defer rows.Close()
	var out []int
	for rows.Next() {
		var off int
		if err := rows.Scan(&off); err != nil {
			return nil, fmt.Errorf("list kept records of request %s: %w", requestID, err)
		}
		out = append(out, off)
	}
	return out, rows.Err()
}
