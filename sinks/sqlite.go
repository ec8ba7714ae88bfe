package sinks

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mattn/go-sqlite3"
	"github.com/tidwall/gjson"

	"github.com/opengw/gateway/internal/sqlitedb"
)

var _ Sink = (*SQLiteSink)(nil)

// maxCachedStatements bounds the upsert SQL cache; records with ever-changing field sets must not
// grow it without limit.
const maxCachedStatements = 256

// SQLiteSink upserts records into one table of an SQLite database: one row per client and key,
// one column per mapped field, plus "_client_id" (Record.ClientID) and "_updated_at" (UTC,
// RFC 3339 with microseconds, sortable as text).
//
// The table is created on the first Write with the primary key (_client_id, key column), both
// TEXT; a record that brings a field the table lacks adds a column (ALTER TABLE). Columns carry
// no declared type, so strings, numbers and booleans (1/0) keep their SQLite type; nested objects
// and arrays are stored as compact JSON text. A redelivered or updated record overwrites the row
// of the same client and key: fields the record carries are set (null sets NULL), fields it does
// not carry keep their stored value. Records of different clients never touch each other's rows,
// whatever keys they bring.
//
// A table made before clients were isolated (primary key: the key column alone) is migrated when
// the sink is created: rebuilt with the _client_id column and the two-column primary key in one
// transaction, its indexes and triggers recreated. Its rows get the client id "" (the empty
// string, which no client has): the gateway cannot tell which client wrote them, so a later
// write of the same key by a client creates that client's own row beside the old one.
//
// Permanent errors: a record without a client id; data that is not a JSON object or that
// carries a "_client_id" field; field names that are not plain identifiers (letters, digits, _) or that clash with the
// key, "_updated_at" or, without a key field, "_id"; a key field holding an object or array;
// constraint and type-mismatch errors (naming the record id); an existing table whose primary key
// is neither (_client_id, key column) nor the key column alone. All records of one Write are
// stored in one group-committed transaction, or none are.
//
// Write is safe for concurrent use.
type SQLiteSink struct {
	// Now gives the time written to _updated_at; time.Now if nil. Set it before the first Write.
	Now func() time.Time

	name string
	tableShape
	db *sqlitedb.DB

	mu    sync.Mutex
	ready bool              // the table is known to exist with the right primary key
	cols  map[string]string // committed columns: lower-case name → name as created
	sqls  map[string]string // field set → upsert statement

	closed atomic.Bool
}

