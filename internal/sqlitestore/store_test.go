package sqlitestore

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opengw/gateway/internal/sqlitedb"
	"github.com/opengw/gateway/internal/store"
	"github.com/opengw/gateway/internal/store/storetest"
)

// TestStoreSuite runs the shared store suite (tracker, intake, outcomes) on SQLite.
func TestStoreSuite(t *testing.T) {
	open := func(t *testing.T, path string, now func() time.Time) store.Store {
		s, err := Open(Config{Path: path, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	storetest.Run(t, storetest.Backend{
		Open: func(t *testing.T, now func() time.Time) store.Store {
			return open(t, filepath.Join(t.TempDir(), "gateway.db"), now)
		},
		Reopen: func(t *testing.T, s store.Store, now func() time.Time) store.Store {
			path := s.(*Store).db.Path()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			return open(t, path, now)
		},
	})
}

// TestKeptRecordsMoveOutOfWithoutRowid opens a database whose kept records are in the WITHOUT
// ROWID table of earlier versions: they move into the rowid table, readable as before, and new
// fragments are kept there too.
func TestKeptRecordsMoveOutOfWithoutRowid(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateway.db")
	db, err := sqlitedb.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(context.Background(), `CREATE TABLE intake_records (
		request_id TEXT NOT NULL, offset INTEGER NOT NULL, received_at INTEGER NOT NULL, records BLOB NOT NULL,
		PRIMARY KEY (request_id, offset)) WITHOUT ROWID;
		CREATE INDEX intake_records_received ON intake_records (received_at);
		INSERT INTO intake_records VALUES ('r1', 1000, 5, '[{"id":"a"}]')`); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.Update(ctx, func(tx store.Tx) error {
		return tx.KeepRecords("r1", 0, []byte(`[{"id":"b"}]`), time.UnixMilli(6))
	}); err != nil {
		t.Fatal(err)
	}
	for offset, want := range map[int]string{0: `[{"id":"b"}]`, 1000: `[{"id":"a"}]`} {
		got, found, err := s.Records(ctx, "r1", offset)
		if err != nil || !found || string(got) != want {
			t.Errorf("Records(r1, %d) = %q, %v, %v; want %q", offset, got, found, err, want)
		}
	}
	var ddl string
	if err := s.db.Reader().QueryRow(`SELECT sql FROM sqlite_schema WHERE name = 'intake_records'`).Scan(&ddl); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(ddl, "WITHOUT ROWID") {
		t.Errorf("intake_records is still WITHOUT ROWID: %s", ddl)
	}
	// Retention still finds the moved records by their received time.
	if n, err := s.Purge(ctx, time.UnixMilli(6), time.Time{}, 10); err != nil || n != 1 {
		t.Errorf("Purge before 6 ms = %d, %v; want 1 (the moved fragment)", n, err)
	}
}
