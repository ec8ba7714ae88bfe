package pgstore

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/opengw/gateway/tracker"
)

// Find runs search f over the requests of client clientID (never any other client's), in one
// REPEATABLE READ snapshot. See tracker.Filter for the semantics.
func (ts trackerStore) Find(ctx context.Context, clientID string, f tracker.Filter) (tracker.Page, error) {
	if err := f.Validate(); err != nil {
		return tracker.Page{}, err
	}
	tx, err := ts.s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return tracker.Page{}, fmt.Errorf("tracker: search: %w", err)
	}
	defer tx.Rollback()
	// pgx's database/sql driver prepares and caches statements per connection, and after five
	// runs of one PostgreSQL may settle on a generic plan, made without the parameters'
	// values: for a page of a big request's messages in a status that plan reads the whole
	// request through the primary key. Plan with the values, as TestQueryPlans pins.
	if _, err := tx.ExecContext(ctx, `SET LOCAL plan_cache_mode = force_custom_plan`); err != nil {
		return tracker.Page{}, fmt.Errorf("tracker: search: %w", err)
	}

	var page tracker.Page
	count := requestsQuery(f, clientID, "count(*)")
	if err := tx.QueryRowContext(ctx, count.sql(), count.args...).Scan(&page.TotalRequests); err != nil {
		return tracker.Page{}, fmt.Errorf("tracker: count requests: %w", err)
	}
	pages, n, offset, ok := f.RequestWindow(page.TotalRequests)
	if page.TotalPages = pages; !ok {
		return page, nil
	}
	var limit any = n // NULL limit: all
	if n < 0 {
		limit = nil
	}

	q := requestsQuery(f, clientID, `r.seq, r.id, r.client_id, r.client_name, r.batch_reference, r.format,
		r.received_at, r.total, r.cancelled_at, r.last_processed_at,
		r.n_rows, r.n_processing, r.n_complete, r.n_failed, r.n_invalid, r.n_cancelled`)
	q.b.WriteString(" ORDER BY " + orderBy(&f) + " LIMIT " + q.arg(limit) + " OFFSET " + q.arg(offset))
	rows, err := tx.QueryContext(ctx, q.sql(), q.args...)
	if err != nil {
		return tracker.Page{}, fmt.Errorf("tracker: list requests: %w", err)
	}
	bySeq := map[int64]int{}
	var seqs []int64
	for rows.Next() {
		var (
			v                      tracker.RequestView
			seq                    int64
			batch                  sql.NullString
			cancelledAt, processed sql.NullTime
			n                      tracker.Summary // counters of the recorded messages
		)
		if err := rows.Scan(&seq, &v.ID, &v.ClientID, &v.ClientName, &batch, &v.Format, &v.ReceivedAt, &v.Total,
			&cancelledAt, &processed, &n.Total, &n.Processing, &n.Complete, &n.Failed, &n.Invalid, &n.Cancelled); err != nil {
			rows.Close()
			return tracker.Page{}, fmt.Errorf("tracker: read request: %w", err)
		}
		v.BatchReference = batch.String
		v.ReceivedAt = v.ReceivedAt.UTC()
		if cancelledAt.Valid {
			v.CancelledAt = cancelledAt.Time.UTC()
		}
		if processed.Valid {
			v.LastProcessedAt = processed.Time.UTC()
		}
		v.Summary = tracker.SummaryOf(v.Total, n, cancelledAt.Valid)
		v.Status = v.Summary.Status()
		bySeq[seq] = len(page.Requests)
		seqs = append(seqs, seq)
		page.Requests = append(page.Requests, v)
	}
	if err := rows.Err(); err != nil {
		return tracker.Page{}, fmt.Errorf("tracker: list requests: %w", err)
	}
	if err := loadMessages(ctx, tx, f, seqs, bySeq, page.Requests); err != nil {
		return tracker.Page{}, err
	}
	return page, nil
}

// query is SQL under construction with its numbered arguments.
type query struct {
	b    strings.Builder
	args []any
}

// arg adds an argument and returns its placeholder.
func (q *query) arg(v any) string {
	q.args = append(q.args, v)
	return "$" + strconv.Itoa(len(q.args))
}

func (q *query) sql() string { return q.b.String() }