// NewSQLiteSink returns the sink called name that upserts into table of db, keyed by the client
// and the mapped field key (or, if key is empty, by Record.ID in an "_id" column). table and key
// must be plain identifiers. If the table already exists, its primary key must be (_client_id,
// key column), or the key column alone, in which case the table is migrated (see SQLiteSink);
// otherwise the table is created by the first Write. The sink does not own db: Close leaves it
// open, and the caller closes it after the sink.
func NewSQLiteSink(db *sqlitedb.DB, name, table, key string) (*SQLiteSink, error) {
	cfg := Config{Type: TypeSQLite, Table: table, Key: key}
	if err := cfg.Validate(name); err != nil {
		return nil, err
	}
	s := &SQLiteSink{
		name:       name,
		tableShape: newTableShape(table, key),
		db:         db,
		cols:       map[string]string{},
		sqls:       map[string]string{},
	}
	// Fail at start-up, not at the first record, when an existing table cannot be upserted into.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cols, pk, err := sqliteTableInfo(ctx, db.Reader(), table)
	if err != nil {
		return nil, fmt.Errorf("sink %q: inspect table %s in %s: %w", name, table, db.Path(), err)
	}
	if len(cols) == 0 {
		return s, nil
	}
	if len(pk) == 1 && strings.EqualFold(pk[0], s.key) && cols[ClientField] == "" {
		// No deadline: copying a big table takes as long as it takes, once.
		err := db.Write(context.Background(), func(tx *sql.Tx) error {
			var err error
			cols, err = s.migrate(context.Background(), tx)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("sink %q: %s: migrate table %s to a primary key of (%s, %s): %w", name, db.Path(), table, ClientField, s.key, err)
		}
	} else if err := s.checkPrimaryKey(pk); err != nil {
		return nil, fmt.Errorf("sink %q: %s: %w", name, db.Path(), err)
	}
	s.cols, s.ready = cols, true
	return s, nil
}

// migrate rebuilds a table keyed by the key column alone with ClientField (set to "" in every
// existing row) and the primary key (ClientField, key), following SQLite's recipe for schema
// changes ALTER TABLE cannot make: create the new table, copy, drop the old one, rename, then
// recreate the old table's indexes and triggers (views name the table and keep working). The
// columns keep their names, declared types, NOT NULL and defaults; a table with more than that
// (CHECK, UNIQUE, foreign keys, ...) is refused rather than rebuilt without it. It returns the
// new table's columns.
func (s *SQLiteSink) migrate(ctx context.Context, tx *sql.Tx) (map[string]string, error) {
	var create string
	if err := tx.QueryRowContext(ctx, `SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?`, s.table).Scan(&create); err != nil {
		return nil, fmt.Errorf("read the table's definition: %w", err)
	}
	if m := unmigratable.FindString(quotedSQL.ReplaceAllString(create, "")); m != "" {
		return nil, fmt.Errorf("its definition has %s, which the migration would not keep; migrate it by hand (create it anew with the primary key (%s, %s) and copy the rows, %s = '')",
			strings.ToUpper(m), ClientField, s.key, ClientField)
	}
	rows, err := tx.QueryContext(ctx, `SELECT name, type, "notnull", dflt_value FROM pragma_table_info(?) ORDER BY cid`, s.table)
	if err != nil {
		return nil, err
	}
	defs := []string{quoteIdent(ClientField) + " TEXT NOT NULL"}
	names := []string{}
	cols := map[string]string{strings.ToLower(ClientField): ClientField}
	for rows.Next() {
		var name, typ string
		var notNull bool
		var dflt sql.NullString
		if err := rows.Scan(&name, &typ, &notNull, &dflt); err != nil {
			rows.Close()
			return nil, err
		}
		def := quoteIdent(name)
		if typ != "" {
			def += " " + typ
		}
		if notNull {
			def += " NOT NULL"
		}
		if dflt.Valid {
			def += " DEFAULT " + dflt.String
		}
		defs = append(defs, def)
		names = append(names, quoteIdent(name))
		cols[strings.ToLower(name)] = name
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var recreate []string
	rows, err = tx.QueryContext(ctx, `SELECT sql FROM sqlite_master WHERE tbl_name = ? AND type IN ('index', 'trigger') AND sql IS NOT NULL ORDER BY type, name`, s.table)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var q string
		if err := rows.Scan(&q); err != nil {
			rows.Close()
			return nil, err
		}
		recreate = append(recreate, q)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}

	// The legacy rename leaves views alone; the modern one refuses to run while a view names
	// the table just dropped. The setting belongs to the connection, not the transaction: it is
	// switched back whatever happens.
	if _, err := tx.ExecContext(ctx, `PRAGMA legacy_alter_table = ON`); err != nil {
		return nil, err
	}
	defer tx.ExecContext(ctx, `PRAGMA legacy_alter_table = OFF`)
	tmp := s.table + "__client_migration"
	list := strings.Join(names, ", ")
	steps := []string{
		"CREATE TABLE " + quoteIdent(tmp) + " (" + strings.Join(defs, ", ") +
			", PRIMARY KEY (" + quoteIdent(ClientField) + ", " + quoteIdent(s.key) + "))",
		"INSERT INTO " + quoteIdent(tmp) + " (" + quoteIdent(ClientField) + ", " + list + ") SELECT '', " + list + " FROM " + quoteIdent(s.table),
		"DROP TABLE " + quoteIdent(s.table),
		"ALTER TABLE " + quoteIdent(tmp) + " RENAME TO " + quoteIdent(s.table),
	}
	for _, q := range append(steps, recreate...) {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return nil, fmt.Errorf("%s: %w", q, err)
		}
	}
	return cols, nil
}

