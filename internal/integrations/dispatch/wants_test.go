package dispatch_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/opengw/gateway/internal/integrations"
	"github.com/opengw/gateway/internal/integrations/dispatch"
	"github.com/opengw/gateway/internal/sqlitestore"
)

// TestWants: a client's events are wanted only once one of its hubs has an integration, and at
// once after it is created (no stale cache); a client without hubs never.
func TestWants(t *testing.T) {
	st, err := sqlitestore.Open(sqlitestore.Config{Path: filepath.Join(t.TempDir(), "gateway.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	d, err := dispatch.New(dispatch.Config{Store: st, Integrations: st.Integrations(), Tracker: st.Tracker(),
		Directory: dispatch.NewDirectory([]dispatch.Client{{ID: "demo", Hubs: []string{"hub"}}, {ID: "other"}}),
		Wake:      &integrations.Signal{}, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if d.Wants("demo") || d.Wants("other") || d.Wants("nobody") {
		t.Fatal("events wanted before any integration exists")
	}
	in := integrations.Integration{ID: uuid.NewString(), HubID: "hub", Channel: integrations.System, Name: "crm",
		Status: integrations.Active, Config: integrations.Config{Events: []string{"*"}}, CreatedAt: time.Now(), UpdatedAt: time.Now()}
	if err := st.Integrations().Create(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	if !d.Wants("demo") {
		t.Fatal("events of a client with an integration are not wanted")
	}
	if d.Wants("other") {
		t.Fatal("events of a client without hubs are wanted")
	}
}
