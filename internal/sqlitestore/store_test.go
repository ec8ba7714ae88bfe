package sqlitestore

import (
	"path/filepath"
	"testing"
	"time"

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
