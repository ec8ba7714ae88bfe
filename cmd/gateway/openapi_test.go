package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	verrors "github.com/pb33f/libopenapi-validator/errors"
	"github.com/pb33f/libopenapi-validator/helpers"

	"github.com/opengw/gateway/transports"
)

// Every response a gateway under test sends to http.DefaultClient (the e2e tests' client) is
// checked against transports/openapi.json: a response the document does not
// describe fails the request with an error naming the mismatch, and so the test that sent it.

func TestMain(m *testing.M) {
	http.DefaultClient.Transport = &validatingTransport{base: http.DefaultTransport}
	os.Exit(m.Run())
}

// gatewayHosts are the host:port of the gateways under test; responses of other servers (fake
// sinks and webhook receivers) are not the gateway's and are not checked.
var gatewayHosts sync.Map

// validateResponsesOf makes the responses of the gateway at hostPort checked.
func validateResponsesOf(hostPort string) { gatewayHosts.Store(hostPort, true) }

var specValidator = sync.OnceValues(func() (validator.Validator, error) {
	doc, err := libopenapi.NewDocument(transports.OpenAPI)
	if err != nil {
		return nil, fmt.Errorf("parse openapi.json: %w", err)
	}
	v, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		return nil, fmt.Errorf("build a validator for openapi.json: %w", errors.Join(errs...))
	}
	return v, nil
})

type validatingTransport struct{ base http.RoundTripper }

