package pgstore

import (
	"context"
	"testing"

	"github.com/opengw/gateway/internal/integrations/integrationstest"
	"github.com/opengw/gateway/internal/pgtest"
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
		st, err := New(context.Background(), db, nil)
		if err != nil {
			t.Fatal(err)
		}
		return integrationstest.Backend{Store: s, Update: st.Update}
	})
}
