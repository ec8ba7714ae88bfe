package transports

import (
	_ "embed"
	"net/http"
)

// OpenAPI is the OpenAPI 3.1 description of every endpoint the gateway serves, their statuses
// and bodies (GET /openapi.json). The end-to-end tests validate every response they get
// against it.
//
//go:embed openapi.json
var OpenAPI []byte

func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(OpenAPI)
}
