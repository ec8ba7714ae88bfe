package metrics

import (
	"bufio"
	"net"
	"net/http"
	"time"
)

// InstrumentHTTP counts and times every request mux answers, labelled with the pattern that
// matched it (http.Request.Pattern, which *http.ServeMux sets on the request it is given: so
// wrap the mux itself, with no middleware in between that copies the request). A request no
// pattern matched is labelled "unmatched". A panicking handler is counted as a 500 and the
// panic goes on up. On a nil *Metrics it returns mux unchanged.
func (m *Metrics) InstrumentHTTP(mux http.Handler) http.Handler {
	if m == nil {
		return mux
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			status := sw.status
			if v := recover(); v != nil {
				status = http.StatusInternalServerError
				defer panic(v)
			}
			if status == 0 {
				status = http.StatusOK // the handler wrote nothing: net/http answers 200
			}
			route := r.Pattern
			if route == "" {
				route = "unmatched"
			}
			m.ObserveHTTP(route, r.Method, status, time.Since(start))
		}()
		mux.ServeHTTP(sw, r)
	})
}

// statusWriter remembers the status code written. It keeps the optional interfaces handlers
// use: Flush (streaming), Hijack (WebSockets, counted as 101) and Unwrap (for
// http.ResponseController).
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && w.status == 0 {
		w.status = http.StatusSwitchingProtocols
	}
	return conn, rw, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