func (vt *validatingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := vt.base.RoundTrip(req)
	if _, ours := gatewayHosts.Load(req.URL.Host); err != nil || !ours || resp.StatusCode == http.StatusSwitchingProtocols {
		return resp, err // a WebSocket's body is its connection: left alone
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("read the response of %s %s: %w", req.Method, req.URL.Path, err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err := checkResponse(req, resp, body); err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

// checkResponse validates resp against the document. Unknown paths (404) and known paths with
// a method they do not serve (405) are outside any document: their contract (a Problem body;
// Allow on a 405) is checked here.
func checkResponse(req *http.Request, resp *http.Response, body []byte) error {
	v, err := specValidator()
	if err != nil {
		return err
	}
	ok, verrs := v.ValidateHttpResponse(req, resp)
	if ok {
		return nil
	}
	if len(verrs) == 1 && verrs[0].ValidationType == helpers.PathValidation {
		switch {
		case resp.StatusCode == http.StatusNotFound && verrs[0].ValidationSubType == helpers.ValidationMissing:
			return checkProblem(req, resp, body)
		case resp.StatusCode == http.StatusMethodNotAllowed && resp.Header.Get("Allow") != "":
			return checkProblem(req, resp, body)
		}
	}
	return fmt.Errorf("openapi.json does not describe the answer to %s %s: %d %s\n%s\nbody: %.500s",
		req.Method, req.URL.Path, resp.StatusCode, resp.Header.Get("Content-Type"), describe(verrs), body)
}

func checkProblem(req *http.Request, resp *http.Response, body []byte) error {
	var p struct {
		Error   *string `json:"error"`
		Message *string `json:"message"`
	}
	if err := json.Unmarshal(body, &p); err != nil || p.Error == nil || p.Message == nil || *p.Message == "" {
		return fmt.Errorf("%s %s: %d without a Problem body: %.500s", req.Method, req.URL.Path, resp.StatusCode, body)
	}
	return nil
}

func describe(verrs []*verrors.ValidationError) string {
	var b strings.Builder
	for _, e := range verrs {
		fmt.Fprintf(&b, "- %s: %s", e.Message, e.Reason)
		for _, f := range e.SchemaValidationErrors {
			fmt.Fprintf(&b, "\n    %s at %s", f.Reason, f.FieldPath)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// TestOpenAPIDocument: the document is valid OpenAPI 3.1, served as is at /openapi.json, and
// names every route of DESIGN.md.
func TestOpenAPIDocument(t *testing.T) {
	v, err := specValidator()
	if err != nil {
		t.Fatal(err)
	}
	if ok, errs := v.ValidateDocument(); !ok {
		t.Fatalf("openapi.json is not a valid OpenAPI document:\n%s", describe(errs))
	}
	var doc struct {
		OpenAPI string                     `json:"openapi"`
		Paths   map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(transports.OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Errorf("openapi = %q, want 3.1", doc.OpenAPI)
	}
	for _, p := range []string{
		"/push", "/connect/token", "/.well-known/oauth-authorization-server",
		"/api/events/v1/{country}/external/{tenant}/send", "/api/events/v1/{country}/internal/{tenant}/publish",
		"/tracking", "/tracking/cancel", "/tracking/replay",
		"/api/v1/integrations/hubs/{hubId}", "/api/v1/integrations/{integrationId}", "/api/v1/integrations/{integrationId}/stream",
		"/api/v1/integrations/{integrationId}/deliveries", "/api/v1/integrations/{integrationId}/deliveries/{deliveryId}/retry",
		"/api/v1/integrations/{integrationId}/recover",
		"/healthz", "/readyz", "/metrics", "/openapi.json", "/console/",
	} {
		if _, ok := doc.Paths[p]; !ok {
			t.Errorf("openapi.json has no path %s", p)
		}
	}

	g := startGateway(t, exampleConfig, t.TempDir())
	status, hdr, out := g.do(t, "GET", "/openapi.json", "", "", "", nil)
	if status != http.StatusOK || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") || !bytes.Equal(out, transports.OpenAPI) {
		t.Fatalf("GET /openapi.json: %d %s, %d bytes", status, hdr.Get("Content-Type"), len(out))
	}
}

// TestValidatorCatchesMismatches: the check every e2e response goes through fails a response the
// document does not describe (a wrong body, an undeclared status, a 404 that is not a Problem).
func TestValidatorCatchesMismatches(t *testing.T) {
	respond := func(method, path string, status int, contentType, body string, header ...string) error {
		req, _ := http.NewRequest(method, "http://gateway.test"+path, nil)
		resp := &http.Response{StatusCode: status, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(body)), Request: req}
		if contentType != "" {
			resp.Header.Set("Content-Type", contentType)
		}
		for i := 0; i+1 < len(header); i += 2 {
			resp.Header.Set(header[i], header[i+1])
		}
		return checkResponse(req, resp, []byte(body))
	}
	cases := []struct {
		name  string
		err   error
		valid bool
	}{
		{"a 202 with an id", respond("POST", "/push", 202, "application/json", `{"id":"6bd37a18-d5ee-44b5-89c4-f5e7dff19c28"}`), true},
		{"a 202 without an id", respond("POST", "/push", 202, "application/json", `{"request":"x"}`), false},
		{"an undeclared status", respond("POST", "/push", 418, "application/json", `{"error":"teapot","message":"no"}`), false},
		{"a 401 without WWW-Authenticate", respond("POST", "/push", 401, "application/json", `{"error":"unauthorized","message":"no"}`), false},
		{"a 401 with WWW-Authenticate", respond("POST", "/push", 401, "application/json", `{"error":"unauthorized","message":"no"}`, "WWW-Authenticate", "Basic"), true},
		{"a tracking message with an unknown status", respond("POST", "/tracking", 200, "application/json",
			`{"success":true,"error":null,"data":{"search":[],"paging":{"number":1,"size":0,"totalRequests":1,"totalPages":1},"requests":[{"feedId":"demo","clientName":"D","id":"6bd37a18-d5ee-44b5-89c4-f5e7dff19c28","batchReference":null,"receivedDate":"x","requestStatus":"Complete","messageStatusSummary":{"total":1,"queued":0,"processing":0,"cancelled":0,"failed":0,"invalid":0,"complete":1},"payload":[{"id":"6bd37a18-d5ee-44b5-89c4-f5e7dff19c28","externalReference":null,"messageStatus":"Done","messageType":null,"processedTime":null,"errors":[]}]}]}}`), false},
		{"an unknown path answered with a Problem", respond("GET", "/nope", 404, "application/json", `{"error":"not_found","message":"no such endpoint"}`), true},
		{"an unknown path answered otherwise", respond("GET", "/nope", 404, "text/plain", `404 page not found`), false},
		{"a wrong method with Allow", respond("DELETE", "/push", 405, "application/json", `{"error":"method_not_allowed","message":"use POST"}`, "Allow", "POST"), true},
		{"readiness failing", respond("GET", "/readyz", 503, "application/json", `{"status":"unavailable","checks":{"database":"locked"},"failed":["database"]}`, "Retry-After", "5"), true},
	}
	for _, c := range cases {
		if (c.err == nil) != c.valid {
			t.Errorf("%s: valid = %v, want %v (%v)", c.name, c.err == nil, c.valid, c.err)
		}
	}
}
