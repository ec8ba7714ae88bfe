package sinks

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mattn/go-sqlite3"
	"github.com/tidwall/gjson"

	"github.com/opengw/gateway/internal/jsonkind"
	"github.com/opengw/gateway/internal/sqlitedb"
)

var _ Sink = (*SQLiteSink)(nil)

// maxCachedStatements bounds the upsert SQL cache; records with ever-changing field sets must not
// grow it without limit.
const maxCachedStatements = 256

// SQLiteSink upserts records into one table of an SQLite database: one row per key, one column
// per mapped field, plus "_updated_at" (UTC, RFC 3339 with microseconds, sortable as text).
//
// The table is created on the first Write with the key column as its TEXT PRIMARY KEY; a record
// that brings a field the table lacks adds a column (ALTER TABLE). Columns carry no declared
// type, so strings, numbers and booleans (1/0) keep their SQLite type; nested objects and arrays
// are stored as compact JSON text. A redelivered or updated record overwrites the row with the
// same key: fields the record carries are set (null sets NULL), fields it does not carry keep
// their stored value.
//
// Permanent errors: data that is not a JSON object, field names that are not plain identifiers
// (letters, digits, _) or that clash with the key, "_updated_at" or, without a key field, "_id";
// a key field holding an object or array; constraint and type-mismatch errors (naming the record
// id); an existing table whose primary key is not the key column. All records of one Write are
// stored in one group-committed transaction, or none are.
//
// Write is safe for concurrent use.
type SQLiteSink struct {
	// Now gives the time written to _updated_at; time.Now if nil. Set it before the first Write.
	Now func() time.Time

	name  string
	table string
	key   string // key column: Config.Key or idColumn
	// keyIsField reports whether key names a mapped field (Config.Key) rather than idColumn.
	keyIsField bool
	db         *sqlitedb.DB

	mu    sync.Mutex
	ready bool              // the table is known to exist with key as its primary key
	cols  map[string]string // committed columns: lower-case name → name as created
	sqls  map[string]string // field set → upsert statement

	closed atomic.Bool
}

// NewSQLiteSink returns the sink called name that upserts into table of db, keyed by the mapped
// field key (or, if key is empty, by Record.ID in an "_id" column). table and key must be plain
// identifiers. If the table already exists, its primary key must be the key column alone;
// otherwise the table is created by the first Write. The sink does not own db: Close leaves it
// open, and the caller closes it after the sink.
func NewSQLiteSink(db *sqlitedb.DB, name, table, key string) (*SQLiteSink, error) {
	if !identRe.MatchString(table) {
		return nil, fmt.Errorf("sink %q: table %q is not a plain identifier (%s)", name, table, identRule)
	}
	if key != "" && !identRe.MatchString(key) {
		return nil, fmt.Errorf("sink %q: key %q is not a plain identifier (%s)", name, key, identRule)
	}
	if strings.EqualFold(key, updatedAtColumn) {
		return nil, fmt.Errorf("sink %q: key %q is reserved for the time of the last write", name, key)
	}
	s := &SQLiteSink{
		name:       name,
		table:      table,
		key:        key,
		keyIsField: key != "",
		db:         db,
		cols:       map[string]string{},
		sqls:       map[string]string{},
	}
	if key == "" {
		s.key = idColumn
	}
	// Fail at start-up, not at the first record, when an existing table cannot be upserted into.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cols, pk, err := tableInfo(ctx, db.Reader(), table)
	if err != nil {
		return nil, fmt.Errorf("sink %q: inspect table %s in %s: %w", name, table, db.Path(), err)
	}
	if len(cols) > 0 {
		if err := checkPrimaryKey(table, s.key, pk); err != nil {
			return nil, fmt.Errorf("sink %q: %s: %w", name, db.Path(), err)
		}
		s.cols, s.ready = cols, true
	}
	return s, nil
}

// row is a parsed record.
type row struct {
	id     string
	key    string
	fields []string // field names as in the record, key field excluded, in record order
	vals   []any
}