// quotedSQL matches quoted identifiers and string literals, whose contents are not SQL.
var quotedSQL = regexp.MustCompile("\"(?:[^\"]|\"\")*\"|'(?:[^']|'')*'|`[^`]*`|\\[[^\\]]*\\]")

// unmigratable matches what a table definition may hold beyond names, declared types, NOT NULL,
// DEFAULT and the primary key: things the rebuild from pragma_table_info would lose.
var unmigratable = regexp.MustCompile(`(?i)\b(check|references|unique|collate|generated|as|constraint|without|strict|autoincrement|conflict)\b`)

// Write upserts records in one transaction shared with concurrent writers (group commit). See
// SQLiteSink for what is stored and which errors are permanent.
func (s *SQLiteSink) Write(ctx context.Context, records []Record) error {
	if done, err := precheck(ctx, s.name, &s.closed, records); done {
		return err
	}
	rows := make([]row, len(records))
	need := columnList{}
	need.add(ClientField)
	need.add(s.key)
	for i, r := range records {
		var err error
		if rows[i], err = s.parse(r, 0); err != nil {
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

	cols, pk, err := sqliteTableInfo(ctx, tx, s.table)
	if err != nil {
		return nil, fmt.Errorf("inspect table: %w", err)
	}
	if len(cols) == 0 {
		defs := make([]string, 0, len(need.names)+1)
		for _, c := range need.names {
			switch c {
			case ClientField, s.key:
				defs = append(defs, quoteIdent(c)+" TEXT NOT NULL")
			case updatedAtColumn:
				defs = append(defs, quoteIdent(c)+" TEXT")
			default:
				defs = append(defs, quoteIdent(c))
			}
			cols[strings.ToLower(c)] = c
		}
		defs = append(defs, "PRIMARY KEY ("+quoteIdent(ClientField)+", "+quoteIdent(s.key)+")")
		q := "CREATE TABLE " + quoteIdent(s.table) + " (" + strings.Join(defs, ", ") + ")"
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return nil, fmt.Errorf("create table: %w", err)
		}
		return cols, nil
	}
	if err := s.checkPrimaryKey(pk); err != nil {
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
		args := make([]any, 0, len(r.vals)+3)
		args = append(args, r.client, r.key)
		for i, v := range r.vals {
			val, err := sqlValue(v)
			if err != nil {
				return Permanent(fmt.Errorf("record %s: field %q: %w", r.id, r.fields[i], err))
			}
			args = append(args, val)
		}
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

// upsertSQL is INSERT ... ON CONFLICT (client, key) DO UPDATE SET for one field set, cached by
// shape.
func (s *SQLiteSink) upsertSQL(shape string, fields []string) string {
	s.mu.Lock()
	q, ok := s.sqls[shape]
	s.mu.Unlock()
	if ok {
		return q
	}
	cols := make([]string, 0, len(fields)+3)
	cols = append(cols, quoteIdent(ClientField), quoteIdent(s.key))
	for _, f := range fields {
		cols = append(cols, quoteIdent(f))
	}
	cols = append(cols, quoteIdent(updatedAtColumn))
	sets := make([]string, 0, len(cols)-2)
	for _, c := range cols[2:] {
		sets = append(sets, c+" = excluded."+c)
	}
	q = "INSERT INTO " + quoteIdent(s.table) + " (" + strings.Join(cols, ", ") + ") VALUES (?" +
		strings.Repeat(", ?", len(cols)-1) + ") ON CONFLICT (" + cols[0] + ", " + cols[1] + ") DO UPDATE SET " +
		strings.Join(sets, ", ")
	s.mu.Lock()
	if len(s.sqls) >= maxCachedStatements {
		clear(s.sqls)
	}
	s.sqls[shape] = q
	s.mu.Unlock()
	return q
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// sqliteTableInfo returns the columns of table (lower-case name → name; empty if there is no such
// table) and its primary key columns in key order.
func sqliteTableInfo(ctx context.Context, q querier, table string) (map[string]string, []string, error) {
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
