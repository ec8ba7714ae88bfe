package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// retentionSchema drops an index earlier versions made for the purge: searches were tempted
// to use it. Requests are numbered as they are accepted, so the oldest come first by seq.
const retentionSchema = `DROP INDEX IF EXISTS tracker_requests_received;`

// purgeRequestsPerBatch bounds how many requests one Purge call works on.
const purgeRequestsPerBatch = 10

// Purge deletes old kept records and old tracked requests in one short background write.
// Deleted pages go to SQLite's freelist and are reused by later writes, so a database under a
// steady load stops growing once retention starts deleting.
func (s *Store) Purge(ctx context.Context, recordsBefore, trackingBefore time.Time, limit int) (int, error) {
	if limit <= 0 {
		limit = 1000
	}
	var deleted int
	err := s.db.Write(ctx, func(tx *sql.Tx) error {
		deleted = 0
		if !recordsBefore.IsZero() {
			res, err := tx.Exec(`DELETE FROM intake_records WHERE (request_id, offset) IN (
				SELECT request_id, offset FROM intake_records WHERE received_at < ? LIMIT ?)`,
				recordsBefore.UnixMilli(), limit)
			if err != nil {
				return fmt.Errorf("purge kept records: %w", err)
			}
			deleted += rowsAffected(res)
		}
		if !trackingBefore.IsZero() {
			n, err := purgeTracking(tx, trackingBefore, limit)
			if err != nil {
				return err
			}
			deleted += n
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return deleted, nil
}

// purgeTracking deletes up to limit messages of the oldest requests received before before,
// then those of them left without messages.
func purgeTracking(tx *sql.Tx, before time.Time, limit int) (int, error) {
	const oldest = `SELECT seq FROM (SELECT seq, received_at FROM tracker_requests ORDER BY seq LIMIT ?2) WHERE received_at < ?1`
	res, err := tx.Exec(`DELETE FROM tracker_messages WHERE (request_seq, idx) IN (
		SELECT request_seq, idx FROM tracker_messages WHERE request_seq IN (`+oldest+`) LIMIT ?3)`,
		before.UnixNano(), purgeRequestsPerBatch, limit)
	if err != nil {
		return 0, fmt.Errorf("purge tracked messages: %w", err)
	}
	n := rowsAffected(res)
	res, err = tx.Exec(`DELETE FROM tracker_parts WHERE request_seq IN (`+oldest+`)`, before.UnixNano(), purgeRequestsPerBatch)
	if err != nil {
		return 0, fmt.Errorf("purge part outcomes: %w", err)
	}
	n += rowsAffected(res)
	res, err = tx.Exec(`DELETE FROM tracker_requests WHERE seq IN (`+oldest+`)
		AND NOT EXISTS (SELECT 1 FROM tracker_messages WHERE request_seq = tracker_requests.seq)`,
		before.UnixNano(), purgeRequestsPerBatch)
	if err != nil {
		return 0, fmt.Errorf("purge tracked requests: %w", err)
	}
	return n + rowsAffected(res), nil
}

func rowsAffected(res sql.Result) int {
	n, _ := res.RowsAffected()
	return int(n)
}