// Write upserts records in one transaction shared with concurrent writers (group commit). See
// SQLiteSink for what is stored and which errors are permanent.
func (s *SQLiteSink) Write(ctx context.Context, records []Record) error {
	if done, err := precheck(ctx, s.name, &s.closed, records); done {
		return err
	}
	rows := make([]row, len(records))
	need := columnList{}
	need.add(s.key)
	for i, r := range records {
		var err error
		if rows[i], err = s.parse(r); err != nil {
			return fmt.Errorf("sink %q: %w", s.name, err)
		}
		for _, f := range rows[i].fields {
			need.add(f)
		}
	}
	need.add(updatedAtColumn)
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	updatedAt := now().UTC().Format("2006-01-02T15:04:05.000000Z")

	var learned map[string]string
	err := s.db.Write(ctx, func(tx *sql.Tx) error {
		// Once running, the job finishes: the transaction is shared with other callers, and
		// cancelling a statement interrupts the whole connection, possibly theirs too.
		ctx := context.WithoutCancel(ctx)
		var err error
		if learned, err = s.ensureSchema(ctx, tx, need); err != nil {
			return err
		}
		return s.upsert(ctx, tx, rows, updatedAt)
	})
	if err != nil {
		if !errors.Is(err, ErrPermanent) {
			// The table may have been changed behind our back: look again next time.
			s.forgetSchema()
		}
		return fmt.Errorf("sink %q: write %d records to table %s: %w", s.name, len(records), s.table, err)
	}
	if learned != nil {
		s.learnSchema(learned)
	}
	return nil
}

// Close marks the sink closed; later Writes return ErrClosed. It does not close the database.
// It is idempotent.
func (s *SQLiteSink) Close() error {
	s.closed.Store(true)
	return nil
}

// parse turns a record into a row, rejecting what no retry can fix.
func (s *SQLiteSink) parse(r Record) (row, error) {
	doc, err := parseObject(r)
	if err != nil {
		return row{}, err
	}
	type field struct {
		name string
		val  gjson.Result
	}
	var fields []field
	index := map[string]int{} // lower-case name → position in fields
	var bad error
	doc.ForEach(func(k, v gjson.Result) bool {
		name := k.String()
		lower := strings.ToLower(name)
		switch {
		case !identRe.MatchString(name):
			bad = fmt.Errorf("record %s: field %q is not a plain identifier (%s)", r.ID, name, identRule)
		case lower == updatedAtColumn || (!s.keyIsField && lower == idColumn):
			bad = fmt.Errorf("record %s: field %q is reserved for a column of the sink", r.ID, name)
		}
		if bad != nil {
			return false
		}
		if i, ok := index[lower]; ok {
			if fields[i].name != name {
				// SQLite column names are case-insensitive: both would land in one column.
				bad = fmt.Errorf("record %s: fields %q and %q differ only in case", r.ID, fields[i].name, name)
				return false
			}
			fields[i].val = v // a repeated key: the last one wins, as with encoding/json
			return true
		}
		index[lower] = len(fields)
		fields = append(fields, field{name, v})
		return true
	})
	if bad != nil {
		return row{}, Permanent(bad)
	}

	out := row{id: r.ID, key: r.ID}
	keyLower := strings.ToLower(s.key)
	for _, f := range fields {
		if s.keyIsField && strings.ToLower(f.name) == keyLower {
			switch f.val.Type {
			case gjson.Null:
				// fall back to Record.ID
			case gjson.String:
				out.key = f.val.String()
			case gjson.Number, gjson.True, gjson.False:
				out.key = f.val.Raw
			default:
				return row{}, Permanent(fmt.Errorf("record %s: key field %q holds an object or array, want a string or number", r.ID, f.name))
			}
			continue
		}
		val, err := sqlValue(f.val)
		if err != nil {
			return row{}, Permanent(fmt.Errorf("record %s: field %q: %w", r.ID, f.name, err))
		}
		out.fields = append(out.fields, f.name)
		out.vals = append(out.vals, val)
	}
	if out.key == "" && r.ID == "" {
		return row{}, Permanent(fmt.Errorf("record without id: no %s value to key it by", s.key))
	}
	return out, nil
}

