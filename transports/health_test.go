package transports

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// TestReadiness: /readyz is 200 while every check passes; a failing check turns it 503 naming
// the check and its reason; a check that hangs fails after CheckTimeout and is joined, not
// started again, by the next probe; everything recovers by itself.
func TestReadiness(t *testing.T) {
	var dbErr atomic.Pointer[error]
	release := make(chan struct{})
	var hang atomic.Bool
	var runs atomic.Int32
	db := &Check{Name: "database", Run: func(ctx context.Context) error {
		runs.Add(1)
		if hang.Load() {
			<-release
		}
		if p := dbErr.Load(); p != nil {
			return *p
		}
		return nil
	}}
	router := &Check{Name: "router", Run: func(context.Context) error { return nil }}
	srv := (&Server{Ready: []*Check{db, router}, Log: slog.New(slog.DiscardHandler)}).Handler()

	type answer struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
		Failed []string          `json:"failed"`
	}
	probe := func() (int, answer) {
		t.Helper()
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		var a answer
		if err := json.Unmarshal(w.Body.Bytes(), &a); err != nil {
			t.Fatalf("readyz body: %s", w.Body)
		}
		return w.Code, a
	}

	if code, a := probe(); code != http.StatusOK || a.Status != "ready" || a.Checks["database"] != "ok" || a.Checks["router"] != "ok" || len(a.Failed) != 0 {
		t.Fatalf("healthy: %d %+v", code, a)
	}
	e := errors.New("attempt to write a readonly database")
	dbErr.Store(&e)
	if code, a := probe(); code != http.StatusServiceUnavailable || a.Status != "unavailable" || !slices.Equal(a.Failed, []string{"database"}) ||
		a.Checks["database"] != e.Error() || a.Checks["router"] != "ok" {
		t.Fatalf("database failing: %d %+v", code, a)
	}

	hang.Store(true)
	before := runs.Load()
	start := time.Now()
	if code, a := probe(); code != http.StatusServiceUnavailable || a.Checks["database"] != "no answer within 2s" {
		t.Fatalf("database hanging: %d %+v", code, a)
	}
	if waited := time.Since(start); waited < CheckTimeout {
		t.Fatalf("answered after %s, before the check's timeout", waited)
	}
	if code, _ := probe(); code != http.StatusServiceUnavailable || runs.Load() != before+1 {
		t.Fatalf("second probe: %d, %d runs started (want the hanging one joined)", code, runs.Load()-before)
	}
	dbErr.Store(nil)
	hang.Store(false)
	close(release)
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, a := probe()
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("did not recover: %d %+v", code, a)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
