package transports

import (
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

// TestOAuthMetadata: an OAuth library that discovers the server (RFC 8414) finds an issuer
// equal to the URL it asked, and a token endpoint that issues tokens with either auth method.
func TestOAuthMetadata(t *testing.T) {
	e := newHTTPEnv(t)
	resp, err := e.ts.Client().Get(e.ts.URL + "/.well-known/oauth-authorization-server")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var meta struct {
		Issuer                            string   `json:"issuer"`
		TokenEndpoint                     string   `json:"token_endpoint"`
		GrantTypesSupported               []string `json:"grant_types_supported"`
		TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
		ScopesSupported                   []string `json:"scopes_supported"`
		ResponseTypesSupported            []string `json:"response_types_supported"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&meta); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, %v", resp.StatusCode, err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if meta.Issuer != e.ts.URL || meta.TokenEndpoint != e.ts.URL+"/connect/token" {
		t.Errorf("issuer %q, token endpoint %q; server at %s", meta.Issuer, meta.TokenEndpoint, e.ts.URL)
	}
	if !reflect.DeepEqual(meta.GrantTypesSupported, []string{"client_credentials"}) ||
		!reflect.DeepEqual(meta.TokenEndpointAuthMethodsSupported, []string{"client_secret_basic", "client_secret_post"}) ||
		!reflect.DeepEqual(meta.ScopesSupported, []string{"events", "integrations", "push", "tracking"}) ||
		meta.ResponseTypesSupported == nil {
		t.Errorf("metadata = %+v", meta)
	}

	for _, basic := range []bool{true, false} {
		form := url.Values{"grant_type": {"client_credentials"}, "scope": {"tracking"}}
		if !basic {
			form.Set("client_id", "demo")
			form.Set("client_secret", "demo-secret")
		}
		req, _ := http.NewRequest(http.MethodPost, meta.TokenEndpoint, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if basic {
			req.SetBasicAuth("demo", "demo-secret")
		}
		resp, err := e.ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("token endpoint from the metadata, basic=%v: %d", basic, resp.StatusCode)
		}
	}

	post, err := e.ts.Client().Post(e.ts.URL+"/.well-known/oauth-authorization-server", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	post.Body.Close()
	if post.StatusCode != http.StatusMethodNotAllowed || post.Header.Get("Allow") != "GET" {
		t.Errorf("POST: %d Allow=%q", post.StatusCode, post.Header.Get("Allow"))
	}
}
