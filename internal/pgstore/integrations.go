package pgstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/opengw/gateway/internal/integrations"
	"github.com/opengw/gateway/internal/store"
)

// integSchemaLock is the advisory lock key under which a node creates the integration tables,
// so that nodes starting together do not race on CREATE ... IF NOT EXISTS.
const integSchemaLock int64 = 0x6f70656e67770010 // "opengw" 0010

// integSchema holds integrations and their deliveries (tables integ_), with the shape of the
// SQLite backend's. A delivery's body stays in its row: PostgreSQL keeps large values out of
// line (TOAST) and does not rewrite them when other columns change. An attempt's error is NULL
// while it is in flight. Ids compare in the "C" collation (byte order).
const integSchema = `
CREATE TABLE IF NOT EXISTS integ_integrations (
	id          text COLLATE "C" PRIMARY KEY,
	hub_id      text COLLATE "C" NOT NULL,
	name        text COLLATE "C" NOT NULL,
	channel     text NOT NULL,
	status      integer NOT NULL,
	webhook_url text NOT NULL,
	config      text NOT NULL, -- JSON of integrations.Config, as encoded
	keys        text NOT NULL, -- JSON of integrations.Keys
	created_at  timestamptz NOT NULL,
	updated_at  timestamptz NOT NULL,
	lane_owner  text NOT NULL DEFAULT '',
	lane_until  timestamptz NOT NULL DEFAULT '-infinity',
	UNIQUE (hub_id, name)
);
CREATE TABLE IF NOT EXISTS integ_deliveries (
	seq            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	id             text COLLATE "C" NOT NULL UNIQUE, -- the webhook-id
	integration_id text COLLATE "C" NOT NULL,
	type           text NOT NULL,
	created_at     timestamptz NOT NULL,
	state          smallint NOT NULL DEFAULT 0, -- 0 pending, 1 succeeded, 2 failed
	attempts       integer NOT NULL DEFAULT 0,
	round_start    integer NOT NULL DEFAULT 0,  -- attempts made before the last resend
	next_at        timestamptz,                 -- when a pending delivery is due
	body           bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS integ_deliveries_due ON integ_deliveries (integration_id, state, next_at);
CREATE INDEX IF NOT EXISTS integ_deliveries_lane ON integ_deliveries (integration_id, state, seq);
CREATE INDEX IF NOT EXISTS integ_deliveries_created ON integ_deliveries (created_at);
CREATE TABLE IF NOT EXISTS integ_attempts (
	delivery_seq    bigint NOT NULL,
	n               integer NOT NULL,
	at              timestamptz NOT NULL,
	response_status integer NOT NULL DEFAULT 0,
	error           text, -- NULL while in flight
	duration_ms     bigint NOT NULL DEFAULT 0,
	PRIMARY KEY (delivery_seq, n)
);
CREATE TABLE IF NOT EXISTS integ_requests (
	request_id      text COLLATE "C" PRIMARY KEY,
	client_id       text COLLATE "C" NOT NULL,
	batch_reference text NOT NULL DEFAULT '',
	total           integer NOT NULL DEFAULT -1,
	terminal        integer NOT NULL DEFAULT 0,
	checked         integer NOT NULL DEFAULT -1,
	created_at      timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS integ_requests_candidates ON integ_requests (request_id)
	WHERE total >= 0 AND terminal >= total AND terminal > checked;
CREATE INDEX IF NOT EXISTS integ_requests_created ON integ_requests (created_at);
`

// Integrations is integrations.Store on PostgreSQL, for several nodes sharing one database:
// lanes are claimed with FOR UPDATE SKIP LOCKED, so nodes claiming together take different
// lanes instead of waiting for each other. It is safe for concurrent use.
type Integrations struct {
	// Now is the clock of followed requests' creation times; nil means time.Now.
	Now func() time.Time

	db *sql.DB
}

var _ integrations.Store = (*Integrations)(nil)

