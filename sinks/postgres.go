package sinks

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/tidwall/gjson"

	// The "pgx" database/sql driver. pgx is the PostgreSQL driver of the whole gateway: the one
	// watermill-sql's pgx adapter and the PostgreSQL store use, so the gateway links one driver,
	// one connection-string syntax and one set of error types (pgconn.PgError).
	_ "github.com/jackc/pgx/v5/stdlib"
)

var _ Sink = (*PostgresSink)(nil)

// Connection pool bounds for each PostgreSQL database the sinks write to. Deliveries run
// concurrently (up to hundreds per sink); unbounded, they would open as many connections and
// exhaust the server's max_connections, shared with the other nodes and the gateway's store.
const (
	pgMaxOpenConns   = 8
	pgConnMaxIdleFor = 5 * time.Minute
)

// PostgresSink upserts records into one table of a PostgreSQL database, as SQLiteSink does:
// one row per client and key, one column per mapped field, plus "_client_id" (Record.ClientID)
// and "_updated_at" (timestamptz). The primary key is (_client_id, key column).
//
// The table is created on the first Write (in the connection's search_path, public by default);
// a record that brings a field the table lacks adds a column. PostgreSQL columns need a type:
// a new column takes it from the values that create it, numeric for numbers, boolean for
// true/false, text for strings, jsonb for objects and arrays (text for a mix of scalars, jsonb
// for any mix with objects, text if all are null). Later values are converted by PostgreSQL to
// the column's type (a number into a text column is stored as its text; "abc" into a numeric
// column is a permanent error). To choose the types, create the table first: the sink only
// needs the primary key (_client_id, key column), both text. Column names are matched
// regardless of case, as in SQLite; new columns are created with the record's spelling, quoted.
// Schema changes take a transaction-scoped advisory lock, so nodes that start or add columns at
// the same time do not collide.
//
// Each Write is one multi-row upsert per distinct field set (INSERT ... SELECT FROM
// jsonb_populate_recordset ... ON CONFLICT DO UPDATE), all in one transaction: every record of a
// Write is stored or none is. A record repeated within a Write (same client and key) is merged
// in order, as if written one after the other: later values win, fields only earlier ones carry
// are kept.
//
// Permanent errors: SQLiteSink's errors about records, field names longer than PostgreSQL's
// 63-byte limit, PostgreSQL's data exceptions (class 22: a value the column's
// type cannot take), integrity violations (class 23) and program limits (class 54: too many
// columns, a row too big), and an existing table whose primary key is not (_client_id, key
// column). Everything else (connection loss, deadlocks, a table dropped meanwhile) is retryable.
//
// Write is safe for concurrent use.
type PostgresSink struct {
	// Now gives the time written to _updated_at; time.Now if nil. Set it before the first Write.
	Now func() time.Time

	name string
	tableShape
	db *sql.DB

	mu    sync.Mutex
	ready bool                // the table is known to exist with the right primary key
	cols  map[string]pgColumn // committed columns by lower-case name

	closed atomic.Bool
}

// pgColumn is a column of the sink's table.
type pgColumn struct {
	name string // as created
	typ  string // format_type, e.g. "numeric", "timestamp with time zone"
}

