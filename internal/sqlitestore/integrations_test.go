package sqlitestore_test

import (
	"path/filepath"
	"testing"

	"github.com/opengw/gateway/internal/integrations/integrationstest"
	"github.com/opengw/gateway/internal/sqlitestore"
)

func TestIntegrationsSuite(t *testing.T) {
	integrationstest.Run(t, func(t *testing.T) integrationstest.Backend {
		st, err := sqlitestore.Open(sqlitestore.Config{Path: filepath.Join(t.TempDir(), "gateway.db")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return integrationstest.Backend{Store: st.Integrations(), Update: st.Update}
	})
}
