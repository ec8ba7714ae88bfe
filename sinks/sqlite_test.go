package sinks_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opengw/gateway/internal/sqlitedb"
	"github.com/opengw/gateway/sinks"
	"github.com/opengw/gateway/sinks/sinktest"
)

func TestSQLiteSink(t *testing.T) {
	for _, key := range []string{"id", ""} {
		t.Run("key="+key, func(t *testing.T) {
			sinktest.Run(t, func(t *testing.T) sinktest.Harness {
				s, db := openSQLite(t, "records", key)
				return sinktest.Harness{
					Sink:    s,
					Stored:  func(t *testing.T) []sinktest.Row { return readTable(t, db, "records") },
					Upserts: true,
				}
			})
		})
	}
}

func TestSQLiteSinkAddsColumnsAndKeepsTypes(t *testing.T) {
	s, db := openSQLite(t, "things", "id")
	s.Now = func() time.Time { return time.Date(2024, 5, 1, 12, 0, 0, 0, time.FixedZone("x", 3600)) }
	write(t, s, sinks.Record{ClientID: "acme", ID: "m1", Data: json.RawMessage(`{"id":"a","x":1}`)})
	write(t, s, sinks.Record{ClientID: "acme", ID: "m2", Data: json.RawMessage(`{
		"id": "b", "y": "two", "nested": {"k": [1, 2]}, "flag": true, "f": 1.5,
		"big": 9007199254740993, "nul": null, "order": "a keyword"}`)})

	if got, want := columns(t, db, "things"), "_client_id,id,x,_updated_at,y,nested,flag,f,big,nul,order"; got != want {
		t.Errorf("columns = %s, want %s", got, want)
	}
	var x sql.NullInt64
	if err := db.Reader().QueryRow(`SELECT x FROM things WHERE id = 'b'`).Scan(&x); err != nil || x.Valid {
		t.Errorf("x of the record without it = %v (err %v), want NULL", x, err)
	}
	got := queryRow(t, db, `SELECT typeof(id), y, typeof(y), nested, typeof(nested), flag, typeof(flag), f, typeof(f),
		big, typeof(big), typeof(nul), "order", _updated_at FROM things WHERE id = 'b'`)
	want := "text|two|text|{\"k\":[1,2]}|text|1|integer|1.5|real|9007199254740993|integer|null|a keyword|2024-05-01T11:00:00.000000Z"
	if got != want {
		t.Errorf("row b =\n  %s\nwant\n  %s", got, want)
	}
}