// requestsQuery selects columns of f's requests of clientID (tracker_requests r).
//
// Plans (pinned by TestQueryPlans at a million messages): by ids the unique id index; by
// batch references (client_id, batch_reference); by external references the union of the
// reference index of the messages and (client_id, batch_reference); otherwise (client_id,
// received_at). "Some message meets the statuses" reads the counters, not the messages;
// with types it probes tracker_messages_status.
func requestsQuery(f tracker.Filter, clientID, columns string) *query {
	q := &query{}
	b := &q.b
	client := q.arg(text(clientID))
	b.WriteString("SELECT " + columns + " FROM tracker_requests r WHERE r.client_id = " + client)
	if len(f.RequestIDs) > 0 {
		b.WriteString(" AND r.id = ANY(" + q.arg(texts(f.RequestIDs)) + ")")
	}
	if len(f.BatchReferences) > 0 {
		b.WriteString(" AND r.batch_reference = ANY(" + q.arg(texts(f.BatchReferences)) + ")")
	}
	if !f.ReceivedFrom.IsZero() {
		b.WriteString(" AND r.received_at >= " + q.arg(f.ReceivedFrom))
	}
	if !f.ReceivedTo.IsZero() {
		b.WriteString(" AND r.received_at <= " + q.arg(f.ReceivedTo))
	}
	hasMessageCriteria := len(f.MessageTypes) > 0 || len(f.Statuses) > 0
	// anyMessage is "some message of r meets the type and status criteria".
	anyMessage := func() {
		if len(f.MessageTypes) == 0 {
			var terms []string
			for _, st := range f.Statuses {
				if c := statusCode(st); c == codeQueued {
					terms = append(terms, "r.n_rows - r.n_processing - r.n_complete - r.n_failed - r.n_invalid - r.n_cancelled > 0")
				} else {
					terms = append(terms, "r."+counterColumns[c]+" > 0")
				}
			}
			b.WriteString("(" + strings.Join(terms, " OR ") + ")")
			return
		}
		b.WriteString("EXISTS (SELECT 1 FROM tracker_messages m WHERE m.request_seq = r.seq")
		messageCriteria(q, f)
		b.WriteString(")")
	}
	if len(f.ExternalReferences) == 0 {
		if hasMessageCriteria {
			b.WriteString(" AND ")
			anyMessage()
		}
		return q
	}
	refs := q.arg(texts(f.ExternalReferences))
	b.WriteString(" AND r.seq IN (SELECT e.request_seq FROM tracker_messages e WHERE e.external_reference = ANY(" + refs +
		") UNION SELECT q.seq FROM tracker_requests q WHERE q.client_id = " + client + " AND q.batch_reference = ANY(" + refs + "))")
	b.WriteString(" AND ((r.batch_reference = ANY(" + refs + ")")
	if hasMessageCriteria {
		b.WriteString(" AND ")
		anyMessage()
	}
	b.WriteString(") OR EXISTS (SELECT 1 FROM tracker_messages m WHERE m.request_seq = r.seq AND m.external_reference = ANY(" + refs + ")")
	messageCriteria(q, f)
	b.WriteString("))")
	return q
}

// counterColumns are the tracker_requests counters by status code (Queued is implied).
var counterColumns = [...]string{"", "n_processing", "n_complete", "n_failed", "n_invalid", "n_cancelled"}

// messageCriteria appends f's status and type conditions over tracker_messages m.
func messageCriteria(q *query, f tracker.Filter) {
	if len(f.Statuses) > 0 {
		codes := make([]int16, len(f.Statuses))
		for i, st := range f.Statuses {
			codes[i] = statusCode(st)
		}
		q.b.WriteString(" AND m.status = ANY(" + q.arg(codes) + "::smallint[])")
	}
	if len(f.MessageTypes) > 0 {
		types := make([]string, len(f.MessageTypes))
		for i, t := range f.MessageTypes {
			types[i] = asciiLower(text(t))
		}
		q.b.WriteString(" AND lower(m.type) = ANY(" + q.arg(types) + ")")
	}
}

// orderBy is the ORDER BY of sorts (see tracker.Filter.Sorts).
func orderBy(f *tracker.Filter) string {
	var terms []string
	for _, so := range f.EffectiveSorts() {
		dir := " ASC"
		if so.Desc {
			dir = " DESC"
		}
		switch so.By {
		case tracker.SortReceivedDate:
			terms = append(terms, "r.received_at"+dir)
		case tracker.SortProcessedDate:
			terms = append(terms, "r.last_processed_at"+dir+" NULLS LAST")
		case tracker.SortBatchReference:
			terms = append(terms, "r.batch_reference"+dir+" NULLS LAST")
		}
	}
	return strings.Join(terms, ", ") + ", r.id"
}

