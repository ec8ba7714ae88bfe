package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mattn/go-sqlite3"

	"github.com/opengw/gateway/internal/integrations"
	"github.com/opengw/gateway/internal/sqlitedb"
	"github.com/opengw/gateway/internal/store"
)

// integSchema holds integrations and their deliveries (tables integ_). Times are unix
// milliseconds. A delivery's body lives in integ_payloads, written once: SQLite rewrites a whole
// row when one column changes, and a delivery's row changes on every attempt.
//
// A delivery's attempt row has error NULL while the attempt is in flight; a success has an
// empty error.
// Indexes:
//   - integ_deliveries (integration_id, state, next_at): "has this lane a due delivery" (claims);
//   - integ_deliveries (integration_id, state, seq): a lane's oldest due delivery, the log
//     by state, a stream's pending deliveries;
//   - integ_requests candidates (partial): requests whose completion should be checked.
const integSchema = `
CREATE TABLE IF NOT EXISTS integ_integrations (
	id          TEXT PRIMARY KEY,
	hub_id      TEXT NOT NULL,
	name        TEXT NOT NULL,
	channel     TEXT NOT NULL,
	status      INTEGER NOT NULL,
	webhook_url TEXT NOT NULL,
	config      TEXT NOT NULL, -- JSON of integrations.Config
	keys        TEXT NOT NULL, -- JSON of integrations.Keys
	created_at  INTEGER NOT NULL,
	updated_at  INTEGER NOT NULL,
	lane_owner  TEXT NOT NULL DEFAULT '',
	lane_until  INTEGER NOT NULL DEFAULT 0,
	UNIQUE (hub_id, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS integ_deliveries (
	seq            INTEGER PRIMARY KEY, -- a rowid: new rows get the largest + 1
	id             TEXT NOT NULL UNIQUE, -- the webhook-id
	integration_id TEXT NOT NULL,
	type           TEXT NOT NULL,
	created_at     INTEGER NOT NULL,
	state          INTEGER NOT NULL DEFAULT 0, -- 0 pending, 1 succeeded, 2 failed
	attempts       INTEGER NOT NULL DEFAULT 0,
	round_start    INTEGER NOT NULL DEFAULT 0, -- attempts made before the last resend
	next_at        INTEGER NOT NULL            -- when a pending delivery is due
);
CREATE INDEX IF NOT EXISTS integ_deliveries_due ON integ_deliveries (integration_id, state, next_at);
CREATE INDEX IF NOT EXISTS integ_deliveries_lane ON integ_deliveries (integration_id, state, seq);
CREATE INDEX IF NOT EXISTS integ_deliveries_created ON integ_deliveries (created_at);
CREATE TABLE IF NOT EXISTS integ_payloads (
	delivery_seq INTEGER PRIMARY KEY,
	body         BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS integ_attempts (
	delivery_seq    INTEGER NOT NULL,
	n               INTEGER NOT NULL,
	at              INTEGER NOT NULL,
	response_status INTEGER NOT NULL DEFAULT 0,
	error           TEXT, -- NULL while in flight
	duration_ms     INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (delivery_seq, n)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS integ_attempts_in_flight ON integ_attempts (delivery_seq) WHERE error IS NULL;
CREATE TABLE IF NOT EXISTS integ_requests (
	request_id      TEXT PRIMARY KEY,
	client_id       TEXT NOT NULL,
	batch_reference TEXT NOT NULL DEFAULT '',
	total           INTEGER NOT NULL DEFAULT -1,
	terminal        INTEGER NOT NULL DEFAULT 0,
	checked         INTEGER NOT NULL DEFAULT -1,
	created_at      INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS integ_requests_candidates ON integ_requests (request_id)
	WHERE total >= 0 AND terminal >= total AND terminal > checked;
CREATE INDEX IF NOT EXISTS integ_requests_created ON integ_requests (created_at);
`

// Delivery states as stored.
var stateCodes = map[integrations.DeliveryState]int{integrations.Pending: 0, integrations.Succeeded: 1, integrations.Failed: 2}

