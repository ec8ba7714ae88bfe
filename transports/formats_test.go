package transports

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

func TestFormatsEndpoint(t *testing.T) {
	e := newEventsEnv(t)
	set := e.srv.Mappings()
	version := func(f string) string {
		m, ok := set.Get(f)
		if !ok {
			t.Fatalf("no mapping %s", f)
		}
		return m.Version
	}
	cases := []struct {
		name   string
		method string
		auth   func(*http.Request)
		status int
		want   []formatOut
	}{
		{"demo sees its two formats", "GET", func(r *http.Request) { r.SetBasicAuth("demo", "demo-secret") }, 200,
			[]formatOut{{"activity", version("activity")}, {"payment_status_updated", version("payment_status_updated")}}},
		{"other sees only its own", "GET", func(r *http.Request) { r.SetBasicAuth("other", "other-secret") }, 200,
			[]formatOut{{"activity", version("activity")}}},
		{"a client without formats gets an empty list", "GET", func(r *http.Request) { r.SetBasicAuth("odd", "p+q/r:s") }, 200, []formatOut{}},
		{"a token with the push scope", "GET", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+e.mint(t, nil, "other", "push")) }, 200,
			[]formatOut{{"activity", version("activity")}}},
		{"a token without the push scope", "GET", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+e.mint(t, nil, "demo", "tracking")) }, 403, nil},
		{"no credentials", "GET", func(*http.Request) {}, 401, nil},
		{"wrong method", "POST", func(r *http.Request) { r.SetBasicAuth("demo", "demo-secret") }, 405, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(c.method, "/api/v1/formats", nil)
			c.auth(r)
			w := e.do(r)
			if w.Code != c.status {
				t.Fatalf("status %d, want %d: %s", w.Code, c.status, w.Body)
			}
			if c.want == nil {
				return
			}
			var got struct {
				Formats []formatOut `json:"formats"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || got.Formats == nil {
				t.Fatalf("body %s: %v", w.Body, err)
			}
			if !slices.Equal(got.Formats, c.want) {
				t.Errorf("formats = %+v, want %+v", got.Formats, c.want)
			}
		})
	}
}

func TestConsoleRoute(t *testing.T) {
	e := newEventsEnv(t)
	w := e.do(httptest.NewRequest(http.MethodGet, "/console", nil))
	if w.Code/100 != 3 || w.Header().Get("Location") != "/console/" {
		t.Errorf("/console: status %d, Location %q; want a redirect to /console/", w.Code, w.Header().Get("Location"))
	}
	w = e.do(httptest.NewRequest(http.MethodGet, "/console/", nil))
	if w.Code != http.StatusOK || w.Header().Get("Content-Security-Policy") == "" {
		t.Errorf("/console/: status %d, CSP %q", w.Code, w.Header().Get("Content-Security-Policy"))
	}
	// Like every path of the gateway: 405 with Allow, 404, both as JSON problems.
	w = e.do(httptest.NewRequest(http.MethodPost, "/console/", nil))
	if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "GET, HEAD" || !json.Valid(w.Body.Bytes()) {
		t.Errorf("POST /console/: status %d, Allow %q, body %s", w.Code, w.Header().Get("Allow"), w.Body)
	}
	w = e.do(httptest.NewRequest(http.MethodGet, "/console/nope.js", nil))
	if w.Code != http.StatusNotFound || !strings.Contains(w.Body.String(), `"not_found"`) {
		t.Errorf("GET /console/nope.js: status %d, body %s", w.Code, w.Body)
	}
}
