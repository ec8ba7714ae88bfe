package transports

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/opengw/gateway/pipeline"
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
	case http.StatusRequestTimeout:
		return "request_timeout"
	case http.StatusTooManyRequests:
		return "too_many_requests"
	case http.StatusServiceUnavailable:
		return "unavailable"
	default:
		return "internal_error"
	}
}

// requestError is a request the gateway refuses for a reason the caller can act on: the status
// and message to answer and, for 429 and 503, the seconds to wait before retrying.
type requestError struct {
	status     int
	retryAfter int // seconds; 0: no Retry-After
	msg        string
}

func (e *requestError) Error() string { return e.msg }

// refuse builds a requestError.
func refuse(status int, format string, args ...any) *requestError {
	return &requestError{status: status, msg: fmt.Sprintf(format, args...)}
}

// classify is the one place that says what a caller is told about an error from reading,
// parsing or throttling a request: the status, the Retry-After value ("" for none) and the
// message. Anything it does not know is internal: 500 with a generic message (the handler logs
// it). Endpoints with a seed-defined error shape only decide how to render these three.
func classify(err error) (status int, retryAfter, msg string) {
	var re *requestError
	var env *pipeline.EnvelopeError
	switch {
	case errors.As(err, &re):
		if re.retryAfter > 0 {
			retryAfter = strconv.Itoa(re.retryAfter)
		}
		return re.status, retryAfter, re.msg
	case errors.As(err, &env):
		return http.StatusBadRequest, "", env.Message
	case errors.Is(err, pipeline.ErrIdempotencyConflict):
		return http.StatusUnprocessableEntity, "", err.Error()
	case errors.Is(err, pipeline.ErrIdempotencyInFlight):
		return http.StatusConflict, "1", err.Error() + "; retry shortly"
	case errors.Is(err, pipeline.ErrBacklog):
		return http.StatusServiceUnavailable, retryAfterBacklog, err.Error()
	}
	return http.StatusInternalServerError, "", "internal error"
}

// writeError answers err, classified, in the gateway's own problem shape.
func writeError(w http.ResponseWriter, err error) {
	status, retryAfter, msg := classify(err)
	if retryAfter != "" {
		w.Header().Set("Retry-After", retryAfter)
	}
	writeProblem(w, status, "%s", msg)
}

// notQueued wraps an unexpected intake failure (the caller logs it) as a 503: the request was
// not committed, so retrying later is safe.
func notQueued(err error) error {
	switch {
	case errors.Is(err, pipeline.ErrIdempotencyConflict), errors.Is(err, pipeline.ErrIdempotencyInFlight),
		errors.Is(err, pipeline.ErrBacklog):
		return err
	}
	return &requestError{status: http.StatusServiceUnavailable, retryAfter: 1, msg: "the request could not be queued; retry later"}
}
