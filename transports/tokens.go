package transports

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// MinKeyBytes is the shortest HMAC key accepted for signing tokens: HS256 needs a key at
// least as long as its 256-bit output (RFC 7518 §3.2).
const MinKeyBytes = 32

// keyFileName is the file in the data directory that holds a generated signing key.
const keyFileName = "jwt.key"

// tokenAlg is the only signing algorithm issued and accepted; pinning it on verification
// refuses alg "none" and algorithm confusion.
var tokenAlg = jwt.SigningMethodHS256

// maxTokenFormBytes bounds a /connect/token body: a few short form fields.
const maxTokenFormBytes = 64 << 10

// TokenIssuer issues and verifies the gateway's access tokens: HS256 JWTs carrying sub (the
// client id), scope (space-separated), iss, aud, iat, exp and a random jti. Its fields must not
// change once it is in use; then it is safe for concurrent use.
type TokenIssuer struct {
	Key      []byte        // HMAC key, at least MinKeyBytes; see LoadOrCreateKey
	Issuer   string        // iss, required
	Audience string        // aud, required
	TTL      time.Duration // token lifetime; zero means one hour
	Now      func() time.Time
}

// tokenClaims is the JWT payload.
type tokenClaims struct {
	Scope string `json:"scope"`
	jwt.RegisteredClaims
}

// Issue signs a token for clientID carrying scopes. expiresIn is the lifetime in seconds, as
// the token response's expires_in. It returns an error only when the issuer is misconfigured
// (short key, empty issuer or audience).
func (t *TokenIssuer) Issue(clientID string, scopes []string) (token string, expiresIn int, err error) {
	if err := t.check(); err != nil {
		return "", 0, err
	}
	if clientID == "" {
		return "", 0, errors.New("issue token: empty client id")
	}
	now := t.now()
	ttl := t.ttl()
	claims := tokenClaims{
		Scope: strings.Join(scopes, " "),
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    t.Issuer,
			Subject:   clientID,
			Audience:  jwt.ClaimStrings{t.Audience},
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
			ID:        uuid.NewString(),
		},
	}
	signed, err := jwt.NewWithClaims(tokenAlg, claims).SignedString(t.Key)
	if err != nil {
		return "", 0, fmt.Errorf("sign token for client %q: %w", clientID, err)
	}
	return signed, int(ttl / time.Second), nil
}