// NewPostgresSink returns the sink called name that upserts into table of db (a "pgx" *sql.DB),
// keyed by the client and the mapped field key (or, if key is empty, by Record.ID in an "_id"
// column). table and key must be plain identifiers. It connects to check an existing table:
// its primary key must be (_client_id, key column). The sink does not own db: Close leaves it
// open, and the caller closes it after the sink.
func NewPostgresSink(db *sql.DB, name, table, key string) (*PostgresSink, error) {
	cfg := Config{Type: TypePostgres, Table: table, Key: key}
	if err := cfg.Validate(name); err != nil {
		return nil, err
	}
	s := &PostgresSink{name: name, tableShape: newTableShape(table, key), db: db, cols: map[string]pgColumn{}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cols, pk, err := pgTableInfo(ctx, db, table)
	if err != nil {
		return nil, fmt.Errorf("sink %q: inspect table %s: %w", name, table, err)
	}
	if len(cols) > 0 {
		if err := s.checkPrimaryKey(pk); err != nil {
			return nil, fmt.Errorf("sink %q: %w", name, err)
		}
		// Without _updated_at (a table made by hand), the first Write adds it.
		_, s.ready = cols[updatedAtColumn]
		s.cols = cols
	}
	return s, nil
}

// Write upserts records; see PostgresSink.
func (s *PostgresSink) Write(ctx context.Context, records []Record) error {
	if done, err := precheck(ctx, s.name, &s.closed, records); done {
		return err
	}
	rows, err := s.parseAll(records)
	if err != nil {
		return fmt.Errorf("sink %q: %w", s.name, err)
	}
	need := map[string]*newColumn{}
	var order []string // lower-case names of need, in order of first appearance
	for _, r := range rows {
		for i, f := range r.fields {
			lower := strings.ToLower(f)
			c := need[lower]
			if c == nil {
				c = &newColumn{name: f}
				need[lower] = c
				order = append(order, lower)
			}
			c.kinds |= kindOf(r.vals[i])
		}
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	updatedAt := now().UTC().Format("2006-01-02T15:04:05.000000Z")

	err = s.write(ctx, rows, need, order, updatedAt)
	if err == nil {
		return nil
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (strings.HasPrefix(pe.Code, "22") || strings.HasPrefix(pe.Code, "23") || strings.HasPrefix(pe.Code, "54")) {
		err = Permanent(err)
	}
	if !errors.Is(err, ErrPermanent) {
		// The table may have been changed behind our back: look again next time.
		s.forgetSchema()
	}
	return fmt.Errorf("sink %q: write %d records to table %s: %w", s.name, len(records), s.table, err)
}

// parseAll parses records and merges those of the same client and key, in order: one statement
// cannot upsert a row twice.
func (s *PostgresSink) parseAll(records []Record) ([]row, error) {
	rows := make([]row, 0, len(records))
	type identity struct{ client, key string }
	at := map[identity]int{}
	for _, r := range records {
		parsed, err := s.parse(r, maxPostgresIdent)
		if err != nil {
			return nil, err
		}
		id := identity{parsed.client, parsed.key}
		i, dup := at[id]
		if !dup {
			at[id] = len(rows)
			rows = append(rows, parsed)
			continue
		}
		merged := &rows[i]
		for j, f := range parsed.fields {
			if k := slices.IndexFunc(merged.fields, func(m string) bool { return strings.EqualFold(m, f) }); k >= 0 {
				merged.vals[k] = parsed.vals[j]
			} else {
				merged.fields = append(merged.fields, f)
				merged.vals = append(merged.vals, parsed.vals[j])
			}
		}
		merged.id += "," + parsed.id
	}
	return rows, nil
}

// newColumn is a field of a Write: its name as first seen and the kinds of value it holds.
type newColumn struct {
	name  string
	kinds kinds
}

// kinds is a set of JSON value kinds.
type kinds uint8

const (
	kindNumber kinds = 1 << iota
	kindBool
	kindString
	kindJSON // object or array
)

func kindOf(v gjson.Result) kinds {
	switch v.Type {
	case gjson.Number:
		return kindNumber
	case gjson.True, gjson.False:
		return kindBool
	case gjson.String:
		return kindString
	case gjson.JSON:
		return kindJSON
	}
	return 0 // null
}

// columnType is the type of a column created for values of kinds k: see PostgresSink.
func (k kinds) columnType() string {
	switch {
	case k == kindNumber:
		return "numeric"
	case k == kindBool:
		return "boolean"
	case k&kindJSON != 0:
		return "jsonb"
	}
	return "text"
}

// write runs a Write's statements: in one transaction when there is more than one.
func (s *PostgresSink) write(ctx context.Context, rows []row, need map[string]*newColumn, order []string, updatedAt string) error {
	s.mu.Lock()
	known := s.ready
	for _, lower := range order {
		if !known {
			break
		}
		_, known = s.cols[lower]
	}
	cols := s.cols
	s.mu.Unlock()

	var tx *sql.Tx
	var exec interface {
		ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	} = s.db
	if !known {
		var err error
		if tx, err = s.db.BeginTx(ctx, nil); err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		defer tx.Rollback()
		if cols, err = s.ensureSchema(ctx, tx, need, order); err != nil {
			return err
		}
		exec = tx
	}
	groups := s.statements(rows, cols, updatedAt)
	if tx == nil && len(groups) > 1 {
		var err error
		if tx, err = s.db.BeginTx(ctx, nil); err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		defer tx.Rollback()
		exec = tx
	}
	for _, g := range groups {
		if _, err := exec.ExecContext(ctx, g.sql, g.arg); err != nil {
			if len(g.ids) == 1 {
				return fmt.Errorf("record %s: %w", g.ids[0], err)
			}
			return err
		}
	}
	if tx != nil {
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
	}
	if !known {
		s.learnSchema(cols)
	}
	return nil
}

// statement is one multi-row upsert: its SQL and its one argument, the rows as a JSON array.
type statement struct {
	sql string
	arg string
	ids []string // the records it writes, for messages
}

// statements groups rows by field set and renders one upsert per group, rows sorted by client
// and key so that concurrent writers lock rows in the same order.
func (s *PostgresSink) statements(rows []row, cols map[string]pgColumn, updatedAt string) []statement {
	type group struct {
		columns []string // actual column names, after _client_id and the key column
		rows    []row
	}
	var groups []*group
	byShape := map[string]*group{}
	for _, r := range rows {
		names := make([]string, len(r.fields))
		for i, f := range r.fields {
			names[i] = cols[strings.ToLower(f)].name
		}
		shape := strings.Join(names, ",") // names are identifiers: "," cannot be in one
		g := byShape[shape]
		if g == nil {
			g = &group{columns: names}
			byShape[shape] = g
			groups = append(groups, g)
		}
		g.rows = append(g.rows, r)
	}
	clientCol, keyCol := cols[ClientField].name, cols[strings.ToLower(s.key)].name
	updatedCol := cols[updatedAtColumn].name
	out := make([]statement, 0, len(groups))
	for _, g := range groups {
		slices.SortFunc(g.rows, func(a, b row) int { return cmp.Or(cmp.Compare(a.client, b.client), cmp.Compare(a.key, b.key)) })
		quoted := make([]string, 0, len(g.columns)+3)
		quoted = append(quoted, quoteIdent(clientCol), quoteIdent(keyCol))
		for _, c := range g.columns {
			quoted = append(quoted, quoteIdent(c))
		}
		quoted = append(quoted, quoteIdent(updatedCol))
		sets := make([]string, 0, len(quoted)-2)
		for _, c := range quoted[2:] {
			sets = append(sets, c+" = excluded."+c)
		}
		list := strings.Join(quoted, ", ")
		q := "INSERT INTO " + quoteIdent(s.table) + " (" + list + ") SELECT " + list +
			" FROM jsonb_populate_recordset(NULL::" + quoteIdent(s.table) + ", $1::jsonb) ON CONFLICT (" +
			quoted[0] + ", " + quoted[1] + ") DO UPDATE SET " + strings.Join(sets, ", ")

		var b []byte
		ids := make([]string, len(g.rows))
		b = append(b, '[')
		for i, r := range g.rows {
			ids[i] = r.id
			if i > 0 {
				b = append(b, ',')
			}
			b = appendMember(append(b, '{'), clientCol, r.client)
			b = appendMember(append(b, ','), keyCol, r.key)
			for j, c := range g.columns {
				b = appendJSONString(append(b, ','), c)
				b = append(append(b, ':'), r.vals[j].Raw...)
			}
			b = appendMember(append(b, ','), updatedCol, updatedAt)
			b = append(b, '}')
		}
		b = append(b, ']')
		out = append(out, statement{sql: q, arg: string(b), ids: ids})
	}
	return out
}

// appendMember appends "name":"value" (both JSON-encoded).
func appendMember(b []byte, name, value string) []byte {
	return appendJSONString(append(appendJSONString(b, name), ':'), value)
}

func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string always encodes
	return append(b, q...)
}

// ensureSchema makes sure, under the table's advisory lock, that the table exists with the
// right primary key and a column for every field in need (order: their lower-case names), and
// returns every column the transaction sees.
func (s *PostgresSink) ensureSchema(ctx context.Context, tx *sql.Tx, need map[string]*newColumn, order []string) (map[string]pgColumn, error) {
	// Locks are per table name within the current schema: two nodes adding the same column, or
	// creating the table, wait for each other instead of failing on a duplicate.
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('opengw sink table ' || current_schema() || '.' || $1, 0))`, s.table); err != nil {
		return nil, fmt.Errorf("lock table schema: %w", err)
	}
	cols, pk, err := pgTableInfo(ctx, tx, s.table)
	if err != nil {
		return nil, fmt.Errorf("inspect table: %w", err)
	}
	if len(cols) == 0 {
		defs := []string{quoteIdent(ClientField) + " text NOT NULL", quoteIdent(s.key) + " text NOT NULL"}
		cols[ClientField] = pgColumn{ClientField, "text"}
		cols[strings.ToLower(s.key)] = pgColumn{s.key, "text"}
		for _, lower := range order {
			c := need[lower]
			defs = append(defs, quoteIdent(c.name)+" "+c.kinds.columnType())
			cols[lower] = pgColumn{c.name, c.kinds.columnType()}
		}
		defs = append(defs, quoteIdent(updatedAtColumn)+" timestamptz",
			"PRIMARY KEY ("+quoteIdent(ClientField)+", "+quoteIdent(s.key)+")")
		cols[updatedAtColumn] = pgColumn{updatedAtColumn, "timestamp with time zone"}
		q := "CREATE TABLE " + quoteIdent(s.table) + " (" + strings.Join(defs, ", ") + ")"
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return nil, fmt.Errorf("create table: %w", err)
		}
		return cols, nil
	}
	if err := s.checkPrimaryKey(pk); err != nil {
		return nil, Permanent(err)
	}
	add := func(name, typ string) error {
		q := "ALTER TABLE " + quoteIdent(s.table) + " ADD COLUMN " + quoteIdent(name) + " " + typ
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("add column %s: %w", name, err)
		}
		cols[strings.ToLower(name)] = pgColumn{name, typ}
		return nil
	}
	for _, lower := range order {
		if _, ok := cols[lower]; !ok {
			if err := add(need[lower].name, need[lower].kinds.columnType()); err != nil {
				return nil, err
			}
		}
	}
	if _, ok := cols[updatedAtColumn]; !ok { // a table created by hand without it
		if err := add(updatedAtColumn, "timestamptz"); err != nil {
			return nil, err
		}
	}
	return cols, nil
}

func (s *PostgresSink) learnSchema(cols map[string]pgColumn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ready = true
	s.cols = cols
}

func (s *PostgresSink) forgetSchema() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ready = false
	s.cols = map[string]pgColumn{}
}

// Close marks the sink closed; later Writes return ErrClosed. It does not close the database.
// It is idempotent.
func (s *PostgresSink) Close() error {
	s.closed.Store(true)
	return nil
}

// pgTableInfo returns the columns of table (by lower-case name; empty if there is no such table
// in the search_path) and its primary key columns in key order.
func pgTableInfo(ctx context.Context, q querier, table string) (map[string]pgColumn, []string, error) {
	cols := map[string]pgColumn{}
	rows, err := q.QueryContext(ctx, `SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
		WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, quoteIdent(table))
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var c pgColumn
		if err := rows.Scan(&c.name, &c.typ); err != nil {
			return nil, nil, err
		}
		cols[strings.ToLower(c.name)] = c
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	rows, err = q.QueryContext(ctx, `SELECT a.attname FROM pg_index i
		CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		WHERE i.indrelid = to_regclass($1) AND i.indisprimary ORDER BY k.n`, quoteIdent(table))
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var pk []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, nil, err
		}
		pk = append(pk, name)
	}
	return cols, pk, rows.Err()
}
