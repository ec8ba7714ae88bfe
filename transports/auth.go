package transports

import (
	"crypto/rand"
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
	RateLimit    RateLimit
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

	// unknown stands in for a client id that does not exist, so refusing it costs what refusing
	// a wrong secret costs (a bcrypt comparison when clients use bcrypt) and does not tell which
	// ids exist.
	unknown Client
	// compareHash is bcrypt.CompareHashAndPassword.
	compareHash func(hash, password []byte) error
}

// NewAuthenticator indexes clients by id and by static token. When clients use bcrypt, it
// hashes a random secret at their highest cost (tens of milliseconds) for unknown ids to be
// compared with.
func NewAuthenticator(clients []Client) *Authenticator {
	a := &Authenticator{byID: map[string]*Client{}, byToken: map[string]*Client{}, compareHash: bcrypt.CompareHashAndPassword}
	cost := 0
	for i := range clients {
		c := &clients[i]
		a.byID[c.ID] = c
		for _, t := range c.Tokens {
			a.byToken[t] = c
		}
		if c.SecretBcrypt != "" {
			if ct, err := bcrypt.Cost([]byte(c.SecretBcrypt)); err == nil {
				cost = max(cost, ct)
			}
		}
	}
	a.unknown = Client{ID: "\x00unknown", Secret: rand.Text()}
	if cost > 0 {
		// The error can only be a cost out of range, which bcrypt.Cost has not returned.
		hash, _ := bcrypt.GenerateFromPassword([]byte(rand.Text()), cost)
		a.unknown = Client{ID: a.unknown.ID, SecretBcrypt: string(hash)}
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
		c, ok := a.CheckClient(id, secret)
		if !ok {
			return Principal{}, false
		}
		return principalOf(&c, c.Scopes), true
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

// CheckClient returns the client with id if secret is its secret. An unknown id costs the same
// work as a wrong secret, so the answer's timing does not tell which ids exist.
func (a *Authenticator) CheckClient(id, secret string) (Client, bool) {
	c, found := a.byID[id]
	if !found {
		a.CheckSecret(&a.unknown, secret)
		return Client{}, false
	}
	if !a.CheckSecret(c, secret) {
		return Client{}, false
	}
	return *c, true
}

// CheckSecret compares secret with the client's in constant time (plain; the lengths are not
// revealed either) or with bcrypt.
func (a *Authenticator) CheckSecret(c *Client, secret string) bool {
	if c.SecretBcrypt != "" {
		key := sha256.Sum256([]byte(c.ID + "\x00" + secret))
		if _, ok := a.bcryptOK.Load(key); ok {
			return true
		}
		if a.compareHash([]byte(c.SecretBcrypt), []byte(secret)) != nil {
			return false
		}
		a.bcryptOK.Store(key, true)
		return true
	}
	if c.Secret == "" {
		return false
	}
	want, got := sha256.Sum256([]byte(c.Secret)), sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(want[:], got[:]) == 1
}

// Scopes lists every scope some client holds, sorted.
func (a *Authenticator) Scopes() []string {
	var out []string
	for _, c := range a.byID {
		for _, s := range c.Scopes {
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	slices.Sort(out)
	return out
}

func principalOf(c *Client, scopes []string) Principal {
	return Principal{ClientID: c.ID, ClientName: c.Name, Scopes: scopes, Formats: c.Formats, Tenants: c.Tenants}
}