func stateOf(code int) integrations.DeliveryState {
	for s, c := range stateCodes {
		if c == code {
			return s
		}
	}
	return integrations.Pending
}

// Integrations is integrations.Store on the gateway's SQLite database: writes go through the
// group-committing writer, reads through the read pool; Bind joins a Store.Update transaction.
type Integrations struct {
	db  *sqlitedb.DB
	now func() time.Time

	// Exists answers from memory: this process writes every integration of its database (the
	// data folder's lock keeps other gateways off it). writes counts the Creates and Deletes
	// that returned; an answer is reused only while the count is the one read before its query.
	writes atomic.Int64
	mu     sync.Mutex
	exists map[string]existsAnswer // by the hub ids, joined with NUL
}

type existsAnswer struct {
	writes int64
	found  bool
}

var _ integrations.Store = (*Integrations)(nil)

// Integrations is the integrations store on this database.
func (s *Store) Integrations() *Integrations { return s.integrations }

// openIntegrations creates the integration tables. With releaseLeases (this process is the
// database's only user) lanes held before a crash are released and attempts left in flight are
// marked abandoned and made due, so they are sent again at once.
func openIntegrations(db *sqlitedb.DB, now func() time.Time, releaseLeases bool) (*Integrations, error) {
	if now == nil {
		now = time.Now
	}
	ctx := context.Background()
	if _, err := db.Exec(ctx, integSchema); err != nil {
		return nil, fmt.Errorf("create integration tables in %s: %w", db.Path(), err)
	}
	s := &Integrations{db: db, now: now, exists: map[string]existsAnswer{}}
	if releaseLeases {
		err := db.Write(ctx, func(tx *sql.Tx) error {
			if _, err := tx.Exec(`UPDATE integ_integrations SET lane_owner = '', lane_until = 0 WHERE lane_until > 0`); err != nil {
				return err
			}
			if _, err := tx.Exec(`UPDATE integ_deliveries SET next_at = ? WHERE state = 0
				AND seq IN (SELECT delivery_seq FROM integ_attempts WHERE error IS NULL)`, now().UnixMilli()); err != nil {
				return err
			}
			_, err := tx.Exec(`UPDATE integ_attempts SET error = ? WHERE error IS NULL`, integrations.AttemptAbandoned)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("release webhook lanes in %s: %w", db.Path(), err)
		}
	}
	return s, nil
}

const integColumns = `id, hub_id, name, channel, status, config, keys, created_at, updated_at`

type scanner interface{ Scan(dest ...any) error }

func scanIntegration(row scanner) (integrations.Integration, error) {
	var (
		in               integrations.Integration
		config, keys     string
		created, updated int64
	)
	if err := row.Scan(&in.ID, &in.HubID, &in.Name, &in.Channel, &in.Status, &config, &keys, &created, &updated); err != nil {
		return integrations.Integration{}, err
	}
	if err := json.Unmarshal([]byte(config), &in.Config); err != nil {
		return integrations.Integration{}, fmt.Errorf("read configuration of integration %s: %w", in.ID, err)
	}
	if err := json.Unmarshal([]byte(keys), &in.Keys); err != nil {
		return integrations.Integration{}, fmt.Errorf("read keys of integration %s: %w", in.ID, err)
	}
	in.CreatedAt, in.UpdatedAt = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
	return in, nil
}

// encodeIntegration returns in's configuration and keys as stored.
func encodeIntegration(in integrations.Integration) (config, keys []byte, err error) {
	if config, err = json.Marshal(in.Config); err != nil {
		return nil, nil, fmt.Errorf("encode configuration: %w", err)
	}
	if keys, err = json.Marshal(in.Keys); err != nil {
		return nil, nil, fmt.Errorf("encode keys: %w", err)
	}
	return config, keys, nil
}

func isUniqueViolation(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && se.ExtendedCode == sqlite3.ErrConstraintUnique
}

// Create stores in; ErrNameTaken if its hub has the name.
func (s *Integrations) Create(ctx context.Context, in integrations.Integration) error {
	config, keys, err := encodeIntegration(in)
	if err != nil {
		return err
	}
	_, err = s.db.Exec(ctx, `INSERT INTO integ_integrations (`+integColumns+`, webhook_url) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		in.ID, in.HubID, in.Name, in.Channel, in.Status, string(config), string(keys),
		in.CreatedAt.UnixMilli(), in.UpdatedAt.UnixMilli(), in.Config.WebhookURL)
	switch {
	case isUniqueViolation(err):
		return integrations.ErrNameTaken
	case err != nil:
		return fmt.Errorf("create integration: %w", err)
	}
	s.writes.Add(1)
	return nil
}

// Replace overwrites the integration in.ID but its hub and creation time.
func (s *Integrations) Replace(ctx context.Context, in integrations.Integration) error {
	config, keys, err := encodeIntegration(in)
	if err != nil {
		return err
	}
	res, err := s.db.Exec(ctx, `UPDATE integ_integrations SET name = ?, channel = ?, status = ?, config = ?, keys = ?,
		updated_at = ?, webhook_url = ? WHERE id = ?`,
		in.Name, in.Channel, in.Status, string(config), string(keys), in.UpdatedAt.UnixMilli(), in.Config.WebhookURL, in.ID)
	switch {
	case isUniqueViolation(err):
		return integrations.ErrNameTaken
	case err != nil:
		return fmt.Errorf("update integration %s: %w", in.ID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return integrations.ErrNotFound
	}
	return nil
}

// Get returns integration id.
func (s *Integrations) Get(ctx context.Context, id string) (integrations.Integration, error) {
	in, err := scanIntegration(s.db.Reader().QueryRowContext(ctx, `SELECT `+integColumns+` FROM integ_integrations WHERE id = ?`, id))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return integrations.Integration{}, integrations.ErrNotFound
	case err != nil:
		return integrations.Integration{}, fmt.Errorf("get integration %s: %w", id, err)
	}
	return in, nil
}

// Exists reports whether any integration belongs to one of hubIDs, from memory while no
// Create or Delete has returned since it last asked the database.
func (s *Integrations) Exists(ctx context.Context, hubIDs ...string) (bool, error) {
	if len(hubIDs) == 0 {
		return false, nil
	}
	key := strings.Join(hubIDs, "\x00")
	writes := s.writes.Load()
	s.mu.Lock()
	a, ok := s.exists[key]
	s.mu.Unlock()
	if ok && a.writes == writes {
		return a.found, nil
	}
	var found bool
	err := s.db.Reader().QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM integ_integrations WHERE hub_id IN (`+marks(len(hubIDs))+`))`,
		anys(hubIDs)...).Scan(&found)
	if err != nil {
		return false, fmt.Errorf("look up integrations: %w", err)
	}
	s.mu.Lock()
	if len(s.exists) >= maxExistsAnswers {
		clear(s.exists)
	}
	s.exists[key] = existsAnswer{writes: writes, found: found}
	s.mu.Unlock()
	return found, nil
}

// maxExistsAnswers bounds Exists' memory: callers ask for the hubs of a configured client.
const maxExistsAnswers = 1024

// List returns the integrations of hubIDs by hub and name.
func (s *Integrations) List(ctx context.Context, hubIDs ...string) ([]integrations.Integration, error) {
	if len(hubIDs) == 0 {
		return nil, nil
	}
	rows, err := s.db.Reader().QueryContext(ctx, `SELECT `+integColumns+` FROM integ_integrations
		WHERE hub_id IN (`+marks(len(hubIDs))+`) ORDER BY hub_id, name`, anys(hubIDs)...)
	if err != nil {
		return nil, fmt.Errorf("list integrations: %w", err)
	}
	defer rows.Close()
	var out []integrations.Integration
	for rows.Next() {
		in, err := scanIntegration(rows)
		if err != nil {
			return nil, fmt.Errorf("list integrations: %w", err)
		}
		out = append(out, in)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list integrations: %w", err)
	}
	return out, nil
}

// Delete removes integration id and its deliveries.
func (s *Integrations) Delete(ctx context.Context, id string) error {
	found := false
	err := s.db.Write(ctx, func(tx *sql.Tx) error {
		res, err := tx.Exec(`DELETE FROM integ_integrations WHERE id = ?`, id)
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		if found = n > 0; !found {
			return nil
		}
		for _, q := range []string{
			`DELETE FROM integ_payloads WHERE delivery_seq IN (SELECT seq FROM integ_deliveries WHERE integration_id = ?)`,
			`DELETE FROM integ_attempts WHERE delivery_seq IN (SELECT seq FROM integ_deliveries WHERE integration_id = ?)`,
			`DELETE FROM integ_deliveries WHERE integration_id = ?`,
		} {
			if _, err := tx.Exec(q, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete integration %s: %w", id, err)
	}
	if !found {
		return integrations.ErrNotFound
	}
	s.writes.Add(1)
	return nil
}

// Bind returns the integration writes of tx, which must come from this database's Store.
func (s *Integrations) Bind(stx store.Tx) (integrations.Tx, error) {
	t, ok := stx.(*tx)
	if !ok || t.s.db != s.db {
		return nil, fmt.Errorf("integrations: %T is not a transaction of the SQLite store %s", stx, s.db.Path())
	}
	return integTx{tx: t.tx, now: s.now}, nil
}

// integTx implements integrations.Tx on one writer transaction.
type integTx struct {
	tx  *sql.Tx
	now func() time.Time
}

func (t integTx) Enqueue(ds ...integrations.NewDelivery) error {
	for _, d := range ds {
		res, err := t.tx.Exec(`INSERT INTO integ_deliveries (id, integration_id, type, created_at, next_at)
			SELECT ?1, ?2, ?3, ?4, ?4 WHERE EXISTS (SELECT 1 FROM integ_integrations WHERE id = ?2)
			ON CONFLICT (id) DO NOTHING`,
			d.ID, d.IntegrationID, d.Type, d.CreatedAt.UnixMilli())
		if err != nil {
			return fmt.Errorf("enqueue delivery %s: %w", d.ID, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			continue // already enqueued, or the integration is gone
		}
		seq, err := res.LastInsertId()
		if err != nil {
			return fmt.Errorf("enqueue delivery %s: %w", d.ID, err)
		}
		if _, err := t.tx.Exec(`INSERT INTO integ_payloads (delivery_seq, body) VALUES (?, ?)`, seq, d.Body); err != nil {
			return fmt.Errorf("enqueue delivery %s: %w", d.ID, err)
		}
	}
	return nil
}

func (t integTx) Follow(p integrations.RequestProgress) (integrations.RequestProgress, error) {
	var out integrations.RequestProgress
	err := t.tx.QueryRow(`INSERT INTO integ_requests (request_id, client_id, batch_reference, total, terminal, created_at)
		VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (request_id) DO UPDATE SET
			total = CASE WHEN excluded.total >= 0 THEN excluded.total ELSE total END,
			terminal = terminal + excluded.terminal,
			batch_reference = CASE WHEN excluded.batch_reference <> '' THEN excluded.batch_reference ELSE batch_reference END
		RETURNING request_id, client_id, batch_reference, total, terminal`,
		p.RequestID, p.ClientID, p.BatchReference, p.Total, p.Terminal, t.now().UnixMilli()).
		Scan(&out.RequestID, &out.ClientID, &out.BatchReference, &out.Total, &out.Terminal)
	if err != nil {
		return integrations.RequestProgress{}, fmt.Errorf("follow request %s: %w", p.RequestID, err)
	}
	return out, nil
}

func (t integTx) Unfollow(requestID string) error {
	if _, err := t.tx.Exec(`DELETE FROM integ_requests WHERE request_id = ?`, requestID); err != nil {
		return fmt.Errorf("stop following request %s: %w", requestID, err)
	}
	return nil
}

// ClaimLanes leases lanes with due work to owner.
func (s *Integrations) ClaimLanes(ctx context.Context, owner string, now, until time.Time, limit int) ([]string, error) {
	var ids []string
	err := s.db.Write(ctx, func(tx *sql.Tx) error {
		ids = ids[:0]
		rows, err := tx.Query(`UPDATE integ_integrations SET lane_owner = ?1, lane_until = ?2
			WHERE id IN (SELECT i.id FROM integ_integrations i
				WHERE i.status = ?3 AND i.webhook_url <> '' AND i.lane_until < ?4
				AND EXISTS (SELECT 1 FROM integ_deliveries d WHERE d.integration_id = i.id AND d.state = 0 AND d.next_at <= ?4)
				LIMIT ?5)
			RETURNING id`, owner, until.UnixMilli(), integrations.Active, now.UnixMilli(), limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("claim webhook lanes: %w", err)
	}
	return ids, nil
}

// NextAttempt claims the next attempt of owner's lane integrationID.
func (s *Integrations) NextAttempt(ctx context.Context, owner, integrationID string, now, busyUntil time.Time) (integrations.Attempt, bool, error) {
	var (
		a     integrations.Attempt
		found bool
	)
	err := s.db.Write(ctx, func(tx *sql.Tx) error {
		a, found = integrations.Attempt{}, false
		in, err := scanIntegration(tx.QueryRow(`SELECT `+integColumns+` FROM integ_integrations
			WHERE id = ? AND lane_owner = ? AND lane_until >= ?`, integrationID, owner, now.UnixMilli()))
		if errors.Is(err, sql.ErrNoRows) {
			return nil // gone, or the lane is no longer ours
		}
		if err != nil {
			return err
		}
		release := func() error {
			_, err := tx.Exec(`UPDATE integ_integrations SET lane_owner = '', lane_until = 0 WHERE id = ? AND lane_owner = ?`, integrationID, owner)
			return err
		}
		if in.Status != integrations.Active || in.Streams() {
			return release()
		}
		var (
			seq, created    int64
			attempts, round int
			d               = integrations.NewDelivery{IntegrationID: integrationID}
		)
		err = tx.QueryRow(`SELECT seq, id, type, created_at, attempts, round_start FROM integ_deliveries
			WHERE integration_id = ? AND state = 0 AND next_at <= ? ORDER BY seq LIMIT 1`, integrationID, now.UnixMilli()).
			Scan(&seq, &d.ID, &d.Type, &created, &attempts, &round)
		if errors.Is(err, sql.ErrNoRows) {
			return release()
		}
		if err != nil {
			return err
		}
		d.CreatedAt = time.UnixMilli(created).UTC()
		if attempts > 0 { // an earlier attempt may have been left in flight
			if _, err := tx.Exec(`UPDATE integ_attempts SET error = ? WHERE delivery_seq = ? AND error IS NULL`, integrations.AttemptAbandoned, seq); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(`UPDATE integ_deliveries SET attempts = attempts + 1, next_at = ? WHERE seq = ?`, busyUntil.UnixMilli(), seq); err != nil {
			return err
		}
		if _, err := tx.Exec(`INSERT INTO integ_attempts (delivery_seq, n, at) VALUES (?, ?, ?)`, seq, attempts+1, now.UnixMilli()); err != nil {
			return err
		}
		if _, err := tx.Exec(`UPDATE integ_integrations SET lane_until = ? WHERE id = ?`, busyUntil.UnixMilli(), integrationID); err != nil {
			return err
		}
		if err := tx.QueryRow(`SELECT body FROM integ_payloads WHERE delivery_seq = ?`, seq).Scan(&d.Body); err != nil {
			return fmt.Errorf("read body of delivery %s: %w", d.ID, err)
		}
		a = integrations.Attempt{Integration: in, Delivery: d, N: attempts + 1, InRound: attempts + 1 - round}
		found = true
		return nil
	})
	if err != nil {
		return integrations.Attempt{}, false, fmt.Errorf("claim next attempt of integration %s: %w", integrationID, err)
	}
	return a, found, nil
}

// FinishAttempt records the outcome of attempt a.
func (s *Integrations) FinishAttempt(ctx context.Context, a integrations.Attempt, o integrations.Outcome) error {
	err := s.db.Write(ctx, func(tx *sql.Tx) error {
		var seq int64
		if err := tx.QueryRow(`SELECT seq FROM integ_deliveries WHERE id = ?`, a.Delivery.ID).Scan(&seq); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return nil // deleted with its integration meanwhile
			}
			return err
		}
		if _, err := tx.Exec(`UPDATE integ_attempts SET response_status = ?, error = ?, duration_ms = ? WHERE delivery_seq = ? AND n = ?`,
			o.ResponseStatus, o.Error, o.Duration.Milliseconds(), seq, a.N); err != nil {
			return err
		}
		next := int64(0)
		if o.State == integrations.Pending {
			next = o.NextAt.UnixMilli()
		}
		if _, err := tx.Exec(`UPDATE integ_deliveries SET state = ?, next_at = ? WHERE seq = ? AND attempts = ?`,
			stateCodes[o.State], next, seq, a.N); err != nil {
			return err
		}
		if o.Pause {
			if _, err := tx.Exec(`UPDATE integ_integrations SET status = ?, updated_at = ? WHERE id = ?`,
				integrations.Paused, s.now().UnixMilli(), a.Integration.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record attempt %d of delivery %s: %w", a.N, a.Delivery.ID, err)
	}
	return nil
}

const deliveryColumns = `seq, id, integration_id, type, created_at, state, next_at`

func scanDelivery(row scanner) (int64, integrations.Delivery, error) {
	var (
		d                  integrations.Delivery
		seq, created, next int64
		state              int
	)
	if err := row.Scan(&seq, &d.ID, &d.IntegrationID, &d.Type, &created, &state, &next); err != nil {
		return 0, d, err
	}
	d.CreatedAt, d.State = time.UnixMilli(created).UTC(), stateOf(state)
	if d.State == integrations.Pending {
		d.NextAttemptAt = time.UnixMilli(next).UTC()
	}
	return seq, d, nil
}

// StreamAfter returns deliveries of a streaming integration with their bodies.
func (s *Integrations) StreamAfter(ctx context.Context, integrationID, afterID string, limit int) ([]integrations.Delivery, error) {
	query := `SELECT ` + deliveryColumns + `, p.body FROM integ_deliveries JOIN integ_payloads p ON p.delivery_seq = seq
		WHERE integration_id = ? AND state = 0 ORDER BY seq LIMIT ?`
	args := []any{integrationID, limit}
	if afterID != "" {
		var after int64
		err := s.db.Reader().QueryRowContext(ctx, `SELECT seq FROM integ_deliveries WHERE id = ? AND integration_id = ?`, afterID, integrationID).Scan(&after)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, integrations.ErrDeliveryNotFound
		}
		if err != nil {
			return nil, fmt.Errorf("find delivery %s: %w", afterID, err)
		}
		query = `SELECT ` + deliveryColumns + `, p.body FROM integ_deliveries JOIN integ_payloads p ON p.delivery_seq = seq
			WHERE integration_id = ? AND seq > ? ORDER BY seq LIMIT ?`
		args = []any{integrationID, after, limit}
	}
	rows, err := s.db.Reader().QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("read stream of integration %s: %w", integrationID, err)
	}
	defer rows.Close()
	var out []integrations.Delivery
	for rows.Next() {
		var (
			d                  integrations.Delivery
			seq, created, next int64
			state              int
		)
		if err := rows.Scan(&seq, &d.ID, &d.IntegrationID, &d.Type, &created, &state, &next, &d.Body); err != nil {
			return nil, fmt.Errorf("read stream of integration %s: %w", integrationID, err)
		}
		d.CreatedAt, d.State = time.UnixMilli(created).UTC(), stateOf(state)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read stream of integration %s: %w", integrationID, err)
	}
	return out, nil
}

// MarkStreamed records that deliveries ids were written to a stream.
func (s *Integrations) MarkStreamed(ctx context.Context, integrationID string, ids []string, at time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	err := s.db.Write(ctx, func(tx *sql.Tx) error {
		args := append([]any{integrationID}, anys(ids)...)
		where := `integration_id = ? AND state = 0 AND id IN (` + marks(len(ids)) + `)`
		if _, err := tx.Exec(`INSERT OR IGNORE INTO integ_attempts (delivery_seq, n, at, error)
			SELECT seq, attempts + 1, ?, '' FROM integ_deliveries WHERE `+where, append([]any{at.UnixMilli()}, args...)...); err != nil {
			return err
		}
		_, err := tx.Exec(`UPDATE integ_deliveries SET state = 1, attempts = attempts + 1, next_at = 0 WHERE `+where, args...)
		return err
	})
	if err != nil {
		return fmt.Errorf("mark deliveries of integration %s streamed: %w", integrationID, err)
	}
	return nil
}

// CompletionCandidates returns followed requests whose completion should be checked.
func (s *Integrations) CompletionCandidates(ctx context.Context, limit int) ([]integrations.RequestProgress, error) {
	rows, err := s.db.Reader().QueryContext(ctx, `SELECT request_id, client_id, batch_reference, total, terminal FROM integ_requests
		WHERE total >= 0 AND terminal >= total AND terminal > checked LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("find requests to check: %w", err)
	}
	defer rows.Close()
	var out []integrations.RequestProgress
	for rows.Next() {
		var p integrations.RequestProgress
		if err := rows.Scan(&p.RequestID, &p.ClientID, &p.BatchReference, &p.Total, &p.Terminal); err != nil {
			return nil, fmt.Errorf("find requests to check: %w", err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("find requests to check: %w", err)
	}
	return out, nil
}

// MarkChecked records that requestID was not complete with terminal outcomes counted.
func (s *Integrations) MarkChecked(ctx context.Context, requestID string, terminal int) error {
	if _, err := s.db.Exec(ctx, `UPDATE integ_requests SET checked = max(checked, ?) WHERE request_id = ?`, terminal, requestID); err != nil {
		return fmt.Errorf("mark request %s checked: %w", requestID, err)
	}
	return nil
}

// purgeBatch bounds the deliveries one purge transaction removes, so that it never holds the
// writer long.
const purgeBatch = 1000

// Purge forgets deliveries and followed requests created before before.
func (s *Integrations) Purge(ctx context.Context, before time.Time) (int, error) {
	total := 0
	for {
		n := 0
		err := s.db.Write(ctx, func(tx *sql.Tx) error {
			n = 0
			sel := `SELECT seq FROM integ_deliveries WHERE created_at < ? ORDER BY created_at LIMIT ?`
			for _, q := range []string{
				`DELETE FROM integ_payloads WHERE delivery_seq IN (` + sel + `)`,
				`DELETE FROM integ_attempts WHERE delivery_seq IN (` + sel + `)`,
			} {
				if _, err := tx.Exec(q, before.UnixMilli(), purgeBatch); err != nil {
					return err
				}
			}
			res, err := tx.Exec(`DELETE FROM integ_deliveries WHERE seq IN (`+sel+`)`, before.UnixMilli(), purgeBatch)
			if err != nil {
				return err
			}
			removed, _ := res.RowsAffected()
			n = int(removed)
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("purge deliveries: %w", err)
		}
		total += n
		if n < purgeBatch {
			break
		}
	}
	if _, err := s.db.Exec(ctx, `DELETE FROM integ_requests WHERE created_at < ?`, before.UnixMilli()); err != nil {
		return total, fmt.Errorf("purge followed requests: %w", err)
	}
	return total, nil
}

// Deliveries returns a page of the log of integrationID, newest first, with attempts.
func (s *Integrations) Deliveries(ctx context.Context, integrationID string, f integrations.DeliveryFilter) (integrations.DeliveryPage, error) {
	where, args := `integration_id = ?`, []any{integrationID}
	if f.State != "" {
		where += ` AND state = ?`
		args = append(args, stateCodes[f.State])
	}
	tx, err := s.db.Reader().BeginTx(ctx, nil)
	if err != nil {
		return integrations.DeliveryPage{}, fmt.Errorf("list deliveries: %w", err)
	}
	defer tx.Rollback()
	var page integrations.DeliveryPage
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM integ_deliveries WHERE `+where, args...).Scan(&page.Total); err != nil {
		return page, fmt.Errorf("count deliveries: %w", err)
	}
	size := max(f.PageSize, 1)
	rows, err := tx.QueryContext(ctx, `SELECT `+deliveryColumns+` FROM integ_deliveries WHERE `+where+` ORDER BY seq DESC LIMIT ? OFFSET ?`,
		append(args, size, (max(f.Page, 1)-1)*size)...)
	if err != nil {
		return page, fmt.Errorf("list deliveries: %w", err)
	}
	var seqs []int64
	for rows.Next() {
		seq, d, err := scanDelivery(rows)
		if err != nil {
			rows.Close()
			return page, fmt.Errorf("list deliveries: %w", err)
		}
		seqs = append(seqs, seq)
		page.Deliveries = append(page.Deliveries, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return page, fmt.Errorf("list deliveries: %w", err)
	}
	if err := loadAttempts(ctx, tx, seqs, page.Deliveries); err != nil {
		return page, err
	}
	return page, nil
}

// loadAttempts fills ds[i].Attempts from the attempts of delivery seqs[i].
func loadAttempts(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, seqs []int64, ds []integrations.Delivery) error {
	if len(seqs) == 0 {
		return nil
	}
	at := make(map[int64]int, len(seqs))
	args := make([]any, len(seqs))
	for i, seq := range seqs {
		at[seq], args[i] = i, seq
	}
	rows, err := q.QueryContext(ctx, `SELECT delivery_seq, n, at, response_status, error, duration_ms FROM integ_attempts
		WHERE delivery_seq IN (`+marks(len(seqs))+`) ORDER BY delivery_seq, n`, args...)
	if err != nil {
		return fmt.Errorf("list attempts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			seq, when, ms int64
			a             integrations.AttemptLog
			msg           sql.NullString
		)
		if err := rows.Scan(&seq, &a.N, &when, &a.ResponseStatus, &msg, &ms); err != nil {
			return fmt.Errorf("list attempts: %w", err)
		}
		a.At, a.Duration = time.UnixMilli(when).UTC(), time.Duration(ms)*time.Millisecond
		a.Error = msg.String
		if !msg.Valid {
			a.Error = integrations.AttemptInFlight
		}
		i := at[seq]
		ds[i].Attempts = append(ds[i].Attempts, a)
	}
	return rows.Err()
}

// Resend makes delivery deliveryID of integrationID due now with a fresh round of retries.
func (s *Integrations) Resend(ctx context.Context, integrationID, deliveryID string, now time.Time) (integrations.Delivery, error) {
	var d integrations.Delivery
	err := s.db.Write(ctx, func(tx *sql.Tx) error {
		res, err := tx.Exec(`UPDATE integ_deliveries SET state = 0, next_at = ?, round_start = attempts WHERE id = ? AND integration_id = ?`,
			now.UnixMilli(), deliveryID, integrationID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return integrations.ErrDeliveryNotFound
		}
		seq, got, err := scanDelivery(tx.QueryRow(`SELECT `+deliveryColumns+` FROM integ_deliveries WHERE id = ?`, deliveryID))
		if err != nil {
			return err
		}
		d = got
		ds := []integrations.Delivery{d}
		if err := loadAttempts(ctx, tx, []int64{seq}, ds); err != nil {
			return err
		}
		d = ds[0]
		return nil
	})
	if errors.Is(err, integrations.ErrDeliveryNotFound) {
		return integrations.Delivery{}, err
	}
	if err != nil {
		return integrations.Delivery{}, fmt.Errorf("resend delivery %s: %w", deliveryID, err)
	}
	return d, nil
}

// Recover resends the failed deliveries of integrationID created at or after since.
func (s *Integrations) Recover(ctx context.Context, integrationID string, since, now time.Time) (int, error) {
	res, err := s.db.Exec(ctx, `UPDATE integ_deliveries SET state = 0, next_at = ?, round_start = attempts
		WHERE integration_id = ? AND state = 2 AND created_at >= ?`, now.UnixMilli(), integrationID, since.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("recover deliveries of integration %s: %w", integrationID, err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