// NewIntegrations returns the integrations store on db (a pgx stdlib *sql.DB, the database of
// the gateway's pgstore.Store), creating its tables if needed; several nodes may call it at
// once. The caller keeps ownership of db.
func NewIntegrations(ctx context.Context, db *sql.DB) (*Integrations, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("create integration tables: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, integSchemaLock); err != nil {
		return nil, fmt.Errorf("create integration tables: %w", err)
	}
	if _, err := tx.ExecContext(ctx, integSchema); err != nil {
		return nil, fmt.Errorf("create integration tables: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("create integration tables: %w", err)
	}
	return &Integrations{db: db}, nil
}

func (s *Integrations) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// integTxer is implemented by this package's store.Tx: the database transaction, and its
// context, that the integration writes of Bind join.
type integTxer interface {
	integSQLTx() (context.Context, *sql.Tx)
}

const integColumns = `id, hub_id, name, channel, status, config, keys, created_at, updated_at`

type integScanner interface{ Scan(dest ...any) error }

func integScan(row integScanner) (integrations.Integration, error) {
	var (
		in           integrations.Integration
		config, keys string
	)
	if err := row.Scan(&in.ID, &in.HubID, &in.Name, &in.Channel, &in.Status, &config, &keys, &in.CreatedAt, &in.UpdatedAt); err != nil {
		return integrations.Integration{}, err
	}
	if err := json.Unmarshal([]byte(config), &in.Config); err != nil {
		return integrations.Integration{}, fmt.Errorf("read configuration of integration %s: %w", in.ID, err)
	}
	if err := json.Unmarshal([]byte(keys), &in.Keys); err != nil {
		return integrations.Integration{}, fmt.Errorf("read keys of integration %s: %w", in.ID, err)
	}
	in.CreatedAt, in.UpdatedAt = in.CreatedAt.UTC(), in.UpdatedAt.UTC()
	return in, nil
}

func integEncode(in integrations.Integration) (config, keys string, err error) {
	c, err := json.Marshal(in.Config)
	if err != nil {
		return "", "", fmt.Errorf("encode configuration: %w", err)
	}
	k, err := json.Marshal(in.Keys)
	if err != nil {
		return "", "", fmt.Errorf("encode keys: %w", err)
	}
	return string(c), string(k), nil
}

func integUniqueViolation(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && pg.Code == "23505"
}

// integWrite runs fn in a transaction of its own.
func (s *Integrations) integWrite(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// Create stores in; ErrNameTaken if its hub has the name.
func (s *Integrations) Create(ctx context.Context, in integrations.Integration) error {
	config, keys, err := integEncode(in)
	if err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO integ_integrations (`+integColumns+`, webhook_url)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		in.ID, in.HubID, in.Name, string(in.Channel), int(in.Status), config, keys, in.CreatedAt, in.UpdatedAt, in.Config.WebhookURL)
	switch {
	case integUniqueViolation(err):
		return integrations.ErrNameTaken
	case err != nil:
		return fmt.Errorf("create integration: %w", err)
	}
	return nil
}

// Replace overwrites the integration in.ID but its hub and creation time.
func (s *Integrations) Replace(ctx context.Context, in integrations.Integration) error {
	config, keys, err := integEncode(in)
	if err != nil {
		return err
	}
	res, err := s.db.ExecContext(ctx, `UPDATE integ_integrations SET name = $1, channel = $2, status = $3, config = $4,
		keys = $5, updated_at = $6, webhook_url = $7 WHERE id = $8`,
		in.Name, string(in.Channel), int(in.Status), config, keys, in.UpdatedAt, in.Config.WebhookURL, in.ID)
	switch {
	case integUniqueViolation(err):
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
	in, err := integScan(s.db.QueryRowContext(ctx, `SELECT `+integColumns+` FROM integ_integrations WHERE id = $1`, id))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return integrations.Integration{}, integrations.ErrNotFound
	case err != nil:
		return integrations.Integration{}, fmt.Errorf("get integration %s: %w", id, err)
	}
	return in, nil
}

// Exists reports whether any integration belongs to one of hubIDs. Every node asks the
// database: another node may have created or deleted one.
func (s *Integrations) Exists(ctx context.Context, hubIDs ...string) (bool, error) {
	if len(hubIDs) == 0 {
		return false, nil
	}
	var found bool
	if err := s.db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM integ_integrations WHERE hub_id = ANY($1))`, hubIDs).Scan(&found); err != nil {
		return false, fmt.Errorf("look up integrations: %w", err)
	}
	return found, nil
}

// List returns the integrations of hubIDs by hub and name.
func (s *Integrations) List(ctx context.Context, hubIDs ...string) ([]integrations.Integration, error) {
	if len(hubIDs) == 0 {
		return nil, nil
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+integColumns+` FROM integ_integrations
		WHERE hub_id = ANY($1) ORDER BY hub_id, name`, hubIDs)
	if err != nil {
		return nil, fmt.Errorf("list integrations: %w", err)
	}
	defer rows.Close()
	var out []integrations.Integration
	for rows.Next() {
		in, err := integScan(rows)
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
	err := s.integWrite(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM integ_integrations WHERE id = $1`, id)
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		if found = n > 0; !found {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM integ_attempts WHERE delivery_seq IN
			(SELECT seq FROM integ_deliveries WHERE integration_id = $1)`, id); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM integ_deliveries WHERE integration_id = $1`, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete integration %s: %w", id, err)
	}
	if !found {
		return integrations.ErrNotFound
	}
	return nil
}

