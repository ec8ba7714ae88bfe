package transports

import (
	"net/http"
	"time"

	"github.com/opengw/gateway/pipeline"
)

// logAccepted writes the one info line of an accepted submission: its request id, the client,
// format, records, body bytes and how long the request took until its commit (ms).
func (s *Server) logAccepted(r *http.Request, endpoint string, p Principal, receipt pipeline.Receipt, format string, records, bytes int, start time.Time) {
	args := []any{"request_id", receipt.RequestID, "endpoint", endpoint, "client", p.ClientID, "format", format,
		"records", records, "bytes", bytes, "ms", time.Since(start).Milliseconds()}
	if receipt.Replayed {
		args = append(args, "idempotent_replay", true)
	}
	s.Log.InfoContext(r.Context(), "request accepted", args...)
}
