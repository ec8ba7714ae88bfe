package transports

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/opengw/gateway/pipeline"
)

// TestBacklogAnswers503: while the pipeline refuses new work, /push and event send answer 503
// with Retry-After and say why, instead of queueing without bound.
func TestBacklogAnswers503(t *testing.T) {
	e := newEventsEnv(t)
	e.intake.err = fmt.Errorf("%w (12 fragments queued, limit 10)", pipeline.ErrBacklog)

	push := httptest.NewRequest(http.MethodPost, "/push", strings.NewReader(`{"format":"activity","payload":[{"id":"a"}]}`))
	push.SetBasicAuth("demo", "demo-secret")
	push.Header.Set("Content-Type", "application/json")
	event := httptest.NewRequest(http.MethodPost, "/api/events/v1/dk/external/abcinsurance/send",
		strings.NewReader(`{"correlationId":"c","payment":{"uuid":"u","status":"s"}}`))
	event.Header.Set("Authorization", "Bearer "+e.mint(t, nil, "demo", "events"))
	event.Header.Set("Content-Type", "application/json")
	event.Header.Set("Event-Type", "payment_status_updated")

	for name, r := range map[string]*http.Request{"push": push, "event": event} {
		w := e.do(r)
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != retryAfterBacklog ||
			!strings.Contains(w.Body.String(), "limit 10") {
			t.Errorf("%s: %d Retry-After=%q %s", name, w.Code, w.Header().Get("Retry-After"), w.Body)
		}
	}
}
