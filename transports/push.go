package transports

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/opengw/gateway/pipeline"
)

// maxIdempotencyKey bounds the Idempotency-Key header.
const maxIdempotencyKey = 255

// retryAfterBacklog is the Retry-After (seconds) sent while the pipeline refuses new work.
const retryAfterBacklog = "5"

// push is POST /push (seed 000): validate the envelope, then commit it and answer 202 {"id"}.
func (s *Server) push(w http.ResponseWriter, r *http.Request, p Principal) {
	start := time.Now()
	if msg, ok := checkJSONContentType(r.Header.Get("Content-Type"), "application/json", "text/json"); !ok {
		writeProblem(w, http.StatusUnsupportedMediaType, "%s", msg)
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if len(key) > maxIdempotencyKey {
		writeProblem(w, http.StatusBadRequest, "Idempotency-Key is %d characters; the limit is %d", len(key), maxIdempotencyKey)
		return
	}
	body, ok := readBody(w, r, MaxBodyBytes)
	if !ok {
		return
	}
	env, err := pipeline.ParseEnvelope(body)
	if err != nil {
		writeProblem(w, http.StatusBadRequest, "%v", err)
		return
	}
	m, ok := s.Mappings().Get(env.Format)
	if !ok {
		writeProblem(w, http.StatusBadRequest, "unknown format %q", env.Format)
		return
	}
	if !p.MayUseFormat(env.Format) {
		writeProblem(w, http.StatusForbidden, "format %q is not assigned to client %q", env.Format, p.ClientID)
		return
	}
	if r.URL.Query().Get("dry_run") == "true" {
		writeJSON(w, http.StatusOK, pipeline.DryRun(m, env.Records))
		return
	}
	if len(env.Records) == 0 {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	receipt, err := s.Intake.Accept(r.Context(), pipeline.Submission{
		ClientID: p.ClientID, ClientName: p.ClientName, Endpoint: "push", Envelope: env, IdempotencyKey: key, Body: body,
	})
	switch {
	case errors.Is(err, pipeline.ErrIdempotencyConflict):
		writeProblem(w, http.StatusUnprocessableEntity, "%v", err)
		return
	case errors.Is(err, pipeline.ErrIdempotencyInFlight):
		w.Header().Set("Retry-After", "1")
		writeProblem(w, http.StatusConflict, "%v (Idempotency-Key %q); retry shortly", err, key)
		return
	case errors.Is(err, pipeline.ErrBacklog):
		w.Header().Set("Retry-After", retryAfterBacklog)
		writeProblem(w, http.StatusServiceUnavailable, "%v", err)
		return
	case err != nil:
		s.Log.Error("accept push", "client", p.ClientID, "format", env.Format, "err", err)
		writeProblem(w, http.StatusServiceUnavailable, "the request could not be queued; retry later")
		return
	}
	s.logAccepted(r, "push", p, receipt, env.Format, len(env.Records), len(body), start)
	if receipt.Replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"id": receipt.RequestID})
}

// checkJSONContentType accepts the given media types with any parameters, as long as a charset,
// if given, is UTF-8. It returns a message naming the problem otherwise.
func checkJSONContentType(header string, allowed ...string) (string, bool) {
	mt, params, err := mime.ParseMediaType(header)
	if err != nil {
		return "Content-Type " + quoteOrMissing(header) + " is not one of " + strings.Join(allowed, ", "), false
	}
	ok := false
	for _, a := range allowed {
		ok = ok || mt == a
	}
	if !ok {
		return "Content-Type " + quoteOrMissing(header) + " is not one of " + strings.Join(allowed, ", "), false
	}
	if cs, has := params["charset"]; has && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
		return "charset " + quoteOrMissing(cs) + " is not supported; send UTF-8", false
	}
	return "", true
}

func quoteOrMissing(s string) string {
	if s == "" {
		return "(missing)"
	}
	return `"` + s + `"`
}

// readBody reads at most limit bytes, answering 413 (without reading further) when the body is
// larger. It reports whether the caller should go on.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	if r.ContentLength > limit {
		writeProblem(w, http.StatusRequestEntityTooLarge, "the body is %d bytes; the limit is %d bytes (10 MiB)", r.ContentLength, limit)
		return nil, false
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		writeProblem(w, http.StatusRequestEntityTooLarge, "the body is over the limit of %d bytes (10 MiB)", limit)
		return nil, false
	case err != nil && !errors.Is(err, io.EOF):
		writeProblem(w, http.StatusBadRequest, "could not read the body: %v", err)
		return nil, false
	}
	return buf.Bytes(), true
}
