package sinks_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opengw/gateway/internal/pgtest"
	"github.com/opengw/gateway/sinks"
	"github.com/opengw/gateway/sinks/sinktest"
)

func TestPostgresSink(t *testing.T) {
	for _, key := range []string{"id", ""} {
		t.Run("key="+key, func(t *testing.T) {
			sinktest.Run(t, func(t *testing.T) sinktest.Harness {
				db, _ := pgtest.Open(t)
				return sinktest.Harness{
					Sink:    newPostgres(t, db, "records", key),
					Stored:  func(t *testing.T) []sinktest.Row { return readPGTable(t, db, "records") },
					Upserts: true,
				}
			})
		})
	}
}

func TestPostgresSinkCreatesTypedColumns(t *testing.T) {
	db, _ := pgtest.Open(t)
	s := newPostgres(t, db, "things", "id")
	s.Now = func() time.Time { return time.Date(2024, 5, 1, 12, 0, 0, 0, time.FixedZone("x", 3600)) }
	write(t, s, sinks.Record{ClientID: "acme", ID: "m1", Data: json.RawMessage(`{"id":"a","x":1}`)})
	write(t, s, sinks.Record{ClientID: "acme", ID: "m2", Data: json.RawMessage(`{
		"id": "b", "y": "two", "nested": {"k": [1, 2]}, "flag": true, "f": 1.5,
		"big": 9007199254740993, "nul": null, "order": "a keyword", "mixed": 1}`)},
		sinks.Record{ClientID: "acme", ID: "m3", Data: json.RawMessage(`{"id": "c", "mixed": "one", "list": [1]}`)},
	)
	want := "_client_id text,id text,x numeric,_updated_at timestamp with time zone,y text,nested jsonb,flag boolean,f numeric," +
		"big numeric,nul text,order text,mixed text,list jsonb"
	if got := strings.Join(pgRows(t, db, `SELECT attname || ' ' || format_type(atttypid, atttypmod) FROM pg_attribute
		WHERE attrelid = 'things'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`), ","); got != want {
		t.Errorf("columns =\n  %s\nwant\n  %s", got, want)
	}
	// concat_ws skips NULLs.
	got := pgRows(t, db, `SELECT concat_ws('|', id, x, y, nested, flag, f, big, nul, "order", mixed, list, _updated_at AT TIME ZONE 'UTC') FROM things ORDER BY id`)
	wantRows := []string{
		"a|1|2024-05-01 11:00:00",
		`b|two|{"k": [1, 2]}|t|1.5|9007199254740993|a keyword|1|2024-05-01 11:00:00`,
		"c|one|[1]|2024-05-01 11:00:00",
	}
	if strings.Join(got, "\n") != strings.Join(wantRows, "\n") {
		t.Errorf("rows =\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(wantRows, "\n  "))
	}
}

func TestPostgresSinkUpsertsByKeyFieldOrRecordID(t *testing.T) {
	db, _ := pgtest.Open(t)
	s := newPostgres(t, db, "acts", "activity_id")
	write(t, s,
		sinks.Record{ClientID: "acme", ID: "m1", Data: json.RawMessage(`{"activity_id":"a1","v":1,"note":"first"}`)},
		sinks.Record{ClientID: "acme", ID: "m3", Data: json.RawMessage(`{"v":3}`)},
		sinks.Record{ClientID: "acme", ID: "m4", Data: json.RawMessage(`{"activity_id":null,"v":4}`)},
		sinks.Record{ClientID: "acme", ID: "m5", Data: json.RawMessage(`{"activity_id":42,"v":5}`)},
	)
	write(t, s, sinks.Record{ClientID: "acme", ID: "m2", Data: json.RawMessage(`{"activity_id":"a1","v":2}`)})
	write(t, s, sinks.Record{ClientID: "acme", ID: "m3", Data: json.RawMessage(`{"v":33}`)})
	write(t, s, sinks.Record{ClientID: "acme", ID: "m6", Data: json.RawMessage(`{"activity_id":"42","v":6}`)})
	got := pgRows(t, db, `SELECT concat_ws('|', activity_id, v, coalesce(note, '')) FROM acts ORDER BY activity_id`)
	if want := "42|6|,a1|2|first,m3|33|,m4|4|"; strings.Join(got, ",") != want {
		t.Errorf("rows = %v, want %s", got, want)
	}
}

// TestPostgresSinkMergesRepeatsWithinAWrite: one statement cannot upsert a row twice; the sink
// merges a client's repeated key in order, as successive writes would.
func TestPostgresSinkMergesRepeatsWithinAWrite(t *testing.T) {
	db, _ := pgtest.Open(t)
	s := newPostgres(t, db, "acts", "activity_id")
	write(t, s,
		sinks.Record{ClientID: "acme", ID: "m1", Data: json.RawMessage(`{"activity_id":"a1","v":1,"note":"first"}`)},
		sinks.Record{ClientID: "other", ID: "m2", Data: json.RawMessage(`{"activity_id":"a1","v":100}`)},
		sinks.Record{ClientID: "acme", ID: "m3", Data: json.RawMessage(`{"activity_id":"a1","v":2,"extra":true}`)},
	)
	got := pgRows(t, db, `SELECT concat_ws('|', _client_id, activity_id, v, coalesce(note, '-'), coalesce(extra::text, '-')) FROM acts ORDER BY _client_id`)
	if want := "acme|a1|2|first|true,other|a1|100|-|-"; strings.Join(got, ",") != want {
		t.Errorf("rows = %v, want %s", got, want)
	}
}

func TestPostgresSinkPermanentErrors(t *testing.T) {
	tests := []struct {
		name string
		data string
		want string
	}{
		{"field not an identifier", `{"id":"a","bad-name":1}`, `record m1: field "bad-name" is not a plain identifier`},
		{"reserved updated_at", `{"id":"a","_updated_at":"x"}`, `record m1: field "_updated_at" is reserved`},
		{"fields differing in case", `{"id":"a","Name":"x","name":"y"}`, `record m1: fields "Name" and "name" differ only in case`},
		{"field name too long", `{"id":"a","` + strings.Repeat("x", 64) + `":1}`, `is longer than 63 bytes`},
		{"value the column cannot take", `{"id":"a","n":"not a number"}`, `record m1: ERROR: invalid input syntax for type numeric: "not a number" (SQLSTATE 22P02)`},
		{"NUL in text", `{"id":"a","s":"\u0000"}`, `SQLSTATE 22P05`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, _ := pgtest.Open(t)
			s := newPostgres(t, db, "t", "id")
			write(t, s, sinks.Record{ClientID: "acme", ID: "m0", Data: json.RawMessage(`{"id":"first","n":1,"s":"x"}`)})
			err := s.Write(context.Background(), []sinks.Record{{ClientID: "acme", ID: "m1", Data: json.RawMessage(tt.data)}})
			if !errors.Is(err, sinks.ErrPermanent) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v; want a permanent error containing %q", err, tt.want)
			}
			if got := pgRows(t, db, `SELECT id FROM t`); strings.Join(got, ",") != "first" {
				t.Errorf("rows = %v; want only the first record", got)
			}
		})
	}
}

