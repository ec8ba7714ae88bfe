// Package console serves the gateway's web console at /console/: a few static files (HTML,
// CSS and vanilla JavaScript modules) embedded in the binary, so no build step is needed. The
// console talks only to the gateway's public APIs with the signed-in client's token, exactly as
// a partner's own program would; this package holds no data and no credentials.
package console

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed static
var static embed.FS

// Prefix is the path the console is served under.
const Prefix = "/console/"

// securityHeaders are sent with every console response. The policy allows scripts, styles and
// connections from the gateway's own origin only: no inline script or style, no framing (against
// clickjacking), no referrer (a search typed in the console never leaves the gateway).
var securityHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
		"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
	"X-Frame-Options":              "DENY",
	"X-Content-Type-Options":       "nosniff",
	"Referrer-Policy":              "no-referrer",
	"Cross-Origin-Opener-Policy":   "same-origin",
	"Cross-Origin-Resource-Policy": "same-origin",
	// The files change with the binary: revalidate rather than run a stale script against a
	// newer API.
	"Cache-Control": "no-cache",
}

// Handler serves the console's files under Prefix. The caller routes methods (GET and HEAD
// only); a path under Prefix that names no file goes to notFound, so that it is answered like
// any unknown path of the gateway. Handler is safe for concurrent use.
func Handler(notFound http.Handler) http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic("console: embedded files missing: " + err.Error()) // a build mistake, caught by any test
	}
	files := http.StripPrefix(Prefix[:len(Prefix)-1], http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if name := strings.TrimPrefix(r.URL.Path, Prefix); name != "" {
			if st, err := fs.Stat(sub, name); err != nil || st.IsDir() {
				notFound.ServeHTTP(w, r)
				return
			}
		}
		for k, v := range securityHeaders {
			w.Header().Set(k, v)
		}
		files.ServeHTTP(w, r)
	})
}
