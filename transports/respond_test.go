package transports

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/opengw/gateway/pipeline"
)

// TestIntakeRefusals: what a partner is told when the pipeline refuses a submission.
func TestIntakeRefusals(t *testing.T) {
	cases := []struct {
		name       string
		err        error
		status     int
		retryAfter string
	}{
		{"key reused for another body", pipeline.ErrIdempotencyConflict, http.StatusUnprocessableEntity, ""},
		{"key still being committed", pipeline.ErrIdempotencyInFlight, http.StatusConflict, "1"},
		{"backlog", fmt.Errorf("%w (5 fragments queued, limit 3)", pipeline.ErrBacklog), http.StatusServiceUnavailable, retryAfterBacklog},
		{"database failure", errors.New("disk I/O error"), http.StatusServiceUnavailable, "1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, retryAfter, msg := classify(notQueued(c.err))
			if status != c.status || retryAfter != c.retryAfter || msg == "" {
				t.Fatalf("classify = %d %q %q, want %d %q", status, retryAfter, msg, c.status, c.retryAfter)
			}
			if c.status == http.StatusServiceUnavailable && c.retryAfter == "1" && msg == c.err.Error() {
				t.Fatalf("an internal error leaked to the partner: %q", msg)
			}
		})
	}
}
