package integrations

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Key prefixes of Standard Webhooks.
const (
	secretPrefix     = "whsec_" // HMAC-SHA256 secret (signature v1)
	privateKeyPrefix = "whsk_"  // Ed25519 private key (signature v1a)
	publicKeyPrefix  = "whpk_"  // Ed25519 public key, for receivers
)

// secretBytes is the HMAC secret's length (Standard Webhooks allows 24 to 64 bytes).
const secretBytes = 32

// Keys are an integration's signing keys. Secret is shown to the integration's owner
// (privateSigningKey); PrivateKey never leaves the gateway, its public half is
// publicSigningKey.
type Keys struct {
	Secret     string `json:"secret"`     // whsec_<base64>
	PrivateKey string `json:"privateKey"` // whsk_<base64 of the 64-byte Ed25519 private key>
	// Previous keys keep signing, next to the current ones, until their Until: a receiver
	// has that long to switch after a regeneration.
	Previous []OldKeys `json:"previous,omitempty"`
}

// OldKeys are keys replaced by a regeneration, still signing until Until.
type OldKeys struct {
	Secret     string    `json:"secret"`
	PrivateKey string    `json:"privateKey"`
	Until      time.Time `json:"until"`
}

// NewKeys generates a fresh HMAC secret and Ed25519 key pair.
func NewKeys() (Keys, error) {
	secret := make([]byte, secretBytes)
	if _, err := rand.Read(secret); err != nil {
		return Keys{}, fmt.Errorf("generate signing secret: %w", err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Keys{}, fmt.Errorf("generate signing key pair: %w", err)
	}
	return Keys{
		Secret:     secretPrefix + base64.StdEncoding.EncodeToString(secret),
		PrivateKey: privateKeyPrefix + base64.StdEncoding.EncodeToString(priv),
	}, nil
}

// Rotate returns new keys; k's current keys keep signing until now+overlap (with overlap 0
// they stop at once). Previous keys already expired at now are dropped.
func (k Keys) Rotate(now time.Time, overlap time.Duration) (Keys, error) {
	next, err := NewKeys()
	if err != nil {
		return Keys{}, err
	}
	if overlap > 0 {
		next.Previous = append(next.Previous, OldKeys{Secret: k.Secret, PrivateKey: k.PrivateKey, Until: now.Add(overlap)})
	}
	for _, old := range k.Previous {
		if old.Until.After(now) {
			next.Previous = append(next.Previous, old)
		}
	}
	return next, nil
}

// PublicKey is the Ed25519 public key receivers verify v1a signatures with: whpk_<base64>.
// It is "" if the private key cannot be read.
func (k Keys) PublicKey() string {
	priv, err := decodePrivateKey(k.PrivateKey)
	if err != nil {
		return ""
	}
	return publicKeyPrefix + base64.StdEncoding.EncodeToString(priv.Public().(ed25519.PublicKey))
}

// Sign returns the webhook-signature header for a delivery: "v1,<HMAC> v1a,<Ed25519>" over
// "{id}.{timestamp}.{body}" with the current keys, followed by the same with each previous key
// still valid at now.
func (k Keys) Sign(id string, timestamp time.Time, body []byte, now time.Time) (string, error) {
	content := make([]byte, 0, len(id)+len(body)+24)
	content = append(content, id...)
	content = append(content, '.')
	content = strconv.AppendInt(content, timestamp.Unix(), 10)
	content = append(content, '.')
	content = append(content, body...)

	sets := []OldKeys{{Secret: k.Secret, PrivateKey: k.PrivateKey}}
	for _, old := range k.Previous {
		if old.Until.After(now) {
			sets = append(sets, old)
		}
	}
	var sigs []string
	for _, set := range sets {
		secret, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(set.Secret, secretPrefix))
		if err != nil || !strings.HasPrefix(set.Secret, secretPrefix) {
			return "", fmt.Errorf("signing secret is not %s<base64>", secretPrefix)
		}
		priv, err := decodePrivateKey(set.PrivateKey)
		if err != nil {
			return "", err
		}
		mac := hmac.New(sha256.New, secret)
		mac.Write(content)
		sigs = append(sigs, "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)),
			"v1a,"+base64.StdEncoding.EncodeToString(ed25519.Sign(priv, content)))
	}
	// v1 signatures first, then v1a, so that a reader stopping at its version finds it early.
	out := make([]string, 0, len(sigs))
	for _, prefix := range []string{"v1,", "v1a,"} {
		for _, s := range sigs {
			if strings.HasPrefix(s, prefix) {
				out = append(out, s)
			}
		}
	}
	return strings.Join(out, " "), nil
}

func decodePrivateKey(s string) (ed25519.PrivateKey, error) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, privateKeyPrefix))
	if err != nil || !strings.HasPrefix(s, privateKeyPrefix) || len(raw) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("signing key is not %s<base64 of %d bytes>", privateKeyPrefix, ed25519.PrivateKeySize)
	}
	return ed25519.PrivateKey(raw), nil
}
