// Package transports is the gateway's HTTP face: authentication, the push and events intake,
// dry runs, tracking and integrations. Handlers validate and authorise, then call the pipeline
// or the tracker; they never process records themselves.
package transports

import (
	"context"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/opengw/gateway/internal/metrics"
	"github.com/opengw/gateway/mappings"
	"github.com/opengw/gateway/pipeline"
	"github.com/opengw/gateway/transports/console"
)

// MaxBodyBytes is the largest push body accepted (10 MiB).
const MaxBodyBytes = 10 << 20

// Intake commits submissions durably; *pipeline.Pipeline implements it.
type Intake interface {
	// Accept commits s (see pipeline.Pipeline.Accept). It must keep nothing of s.Body or
	// s.Envelope.Records once it returns: they are slices of a body buffer that the server
	// recycles for later requests.
	Accept(ctx context.Context, s pipeline.Submission) (pipeline.Receipt, error)
}

// Server holds what the handlers need. Create it with its fields set, then serve Handler().
type Server struct {
	Auth     *Authenticator
	Intake   Intake
	Mappings func() *mappings.Set // the current mapping set
	Tracking *TrackingAPI
	Tokens   *TokenIssuer // issues /connect/token JWTs; nil: that endpoint answers 503
	Limits   Limits       // body and nesting limits; zero fields take defaults
	Throttle *Throttle    // rate limits and the failed-authentication throttle; nil: none

	inflight atomic.Int64 // request body bytes buffered now (see readBody)
	// Metrics measures every request by route pattern and serves GET /metrics; nil: nothing is
	// measured and /metrics answers 404.
	Metrics *metrics.Metrics
	// Ready are the checks of GET /readyz (database writable, router running, backlog under
	// its limit); none: always ready.
	Ready []*Check
	// Integrations serves the Integrations API and platform publishing; nil: they answer 503.
	Integrations *IntegrationsAPI
	Log          *slog.Logger
}

// Handler returns the gateway's routes. Unknown paths answer 404, known paths with the wrong
// method 405 with Allow, both as JSON.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/healthz", methods{"GET": func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}})
	mux.Handle("/readyz", methods{"GET": s.readiness})
	mux.Handle("/metrics", methods{"GET": s.Metrics.Handler().ServeHTTP})
	mux.Handle("/openapi.json", methods{"GET": serveOpenAPI})
	mux.Handle("/push", methods{"POST": s.authorized("push", s.push)})
	mux.Handle("/connect/token", methods{"POST": s.token})
	mux.Handle("/.well-known/oauth-authorization-server", methods{"GET": s.oauthMetadata})
	mux.Handle("/api/events/v1/{country}/external/{tenant}/send", methods{"POST": s.sendEvent})
	mux.Handle("/tracking", methods{"POST": s.authorized("tracking", func(w http.ResponseWriter, r *http.Request, p Principal) {
		s.Tracking.Search(w, r, p.ClientID, p.ClientName)
	})})
	mux.Handle("/tracking/cancel", methods{"POST": s.authorized("tracking", func(w http.ResponseWriter, r *http.Request, p Principal) {
		s.Tracking.Cancel(w, r, p.ClientID)
	})})
	mux.Handle("/tracking/replay", methods{"POST": s.authorized("tracking", func(w http.ResponseWriter, r *http.Request, p Principal) {
		s.Tracking.Replay(w, r, p.ClientID)
	})})
	mux.Handle(integrationsPrefix, s.integrationRoutes())
	mux.Handle("/api/events/v1/{country}/internal/{tenant}/publish", methods{"POST": s.publishEvent})
	mux.Handle("/api/v1/formats", methods{"GET": s.authorized("push", s.formats)})
	consoleFiles := console.Handler(http.HandlerFunc(notFound)).ServeHTTP
	mux.Handle(console.Prefix, methods{"GET": consoleFiles, "HEAD": consoleFiles}) // "/console" redirects here (ServeMux)
	mux.HandleFunc("/", notFound)
	return s.recoverer(s.Metrics.InstrumentHTTP(mux))
}

// notFound answers a path the gateway does not serve.
func notFound(w http.ResponseWriter, r *http.Request) {
	writeProblem(w, http.StatusNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path)
}

// methods routes a path by HTTP method and answers 405 with Allow for any other.
type methods map[string]http.HandlerFunc

func (m methods) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h, ok := m[r.Method]; ok {
		h(w, r)
		return
	}
	allowed := make([]string, 0, len(m))
	for k := range m {
		allowed = append(allowed, k)
	}
	sort.Strings(allowed)
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	writeProblem(w, http.StatusMethodNotAllowed, "%s is not allowed on %s; use %s", r.Method, r.URL.Path, strings.Join(allowed, " or "))
}

// authenticate checks r's credentials under the throttles. An address whose failed
// authentications spent its bucket is refused (a 429 *requestError) before its credentials are
// looked at; credentials presented and refused count against the address; a valid caller over
// its rate limit is refused (429) too. ok is false, with a nil error, for missing or bad
// credentials.
func (s *Server) authenticate(r *http.Request) (p Principal, ok bool, err error) {
	if err := s.Throttle.checkAddr(r); err != nil {
		return Principal{}, false, err
	}
	if p, ok = s.Auth.Authenticate(r); !ok {
		// Only credentials that were tried and refused count: many HTTP clients send a first
		// request without any, to be told by the 401 which scheme to use.
		if r.Header.Get("Authorization") != "" {
			s.Throttle.failed(r)
		}
		return Principal{}, false, nil
	}
	if err := s.Throttle.request(p.ClientID); err != nil {
		return Principal{}, false, err
	}
	return p, true, nil
}

// authorized authenticates the caller and requires scope: 401 with WWW-Authenticate without
// valid credentials, 403 when the credential lacks the scope, 429 when throttled.
func (s *Server) authorized(scope string, h func(http.ResponseWriter, *http.Request, Principal)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok, err := s.authenticate(r)
		if err != nil {
			writeError(w, err)
			return
		}
		if !ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="gateway", Bearer realm="gateway"`)
			writeProblem(w, http.StatusUnauthorized, "missing or invalid credentials: use Basic client:secret or a Bearer token")
			return
		}
		if !p.HasScope(scope) {
			writeProblem(w, http.StatusForbidden, "client %q lacks the %q scope needed for %s", p.ClientID, scope, r.URL.Path)
			return
		}
		h(w, r, p)
	}
}

// recoverer turns a handler panic into a logged 500 with a JSON body, never a stack trace
// in the response.
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.Log.Error("handler panicked", "method", r.Method, "path", r.URL.Path, "panic", v)
				writeProblem(w, http.StatusInternalServerError, "internal error")
			}
		}()
		next.ServeHTTP(w, r)
	})
}