// loadMessages fills in the selected messages (the page of them) of the requests listed
// (views[bySeq[seq]]).
func loadMessages(ctx context.Context, tx *sql.Tx, f tracker.Filter, seqs []int64, bySeq map[int64]int, views []tracker.RequestView) error {
	if len(seqs) == 0 {
		return nil
	}
	// Requests selected through a record's external reference (not their batch reference)
	// show only the messages with that reference; the others every message meeting the type
	// and status criteria.
	var byBatch, byRecord []int64
	if len(f.ExternalReferences) > 0 {
		refs := texts(f.ExternalReferences)
		for _, seq := range seqs {
			if slices.Contains(refs, views[bySeq[seq]].BatchReference) {
				byBatch = append(byBatch, seq)
			} else {
				byRecord = append(byRecord, seq)
			}
		}
	} else {
		byBatch = seqs
	}
	namespaces := make(map[int64]uuid.UUID, len(seqs))
	for _, seq := range seqs {
		namespaces[seq] = tracker.MessageNamespace(views[bySeq[seq]].ID)
	}
	load := func(seqs []int64, byReference bool) error {
		if len(seqs) == 0 {
			return nil
		}
		q := messagesQuery(f, seqs, byReference)
		rows, err := tx.QueryContext(ctx, q.sql(), q.args...)
		if err != nil {
			return fmt.Errorf("tracker: list messages: %w", err)
		}
		for rows.Next() {
			var (
				seq                 int64
				sm                  tracker.StoredMessage
				ref, typ, errs, ver sql.NullString
				code                int16
				processed           sql.NullTime
			)
			if err := rows.Scan(&seq, &sm.Index, &ref, &typ, &code, &processed, &errs, &ver); err != nil {
				rows.Close()
				return fmt.Errorf("tracker: read message: %w", err)
			}
			sm.StatusCode = int(code)
			sm.ExternalReference, sm.Type, sm.Errors, sm.MappingVersion = ref.String, typ.String, errs.String, ver.String
			if processed.Valid {
				sm.ProcessedAt = processed.Time.UTC()
			}
			m, err := sm.View(namespaces[seq])
			if err != nil {
				rows.Close()
				return fmt.Errorf("tracker: %w", err)
			}
			v := &views[bySeq[seq]]
			v.Messages = append(v.Messages, m)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("tracker: list messages: %w", err)
		}
		return nil
	}
	if err := load(byBatch, false); err != nil {
		return err
	}
	if err := load(byRecord, true); err != nil {
		return err
	}
	// Each request's messages came in index order from its own subquery; the order of rows
	// across a LATERAL join is not guaranteed, so make sure.
	for i := range views {
		ms := views[i].Messages
		if !slices.IsSortedFunc(ms, byIndex) {
			slices.SortFunc(ms, byIndex)
		}
	}
	return nil
}

func byIndex(a, b tracker.MessageView) int { return a.Index - b.Index }

// shownErrors is a message's errors as tracking shows them: those of earlier attempts, then
// the last delivery error while it is still being retried.
const shownErrors = `CASE WHEN m.retry_error IS NULL THEN m.errors
	ELSE (coalesce(m.errors::jsonb, '[]'::jsonb) || jsonb_build_array(m.retry_error))::text END`

// messagesQuery selects the messages to show of requests seqs, each request's page of them in
// a LATERAL subquery: through the reference index for requests selected by a record's
// reference (byReference), else through the primary key or the status index.
func messagesQuery(f tracker.Filter, seqs []int64, byReference bool) *query {
	q := &query{}
	b := &q.b
	b.WriteString(`SELECT s.seq, m.idx, m.external_reference, m.type, m.status, m.processed_at, m.errors, m.mapping_version
		FROM unnest(` + q.arg(seqs) + `::bigint[]) AS s(seq) CROSS JOIN LATERAL (
			SELECT m.idx, m.external_reference, m.type, m.status, m.processed_at, ` + shownErrors + ` AS errors, m.mapping_version
			FROM tracker_messages m WHERE m.request_seq = s.seq`)
	if byReference {
		b.WriteString(" AND m.external_reference = ANY(" + q.arg(texts(f.ExternalReferences)) + ")")
	}
	messageCriteria(q, f)
	b.WriteString(" ORDER BY m.idx")
	if f.MessagePageSize > 0 {
		b.WriteString(" LIMIT " + q.arg(f.MessagePageSize) + " OFFSET " + q.arg(f.MessageOffset()))
	}
	b.WriteString(") m")
	return q
}

// texts applies text to every value.
func texts(values []string) []string {
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = text(v)
	}
	return out
}

// asciiLower folds ASCII letters only, as lower() does under the "C" collation.
func asciiLower(s string) string {
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + ('a' - 'A')
		}
		return r
	}, s)
}
