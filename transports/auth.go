package transports

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"slices"
	"strings"
	"sync"

	"golang.org/x/crypto/bcrypt"
)

// Client is a partner account as the HTTP layer needs it.
type Client struct {
	ID           string
	Name         string
	Secret       string // plain Basic secret, or
	SecretBcrypt string // its bcrypt hash
	Tokens       []string
	Scopes       []string
	Formats      []string
	Tenants      []string // "country/tenant"
	Hubs         []string
}

// Principal is an authenticated caller.
type Principal struct {
	ClientID   string
	ClientName string
	Scopes     []string // what this credential may do: the client's scopes, or a token's subset
	Formats    []string
	Tenants    []string
}

// HasScope reports whether the credential carries scope.
func (p Principal) HasScope(scope string) bool { return slices.Contains(p.Scopes, scope) }

// MayUseFormat reports whether the client is assigned format.
func (p Principal) MayUseFormat(format string) bool { return slices.Contains(p.Formats, format) }

// TokenVerifier checks a JWT and returns the client it was issued to and its scopes.
// It returns an error for any token that must be refused.
type TokenVerifier func(token string) (clientID string, scopes []string, err error)

// Authenticator resolves credentials to principals. It is safe for concurrent use.
type Authenticator struct {
	byID    map[string]*Client
	byToken map[string]*Client
	// VerifyJWT, when set, accepts Bearer JWTs (tokens with two dots).
	VerifyJWT TokenVerifier

	// bcryptOK caches sha256(client, secret) of verified bcrypt secrets: bcrypt costs ~50 ms
	// by design, far too much per request.
	bcryptOK sync.Map
}

// NewAuthenticator indexes clients by id and by static token.
func NewAuthenticator(clients []Client) *Authenticator {
	a := &Authenticator{byID: map[string]*Client{}, byToken: map[string]*Client{}}
	for i := range clients {
		c := &clients[i]
		a.byID[c.ID] = c
		for _, t := range c.Tokens {
			a.byToken[t] = c
		}
	}
	return a
}

// Client returns the client with id.
func (a *Authenticator) Client(id string) (Client, bool) {
	c, ok := a.byID[id]
	if !ok {
		return Client{}, false
	}
	return *c, true
}

// Authenticate reports who sent r: Basic client:secret, a static Bearer token, or a JWT.
// ok is false for missing or bad credentials; it never distinguishes which part was wrong.
func (a *Authenticator) Authenticate(r *http.Request) (Principal, bool) {
	if id, secret, ok := r.BasicAuth(); ok {
		c, found := a.byID[id]
		if !found || !a.CheckSecret(c, secret) {
			return Principal{}, false
		}
		return principalOf(c, c.Scopes), true
	}
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return Principal{}, false
	}
	token = strings.TrimSpace(token)
	if c, found := a.byToken[token]; found {
		return principalOf(c, c.Scopes), true
	}
	if a.VerifyJWT != nil && strings.Count(token, ".") == 2 {
		id, scopes, err := a.VerifyJWT(token)
		if err != nil {
			return Principal{}, false
		}
		c, found := a.byID[id]
		if !found {
			return Principal{}, false
		}
		// A token never grants more than its client holds now.
		granted := slices.DeleteFunc(slices.Clone(scopes), func(s string) bool { return !slices.Contains(c.Scopes, s) })
		return principalOf(c, granted), true
	}
	return Principal{}, false
}

// CheckSecret compares secret with the client's in constant time (plain) or with bcrypt.
func (a *Authenticator) CheckSecret(c *Client, secret string) bool {
	if c.SecretBcrypt != "" {
		key := sha256.Sum256([]byte(c.ID + "\x00" + secret))
		if _, ok := a.bcryptOK.Load(key); ok {
			return true
		}
		if bcrypt.CompareHashAndPassword([]byte(c.SecretBcrypt), []byte(secret)) != nil {
			return false
		}
		a.bcryptOK.Store(key, true)
		return true
	}
	if c.Secret == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(c.Secret), []byte(secret)) == 1
}

func principalOf(c *Client, scopes []string) Principal {
	return Principal{ClientID: c.ID, ClientName: c.Name, Scopes: scopes, Formats: c.Formats, Tenants: c.Tenants}
}