func TestPostgresSinkBatchIsAllOrNothing(t *testing.T) {
	db, _ := pgtest.Open(t)
	s := newPostgres(t, db, "t", "id")
	write(t, s, sinks.Record{ClientID: "acme", ID: "m0", Data: json.RawMessage(`{"id":"first","n":1}`)})
	// Two field sets (two statements), the second failing.
	err := s.Write(context.Background(), []sinks.Record{
		{ClientID: "acme", ID: "m1", Data: json.RawMessage(`{"id":"a","n":2}`)},
		{ClientID: "acme", ID: "m2", Data: json.RawMessage(`{"id":"b","other":"x"}`)},
		{ClientID: "acme", ID: "m3", Data: json.RawMessage(`{"id":"c","other":"y","n":"NaN?"}`)},
	})
	if !errors.Is(err, sinks.ErrPermanent) || !strings.Contains(err.Error(), `write 3 records to table t`) {
		t.Fatalf("err = %v; want a permanent error", err)
	}
	if got := pgRows(t, db, `SELECT id FROM t`); strings.Join(got, ",") != "first" {
		t.Errorf("rows = %v; the failed batch must store nothing", got)
	}
}

func TestPostgresSinkUsesExistingTableAndItsTypes(t *testing.T) {
	db, _ := pgtest.Open(t)
	if _, err := db.Exec(`CREATE TABLE payments (_client_id text, "Payment_UUID" text, amount numeric(10,2), paid_at timestamptz, status varchar(20),
		PRIMARY KEY (_client_id, "Payment_UUID"))`); err != nil {
		t.Fatal(err)
	}
	s := newPostgres(t, db, "payments", "payment_uuid") // matched regardless of case
	write(t, s, sinks.Record{ClientID: "acme", ID: "m1", Data: json.RawMessage(
		`{"payment_uuid":"p1","AMOUNT":12.345,"paid_at":"2020-05-19T02:15:00-05:00","status":"paid"}`)})
	got := pgRows(t, db, `SELECT concat_ws('|', "Payment_UUID", amount, paid_at AT TIME ZONE 'UTC', status, _updated_at IS NOT NULL) FROM payments`)
	if want := "p1|12.35|2020-05-19 07:15:00|paid|t"; strings.Join(got, ",") != want {
		t.Errorf("rows = %v, want %s", got, want)
	}
	err := s.Write(context.Background(), []sinks.Record{{ClientID: "acme", ID: "m2", Data: json.RawMessage(`{"payment_uuid":"p2","status":"` + strings.Repeat("x", 21) + `"}`)}})
	if !errors.Is(err, sinks.ErrPermanent) || !strings.Contains(err.Error(), "record m2") {
		t.Errorf("too long for varchar(20): %v; want a permanent error naming m2", err)
	}
}

