package sqlitedb

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"sync"
	"testing"
)

func TestWriteGroupsCallersAndIsolatesFailures(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if _, err := db.Exec(ctx, `CREATE TABLE t (n INTEGER PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	var wg sync.WaitGroup
	errs := make([]error, 200)
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = db.Write(ctx, func(tx *sql.Tx) error {
				if _, err := tx.Exec(`INSERT INTO t (n) VALUES (?)`, i); err != nil {
					return err
				}
				if i%10 == 0 {
					return boom // its insert must be rolled back, the others kept
				}
				return nil
			})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if (i%10 == 0) != errors.Is(err, boom) {
			t.Fatalf("job %d: err = %v", i, err)
		}
	}
	var n int
	if err := db.Reader().QueryRow(`SELECT count(*) FROM t`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 180 {
		t.Fatalf("rows = %d, want 180", n)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Write(ctx, func(*sql.Tx) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
}

// TestWriterSettings checks the settings writerDriver gives the writer connection: temporary
// data in memory (the savepoints' journals) and no checkpoint inside a commit.
func TestWriterSettings(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var tempStore, autoCheckpoint int
	if err := db.Write(context.Background(), func(tx *sql.Tx) error {
		if err := tx.QueryRow(`PRAGMA temp_store`).Scan(&tempStore); err != nil {
			return err
		}
		return tx.QueryRow(`PRAGMA wal_autocheckpoint`).Scan(&autoCheckpoint)
	}); err != nil {
		t.Fatal(err)
	}
	if tempStore != 2 || autoCheckpoint != 0 {
		t.Errorf("writer: temp_store = %d, wal_autocheckpoint = %d; want 2 (memory) and 0", tempStore, autoCheckpoint)
	}
}
