package tracker_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/opengw/gateway/internal/sqlitedb"
	"github.com/opengw/gateway/internal/store"
	"github.com/opengw/gateway/internal/store/storetest"
	"github.com/opengw/gateway/tracker"
)

// TestStoreSuite runs the shared tracker suite against tracker.SQLite through a test-only
// store.Store adapter. It is temporary: internal/sqlitestore (today's SQLite code behind the
// seam) runs the whole suite, intake included, once it exists; the intake half needs the
// SQLite queue and intake SQL, which this adapter does not have.
func TestStoreSuite(t *testing.T) {
	storetest.RunTracker(t, storetest.Backend{
		Open: func(t *testing.T, now func() time.Time) store.Store {
			db, err := sqlitedb.Open(filepath.Join(t.TempDir(), "gateway.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			tr, err := tracker.NewSQLite(db)
			if err != nil {
				t.Fatal(err)
			}
			tr.Now = now
			return &sqliteTrackerStore{db: db, tr: tr}
		},
	})
}

// sqliteTrackerStore is a store.Store whose transactions only have a tracker.
type sqliteTrackerStore struct {
	db *sqlitedb.DB
	tr *tracker.SQLite
}

var errNotAdapted = errors.New("not in the tracker-only test adapter")

func (s *sqliteTrackerStore) Update(ctx context.Context, fn func(tx store.Tx) error) error {
	return s.db.Write(ctx, func(tx *sql.Tx) error { return fn(sqliteTrackerTx{tx: tx, tr: s.tr}) })
}
func (s *sqliteTrackerStore) Queue() store.Queue     { return nil }
func (s *sqliteTrackerStore) Tracker() tracker.Store { return s.tr }
func (s *sqliteTrackerStore) PurgeIdempotencyKeys(context.Context, time.Time) error {
	return errNotAdapted
}
func (s *sqliteTrackerStore) Ping(context.Context) error { return errNotAdapted }
func (s *sqliteTrackerStore) Close() error               { return s.db.Close() }

type sqliteTrackerTx struct {
	tx *sql.Tx
	tr *tracker.SQLite
}

func (t sqliteTrackerTx) Tracker() tracker.Writer                 { return sqliteWriter(t) }
func (sqliteTrackerTx) Publish(string, ...*message.Message) error { return errNotAdapted }
func (sqliteTrackerTx) Ack(*message.Message) error                { return errNotAdapted }
func (sqliteTrackerTx) Retry(*message.Message, time.Time) error   { return errNotAdapted }
func (sqliteTrackerTx) Idempotency(string, string, string, time.Time) (store.Idempotent, bool, error) {
	return store.Idempotent{}, false, errNotAdapted
}
func (sqliteTrackerTx) RememberIdempotency(store.Idempotent) error { return errNotAdapted }
func (sqliteTrackerTx) NextSequence(string) (int64, error)         { return 0, errNotAdapted }

// sqliteWriter binds tracker.SQLite's *Tx methods to one transaction.
type sqliteWriter sqliteTrackerTx

func (w sqliteWriter) Accept(r tracker.Request) error { return w.tr.AcceptTx(w.tx, r) }
func (w sqliteWriter) AddMessages(id string, msgs []tracker.NewMessage) (bool, error) {
	return w.tr.AddMessagesTx(w.tx, id, msgs)
}
func (w sqliteWriter) Claim(id string, idx []int) ([]int, error) { return w.tr.ClaimTx(w.tx, id, idx) }
func (w sqliteWriter) Finish(id string, results []tracker.Result) error {
	return w.tr.FinishTx(w.tx, id, results)
}