// Verify checks a token's signature (HS256 only, with t.Key), issuer, audience and expiry
// (exp required) and returns its subject and scopes. It implements TokenVerifier: any token
// that must be refused (tampered, other key or algorithm, alg "none", expired, wrong issuer or
// audience, no subject) yields an error.
func (t *TokenIssuer) Verify(token string) (clientID string, scopes []string, err error) {
	if err := t.check(); err != nil {
		return "", nil, err
	}
	var claims tokenClaims
	_, err = jwt.ParseWithClaims(token, &claims,
		func(*jwt.Token) (any, error) { return t.Key, nil },
		jwt.WithValidMethods([]string{tokenAlg.Alg()}),
		jwt.WithIssuer(t.Issuer),
		jwt.WithAudience(t.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(t.now),
	)
	if err != nil {
		return "", nil, fmt.Errorf("verify token: %w", err)
	}
	if claims.Subject == "" {
		return "", nil, errors.New("verify token: no subject")
	}
	return claims.Subject, strings.Fields(claims.Scope), nil
}

func (t *TokenIssuer) check() error {
	switch {
	case len(t.Key) < MinKeyBytes:
		return fmt.Errorf("token signing key is %d bytes; it must be at least %d", len(t.Key), MinKeyBytes)
	case t.Issuer == "":
		return errors.New("token issuer is not set")
	case t.Audience == "":
		return errors.New("token audience is not set")
	}
	return nil
}

func (t *TokenIssuer) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

func (t *TokenIssuer) ttl() time.Duration {
	if t.TTL > 0 {
		return t.TTL
	}
	return time.Hour
}

// LoadOrCreateKey returns the token signing key. A configured key (auth.jwt.key, possibly from
// ${ENV}) is used as is and must be at least MinKeyBytes long. Otherwise the key is read from
// <dataDir>/jwt.key; when that file does not exist, 32 random bytes are generated, written
// hex-encoded with 0600 permissions and used, so issued tokens survive a restart. The key is
// the file's content without surrounding whitespace, so it can be copied into auth.jwt.key
// unchanged. Concurrent callers on one data directory all end up with the same key.
func LoadOrCreateKey(dataDir, configured string) ([]byte, error) {
	if configured != "" {
		if len(configured) < MinKeyBytes {
			return nil, fmt.Errorf("auth.jwt.key is %d bytes; it must be at least %d bytes", len(configured), MinKeyBytes)
		}
		return []byte(configured), nil
	}
	path := filepath.Join(dataDir, keyFileName)
	key, err := readKeyFile(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory for the token key: %w", err)
	}
	random := make([]byte, 32)
	if _, err := rand.Read(random); err != nil {
		return nil, fmt.Errorf("generate token key: %w", err)
	}
	// Write a temporary file and link it into place: the link fails if another process got
	// there first, and nobody ever reads a half-written key.
	tmp, err := os.CreateTemp(dataDir, keyFileName+".*.tmp") // created 0600
	if err != nil {
		return nil, fmt.Errorf("create token key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(hex.EncodeToString(random) + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("write token key file %s: %w", tmp.Name(), err)
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("install token key file %s: %w", path, err)
	}
	return readKeyFile(path)
}

func readKeyFile(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read token key: %w", err)
	}
	key := []byte(strings.TrimSpace(string(raw)))
	if len(key) < MinKeyBytes {
		return nil, fmt.Errorf("token key file %s holds %d bytes; it must hold at least %d (delete it to generate a new key)", path, len(key), MinKeyBytes)
	}
	return key, nil
}

// oauthError is the RFC 6749 §5.2 error body.
type oauthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

// tokenResponse is the RFC 6749 §5.1 success body.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
	Scope       string `json:"scope"`
}

// writeTokenJSON answers the token endpoint; RFC 6749 §5.1 forbids caching its answers.
func writeTokenJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, status, v)
}

