package console

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// notFound stands for the gateway's answer to unknown paths.
var notFound = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	http.Error(w, "no such endpoint", http.StatusTeapot)
})

func serve(t *testing.T, method, path string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	Handler(notFound).ServeHTTP(w, httptest.NewRequest(method, path, nil))
	return w
}

func TestServesFilesWithSecurityHeaders(t *testing.T) {
	cases := []struct {
		path, contentType, contains string
	}{
		{"/console/", "text/html", `<script type="module" src="app.js">`},
		{"/console/app.js", "text/javascript", "import"},
		{"/console/tracking.js", "text/javascript", "/tracking/replay"},
		{"/console/style.css", "text/css", "@media"},
		{"/console/icon.svg", "image/svg+xml", "<svg"},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			w := serve(t, http.MethodGet, c.path)
			if w.Code != http.StatusOK {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, c.contentType) {
				t.Errorf("Content-Type = %q, want %s", ct, c.contentType)
			}
			if !strings.Contains(w.Body.String(), c.contains) {
				t.Errorf("body lacks %q", c.contains)
			}
			csp := w.Header().Get("Content-Security-Policy")
			for _, d := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "connect-src 'self'"} {
				if !strings.Contains(csp, d) {
					t.Errorf("Content-Security-Policy %q lacks %q", csp, d)
				}
			}
			if strings.Contains(csp, "unsafe") {
				t.Errorf("Content-Security-Policy allows something unsafe: %q", csp)
			}
			for k, v := range map[string]string{"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"} {
				if got := w.Header().Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestMissingFilesGoToNotFound(t *testing.T) {
	if w := serve(t, http.MethodHead, "/console/app.js"); w.Code != http.StatusOK {
		t.Errorf("HEAD: status %d", w.Code)
	}
	for _, path := range []string{"/console/nope.js", "/console/static/app.js", "/console/app.js/x"} {
		if w := serve(t, http.MethodGet, path); w.Code != http.StatusTeapot {
			t.Errorf("%s: status %d, want the gateway's not-found answer", path, w.Code)
		}
	}
}

// The policy forbids inline script and style, so the files must not contain any: a <script>
// without src, an on* handler attribute, a style attribute or a <style> element would be
// refused by the browser and break the console.
func TestNoInlineScriptOrStyle(t *testing.T) {
	checks := []struct {
		what string
		re   *regexp.Regexp
	}{
		{"inline <script>", regexp.MustCompile(`<script(?:\s+(?:type="[^"]*"))?\s*>`)},
		{"event handler attribute", regexp.MustCompile(`\son[a-z]+\s*=\s*["']`)},
		{"style attribute", regexp.MustCompile(`\sstyle\s*=`)},
		{"<style> element", regexp.MustCompile(`<style[\s>]`)},
		{"javascript: URL", regexp.MustCompile(`(?i)javascript:`)},
	}
	err := fs.WalkDir(static, "static", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".html") {
			return err
		}
		b, err := fs.ReadFile(static, path)
		if err != nil {
			return err
		}
		for _, c := range checks {
			if loc := c.re.FindIndex(b); loc != nil {
				t.Errorf("%s has an %s: %q", path, c.what, b[loc[0]:min(loc[1]+40, len(b))])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Data from the gateway must never become markup: the scripts build elements and set text,
// never innerHTML or document.write.
func TestScriptsNeverWriteMarkup(t *testing.T) {
	bad := regexp.MustCompile(`\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML|document\.write|\beval\(|new Function`)
	err := fs.WalkDir(static, "static", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".js") {
			return err
		}
		b, err := fs.ReadFile(static, path)
		if err != nil {
			return err
		}
		if loc := bad.FindIndex(b); loc != nil {
			t.Errorf("%s writes markup or evaluates code: %q", path, b[loc[0]:loc[1]])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