// Bind returns the integration writes of tx, which must be a transaction of this package's
// store.Store on the same database.
func (s *Integrations) Bind(stx store.Tx) (integrations.Tx, error) {
	t, ok := stx.(integTxer)
	if !ok {
		return nil, fmt.Errorf("integrations: %T is not a transaction of the PostgreSQL store", stx)
	}
	ctx, tx := t.integSQLTx()
	return integTx{ctx: ctx, tx: tx, now: s.now}, nil
}

// integTx implements integrations.Tx on one transaction.
type integTx struct {
	ctx context.Context
	tx  *sql.Tx
	now func() time.Time
}

func (t integTx) Enqueue(ds ...integrations.NewDelivery) error {
	for _, d := range ds {
		_, err := t.tx.ExecContext(t.ctx, `INSERT INTO integ_deliveries (id, integration_id, type, created_at, next_at, body)
			SELECT $1, $2, $3, $4, $4, $5 WHERE EXISTS (SELECT 1 FROM integ_integrations WHERE id = $2)
			ON CONFLICT (id) DO NOTHING`,
			d.ID, d.IntegrationID, d.Type, d.CreatedAt, d.Body)
		if err != nil {
			return fmt.Errorf("enqueue delivery %s: %w", d.ID, err)
		}
	}
	return nil
}

func (t integTx) Follow(p integrations.RequestProgress) (integrations.RequestProgress, error) {
	var out integrations.RequestProgress
	err := t.tx.QueryRowContext(t.ctx, `INSERT INTO integ_requests (request_id, client_id, batch_reference, total, terminal, created_at)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (request_id) DO UPDATE SET
			total = CASE WHEN excluded.total >= 0 THEN excluded.total ELSE integ_requests.total END,
			terminal = integ_requests.terminal + excluded.terminal,
			batch_reference = CASE WHEN excluded.batch_reference <> '' THEN excluded.batch_reference ELSE integ_requests.batch_reference END
		RETURNING request_id, client_id, batch_reference, total, terminal`,
		p.RequestID, p.ClientID, p.BatchReference, p.Total, p.Terminal, t.now()).
		Scan(&out.RequestID, &out.ClientID, &out.BatchReference, &out.Total, &out.Terminal)
	if err != nil {
		return integrations.RequestProgress{}, fmt.Errorf("follow request %s: %w", p.RequestID, err)
	}
	return out, nil
}

func (t integTx) Unfollow(requestID string) error {
	if _, err := t.tx.ExecContext(t.ctx, `DELETE FROM integ_requests WHERE request_id = $1`, requestID); err != nil {
		return fmt.Errorf("stop following request %s: %w", requestID, err)
	}
	return nil
}

