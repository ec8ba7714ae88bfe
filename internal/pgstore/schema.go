package pgstore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/opengw/gateway/internal/pgqueue"
)

// schemaLock is the advisory lock key (pg_advisory_xact_lock's bigint form) under which a node
// creates the schema, so that nodes starting together do not race on CREATE ... IF NOT EXISTS
// (which is not safe under concurrency: the loser fails on a catalog unique index).
const schemaLock int64 = 0x6f70656e67770001 // "opengw" 0001

// schema is the tracker projection and intake's state, with the same shape as the SQLite
// backend's. Statuses are codes (statusCode: 0 Queued, 1 Processing, 2 Complete, 3 Failed,
// 4 Invalid, 5 Cancelled). Texts that are compared or sorted use the "C" collation: byte order
// as on SQLite, whatever the database's locale, and lower() folds ASCII only, as SQLite's
// NOCASE does.
//
// tracker_requests carries per-status counters of its message rows, kept by the statements
// that change the rows, so summaries, "has a message in status S" and processedDate sorting
// never read a request's messages. The Queued counter is implied: n_rows minus the others.
//
// Indexes, and the searches they serve:
//   - tracker_requests.id (UNIQUE): search by request id; every write looks its request up.
//   - tracker_requests (client_id, received_at): the receivedDate range, in its order.
//   - tracker_requests (client_id, batch_reference): batchReference, and externalReference
//     as a batch reference.
//   - tracker_messages primary key (request_seq, idx): a request's messages in order, and the
//     transitions of Claim and Finish.
//   - tracker_messages (request_seq, status, lower(type)): a request's messages in given
//     statuses and types, without reading a big request's others.
//   - tracker_messages (external_reference), partial: externalReference as a record id.
//   - intake_idempotency (created_at): the purge.
const schema = `
CREATE TABLE IF NOT EXISTS tracker_requests (
	seq               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	id                text COLLATE "C" NOT NULL UNIQUE,
	client_id         text COLLATE "C" NOT NULL,
	client_name       text NOT NULL,
	batch_reference   text COLLATE "C",
	format            text NOT NULL,
	received_at       timestamptz NOT NULL,
	total             integer NOT NULL,
	cancelled_at      timestamptz,
	last_processed_at timestamptz,
	n_rows            integer NOT NULL DEFAULT 0,
	n_processing      integer NOT NULL DEFAULT 0,
	n_complete        integer NOT NULL DEFAULT 0,
	n_failed          integer NOT NULL DEFAULT 0,
	n_invalid         integer NOT NULL DEFAULT 0,
	n_cancelled       integer NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS tracker_requests_client_received ON tracker_requests (client_id, received_at);
CREATE INDEX IF NOT EXISTS tracker_requests_client_batch ON tracker_requests (client_id, batch_reference);
CREATE TABLE IF NOT EXISTS tracker_messages (
	request_seq        bigint NOT NULL,
	idx                integer NOT NULL,
	external_reference text COLLATE "C",
	type               text COLLATE "C",
	status             smallint NOT NULL,
	processed_at       timestamptz,
	errors             text,
	mapping_version    text,
	retry_error        text, -- the last delivery error of a Processing message, cleared by Finish
	PRIMARY KEY (request_seq, idx)
);
ALTER TABLE tracker_messages ADD COLUMN IF NOT EXISTS retry_error text;
CREATE INDEX IF NOT EXISTS tracker_messages_status ON tracker_messages (request_seq, status, lower(type));
CREATE INDEX IF NOT EXISTS tracker_messages_external_reference ON tracker_messages (external_reference)
	WHERE external_reference IS NOT NULL;
CREATE TABLE IF NOT EXISTS tracker_parts (
	request_seq     bigint NOT NULL,
	idx             integer NOT NULL,
	part            text COLLATE "C" NOT NULL,
	status          smallint NOT NULL,
	errors          text,
	mapping_version text,
	recorded        bigint GENERATED ALWAYS AS IDENTITY,
	PRIMARY KEY (request_seq, idx, part)
);
CREATE TABLE IF NOT EXISTS intake_records (
	request_id  text COLLATE "C" NOT NULL,
	"offset"    integer NOT NULL,
	received_at timestamptz NOT NULL,
	records     bytea NOT NULL,
	PRIMARY KEY (request_id, "offset")
);
CREATE INDEX IF NOT EXISTS intake_records_received ON intake_records (received_at);
CREATE TABLE IF NOT EXISTS intake_idempotency (
	client_id  text COLLATE "C" NOT NULL,
	endpoint   text COLLATE "C" NOT NULL,
	key        text COLLATE "C" NOT NULL,
	body_hash  text NOT NULL,
	request_id text NOT NULL,
	sequence   bigint NOT NULL,
	created_at timestamptz NOT NULL,
	PRIMARY KEY (client_id, endpoint, key)
);
CREATE INDEX IF NOT EXISTS intake_idempotency_created ON intake_idempotency (created_at);
CREATE TABLE IF NOT EXISTS intake_sequence (
	name  text COLLATE "C" PRIMARY KEY,
	value bigint NOT NULL
);
`

// createSchema creates the schema if needed, under schemaLock.
func createSchema(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("pgstore: create schema: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, schemaLock); err != nil {
		return fmt.Errorf("pgstore: create schema: take the schema lock: %w", err)
	}
	if _, err := tx.ExecContext(ctx, schema+secretsSchema+pgqueue.LZ4("intake_records", "records")); err != nil {
		return fmt.Errorf("pgstore: create schema: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("pgstore: create schema: %w", err)
	}
	return nil
}