// sqlValue converts a JSON value to what the driver binds: NULL, int64, float64, bool (1/0),
// string, or compact JSON text for objects and arrays.
func sqlValue(v gjson.Result) (any, error) {
	switch v.Type {
	case gjson.Null:
		return nil, nil
	case gjson.True, gjson.False:
		return v.Bool(), nil
	case gjson.Number:
		// Integers stay exact; float64 would round ids above 2^53.
		if n, err := strconv.ParseInt(v.Raw, 10, 64); err == nil {
			return n, nil
		}
		return v.Float(), nil
	case gjson.String:
		return v.String(), nil
	default:
		var b bytes.Buffer
		if err := json.Compact(&b, []byte(v.Raw)); err != nil {
			return nil, err
		}
		return b.String(), nil
	}
}

// ensureSchema makes sure the table exists with every column in need. It trusts the cache of
// committed columns; on a miss it asks the transaction, which also sees columns added by earlier
// writers of the same group. It returns the columns the transaction sees, for the cache once the
// transaction has committed, or nil if the cache already had everything.
func (s *SQLiteSink) ensureSchema(ctx context.Context, tx *sql.Tx, need columnList) (map[string]string, error) {
	s.mu.Lock()
	known := s.ready
	for _, c := range need.names {
		if !known {
			break
		}
		_, known = s.cols[strings.ToLower(c)]
	}
	s.mu.Unlock()
	if known {
		return nil, nil
	}

	cols, pk, err := tableInfo(ctx, tx, s.table)
	if err != nil {
		return nil, fmt.Errorf("inspect table: %w", err)
	}
	if len(cols) == 0 {
		defs := make([]string, 0, len(need.names))
		for _, c := range need.names {
			switch c {
			case s.key:
				defs = append(defs, quoteIdent(c)+" TEXT NOT NULL PRIMARY KEY")
			case updatedAtColumn:
				defs = append(defs, quoteIdent(c)+" TEXT")
			default:
				defs = append(defs, quoteIdent(c))
			}
			cols[strings.ToLower(c)] = c
		}
		q := "CREATE TABLE " + quoteIdent(s.table) + " (" + strings.Join(defs, ", ") + ")"
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return nil, fmt.Errorf("create table: %w", err)
		}
		return cols, nil
	}
	if err := checkPrimaryKey(s.table, s.key, pk); err != nil {
		return nil, Permanent(err)
	}
	for _, c := range need.names {
		if _, ok := cols[strings.ToLower(c)]; ok {
			continue
		}
		q := "ALTER TABLE " + quoteIdent(s.table) + " ADD COLUMN " + quoteIdent(c)
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return nil, fmt.Errorf("add column %s: %w", c, err)
		}
		cols[strings.ToLower(c)] = c
	}
	return cols, nil
}

func (s *SQLiteSink) learnSchema(cols map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ready = true
	for k, v := range cols {
		s.cols[k] = v
	}
}

func (s *SQLiteSink) forgetSchema() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ready = false
	s.cols = map[string]string{}
}

// upsert stores rows, preparing one statement per distinct field set.
func (s *SQLiteSink) upsert(ctx context.Context, tx *sql.Tx, rows []row, updatedAt string) error {
	stmts := map[string]*sql.Stmt{}
	defer func() {
		for _, st := range stmts {
			st.Close()
		}
	}()
	for _, r := range rows {
		shape := strings.Join(r.fields, ",") // fields are identifiers: "," cannot be in one
		st, ok := stmts[shape]
		if !ok {
			var err error
			if st, err = tx.PrepareContext(ctx, s.upsertSQL(shape, r.fields)); err != nil {
				return fmt.Errorf("prepare upsert: %w", err)
			}
			stmts[shape] = st
		}
		args := make([]any, 0, len(r.vals)+2)
		args = append(args, r.key)
		args = append(args, r.vals...)
		args = append(args, updatedAt)
		if _, err := st.ExecContext(ctx, args...); err != nil {
			err = fmt.Errorf("record %s: %w", r.id, err)
			var se sqlite3.Error
			if errors.As(err, &se) && (se.Code == sqlite3.ErrConstraint || se.Code == sqlite3.ErrMismatch || se.Code == sqlite3.ErrTooBig) {
				return Permanent(err)
			}
			return err
		}
	}
	return nil
}

