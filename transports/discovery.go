package transports

import "net/http"

// oauthMetadata is the RFC 8414 authorization server metadata document.
type oauthMetadata struct {
	Issuer                            string   `json:"issuer"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	ScopesSupported                   []string `json:"scopes_supported"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
}

// oauthMetadata answers GET /.well-known/oauth-authorization-server (RFC 8414), so OAuth
// libraries discover the token endpoint. The issuer is the URL the document was fetched from,
// minus the well-known path, as RFC 8414 §3.3 requires clients to check. Only the
// client-credentials grant is offered, so no response type is supported.
func (s *Server) oauthMetadata(w http.ResponseWriter, r *http.Request) {
	if s.Tokens == nil {
		writeProblem(w, http.StatusNotFound, "this gateway does not issue tokens")
		return
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	issuer := scheme + "://" + r.Host
	w.Header().Set("Cache-Control", "max-age=3600")
	writeJSON(w, http.StatusOK, oauthMetadata{
		Issuer:                            issuer,
		TokenEndpoint:                     issuer + "/connect/token",
		GrantTypesSupported:               []string{"client_credentials"},
		TokenEndpointAuthMethodsSupported: []string{"client_secret_basic", "client_secret_post"},
		ScopesSupported:                   s.Auth.Scopes(),
		ResponseTypesSupported:            []string{},
	})
}
