package sinks

import (
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/opengw/gateway/internal/sqlitedb"
)

// Registry holds the configured sinks, open, by name. Get and Names are safe for concurrent use.
type Registry struct {
	sinks map[string]Sink
	names []string
	dbs   []*sqlitedb.DB // shared by the sqlite sinks; closed after them
	pgs   []*sql.DB      // shared by the postgres sinks; closed after them

	closeOnce sync.Once
	closeErr  error
}

// OpenOption tells Open about the gateway it runs in.
type OpenOption func(*openOptions)

type openOptions struct {
	database string
}

// WithDatabase gives the URL of the gateway's own PostgreSQL database (gateway.yaml's
// `database:` or --database), the default url of postgres sinks. Without it, or with "", a
// postgres sink must set url.
func WithDatabase(url string) OpenOption {
	return func(o *openOptions) { o.database = url }
}

// Open validates every config, reporting all problems at once, then opens every sink. Relative
// paths are inside dataDir, and missing directories are created. Several sqlite sinks on the same
// file share one sqlitedb.DB, so each file has one writer and group commit spans them; postgres
// sinks on the same url share one connection pool. Two sinks writing the same table of a file or
// database, the same NDJSON file, or one file as both kinds, are an error. Postgres sinks connect
// to check their table, so a wrong url fails here. If any sink fails to open, those already open
// are closed.
func Open(cfgs map[string]Config, dataDir string, opts ...OpenOption) (*Registry, error) {
	var o openOptions
	for _, opt := range opts {
		opt(&o)
	}
	cfgs = maps.Clone(cfgs)
	names := slices.Sorted(maps.Keys(cfgs))
	var errs []error
	for _, name := range names {
		cfg := cfgs[name]
		if cfg.Type == TypePostgres && cfg.URL == "" {
			if o.database == "" {
				errs = append(errs, fmt.Errorf("sink %q: url is required for type postgres: the gateway does not run on PostgreSQL (no database URL to default to)", name))
				continue
			}
			cfg.URL = o.database
			cfgs[name] = cfg
		}
		if err := cfg.Validate(name); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	type owner struct{ name, typ string }
	files := map[string]owner{}   // absolute path → first sink using it
	tables := map[string]string{} // absolute path + lower-case table → sink name
	paths := map[string]string{}  // sink name → absolute path
	for _, name := range names {
		cfg := cfgs[name].withDefaults(name)
		switch cfg.Type {
		case TypeHTTP:
			continue
		case TypePostgres:
			k := "postgres\x00" + cfg.URL + "\x00" + strings.ToLower(cfg.Table)
			if other, ok := tables[k]; ok {
				errs = append(errs, fmt.Errorf("sinks %q and %q both write table %s in %s", other, name, cfg.Table, redactURL(cfg.URL)))
			}
			tables[k] = name
			continue
		}
		path := cfg.Path
		if !filepath.IsAbs(path) {
			path = filepath.Join(dataDir, path)
		}
		path, err := filepath.Abs(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("sink %q: path %q: %w", name, cfg.Path, err))
			continue
		}
		paths[name] = path
		if o, ok := files[path]; ok && (o.typ != TypeSQLite || cfg.Type != TypeSQLite) {
			errs = append(errs, fmt.Errorf("sinks %q (%s) and %q (%s) both use %s", o.name, o.typ, name, cfg.Type, path))
			continue
		} else if !ok {
			files[path] = owner{name, cfg.Type}
		}
		if cfg.Type == TypeSQLite {
			k := path + "\x00" + strings.ToLower(cfg.Table)
			if other, ok := tables[k]; ok {
				errs = append(errs, fmt.Errorf("sinks %q and %q both write table %s in %s", other, name, cfg.Table, path))
				continue
			}
			tables[k] = name
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	r := &Registry{sinks: make(map[string]Sink, len(names)), names: names}
	dbs := map[string]*sqlitedb.DB{}
	pgs := map[string]*sql.DB{}
	for _, name := range names {
		cfg := cfgs[name].withDefaults(name)
		s, err := r.open(name, cfg, paths[name], dbs, pgs)
		if err != nil {
			return nil, errors.Join(err, r.Close())
		}
		r.sinks[name] = s
	}
	return r, nil
}

func (r *Registry) open(name string, cfg Config, path string, dbs map[string]*sqlitedb.DB, pgs map[string]*sql.DB) (Sink, error) {
	if path != "" {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("sink %q: %w", name, err)
		}
	}
	switch cfg.Type {
	case TypeSQLite:
		db := dbs[path]
		if db == nil {
			var err error
			if db, err = sqlitedb.Open(path); err != nil {
				return nil, fmt.Errorf("sink %q: %w", name, err)
			}
			dbs[path] = db
			r.dbs = append(r.dbs, db)
		}
		return NewSQLiteSink(db, name, cfg.Table, cfg.Key)
	case TypePostgres:
		db := pgs[cfg.URL]
		if db == nil {
			var err error
			if db, err = sql.Open("pgx", cfg.URL); err != nil {
				return nil, fmt.Errorf("sink %q: open %s: %w", name, redactURL(cfg.URL), err)
			}
			db.SetMaxOpenConns(pgMaxOpenConns)
			db.SetMaxIdleConns(pgMaxOpenConns)
			db.SetConnMaxIdleTime(pgConnMaxIdleFor)
			pgs[cfg.URL] = db
			r.pgs = append(r.pgs, db)
		}
		return NewPostgresSink(db, name, cfg.Table, cfg.Key)
	case TypeHTTP:
		return NewHTTPSink(name, cfg)
	case TypeFile:
		return OpenFileSink(name, path)
	}
	return nil, fmt.Errorf("sink %q: type %q is not one of %s", name, cfg.Type, strings.Join(typeNames, ", "))
}

// Get returns the sink called name.
func (r *Registry) Get(name string) (Sink, bool) {
	s, ok := r.sinks[name]
	return s, ok
}

// Names returns the names of all sinks, sorted.
func (r *Registry) Names() []string { return slices.Clone(r.names) }

// Close closes every sink, then the databases they share, and returns all errors joined. Call it
// once Writes have stopped. It is idempotent.
func (r *Registry) Close() error {
	r.closeOnce.Do(func() {
		var errs []error
		for _, name := range r.names {
			if s, ok := r.sinks[name]; ok {
				errs = append(errs, s.Close())
			}
		}
		for _, db := range r.dbs {
			errs = append(errs, db.Close())
		}
		for _, db := range r.pgs {
			errs = append(errs, db.Close())
		}
		r.closeErr = errors.Join(errs...)
	})
	return r.closeErr
}