// ClaimLanes leases lanes with due work to owner, skipping lanes another node is claiming.
func (s *Integrations) ClaimLanes(ctx context.Context, owner string, now, until time.Time, limit int) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `WITH picked AS (
			SELECT i.id FROM integ_integrations i
			WHERE i.status = $3 AND i.webhook_url <> '' AND i.lane_until < $4
			AND EXISTS (SELECT 1 FROM integ_deliveries d WHERE d.integration_id = i.id AND d.state = 0 AND d.next_at <= $4)
			LIMIT $5 FOR UPDATE OF i SKIP LOCKED)
		UPDATE integ_integrations SET lane_owner = $1, lane_until = $2 FROM picked
		WHERE integ_integrations.id = picked.id RETURNING integ_integrations.id`,
		owner, until, int(integrations.Active), now, limit)
	if err != nil {
		return nil, fmt.Errorf("claim webhook lanes: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("claim webhook lanes: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
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
	err := s.integWrite(ctx, func(tx *sql.Tx) error {
		in, err := integScan(tx.QueryRowContext(ctx, `SELECT `+integColumns+` FROM integ_integrations
			WHERE id = $1 AND lane_owner = $2 AND lane_until >= $3 FOR UPDATE`, integrationID, owner, now))
		if errors.Is(err, sql.ErrNoRows) {
			return nil // gone, or the lane is no longer ours
		}
		if err != nil {
			return err
		}
		release := func() error {
			_, err := tx.ExecContext(ctx, `UPDATE integ_integrations SET lane_owner = '', lane_until = '-infinity'
				WHERE id = $1 AND lane_owner = $2`, integrationID, owner)
			return err
		}
		if in.Status != integrations.Active || in.Streams() {
			return release()
		}
		var (
			seq             int64
			attempts, round int
			d               = integrations.NewDelivery{IntegrationID: integrationID}
		)
		err = tx.QueryRowContext(ctx, `SELECT seq, id, type, created_at, attempts, round_start, body FROM integ_deliveries
			WHERE integration_id = $1 AND state = 0 AND next_at <= $2 ORDER BY seq LIMIT 1 FOR UPDATE`, integrationID, now).
			Scan(&seq, &d.ID, &d.Type, &d.CreatedAt, &attempts, &round, &d.Body)
		if errors.Is(err, sql.ErrNoRows) {
			return release()
		}
		if err != nil {
			return err
		}
		d.CreatedAt = d.CreatedAt.UTC()
		if attempts > 0 { // an earlier attempt may have been left in flight
			if _, err := tx.ExecContext(ctx, `UPDATE integ_attempts SET error = $1 WHERE delivery_seq = $2 AND error IS NULL`,
				integrations.AttemptAbandoned, seq); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE integ_deliveries SET attempts = attempts + 1, next_at = $1 WHERE seq = $2`, busyUntil, seq); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO integ_attempts (delivery_seq, n, at) VALUES ($1, $2, $3)`, seq, attempts+1, now); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE integ_integrations SET lane_until = $1 WHERE id = $2`, busyUntil, integrationID); err != nil {
			return err
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
	err := s.integWrite(ctx, func(tx *sql.Tx) error {
		var seq int64
		if err := tx.QueryRowContext(ctx, `SELECT seq FROM integ_deliveries WHERE id = $1`, a.Delivery.ID).Scan(&seq); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return nil // deleted with its integration meanwhile
			}
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE integ_attempts SET response_status = $1, error = $2, duration_ms = $3
			WHERE delivery_seq = $4 AND n = $5`, o.ResponseStatus, o.Error, o.Duration.Milliseconds(), seq, a.N); err != nil {
			return err
		}
		var next any
		if o.State == integrations.Pending {
			next = o.NextAt
		}
		if _, err := tx.ExecContext(ctx, `UPDATE integ_deliveries SET state = $1, next_at = $2 WHERE seq = $3 AND attempts = $4`,
			integState(o.State), next, seq, a.N); err != nil {
			return err
		}
		if o.Pause {
			if _, err := tx.ExecContext(ctx, `UPDATE integ_integrations SET status = $1, updated_at = $2 WHERE id = $3`,
				int(integrations.Paused), s.now(), a.Integration.ID); err != nil {
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

func integState(s integrations.DeliveryState) int {
	switch s {
	case integrations.Succeeded:
		return 1
	case integrations.Failed:
		return 2
	}
	return 0
}

func integStateOf(code int) integrations.DeliveryState {
	return [...]integrations.DeliveryState{integrations.Pending, integrations.Succeeded, integrations.Failed}[min(max(code, 0), 2)]
}

const integDeliveryColumns = `seq, id, integration_id, type, created_at, state, next_at`

func integScanDelivery(row integScanner, extra ...any) (int64, integrations.Delivery, error) {
	var (
		d     integrations.Delivery
		seq   int64
		state int
		next  sql.NullTime
	)
	if err := row.Scan(append([]any{&seq, &d.ID, &d.IntegrationID, &d.Type, &d.CreatedAt, &state, &next}, extra...)...); err != nil {
		return 0, d, err
	}
	d.CreatedAt, d.State = d.CreatedAt.UTC(), integStateOf(state)
	if d.State == integrations.Pending && next.Valid {
		d.NextAttemptAt = next.Time.UTC()
	}
	return seq, d, nil
}

// StreamAfter returns deliveries of a streaming integration with their bodies.
func (s *Integrations) StreamAfter(ctx context.Context, integrationID, afterID string, limit int) ([]integrations.Delivery, error) {
	query := `SELECT ` + integDeliveryColumns + `, body FROM integ_deliveries
		WHERE integration_id = $1 AND state = 0 ORDER BY seq LIMIT $2`
	args := []any{integrationID, limit}
	if afterID != "" {
		var after int64
		err := s.db.QueryRowContext(ctx, `SELECT seq FROM integ_deliveries WHERE id = $1 AND integration_id = $2`, afterID, integrationID).Scan(&after)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, integrations.ErrDeliveryNotFound
		}
		if err != nil {
			return nil, fmt.Errorf("find delivery %s: %w", afterID, err)
		}
		query = `SELECT ` + integDeliveryColumns + `, body FROM integ_deliveries
			WHERE integration_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`
		args = []any{integrationID, after, limit}
	}
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("read stream of integration %s: %w", integrationID, err)
	}
	defer rows.Close()
	var out []integrations.Delivery
	for rows.Next() {
		var body []byte
		_, d, err := integScanDelivery(rows, &body)
		if err != nil {
			return nil, fmt.Errorf("read stream of integration %s: %w", integrationID, err)
		}
		d.Body, d.NextAttemptAt = body, time.Time{}
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
	_, err := s.db.ExecContext(ctx, `WITH streamed AS (
			UPDATE integ_deliveries SET state = 1, attempts = attempts + 1, next_at = NULL
			WHERE integration_id = $1 AND state = 0 AND id = ANY($2) RETURNING seq, attempts)
		INSERT INTO integ_attempts (delivery_seq, n, at, error) SELECT seq, attempts, $3, '' FROM streamed
		ON CONFLICT DO NOTHING`, integrationID, ids, at)
	if err != nil {
		return fmt.Errorf("mark deliveries of integration %s streamed: %w", integrationID, err)
	}
	return nil
}

// CompletionCandidates returns followed requests whose completion should be checked.
func (s *Integrations) CompletionCandidates(ctx context.Context, limit int) ([]integrations.RequestProgress, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT request_id, client_id, batch_reference, total, terminal FROM integ_requests
		WHERE total >= 0 AND terminal >= total AND terminal > checked LIMIT $1`, limit)
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
	if _, err := s.db.ExecContext(ctx, `UPDATE integ_requests SET checked = greatest(checked, $1) WHERE request_id = $2`,
		terminal, requestID); err != nil {
		return fmt.Errorf("mark request %s checked: %w", requestID, err)
	}
	return nil
}

// integPurgeBatch bounds the deliveries one purge transaction removes.
const integPurgeBatch = 1000

// Purge forgets deliveries and followed requests created before before.
func (s *Integrations) Purge(ctx context.Context, before time.Time) (int, error) {
	total := 0
	for {
		res, err := s.db.ExecContext(ctx, `WITH doomed AS (
				SELECT seq FROM integ_deliveries WHERE created_at < $1 ORDER BY created_at LIMIT $2),
			gone AS (DELETE FROM integ_attempts WHERE delivery_seq IN (SELECT seq FROM doomed))
			DELETE FROM integ_deliveries WHERE seq IN (SELECT seq FROM doomed)`, before, integPurgeBatch)
		if err != nil {
			return total, fmt.Errorf("purge deliveries: %w", err)
		}
		n, _ := res.RowsAffected()
		total += int(n)
		if n < integPurgeBatch {
			break
		}
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM integ_requests WHERE created_at < $1`, before); err != nil {
		return total, fmt.Errorf("purge followed requests: %w", err)
	}
	return total, nil
}

// Deliveries returns a page of the log of integrationID, newest first, with attempts.
func (s *Integrations) Deliveries(ctx context.Context, integrationID string, f integrations.DeliveryFilter) (integrations.DeliveryPage, error) {
	where, args := `integration_id = $1`, []any{integrationID}
	if f.State != "" {
		where += ` AND state = $2`
		args = append(args, integState(f.State))
	}
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return integrations.DeliveryPage{}, fmt.Errorf("list deliveries: %w", err)
	}
	defer tx.Rollback()
	var page integrations.DeliveryPage
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM integ_deliveries WHERE `+where, args...).Scan(&page.Total); err != nil {
		return page, fmt.Errorf("count deliveries: %w", err)
	}
	size := max(f.PageSize, 1)
	n := len(args)
	rows, err := tx.QueryContext(ctx, `SELECT `+integDeliveryColumns+` FROM integ_deliveries WHERE `+where+
		fmt.Sprintf(` ORDER BY seq DESC LIMIT $%d OFFSET $%d`, n+1, n+2), append(args, size, (max(f.Page, 1)-1)*size)...)
	if err != nil {
		return page, fmt.Errorf("list deliveries: %w", err)
	}
	var seqs []int64
	for rows.Next() {
		seq, d, err := integScanDelivery(rows)
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
	if err := integLoadAttempts(ctx, tx, seqs, page.Deliveries); err != nil {
		return page, err
	}
	return page, nil
}

// integLoadAttempts fills ds[i].Attempts from the attempts of delivery seqs[i].
func integLoadAttempts(ctx context.Context, tx *sql.Tx, seqs []int64, ds []integrations.Delivery) error {
	if len(seqs) == 0 {
		return nil
	}
	index := make(map[int64]int, len(seqs))
	for i, seq := range seqs {
		index[seq] = i
	}
	rows, err := tx.QueryContext(ctx, `SELECT delivery_seq, n, at, response_status, error, duration_ms FROM integ_attempts
		WHERE delivery_seq = ANY($1) ORDER BY delivery_seq, n`, seqs)
	if err != nil {
		return fmt.Errorf("list attempts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			seq, ms int64
			a       integrations.AttemptLog
			msg     sql.NullString
		)
		if err := rows.Scan(&seq, &a.N, &a.At, &a.ResponseStatus, &msg, &ms); err != nil {
			return fmt.Errorf("list attempts: %w", err)
		}
		a.At, a.Duration, a.Error = a.At.UTC(), time.Duration(ms)*time.Millisecond, msg.String
		if !msg.Valid {
			a.Error = integrations.AttemptInFlight
		}
		i := index[seq]
		ds[i].Attempts = append(ds[i].Attempts, a)
	}
	return rows.Err()
}

// Resend makes delivery deliveryID of integrationID due now with a fresh round of retries.
func (s *Integrations) Resend(ctx context.Context, integrationID, deliveryID string, now time.Time) (integrations.Delivery, error) {
	var d integrations.Delivery
	err := s.integWrite(ctx, func(tx *sql.Tx) error {
		seq, got, err := integScanDelivery(tx.QueryRowContext(ctx, `UPDATE integ_deliveries SET state = 0, next_at = $1, round_start = attempts
			WHERE id = $2 AND integration_id = $3 RETURNING `+integDeliveryColumns, now, deliveryID, integrationID))
		if errors.Is(err, sql.ErrNoRows) {
			return integrations.ErrDeliveryNotFound
		}
		if err != nil {
			return err
		}
		ds := []integrations.Delivery{got}
		if err := integLoadAttempts(ctx, tx, []int64{seq}, ds); err != nil {
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
	res, err := s.db.ExecContext(ctx, `UPDATE integ_deliveries SET state = 0, next_at = $1, round_start = attempts
		WHERE integration_id = $2 AND state = 2 AND created_at >= $3`, now, integrationID, since)
	if err != nil {
		return 0, fmt.Errorf("recover deliveries of integration %s: %w", integrationID, err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}
