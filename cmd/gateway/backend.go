package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/ThreeDotsLabs/watermill"

	"github.com/opengw/gateway/internal/config"
	"github.com/opengw/gateway/internal/sqlitestore"
	"github.com/opengw/gateway/internal/store"
	"github.com/opengw/gateway/pipeline"
	"github.com/opengw/gateway/transports"
)

// backend is the storage the gateway runs on, chosen by config (database:) or --database.
type backend struct {
	store store.Store
	// jwtKey returns the key tokens are signed with: shared by every node of a cluster.
	jwtKey func() ([]byte, error)
	// close releases the backend (and the data folder lock); it runs after the router stopped.
	close func()
}

// openBackend opens what cfg.Database names: empty means embedded SQLite in cfg.DataDir (one
// process, which locks the folder); a postgres:// URL means PostgreSQL shared by several nodes.
func openBackend(cfg *config.Config, log *slog.Logger) (*backend, error) {
	topics := pipeline.QueueTopics(cfg.SinkNames())
	switch {
	case cfg.Database == "":
		return openSQLite(cfg, log, topics)
	case strings.HasPrefix(cfg.Database, "postgres://"), strings.HasPrefix(cfg.Database, "postgresql://"):
		return openPostgres(cfg, log, topics)
	default:
		return nil, fmt.Errorf("%s: database %q: want empty (embedded SQLite) or a postgres:// URL", cfg.File, redactURL(cfg.Database))
	}
}

func openSQLite(cfg *config.Config, log *slog.Logger, topics map[string]store.TopicConfig) (*backend, error) {
	if err := prepareDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	unlock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	st, err := sqlitestore.Open(sqlitestore.Config{
		Path:                 filepath.Join(cfg.DataDir, "gateway.db"),
		Logger:               watermill.NewSlogLogger(log),
		Topics:               topics,
		ReleaseLeasesOnStart: true, // safe: the data folder lock makes this the only process
	})
	if err != nil {
		unlock()
		return nil, fmt.Errorf("open store: %w", err)
	}
	return &backend{
		store:  st,
		jwtKey: func() ([]byte, error) { return transports.LoadOrCreateKey(cfg.DataDir, cfg.Auth.JWT.Key) },
		close:  func() { st.Close(); unlock() },
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

func openPostgres(cfg *config.Config, log *slog.Logger, topics map[string]store.TopicConfig) (*backend, error) {
	return nil, fmt.Errorf("%s: database %s: PostgreSQL backend not wired yet", cfg.File, redactURL(cfg.Database))
}