func TestPostgresSinkRefusesTableWithOtherPrimaryKey(t *testing.T) {
	db, _ := pgtest.Open(t)
	if _, err := db.Exec(`CREATE TABLE other (id text PRIMARY KEY, v int)`); err != nil {
		t.Fatal(err)
	}
	_, err := sinks.NewPostgresSink(db, "s", "other", "id")
	if err == nil || !strings.Contains(err.Error(), "table other exists with primary key (id); the sink upserts by (_client_id, id)") {
		t.Fatalf("err = %v", err)
	}
}

func TestPostgresSinkRecoversWhenTableIsDropped(t *testing.T) {
	db, _ := pgtest.Open(t)
	s := newPostgres(t, db, "gone", "id")
	write(t, s, sinks.Record{ClientID: "acme", ID: "m1", Data: json.RawMessage(`{"id":"a"}`)})
	if _, err := db.Exec(`DROP TABLE gone`); err != nil {
		t.Fatal(err)
	}
	rec := sinks.Record{ClientID: "acme", ID: "m2", Data: json.RawMessage(`{"id":"b"}`)}
	if err := s.Write(context.Background(), []sinks.Record{rec}); err == nil || errors.Is(err, sinks.ErrPermanent) {
		t.Fatalf("write to a dropped table: %v; want a retryable error", err)
	}
	write(t, s, rec) // the retry
	if got := pgRows(t, db, `SELECT id FROM gone`); strings.Join(got, ",") != "b" {
		t.Errorf("rows = %v", got)
	}
}

