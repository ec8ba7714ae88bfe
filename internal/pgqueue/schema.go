package pgqueue

import (
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgconn"
)

// notifyChannel is the LISTEN/NOTIFY channel every publish signals, with its topic as payload.
const notifyChannel = "pgqueue"

// schemaLockKey is the pg_advisory_xact_lock key that serialises table creation, so nodes that
// start together do not race in CREATE TABLE IF NOT EXISTS (which can fail with a duplicate
// pg_type row when two sessions create the same table at once).
const schemaLockKey int64 = 0x7067_7175_6575_6501 // "pgqueue" + 1

// Private metadata of the messages watermill-sql hands to a consumer; they never reach the
// caller, whose message gets store.AttemptKey instead.
const (
	offsetKey  = "_pgqueue_offset"
	attemptKey = "_pgqueue_attempt"
)

// Limits of one INSERT statement; PublishTx splits bigger calls into several statements.
const (
	insertMaxMessages = 1000
	insertMaxBytes    = 32 << 20
)

// tableName is the table holding topic's messages: gwq_ + the topic lower-cased with every
// character outside [a-z0-9_] replaced by _ and cut to 32 bytes, + _ + a 64-bit FNV hash of
// the exact topic, so "deliver.a", "deliver_a" and long topics sharing a prefix get distinct
// tables whose names (with their index suffix) stay below PostgreSQL's 63-byte limit.
func tableName(topic string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(topic) {
		if b.Len() == 32 {
			break
		}
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	h := fnv.New64a()
	h.Write([]byte(topic))
	return fmt.Sprintf("gwq_%s_%016x", b.String(), binary.BigEndian.Uint64(h.Sum(nil)))
}

// queueSchema is the watermill-sql SchemaAdapter of this package's tables: one table per topic,
// rows deleted on ack, selected with FOR UPDATE SKIP LOCKED so that any number of consumers on
// any number of nodes take disjoint batches of one topic at the same time.
//
// It replaces rather than wraps watermill-sql's PostgreSQLQueueSchema, whose table has a 32-bit
// SERIAL offset, a JSON payload column (binary payloads fail), no delivery attempt and no
// not-before time, and whose select has no SKIP LOCKED (consumers queue behind one another's
// batch) and runs in REPEATABLE READ (a handler writing through the batch transaction would hit
// serialization failures whenever another node changed the same rows since the batch began).
//
// Columns: offset (identity), uuid, payload (bytea), metadata (json), created_at (first
// publication, kept across retries), not_before (the row is not offered before it; set to the
// publication time, later by a retry) and attempt (1-based delivery attempt).
type queueSchema struct {
	batchSize int
}

var _ wmsql.SchemaAdapter = queueSchema{}

func (queueSchema) SchemaInitializingQueries(params wmsql.SchemaInitializingQueriesParams) ([]wmsql.Query, error) {
	t := tableName(params.Topic)
	return []wmsql.Query{
		{Query: `CREATE TABLE IF NOT EXISTS ` + t + ` (
	"offset"   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	uuid       TEXT        NOT NULL,
	payload    BYTEA,
	metadata   JSON,
	created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
	not_before TIMESTAMPTZ NOT NULL DEFAULT now(),
	attempt    INTEGER     NOT NULL DEFAULT 1
)`},
		// The select walks this index in readiness order and stops after the batch; rows
		// backing off lie beyond now() and are never visited.
		{Query: `CREATE INDEX IF NOT EXISTS ` + t + `_ready ON ` + t + ` (not_before, "offset")`},
		{Query: `COMMENT ON TABLE ` + t + ` IS ` + quoteLiteral("pgqueue topic "+params.Topic)},
		{Query: LZ4(t, "payload")},
	}, nil
}

// LZ4 is a statement that makes PostgreSQL compress the values of table.column that it moves
// out of line (TOAST: values over ~2 kB, such as a fragment's records or a delivery's mapped
// records) with lz4 instead of its default pglz, which costs several times the CPU. On a
// server built without lz4, or older than 14, the statement does nothing: pglz stays.
func LZ4(table, column string) string {
	return `DO $lz4$ BEGIN
	EXECUTE 'ALTER TABLE ` + table + ` ALTER COLUMN ` + column + ` SET COMPRESSION lz4';
EXCEPTION WHEN OTHERS THEN NULL;
END $lz4$;`
}

// InsertQuery inserts msgs with one statement whatever their number (arrays, so the statement
// is prepared once per connection) and notifies listeners of the topic when the transaction
// commits.
func (queueSchema) InsertQuery(params wmsql.InsertQueryParams) (wmsql.Query, error) {
	uuids := make([]string, len(params.Msgs))
	payloads := make([][]byte, len(params.Msgs))
	metadata := make([]string, len(params.Msgs))
	for i, msg := range params.Msgs {
		md, err := json.Marshal(msg.Metadata)
		if err != nil {
			return wmsql.Query{}, fmt.Errorf("encode metadata of message %s: %w", msg.UUID, err)
		}
		uuids[i], payloads[i], metadata[i] = msg.UUID, msg.Payload, string(md)
	}
	return wmsql.Query{
		Query: `WITH ins AS (
	INSERT INTO ` + tableName(params.Topic) + ` (uuid, payload, metadata)
	SELECT u, p, m::json FROM unnest($1::text[], $2::bytea[], $3::text[]) WITH ORDINALITY AS x(u, p, m, n) ORDER BY n
)
SELECT pg_notify('` + notifyChannel + `', $4)`,
		Args: []any{uuids, payloads, metadata, params.Topic},
	}, nil
}

func (s queueSchema) SelectQuery(params wmsql.SelectQueryParams) (wmsql.Query, error) {
	if params.ConsumerGroup != "" {
		return wmsql.Query{}, errors.New("pgqueue: consumer groups are not supported")
	}
	return wmsql.Query{Query: `SELECT "offset", uuid, payload, metadata, attempt FROM ` + tableName(params.Topic) + `
WHERE not_before <= now()
ORDER BY not_before, "offset"
LIMIT ` + strconv.Itoa(s.batchSize) + `
FOR UPDATE SKIP LOCKED`}, nil
}

// UnmarshalMessage builds the message watermill-sql hands to the consumer, with the row's
// offset and attempt in private metadata for the consumer to turn into the caller's message.
func (queueSchema) UnmarshalMessage(params wmsql.UnmarshalMessageParams) (wmsql.Row, error) {
	var (
		r       wmsql.Row
		uuid    string
		attempt int64
	)
	if err := params.Row.Scan(&r.Offset, &uuid, &r.Payload, &r.Metadata, &attempt); err != nil {
		return wmsql.Row{}, fmt.Errorf("scan message row: %w", err)
	}
	r.UUID = []byte(uuid)
	md := message.Metadata{}
	if len(r.Metadata) > 0 {
		if err := json.Unmarshal(r.Metadata, &md); err != nil {
			return wmsql.Row{}, fmt.Errorf("decode metadata of message %s (offset %d): %w", uuid, r.Offset, err)
		}
		if md == nil { // the JSON was null
			md = message.Metadata{}
		}
	}
	md.Set(offsetKey, strconv.FormatInt(r.Offset, 10))
	md.Set(attemptKey, strconv.FormatInt(attempt, 10))
	r.Msg = message.NewMessage(uuid, r.Payload)
	r.Msg.Metadata = md
	return r, nil
}

// SubscribeIsolationLevel is READ COMMITTED: SKIP LOCKED needs no snapshot, and handlers that
// write through the batch transaction then see (and wait for) other nodes' committed changes
// instead of failing with serialization errors.
func (queueSchema) SubscribeIsolationLevel() sql.IsolationLevel { return sql.LevelReadCommitted }

// ensureTopic creates topic's table unless a Queue on the same *sql.DB already did. It runs in its own
// transaction under an advisory lock, so nodes starting together do not collide.
func (q *Queue) ensureTopic(ctx context.Context, topic string) error {
	if err := validateTopic(topic); err != nil {
		return err
	}
	if _, ok := q.hub.tables.Load(topic); ok {
		return nil
	}
	queries, err := queueSchema{}.SchemaInitializingQueries(wmsql.SchemaInitializingQueriesParams{Topic: topic})
	if err != nil {
		return err
	}
	tx, err := q.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("create table of topic %q: %w", topic, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, schemaLockKey); err != nil {
		return fmt.Errorf("create table of topic %q: lock: %w", topic, err)
	}
	// CREATE INDEX IF NOT EXISTS locks the table against writes before it finds the index, and
	// would wait for every running batch: skip the DDL when it has nothing to do.
	var exists bool
	table := tableName(topic)
	if err := tx.QueryRowContext(ctx, `SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL`, table, table+"_ready").Scan(&exists); err != nil {
		return fmt.Errorf("find table of topic %q: %w", topic, err)
	}
	if !exists {
		for _, query := range queries {
			if _, err := tx.ExecContext(ctx, query.Query, query.Args...); err != nil {
				return fmt.Errorf("create table of topic %q: %w", topic, err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("create table of topic %q: %w", topic, err)
	}
	q.hub.tables.Store(topic, struct{}{})
	return nil
}

// validateTopic accepts the topics watermill-sql's Subscriber accepts, so that nothing is
// published that cannot be consumed.
func validateTopic(topic string) error {
	if topic == "" {
		return errors.New("empty topic")
	}
	for _, r := range topic {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-$:._", r)) {
			return fmt.Errorf("topic %q: character %q is not allowed (letters, digits and - $ : . _ are)", topic, r)
		}
	}
	return nil
}

// isUndefinedTable reports whether err is PostgreSQL's undefined_table (the topic was never
// published to or subscribed).
func isUndefinedTable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42P01"
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