func tokenError(w http.ResponseWriter, status int, code, format string, args ...any) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="gateway"`)
	}
	writeTokenJSON(w, status, oauthError{Error: code, Description: fmt.Sprintf(format, args...)})
}

// writeTokenRefusal answers a classified error (see classify) in the RFC 6749 §5.2 shape.
func writeTokenRefusal(w http.ResponseWriter, err error) {
	status, retryAfter, msg := classify(err)
	if retryAfter != "" {
		w.Header().Set("Retry-After", retryAfter)
	}
	code := "invalid_request"
	if status == http.StatusTooManyRequests {
		code = "slow_down"
	}
	tokenError(w, status, code, "%s", msg)
}

// token is POST /connect/token: the OAuth2 client-credentials grant (RFC 6749 §4.4). The client
// authenticates with Basic or with client_id/client_secret form fields (one of the two); scope,
// if given, must be a subset of the client's scopes and defaults to all of them. Errors follow
// RFC 6749 §5.2: invalid_request, unsupported_grant_type and invalid_scope are 400,
// invalid_client is 401 with WWW-Authenticate.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if s.Tokens == nil {
		tokenError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "this gateway does not issue tokens")
		return
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		tokenError(w, http.StatusBadRequest, "invalid_request", "Content-Type %s is not application/x-www-form-urlencoded", quoteOrMissing(r.Header.Get("Content-Type")))
		return
	}
	if r.URL.Query().Has("client_secret") {
		tokenError(w, http.StatusBadRequest, "invalid_request", "client_secret must not be sent in the URL")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxTokenFormBytes)
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			tokenError(w, http.StatusRequestEntityTooLarge, "invalid_request", "the body is over the limit of %d bytes", maxTokenFormBytes)
			return
		}
		tokenError(w, http.StatusBadRequest, "invalid_request", "the body is not a valid form: %v", err)
		return
	}
	form := r.PostForm
	for _, name := range []string{"grant_type", "scope", "client_id", "client_secret"} {
		if len(form[name]) > 1 {
			tokenError(w, http.StatusBadRequest, "invalid_request", "parameter %s is repeated", name)
			return
		}
	}
	switch grant := form.Get("grant_type"); grant {
	case "client_credentials":
	case "":
		tokenError(w, http.StatusBadRequest, "invalid_request", "grant_type is required; use client_credentials")
		return
	default:
		tokenError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type %q is not supported; use client_credentials", grant)
		return
	}

	if err := s.Throttle.checkAddr(r); err != nil {
		writeTokenRefusal(w, err)
		return
	}
	client, status, code, msg := s.tokenClient(r, form)
	if code != "" {
		if code == "invalid_client" && (r.Header.Get("Authorization") != "" || form.Has("client_id") || form.Has("client_secret")) {
			s.Throttle.failed(r)
		}
		tokenError(w, status, code, "%s", msg)
		return
	}
	if err := s.Throttle.request(client.ID); err != nil {
		writeTokenRefusal(w, err)
		return
	}

	granted := client.Scopes
	if requested := strings.Fields(form.Get("scope")); len(requested) > 0 {
		granted = nil
		var refused []string
		for _, sc := range requested {
			switch {
			case !slices.Contains(client.Scopes, sc):
				refused = append(refused, sc)
			case !slices.Contains(granted, sc):
				granted = append(granted, sc)
			}
		}
		if len(refused) > 0 {
			tokenError(w, http.StatusBadRequest, "invalid_scope", "scope %q is not granted to client %q; it may request: %s",
				strings.Join(refused, " "), client.ID, strings.Join(client.Scopes, " "))
			return
		}
	}
	token, expiresIn, err := s.Tokens.Issue(client.ID, granted)
	if err != nil {
		s.Log.Error("issue token", "client", client.ID, "err", err)
		tokenError(w, http.StatusInternalServerError, "server_error", "the token could not be issued")
		return
	}
	writeTokenJSON(w, http.StatusOK, tokenResponse{
		AccessToken: token, TokenType: "Bearer", ExpiresIn: expiresIn, Scope: strings.Join(granted, " "),
	})
}

// tokenClient authenticates the client of a token request (RFC 6749 §2.3.1). It returns the
// client, or the status, error code and description to answer with.
func (s *Server) tokenClient(r *http.Request, form url.Values) (c Client, status int, code, msg string) {
	basicID, basicSecret, hasBasic := r.BasicAuth()
	_, hasFormID := form["client_id"]
	_, hasFormSecret := form["client_secret"]
	switch {
	case hasBasic && (hasFormID || hasFormSecret):
		return Client{}, http.StatusBadRequest, "invalid_request", "send the client credentials either in the Authorization header or in the form, not both"
	case hasBasic:
		// RFC 6749 §2.3.1 form-encodes id and secret before Basic; many clients do not, so
		// accept both spellings.
		if c, ok := s.checkClient(basicID, basicSecret); ok {
			return c, 0, "", ""
		}
		id, err1 := url.QueryUnescape(basicID)
		secret, err2 := url.QueryUnescape(basicSecret)
		if err1 == nil && err2 == nil && (id != basicID || secret != basicSecret) {
			if c, ok := s.checkClient(id, secret); ok {
				return c, 0, "", ""
			}
		}
	case hasFormID || hasFormSecret:
		if c, ok := s.checkClient(form.Get("client_id"), form.Get("client_secret")); ok {
			return c, 0, "", ""
		}
	default:
		return Client{}, http.StatusUnauthorized, "invalid_client", "client authentication is required: Basic client_id:client_secret or the client_id and client_secret form fields"
	}
	return Client{}, http.StatusUnauthorized, "invalid_client", "client authentication failed"
}

// checkClient reports whether id names a client whose secret is secret.
func (s *Server) checkClient(id, secret string) (Client, bool) {
	if id == "" || secret == "" {
		return Client{}, false
	}
	return s.Auth.CheckClient(id, secret)
}
