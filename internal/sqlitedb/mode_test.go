package sqlitedb

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"testing"
)

// TestFilesAreOwnerOnly: a new database and its -wal and -shm files are 0600, and a database
// created 0644 by an earlier version is narrowed when opened.
func TestFilesAreOwnerOnly(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "old.db")
	if err := os.WriteFile(old, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{filepath.Join(dir, "new.db"), old} {
		db, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if _, err := db.Exec(ctx, `CREATE TABLE t (n INTEGER)`); err != nil {
			t.Fatal(err)
		}
		if err := db.Write(ctx, func(tx *sql.Tx) error { _, err := tx.Exec(`INSERT INTO t VALUES (1)`); return err }); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{path, path + "-wal", path + "-shm"} {
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("%s has mode %v, want 0600", filepath.Base(p), fi.Mode().Perm())
			}
		}
		db.Close()
	}
}