// TestPostgresSinkNodesAddingColumnsTogether: sinks of several gateway nodes (separate pools,
// separate schema caches) create the table and add the same columns at once.
func TestPostgresSinkNodesAddingColumnsTogether(t *testing.T) {
	_, url := pgtest.Open(t)
	const nodes, writes = 3, 12
	sinksOf := make([]*sinks.PostgresSink, nodes)
	for i := range sinksOf {
		db, err := sql.Open("pgx", url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		sinksOf[i] = newPostgres(t, db, "wide", "id")
	}
	var wg sync.WaitGroup
	errs := make([]error, nodes*writes)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data := fmt.Sprintf(`{"id":"r%d","shared_new":%d,"own_%d":true}`, i, i, i%5)
			errs[i] = sinksOf[i%nodes].Write(context.Background(), []sinks.Record{{ClientID: "acme", ID: fmt.Sprint(i), Data: json.RawMessage(data)}})
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	db, _ := sql.Open("pgx", url)
	defer db.Close()
	if got := pgRows(t, db, `SELECT concat_ws('|', count(*), count(shared_new), count(own_0) + count(own_4)) FROM wide`); got[0] != "36|36|15" {
		t.Errorf("counts = %s", got[0])
	}
}

func TestOpenPostgresSinkDefaultsToTheGatewayDatabase(t *testing.T) {
	_, url := pgtest.Open(t)
	r, err := sinks.Open(map[string]sinks.Config{"acts": {Type: "postgres", Key: "activity_id"}}, t.TempDir(), sinks.WithDatabase(url))
	if err != nil {
		t.Fatal(err)
	}
	s, _ := r.Get("acts")
	write(t, s, sinks.Record{ClientID: "acme", ID: "m1", Data: json.RawMessage(`{"activity_id":"a1"}`)})
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	db, _ := sql.Open("pgx", url)
	defer db.Close()
	if got := pgRows(t, db, `SELECT _client_id || '/' || activity_id FROM acts`); strings.Join(got, ",") != "acme/a1" {
		t.Errorf("rows = %v", got)
	}

	_, err = sinks.Open(map[string]sinks.Config{"acts": {Type: "postgres"}}, t.TempDir())
	if err == nil || err.Error() != `sink "acts": url is required for type postgres: the gateway does not run on PostgreSQL (no database URL to default to)` {
		t.Errorf("without a database: %v", err)
	}
	_, err = sinks.Open(map[string]sinks.Config{"acts": {Type: "postgres", URL: strings.Replace(url, "/gw_test_", "/gw_missing_", 1)}}, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), `sink "acts": inspect table acts`) {
		t.Errorf("with a database that does not exist: %v", err)
	}
}

func newPostgres(t *testing.T, db *sql.DB, table, key string) *sinks.PostgresSink {
	t.Helper()
	s, err := sinks.NewPostgresSink(db, "test", table, key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// readPGTable returns the rows of table: their _client_id, and JSON objects of their data
// columns (_updated_at and _id left out, NULLs omitted, numbers as numbers). A missing table
// holds nothing.
func readPGTable(t *testing.T, db *sql.DB, table string) []sinktest.Row {
	t.Helper()
	if pgRows(t, db, `SELECT to_regclass('"`+table+`"')`)[0] == "" {
		return nil
	}
	var out []sinktest.Row
	for _, line := range pgRows(t, db, `SELECT to_jsonb(r) - '_updated_at' - '_id' FROM "`+table+`" r`) {
		var obj map[string]any
		if err := json.Unmarshal([]byte(line), &obj); err != nil {
			t.Fatal(err)
		}
		client, _ := obj[sinks.ClientField].(string)
		delete(obj, sinks.ClientField)
		for k, v := range obj {
			if v == nil {
				delete(obj, k)
			}
		}
		b, _ := json.Marshal(obj)
		out = append(out, sinktest.Row{Client: client, Data: b})
	}
	return out
}

// pgRows returns the first column of each row as text (NULL as empty).
func pgRows(t *testing.T, db *sql.DB, q string) []string {
	t.Helper()
	rows, err := db.Query(q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v sql.NullString
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v.String)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// BenchmarkPostgresSinkWrite upserts batches of 1,000 new records (random-looking ids, as
// partners send) of 6 fields, the size of a default fragment:
//
//	go test ./sinks -run '^$' -bench PostgresSinkWrite
func BenchmarkPostgresSinkWrite(b *testing.B) {
	db, _ := pgtest.Open(b)
	s, err := sinks.NewPostgresSink(db, "bench", "activities", "activity_id")
	if err != nil {
		b.Fatal(err)
	}
	benchWrite(b, s)
}

// benchWrite writes batches of 1,000 new records to s and reports records/s.
func benchWrite(b *testing.B, s sinks.Sink) {
	const batch = 1000
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		recs := make([]sinks.Record, batch)
		for i := range recs {
			n++
			recs[i] = sinks.Record{ClientID: "demo", ID: fmt.Sprintf("req/%d", n), Data: json.RawMessage(fmt.Sprintf(
				`{"activity_id":"%08x-%d","occurred_at":"2020-05-19T02:15:00Z","duration_s":1530,"user":"jonny.test@mivation.com","contact":"+18774289403","direction":"outbound"}`,
				uint32(n)*2654435761, n))}
		}
		if err := s.Write(context.Background(), recs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "records/s")
}
