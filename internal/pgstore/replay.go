package pgstore

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/opengw/gateway/tracker"
)

// RecordParts records part outcomes of messages routed to several sinks; see
// tracker.Writer.RecordParts.
func (w writer) RecordParts(requestID, part string, results []tracker.Result) (map[int][]tracker.Result, error) {
	req, err := w.lockRequest(requestID)
	if err != nil {
		return nil, fmt.Errorf("tracker: record part %s of request %s: %w", part, requestID, err)
	}
	idx := make([]int32, 0, len(results))
	for _, r := range results {
		if !r.Status.Terminal() {
			return nil, fmt.Errorf("tracker: record part %s of message %d of request %s: status %q is not terminal", part, r.Index, requestID, r.Status)
		}
		i, err := index32(r.Index)
		if err != nil {
			return nil, fmt.Errorf("tracker: record part %s of request %s: %w", part, requestID, err)
		}
		var errs any
		if len(r.Errors) > 0 {
			b, err := json.Marshal(r.Errors)
			if err != nil {
				return nil, fmt.Errorf("tracker: record part %s: encode errors: %w", part, err)
			}
			errs = text(string(b))
		}
		if _, err := w.t.tx.ExecContext(w.t.ctx, `INSERT INTO tracker_parts (request_seq, idx, part, status, errors, mapping_version)
			VALUES ($1, $2, $3, $4, $5, NULLIF($6, '')) ON CONFLICT DO NOTHING`,
			req.seq, i, text(part), statusCode(r.Status), errs, text(r.MappingVersion)); err != nil {
			return nil, fmt.Errorf("tracker: record part %s of message %d of request %s: %w", part, r.Index, requestID, err)
		}
		idx = append(idx, i)
	}
	rows, err := w.t.tx.QueryContext(w.t.ctx, `SELECT idx, status, errors, mapping_version FROM tracker_parts
		WHERE request_seq = $1 AND idx = ANY($2::integer[]) ORDER BY idx, recorded`, req.seq, idx)
	if err != nil {
		return nil, fmt.Errorf("tracker: read parts of request %s: %w", requestID, err)
	}
	defer rows.Close()
	out := make(map[int][]tracker.Result, len(results))
	for rows.Next() {
		var (
			i             int
			code          int16
			errs, version sql.NullString
		)
		if err := rows.Scan(&i, &code, &errs, &version); err != nil {
			return nil, fmt.Errorf("tracker: read parts of request %s: %w", requestID, err)
		}
		p := tracker.Result{Index: i, Status: tracker.Statuses[code], MappingVersion: version.String}
		if errs.Valid {
			_ = json.Unmarshal([]byte(errs.String), &p.Errors) // written above as a JSON array
		}
		out[i] = append(out[i], p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("tracker: read parts of request %s: %w", requestID, err)
	}
	return out, nil
}

// Replay moves Failed and Invalid messages back to Queued, keeping their errors; see
// tracker.Writer.Replay.
func (w writer) Replay(requestID string, indexes []int) ([]int, error) {
	req, err := w.lockRequest(requestID)
	if err != nil {
		return nil, fmt.Errorf("tracker: replay messages of request %s: %w", requestID, err)
	}
	idx := make([]int32, len(indexes))
	for i, x := range indexes {
		if idx[i], err = index32(x); err != nil {
			return nil, fmt.Errorf("tracker: replay messages of request %s: %w", requestID, err)
		}
	}
	rows, err := w.t.tx.QueryContext(w.t.ctx, `WITH old AS (
			SELECT idx, status FROM tracker_messages
			WHERE request_seq = $1 AND idx = ANY($2::integer[]) AND status + 0 IN ($3, $4) FOR UPDATE), -- see byIndexes
		moved AS (
			UPDATE tracker_messages m SET status = $5, processed_at = NULL, retry_error = NULL FROM old
			WHERE m.request_seq = $1 AND m.idx = old.idx RETURNING m.idx, old.status),
		parts AS (
			DELETE FROM tracker_parts p USING moved WHERE p.request_seq = $1 AND p.idx = moved.idx)
		SELECT idx, status FROM moved`,
		req.seq, idx, codeFailed, codeInvalid, codeQueued)
	if err != nil {
		return nil, fmt.Errorf("tracker: replay messages of request %s: %w", requestID, err)
	}
	defer rows.Close()
	var (
		replayed []int
		d        delta
	)
	for rows.Next() {
		var (
			i    int
			code int16
		)
		if err := rows.Scan(&i, &code); err != nil {
			return nil, fmt.Errorf("tracker: replay messages of request %s: %w", requestID, err)
		}
		replayed = append(replayed, i)
		d.byStatus[code]--
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("tracker: replay messages of request %s: %w", requestID, err)
	}
	rows.Close()
	if _, err := applyDelta(w.t, req.seq, d); err != nil {
		return nil, fmt.Errorf("tracker: replay messages of request %s: %w", requestID, err)
	}
	slices.Sort(replayed)
	return replayed, nil
}

// Retrying records lastError as the retry error of Processing messages; see
// tracker.Writer.Retrying.
func (w writer) Retrying(requestID string, indexes []int, lastError string) error {
	req, err := w.lockRequest(requestID)
	if err != nil {
		return fmt.Errorf("tracker: note retry of request %s: %w", requestID, err)
	}
	idx := make([]int32, len(indexes))
	for i, x := range indexes {
		if idx[i], err = index32(x); err != nil {
			return fmt.Errorf("tracker: note retry of request %s: %w", requestID, err)
		}
	}
	if _, err := w.t.tx.ExecContext(w.t.ctx, `UPDATE tracker_messages SET retry_error = $3
		WHERE request_seq = $1 AND idx = ANY($2::integer[]) AND status + 0 = $4 -- see byIndexes
		`,
		req.seq, idx, text(lastError), codeProcessing); err != nil {
		return fmt.Errorf("tracker: note retry of request %s: %w", requestID, err)
	}
	return nil
}
