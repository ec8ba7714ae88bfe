package transports

import (
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
	body, release, err := s.readBody(w, r)
	defer release()
	if err != nil {
		writeError(w, err)
		return
	}
	env, err := pipeline.EnvelopeParser{MaxDepth: s.Limits.MaxDepth}.Parse(body)
	if err != nil {
		writeError(w, err)
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
	if err := s.Throttle.records(p.ClientID, len(env.Records)); err != nil {
		writeError(w, err)
		return
	}
	if r.URL.Query().Get("dry_run") == "true" {
		writeJSON(w, http.StatusOK, m.DryRun(env.Records))
		return
	}
	if len(env.Records) == 0 {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	receipt, err := s.Intake.Accept(r.Context(), pipeline.Submission{
		ClientID: p.ClientID, ClientName: p.ClientName, Endpoint: "push", Envelope: env, IdempotencyKey: key, Body: body,
	})
	if err != nil {
		if notQueued(err) != err {
			s.Log.Error("accept push", "client", p.ClientID, "format", env.Format, "err", err)
		}
		writeError(w, notQueued(err))
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
