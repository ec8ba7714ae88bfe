package pgstore

import (
	"context"
	"crypto/rand"
	"fmt"
)

// secretsSchema holds secrets every node of a cluster must share (the JWT signing key).
const secretsSchema = `
CREATE TABLE IF NOT EXISTS gateway_secrets (
	name  text COLLATE "C" PRIMARY KEY,
	value bytea NOT NULL
);
`

// SharedSecret returns the secret called name, generating size random bytes the first time:
// every node gets the same value, whichever created it (the first insert wins).
func (s *Store) SharedSecret(ctx context.Context, name string, size int) ([]byte, error) {
	random := make([]byte, size)
	if _, err := rand.Read(random); err != nil {
		return nil, fmt.Errorf("pgstore: generate secret %s: %w", name, err)
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO gateway_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`,
		name, random); err != nil {
		return nil, fmt.Errorf("pgstore: store secret %s: %w", name, err)
	}
	var value []byte
	if err := s.db.QueryRowContext(ctx, `SELECT value FROM gateway_secrets WHERE name = $1`, name).Scan(&value); err != nil {
		return nil, fmt.Errorf("pgstore: read secret %s: %w", name, err)
	}
	return value, nil
}