// upsertSQL is INSERT ... ON CONFLICT(key) DO UPDATE SET for one field set, cached by shape.
func (s *SQLiteSink) upsertSQL(shape string, fields []string) string {
	s.mu.Lock()
	q, ok := s.sqls[shape]
	s.mu.Unlock()
	if ok {
		return q
	}
	cols := make([]string, 0, len(fields)+2)
	cols = append(cols, quoteIdent(s.key))
	for _, f := range fields {
		cols = append(cols, quoteIdent(f))
	}
	cols = append(cols, quoteIdent(updatedAtColumn))
	sets := make([]string, 0, len(cols)-1)
	for _, c := range cols[1:] {
		sets = append(sets, c+" = excluded."+c)
	}
	q = "INSERT INTO " + quoteIdent(s.table) + " (" + strings.Join(cols, ", ") + ") VALUES (?" +
		strings.Repeat(", ?", len(cols)-1) + ") ON CONFLICT (" + cols[0] + ") DO UPDATE SET " +
		strings.Join(sets, ", ")
	s.mu.Lock()
	if len(s.sqls) >= maxCachedStatements {
		clear(s.sqls)
	}
	s.sqls[shape] = q
	s.mu.Unlock()
	return q
}

// columnList is an ordered set of column names, unique regardless of case.
type columnList struct {
	names []string
	seen  map[string]bool
}

func (l *columnList) add(name string) {
	if l.seen == nil {
		l.seen = map[string]bool{}
	}
	if lower := strings.ToLower(name); !l.seen[lower] {
		l.seen[lower] = true
		l.names = append(l.names, name)
	}
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// tableInfo returns the columns of table (lower-case name → name; empty if there is no such
// table) and its primary key columns in key order.
func tableInfo(ctx context.Context, q querier, table string) (map[string]string, []string, error) {
	rows, err := q.QueryContext(ctx, `SELECT name, pk FROM pragma_table_info(?) ORDER BY cid`, table)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	cols := map[string]string{}
	type pkCol struct {
		name string
		pos  int
	}
	var pkCols []pkCol
	for rows.Next() {
		var c pkCol
		if err := rows.Scan(&c.name, &c.pos); err != nil {
			return nil, nil, err
		}
		cols[strings.ToLower(c.name)] = c.name
		if c.pos > 0 {
			pkCols = append(pkCols, c)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	slices.SortFunc(pkCols, func(a, b pkCol) int { return a.pos - b.pos })
	pk := make([]string, len(pkCols))
	for i, c := range pkCols {
		pk[i] = c.name
	}
	return cols, pk, nil
}

// checkPrimaryKey reports whether an existing table can be upserted into by key.
func checkPrimaryKey(table, key string, pk []string) error {
	if len(pk) == 1 && strings.EqualFold(pk[0], key) {
		return nil
	}
	if len(pk) == 0 {
		return fmt.Errorf("table %s exists without a primary key; the sink upserts by %s and needs it as the primary key", table, key)
	}
	return fmt.Errorf("table %s exists with primary key (%s); the sink upserts by %s and needs it as the only primary key column",
		table, strings.Join(pk, ", "), key)
}

// quoteIdent quotes an SQL identifier. Names are checked to be plain identifiers before they get
// here; quoting still keeps keywords such as "order" usable as column names.
func quoteIdent(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// parseObject checks that r.Data is one JSON object and parses it.
func parseObject(r Record) (gjson.Result, error) {
	if !gjson.ValidBytes(r.Data) {
		return gjson.Result{}, Permanent(fmt.Errorf("record %s: data is not valid JSON", r.ID))
	}
	doc := gjson.ParseBytes(r.Data)
	if !doc.IsObject() {
		return gjson.Result{}, Permanent(fmt.Errorf("record %s: data is %s, want a JSON object", r.ID, jsonkind.Of(doc)))
	}
	return doc, nil
}
