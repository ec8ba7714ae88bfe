package transports

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// problem is the error body of the gateway's own endpoints (the seed-defined endpoints use
// their documents' shapes instead).
type problem struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// writeProblem answers with a JSON error naming the problem.
func writeProblem(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, problem{Error: errorCode(status), Message: fmt.Sprintf(format, args...)})
}

func errorCode(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "bad_request"
	case http.StatusUnauthorized:
		return "unauthorized"
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusNotFound:
		return "not_found"
	case http.StatusMethodNotAllowed:
		return "method_not_allowed"
	case http.StatusConflict:
		return "conflict"
	case http.StatusRequestEntityTooLarge:
		return "payload_too_large"
	case http.StatusUnsupportedMediaType:
		return "unsupported_media_type"
	case http.StatusUnprocessableEntity:
		return "unprocessable_entity"
	case http.StatusServiceUnavailable:
		return "unavailable"
	default:
		return "internal_error"
	}
}
