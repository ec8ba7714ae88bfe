package pgstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// KeepRecords stores the raw records of a fragment for processing and replay.
func (t *txn) KeepRecords(requestID string, offset int, records []byte, receivedAt time.Time) error {
	if _, err := t.tx.ExecContext(t.ctx, `INSERT INTO intake_records (request_id, "offset", received_at, records)
		VALUES ($1, $2, $3, $4) ON CONFLICT (request_id, "offset") DO UPDATE SET records = excluded.records`,
		text(requestID), offset, receivedAt, records); err != nil {
		return fmt.Errorf("pgstore: keep records %d.. of request %s: %w", offset, requestID, err)
	}
	return nil
}

// Records reads the kept records of a fragment.
func (s *Store) Records(ctx context.Context, requestID string, offset int) ([]byte, bool, error) {
	var records []byte
	err := s.db.QueryRowContext(ctx, `SELECT records FROM intake_records WHERE request_id = $1 AND "offset" = $2`,
		text(requestID), offset).Scan(&records)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("pgstore: read records %d.. of request %s: %w", offset, requestID, err)
	}
	return records, true, nil
}

// RecordOffsets lists the kept fragments of a request.
func (s *Store) RecordOffsets(ctx context.Context, requestID string) ([]int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT "offset" FROM intake_records WHERE request_id = $1 ORDER BY "offset"`, text(requestID))
	if err != nil {
		return nil, fmt.Errorf("pgstore: list kept records of request %s: %w", requestID, err)
	}
	defer rows.Close()
	var out []int
	for rows.Next() {
		var off int
		if err := rows.Scan(&off); err != nil {
			return nil, fmt.Errorf("pgstore: list kept records of request %s: %w", requestID, err)
		}
		out = append(out, off)
	}
	return out, rows.Err()
}

// purgeRequestsPerBatch bounds how many requests one Purge works on.
const purgeRequestsPerBatch = 10

// Purge deletes old kept records and old tracked requests, at most limit rows of each kind,
// in one short transaction. SKIP LOCKED lets several nodes purge at once without waiting.
func (s *Store) Purge(ctx context.Context, recordsBefore, trackingBefore time.Time, limit int) (int, error) {
	if limit <= 0 {
		limit = 1000
	}
	deleted := 0
	err := s.run(ctx, func(t *txn) error {
		deleted = 0
		if !recordsBefore.IsZero() {
			res, err := t.tx.ExecContext(ctx, `DELETE FROM intake_records WHERE (request_id, "offset") IN (
				SELECT request_id, "offset" FROM intake_records WHERE received_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`,
				recordsBefore, limit)
			if err != nil {
				return fmt.Errorf("pgstore: purge kept records: %w", err)
			}
			deleted += affected(res)
		}
		if trackingBefore.IsZero() {
			return nil
		}
		var seqs []int64
		// Requests are numbered as they are accepted, so the oldest are the first by seq (the
		// primary key): no index on received_at that searches would be tempted to use.
		rows, err := t.tx.QueryContext(ctx, `SELECT seq FROM (SELECT seq, received_at FROM tracker_requests
			ORDER BY seq LIMIT $2 FOR UPDATE SKIP LOCKED) oldest WHERE received_at < $1`, trackingBefore, purgeRequestsPerBatch)
		if err != nil {
			return fmt.Errorf("pgstore: purge tracked requests: %w", err)
		}
		for rows.Next() {
			var seq int64
			if err := rows.Scan(&seq); err != nil {
				rows.Close()
				return fmt.Errorf("pgstore: purge tracked requests: %w", err)
			}
			seqs = append(seqs, seq)
		}
		rows.Close()
		if len(seqs) == 0 {
			return rows.Err()
		}
		for _, q := range []string{
			`DELETE FROM tracker_messages WHERE (request_seq, idx) IN (
				SELECT request_seq, idx FROM tracker_messages WHERE request_seq = ANY($1) LIMIT $2)`,
			`DELETE FROM tracker_parts WHERE request_seq = ANY($1) AND $2 > 0`,
			`DELETE FROM tracker_requests r WHERE seq = ANY($1) AND $2 > 0
				AND NOT EXISTS (SELECT 1 FROM tracker_messages m WHERE m.request_seq = r.seq)`,
		} {
			res, err := t.tx.ExecContext(ctx, q, seqs, limit)
			if err != nil {
				return fmt.Errorf("pgstore: purge tracked requests: %w", err)
			}
			deleted += affected(res)
		}
		return nil
	})
	return deleted, err
}

func affected(res sql.Result) int {
	n, _ := res.RowsAffected()
	return int(n)
}
