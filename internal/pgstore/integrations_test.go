package pgstore

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/opengw/gateway/internal/integrations/integrationstest"
	"github.com/opengw/gateway/internal/pgtest"
	"github.com/opengw/gateway/internal/store"
	"github.com/opengw/gateway/tracker"
)

func TestIntegrationsSuite(t *testing.T) {
	integrationstest.Run(t, func(t *testing.T) integrationstest.Backend {
		db, _ := pgtest.Open(t)
		s, err := NewIntegrations(context.Background(), db)
		if err != nil {
			t.Fatal(err)
		}
		// The schema is created safely twice (nodes starting together).
		if _, err := NewIntegrations(context.Background(), db); err != nil {
			t.Fatal(err)
		}
		return integrationstest.Backend{Store: s, Update: func(ctx context.Context, fn func(store.Tx) error) error {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			if err := fn(integTestTx{ctx: ctx, tx: tx}); err != nil {
				tx.Rollback()
				return err
			}
			return tx.Commit()
		}}
	})
}

// integTestTx is a store.Tx of a plain transaction that offers only what Bind needs: the suite
// exercises the integration writes, not the rest of the store.
type integTestTx struct {
	ctx context.Context
	tx  *sql.Tx
}

func (t integTestTx) integSQLTx() (context.Context, *sql.Tx) { return t.ctx, t.tx }

var errIntegTestTx = errors.New("not part of the integrations test transaction")

func (integTestTx) Tracker() tracker.Writer                    { return nil }
func (integTestTx) Publish(string, ...*message.Message) error  { return errIntegTestTx }
func (integTestTx) Ack(*message.Message) error                 { return errIntegTestTx }
func (integTestTx) Retry(*message.Message, time.Time) error    { return errIntegTestTx }
func (integTestTx) RememberIdempotency(store.Idempotent) error { return errIntegTestTx }
func (integTestTx) NextSequence(string) (int64, error)         { return 0, errIntegTestTx }
func (integTestTx) Idempotency(string, string, string, time.Time) (store.Idempotent, bool, error) {
	return store.Idempotent{}, false, errIntegTestTx
}