func TestSQLiteSinkUpsertsByKeyFieldOrRecordID(t *testing.T) {
	s, db := openSQLite(t, "acts", "activity_id")
	write(t, s,
		sinks.Record{ClientID: "acme", ID: "m1", Data: json.RawMessage(`{"activity_id":"a1","v":1,"note":"first"}`)},
		sinks.Record{ClientID: "acme", ID: "m3", Data: json.RawMessage(`{"v":3}`)},
		sinks.Record{ClientID: "acme", ID: "m4", Data: json.RawMessage(`{"activity_id":null,"v":4}`)},
		sinks.Record{ClientID: "acme", ID: "m5", Data: json.RawMessage(`{"activity_id":42,"v":5}`)},
	)
	// Same key, other message: an update. Fields it does not carry keep their value.
	write(t, s, sinks.Record{ClientID: "acme", ID: "m2", Data: json.RawMessage(`{"activity_id":"a1","v":2}`)})
	// Same message redelivered without a key field: updates the row keyed by its Record.ID.
	write(t, s, sinks.Record{ClientID: "acme", ID: "m3", Data: json.RawMessage(`{"v":33}`)})
	// A numeric key matches its text form: the key column is TEXT.
	write(t, s, sinks.Record{ClientID: "acme", ID: "m6", Data: json.RawMessage(`{"activity_id":"42","v":6}`)})

	got := queryRows(t, db, `SELECT activity_id, typeof(activity_id), v, note FROM acts ORDER BY activity_id`)
	want := []string{"42|text|6|", "a1|text|2|first", "m3|text|33|", "m4|text|4|"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("rows =\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	if cols := columns(t, db, "acts"); cols != "_client_id,activity_id,v,note,_updated_at" {
		t.Errorf("columns = %s", cols)
	}
}

func TestSQLiteSinkWithoutKeyUsesIDColumn(t *testing.T) {
	s, db := openSQLite(t, "plain", "")
	write(t, s, sinks.Record{ClientID: "acme", ID: "m1", Data: json.RawMessage(`{"id":"x","v":1}`)})
	write(t, s, sinks.Record{ClientID: "acme", ID: "m1", Data: json.RawMessage(`{"id":"x","v":2}`)})
	write(t, s, sinks.Record{ClientID: "acme", ID: "m2", Data: json.RawMessage(`{"id":"x","v":3}`)})
	got := queryRows(t, db, `SELECT _id, id, v FROM plain ORDER BY _id`)
	if want := "m1|x|2,m2|x|3"; strings.Join(got, ",") != want {
		t.Errorf("rows = %v, want %s", got, want)
	}
}

func TestSQLiteSinkRejectsWhatNoRetryFixes(t *testing.T) {
	tests := []struct {
		name string
		key  string
		data string
		want string
	}{
		{"field not an identifier", "id", `{"id":"a","bad-name":1}`, `record m1: field "bad-name" is not a plain identifier`},
		{"field with a space", "id", `{"id":"a","a b":1}`, `field "a b" is not a plain identifier`},
		{"quote in field", "id", `{"id":"a","x\"; DROP TABLE t; --":1}`, `is not a plain identifier`},
		{"reserved updated_at", "id", `{"id":"a","_updated_at":"x"}`, `record m1: field "_updated_at" is reserved`},
		{"reserved _id without key", "", `{"_id":"a"}`, `record m1: field "_id" is reserved`},
		{"fields differing in case", "id", `{"id":"a","Name":"x","name":"y"}`, `record m1: fields "Name" and "name" differ only in case`},
		{"key holds an object", "id", `{"id":{"a":1}}`, `record m1: key field "id" holds an object or array`},
		{"data is an array", "id", `[{"id":"a"}]`, `record m1: data is an array, want a JSON object`},
		{"data is not JSON", "id", `{"id":`, `record m1: data is not valid JSON`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, db := openSQLite(t, "t", tt.key)
			err := s.Write(context.Background(), []sinks.Record{
				{ClientID: "acme", ID: "m0", Data: json.RawMessage(`{"id":"ok"}`)},
				{ClientID: "acme", ID: "m1", Data: json.RawMessage(tt.data)},
			})
			if !errors.Is(err, sinks.ErrPermanent) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v; want a permanent error containing %q", err, tt.want)
			}
			if rows := readTable(t, db, "t"); len(rows) != 0 {
				t.Errorf("stored %s; want nothing from a rejected batch", rows)
			}
		})
	}
}

func TestSQLiteSinkConstraintErrorIsPermanentAndNamesRecord(t *testing.T) {
	db := openDB(t)
	if _, err := db.Exec(context.Background(), `CREATE TABLE checked (_client_id TEXT, id TEXT, v INTEGER CHECK (v > 0), _updated_at TEXT,
		PRIMARY KEY (_client_id, id))`); err != nil {
		t.Fatal(err)
	}
	s := newSQLite(t, db, "checked", "id")
	err := s.Write(context.Background(), []sinks.Record{
		{ClientID: "acme", ID: "m1", Data: json.RawMessage(`{"id":"a","v":1}`)},
		{ClientID: "acme", ID: "m2", Data: json.RawMessage(`{"id":"b","v":-1}`)},
		{ClientID: "acme", ID: "m3", Data: json.RawMessage(`{"id":"c","v":3}`)},
	})
	if !errors.Is(err, sinks.ErrPermanent) || !strings.Contains(err.Error(), "record m2: CHECK constraint failed") {
		t.Fatalf("err = %v; want a permanent error naming record m2", err)
	}
	if rows := readTable(t, db, "checked"); len(rows) != 0 {
		t.Errorf("stored %s; the failed batch must store nothing", rows)
	}
}

func TestSQLiteSinkRefusesTableWithOtherPrimaryKey(t *testing.T) {
	db := openDB(t)
	if _, err := db.Exec(context.Background(), `CREATE TABLE other (n INTEGER PRIMARY KEY, id TEXT)`); err != nil {
		t.Fatal(err)
	}
	_, err := sinks.NewSQLiteSink(db, "s", "other", "id")
	if err == nil || !strings.Contains(err.Error(), "table other exists with primary key (n); the sink upserts by (_client_id, id)") {
		t.Fatalf("err = %v", err)
	}
}

