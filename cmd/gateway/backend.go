package main

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/opengw/gateway/internal/config"
	"github.com/opengw/gateway/internal/integrations"
	"github.com/opengw/gateway/internal/logging"
	"github.com/opengw/gateway/internal/pgqueue"
	"github.com/opengw/gateway/internal/pgstore"
	"github.com/opengw/gateway/internal/sqlitestore"
	"github.com/opengw/gateway/internal/store"
	"github.com/opengw/gateway/pipeline"
	"github.com/opengw/gateway/sinks"
	"github.com/opengw/gateway/transports"
)

// backend is the storage the gateway runs on, chosen by config (database:) or --database.
type backend struct {
	store store.Store
	// integrations keeps integrations and webhook deliveries in the same database as store.
	integrations integrations.Store
	// jwtKey returns the key tokens are signed with: shared by every node of a cluster.
	jwtKey func() ([]byte, error)
	// describe names the storage for the listen line: the SQLite folder or the database URL
	// (password hidden).
	describe string
	// sinkOptions are what sinks need of the backend (postgres sinks default to its database).
	sinkOptions []sinks.OpenOption
	// close releases the backend (and the data folder lock); it runs after the router stopped.
	close func()
}

// backendUse says who opens the backend.
type backendUse int

const (
	// forServe: the gateway itself; on SQLite it locks the data folder (the only process) and
	// takes back the leases of messages a crash left claimed.
	forServe backendUse = iota
	// forTool: a command (replay) working beside a running gateway: no lock, no lease release,
	// no consuming.
	forTool
)

// openBackend opens what cfg.Database names: empty means embedded SQLite in cfg.DataDir (one
// process, which locks the folder); a postgres:// URL means PostgreSQL shared by several nodes.
func openBackend(cfg *config.Config, log *slog.Logger, use backendUse) (*backend, error) {
	topics := pipeline.QueueTopics(cfg.SinkNames())
	// Status and platform events are consumed one at a time, so that an integration's deliveries
	// are created, and sent, in the order things happened (request:accepted first).
	for _, name := range []string{pipeline.TopicEvents, integrations.TopicPlatform} {
		topics[name] = store.TopicConfig{BatchSize: 16, MaxInFlight: 1}
	}
	switch {
	case cfg.Database == "":
		return openSQLite(cfg, log, topics, use)
	case strings.HasPrefix(cfg.Database, "postgres://"), strings.HasPrefix(cfg.Database, "postgresql://"):
		return openPostgres(cfg, log, topics, use)
	default:
		return nil, fmt.Errorf("%s: database %q: want empty (embedded SQLite) or a postgres:// URL", cfg.File, redactURL(cfg.Database))
	}
}

func openSQLite(cfg *config.Config, log *slog.Logger, topics map[string]store.TopicConfig, use backendUse) (*backend, error) {
	if err := prepareDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	unlock := func() {}
	if use == forServe {
		var err error
		if unlock, err = lockDataDir(cfg.DataDir); err != nil {
			return nil, err
		}
	}
	st, err := sqlitestore.Open(sqlitestore.Config{
		Path:                 filepath.Join(cfg.DataDir, "gateway.db"),
		Logger:               logging.Watermill(log),
		Topics:               topics,
		ReleaseLeasesOnStart: use == forServe, // safe: the data folder lock makes this the only process
	})
	if err != nil {
		unlock()
		return nil, fmt.Errorf("open store: %w", err)
	}
	return &backend{
		describe:     "sqlite:" + cfg.DataDir,
		store:        st,
		integrations: st.Integrations(),
		jwtKey:       func() ([]byte, error) { return transports.LoadOrCreateKey(cfg.DataDir, cfg.Auth.JWT.Key) },
		close:        func() { st.Close(); unlock() },
	}, nil
}

// redactURL hides a URL's password, for messages and logs.
func redactURL(s string) string {
	if at := strings.LastIndex(s, "@"); at > 0 {
		if scheme := strings.Index(s, "://"); scheme >= 0 && scheme < at {
			if colon := strings.Index(s[scheme+3:at], ":"); colon >= 0 {
				return s[:scheme+3+colon] + ":***" + s[at:]
			}
		}
	}
	return s
}

// lockDataDir takes an exclusive lock on the data folder, so two gateways never share one
// (the queue relies on being the only process: it releases all leases at start).
func lockDataDir(dir string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, "gateway.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data folder: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("data folder %s is in use by another gateway (%w)", dir, err)
	}
	return func() { f.Close() }, nil
}

// Connections of one node's PostgreSQL pool. Each queue consumer holds one while it has a batch
// (pgqueue.TopicsFrom: at most 2 per topic), plus the LISTEN connection, intake commits, tracking searches, the
// dispatcher and the sender. Three nodes stay within PostgreSQL's default max_connections (100)
// together with their postgres sinks' own pools.
const pgMaxConns = 24

// openPostgres opens the shared database: the queue (watermill-sql), the store and the
// integrations, each creating its schema under an advisory lock so nodes can start together.
// There is no data folder lock: every node works on the same database.
func openPostgres(cfg *config.Config, log *slog.Logger, topics map[string]store.TopicConfig, use backendUse) (*backend, error) {
	ctx := context.Background()
	db, err := sql.Open("pgx", cfg.Database)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", redactURL(cfg.Database), err)
	}
	db.SetMaxOpenConns(pgMaxConns)
	db.SetMaxIdleConns(pgMaxConns)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to database %s: %w", redactURL(cfg.Database), err)
	}
	queue, err := pgqueue.New(pgqueue.Config{DB: db, Logger: logging.Watermill(log), Topics: pgqueue.TopicsFrom(topics)})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open queue in %s: %w", redactURL(cfg.Database), err)
	}
	closeAll := func() { queue.Close(); db.Close() }
	st, err := pgstore.New(ctx, db, queue)
	if err != nil {
		closeAll()
		return nil, err
	}
	integ, err := pgstore.NewIntegrations(ctx, db)
	if err != nil {
		closeAll()
		return nil, err
	}
	return &backend{
		describe:     redactURL(cfg.Database),
		store:        st,
		integrations: integ,
		jwtKey: func() ([]byte, error) {
			if cfg.Auth.JWT.Key != "" {
				return transports.LoadOrCreateKey("", cfg.Auth.JWT.Key)
			}
			// Generated once into the database, so every node verifies every node's tokens.
			return st.SharedSecret(ctx, "jwt", 32)
		},
		sinkOptions: []sinks.OpenOption{sinks.WithDatabase(cfg.Database)},
		close:       func() { st.Close(); closeAll() },
	}, nil
}