// legacyTable creates the table today's code made before clients were isolated (primary key:
// the key column alone), as CREATE TABLE and ALTER TABLE ADD COLUMN left it, with rows.
func legacyTable(t *testing.T, db *sqlitedb.DB) {
	t.Helper()
	for _, q := range []string{
		`CREATE TABLE "acts" ("activity_id" TEXT NOT NULL PRIMARY KEY, "v", "_updated_at" TEXT)`,
		`ALTER TABLE "acts" ADD COLUMN "note"`,
		`INSERT INTO acts VALUES ('a1', 1, '2024-01-01T00:00:00.000000Z', 'old'), ('a2', 2.5, '2024-01-01T00:00:00.000000Z', NULL)`,
	} {
		if _, err := db.Exec(context.Background(), q); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSQLiteSinkMigratesTableKeyedByKeyAlone(t *testing.T) {
	db := openDB(t)
	legacyTable(t, db)
	for _, q := range []string{
		`CREATE INDEX acts_note ON acts (note)`,
		`CREATE VIEW notes AS SELECT activity_id, note FROM acts`,
		`CREATE TABLE audit (activity_id TEXT)`,
		`CREATE TRIGGER acts_audit AFTER INSERT ON acts BEGIN INSERT INTO audit VALUES (new.activity_id); END`,
	} {
		if _, err := db.Exec(context.Background(), q); err != nil {
			t.Fatal(err)
		}
	}
	s := newSQLite(t, db, "acts", "activity_id")

	if got := columns(t, db, "acts"); got != "_client_id,activity_id,v,_updated_at,note" {
		t.Errorf("columns = %s", got)
	}
	if got := queryRows(t, db, `SELECT name FROM pragma_table_info('acts') WHERE pk > 0 ORDER BY pk`); strings.Join(got, ",") != "_client_id,activity_id" {
		t.Errorf("primary key = %v", got)
	}
	// The old rows are kept, with their types, under the client id "".
	got := queryRows(t, db, `SELECT quote(_client_id), activity_id, v, typeof(v), note FROM acts ORDER BY activity_id`)
	if want := "''|a1|1|integer|old,''|a2|2.5|real|"; strings.Join(got, ",") != want {
		t.Errorf("rows = %v, want %s", got, want)
	}
	// Index, trigger and view still work.
	if got := queryRows(t, db, `SELECT name FROM sqlite_master WHERE tbl_name = 'acts' AND type IN ('index', 'trigger') AND sql IS NOT NULL ORDER BY name`); strings.Join(got, ",") != "acts_audit,acts_note" {
		t.Errorf("indexes and triggers = %v", got)
	}
	write(t, s,
		sinks.Record{ClientID: "demo", ID: "m1", Data: json.RawMessage(`{"activity_id":"a1","v":10}`)},
		sinks.Record{ClientID: "other", ID: "m2", Data: json.RawMessage(`{"activity_id":"a1","v":20}`)},
	)
	if got := queryRows(t, db, `SELECT activity_id, note FROM notes ORDER BY activity_id, note`); strings.Join(got, ",") != "a1|,a1|,a1|old,a2|" {
		t.Errorf("view rows = %v", got)
	}
	got = queryRows(t, db, `SELECT _client_id, activity_id, v FROM acts WHERE activity_id = 'a1' ORDER BY _client_id`)
	if want := "|a1|1,demo|a1|10,other|a1|20"; strings.Join(got, ",") != want {
		t.Errorf("rows of a1 = %v, want %s", got, want)
	}
	if got := queryRow(t, db, `SELECT count(*) FROM audit`); got != "2" {
		t.Errorf("trigger fired %s times, want 2", got)
	}
	if got := queryRow(t, db, `PRAGMA legacy_alter_table`); got != "0" {
		t.Errorf("legacy_alter_table left at %s", got)
	}

	// A second start finds the migrated table as it is.
	s.Close()
	newSQLite(t, db, "acts", "activity_id")
	if got := queryRow(t, db, `SELECT count(*) FROM acts`); got != "4" {
		t.Errorf("rows after a second start = %s, want 4", got)
	}
}

func TestSQLiteSinkRefusesToMigrateWhatItWouldLose(t *testing.T) {
	db := openDB(t)
	if _, err := db.Exec(context.Background(), `CREATE TABLE acts ("activity_id" TEXT PRIMARY KEY, "check" INTEGER CHECK ("check" > 0), note TEXT DEFAULT 'as is')`); err != nil {
		t.Fatal(err)
	}
	_, err := sinks.NewSQLiteSink(db, "s", "acts", "activity_id")
	if err == nil || !strings.Contains(err.Error(), "migrate table acts to a primary key of (_client_id, activity_id): its definition has CHECK") {
		t.Fatalf("err = %v", err)
	}
	if got := columns(t, db, "acts"); got != "activity_id,check,note" {
		t.Errorf("columns = %s; the table must be left as it was", got)
	}
}

func TestSQLiteSinkConcurrentWritersAddingColumns(t *testing.T) {
	s, db := openSQLite(t, "wide", "id")
	const n = 40
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data := fmt.Sprintf(`{"id":"r%d","shared_new":%d,"own_%d":true}`, i, i, i%5)
			errs[i] = s.Write(context.Background(), []sinks.Record{{ClientID: "acme", ID: fmt.Sprint(i), Data: json.RawMessage(data)}})
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if got := queryRow(t, db, `SELECT count(*), count(shared_new), count(own_0) + count(own_4) FROM wide`); got != "40|40|16" {
		t.Errorf("counts = %s", got)
	}
}

func TestSQLiteSinkRecoversWhenTableIsDropped(t *testing.T) {
	s, db := openSQLite(t, "gone", "id")
	write(t, s, sinks.Record{ClientID: "acme", ID: "m1", Data: json.RawMessage(`{"id":"a"}`)})
	if _, err := db.Exec(context.Background(), `DROP TABLE gone`); err != nil {
		t.Fatal(err)
	}
	rec := sinks.Record{ClientID: "acme", ID: "m2", Data: json.RawMessage(`{"id":"b"}`)}
	if err := s.Write(context.Background(), []sinks.Record{rec}); err != nil && errors.Is(err, sinks.ErrPermanent) {
		t.Fatalf("write to a dropped table: %v is permanent", err)
	}
	write(t, s, rec) // the retry
	if got := queryRows(t, db, `SELECT id FROM gone`); strings.Join(got, ",") != "b" {
		t.Errorf("rows = %v", got)
	}
}

// openDB opens a fresh database in a temporary directory.
func openDB(t *testing.T) *sqlitedb.DB {
	t.Helper()
	db, err := sqlitedb.Open(filepath.Join(t.TempDir(), "sinks.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func newSQLite(t *testing.T, db *sqlitedb.DB, table, key string) *sinks.SQLiteSink {
	t.Helper()
	s, err := sinks.NewSQLiteSink(db, "test", table, key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func openSQLite(t *testing.T, table, key string) (*sinks.SQLiteSink, *sqlitedb.DB) {
	t.Helper()
	db := openDB(t)
	return newSQLite(t, db, table, key), db
}

func write(t *testing.T, s sinks.Sink, recs ...sinks.Record) {
	t.Helper()
	if err := s.Write(context.Background(), recs); err != nil {
		t.Fatalf("Write: %v", err)
	}
}

// readTable returns the rows of table: their _client_id, and JSON objects of their data
// columns (_updated_at and _id left out, NULLs omitted). A missing table holds nothing.
func readTable(t *testing.T, db *sqlitedb.DB, table string) []sinktest.Row {
	t.Helper()
	var n int
	if err := db.Reader().QueryRow(`SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?`, table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		return nil
	}
	rows, err := db.Reader().Query(`SELECT * FROM "` + table + `"`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	var out []sinktest.Row
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		obj := map[string]any{}
		var client string
		for i, c := range cols {
			if b, ok := vals[i].([]byte); ok {
				vals[i] = string(b)
			}
			switch {
			case c == sinks.ClientField:
				client = vals[i].(string)
			case c == "_updated_at" || c == "_id" || vals[i] == nil:
			default:
				obj[c] = vals[i]
			}
		}
		b, err := json.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, sinktest.Row{Client: client, Data: b})
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func columns(t *testing.T, db *sqlitedb.DB, table string) string {
	t.Helper()
	return strings.Join(queryRows(t, db, `SELECT name FROM pragma_table_info('`+table+`') ORDER BY cid`), ",")
}

func queryRow(t *testing.T, db *sqlitedb.DB, q string) string {
	t.Helper()
	rows := queryRows(t, db, q)
	if len(rows) != 1 {
		t.Fatalf("%s: %d rows", q, len(rows))
	}
	return rows[0]
}

// queryRows returns each row's values joined by "|" (NULL as empty).
func queryRows(t *testing.T, db *sqlitedb.DB, q string) []string {
	t.Helper()
	rows, err := db.Reader().Query(q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		parts := make([]string, len(vals))
		for i, v := range vals {
			parts[i] = v.String
		}
		out = append(out, strings.Join(parts, "|"))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// BenchmarkSQLiteSinkWrite is BenchmarkPostgresSinkWrite's twin, for comparison.
func BenchmarkSQLiteSinkWrite(b *testing.B) {
	db, err := sqlitedb.Open(filepath.Join(b.TempDir(), "sinks.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	s, err := sinks.NewSQLiteSink(db, "bench", "activities", "activity_id")
	if err != nil {
		b.Fatal(err)
	}
	benchWrite(b, s)
}
