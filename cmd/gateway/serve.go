package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"sync/atomic"
	"time"

	"github.com/opengw/gateway/internal/config"
	"github.com/opengw/gateway/internal/integrations"
	"github.com/opengw/gateway/internal/metrics"
	"github.com/opengw/gateway/mappings"
	"github.com/opengw/gateway/pipeline"
	"github.com/opengw/gateway/sinks"
	"github.com/opengw/gateway/transports"
)

// shutdownTimeout bounds a graceful stop: HTTP drain, running handlers, stores.
const shutdownTimeout = 30 * time.Second

func serve(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "examples/gateway.yaml", "configuration file")
	addr := fs.String("addr", "", "listen address HOST:PORT (default from config, 127.0.0.1:8080)")
	dataDir := fs.String("data", "", "folder for the SQLite files (default from config, ./data)")
	database := fs.String("database", "", "postgres:// URL of a database shared by several nodes (default from config; empty: embedded SQLite)")
	pprofAddr := fs.String("pprof", "", "serve Go's /debug/pprof profiles on this HOST:PORT (off when empty; keep it on localhost)")
	logFlags := addLogFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := logFlags.logger(stderr)
	if err != nil {
		return err
	}

	cfg, set, err := loadAll(*cfgPath, getenv)
	if err != nil {
		return err
	}
	if *addr != "" {
		cfg.Server.Addr = *addr
	}
	if *dataDir != "" {
		cfg.DataDir = *dataDir
	}
	if *database != "" {
		cfg.Database = *database
	}
	memory := tuneGC(cfg.Limits.MemoryLimitBytes, getenv)
	be, err := openBackend(cfg, log, forServe)
	if err != nil {
		return err
	}
	defer be.close()
	st := be.store
	sinkSet, err := sinks.Open(cfg.Sinks, cfg.DataDir, be.sinkOptions...)
	if err != nil {
		return fmt.Errorf("open sinks: %w", err)
	}
	defer sinkSet.Close()

	mx := metrics.New()
	mx.WatchQueue(st.Queue(), append(slices.Sorted(maps.Keys(pipeline.QueueTopics(cfg.SinkNames()))),
		pipeline.TopicEvents, integrations.TopicPlatform)...)
	var current atomic.Pointer[mappings.Set]
	current.Store(set)
	hooks, err := newWebhooks(cfg, st, be.integrations, mx, log)
	if err != nil {
		return err
	}
	pl, err := pipeline.New(pipeline.Config{
		Store: st, Mappings: current.Load, Sinks: sinkSet,
		FragmentSize: cfg.Pipeline.FragmentSize, DeliveryAttempts: cfg.Pipeline.DeliveryAttempts,
		RetryBackoff: pipeline.DoublingBackoff(cfg.Pipeline.RetryBackoff, cfg.Pipeline.MaxRetryBackoff),
		MaxBacklog:   max(cfg.Pipeline.MaxBacklog, 0), Metrics: mx, Log: log,
		RetainRecords: cfg.Retention.Payloads, RetainTracking: cfg.Retention.Tracking,
		TrackAtIntake: cfg.Pipeline.TrackAtIntake,
		// Status events feed the integrations; without a hub no client can have one.
		PublishEvents: slices.ContainsFunc(cfg.Clients, func(c config.Client) bool { return len(c.Hubs) > 0 }),
		EventsFor:     hooks.dispatcher.Wants,
	})
	if err != nil {
		return err
	}

	key, err := be.jwtKey()
	if err != nil {
		return err
	}
	issuer := &transports.TokenIssuer{Key: key, Issuer: cfg.Auth.JWT.Issuer, Audience: cfg.Auth.JWT.Audience, TTL: cfg.Auth.JWT.TTL}
	clients := clientsOf(cfg)
	auth := transports.NewAuthenticator(clients)
	auth.VerifyJWT = issuer.Verify
	srv := &transports.Server{
		Auth:     auth,
		Tokens:   issuer,
		Intake:   pl,
		Mappings: current.Load,
		Tracking: &transports.TrackingAPI{Store: st.Tracker(), Replayer: pl, Log: log},
		Limits:   transports.Limits{MaxDepth: cfg.Limits.MaxDepth, MaxInflightBytes: cfg.Limits.MaxInflightBytes},
		Throttle: transports.NewThrottle(clients, cfg.Limits.AuthFailuresPerSecond, cfg.Limits.AuthFailureBurst),
		Log:      log,
		Metrics:  mx,
		Ready: []*transports.Check{
			{Name: "database", Run: st.Ping},
			{Name: "router", Run: func(context.Context) error { return pl.CheckRouter() }},
			{Name: "backlog", Run: func(context.Context) error { return pl.CheckBacklog() }},
		},

		Integrations: hooks.api,
	}
	pprofLn, err := listenPprof(*pprofAddr)
	if err != nil {
		return err
	}
	if pprofLn != nil {
		defer pprofLn.Close() // on the way out before serving (serving closes it too)
	}
	ln, err := net.Listen("tcp", cfg.Server.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Server.Addr, err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	// Requests' contexts end with runCtx, so that WebSocket streams (hijacked connections that
	// Shutdown does not wait for) stop before the store closes.
	httpSrv, err := newHTTPServer(cfg, srv.Handler(), log)
	if err != nil {
		ln.Close()
		return err
	}
	httpSrv.BaseContext = func(net.Listener) context.Context { return runCtx }

	pipelineDone := make(chan error, 1)
	go func() { pipelineDone <- pl.Run(runCtx) }()
	hooks.start(runCtx)
	scheme := urlScheme(httpSrv) // read before serving, which sets fields of httpSrv
	httpDone := make(chan error, 1)
	go func() { httpDone <- serveHTTP(httpSrv, ln) }()
	log.Info("gateway listening", "addr", scheme+"://"+ln.Addr().String(), "storage", be.describe,
		"formats", set.Formats(), "sinks", cfg.SinkNames(), "memory", memory.String())
	defer servePprof(pprofLn, log)() // logged after the listen line, which stays the first
	// Hot reload: a valid change of the mappings folder is swapped in; handlers read the set
	// once per call, so records in flight finish on the version they started with.
	watcher := &mappings.Watcher{Dir: cfg.MappingsDir(), Sinks: cfg.SinkNames(), Log: log,
		OnChange: func(s *mappings.Set) { current.Store(s); mx.MappingReload(metrics.ReloadApplied) },
		OnRefuse: func(error) { mx.MappingReload(metrics.ReloadRefused) },
		Check:    func(s *mappings.Set) error { return checkAssigned(cfg, s) }}
	watcher.Start(set)
	defer watcher.Stop()

	select {
	case <-ctx.Done():
	case err := <-httpDone:
		return fmt.Errorf("serve http: %w", err)
	case err := <-pipelineDone:
		httpSrv.Close()
		return fmt.Errorf("pipeline stopped: %w", err)
	}
	log.Info("shutting down")
	watcher.Stop()
	shutdownCtx, cancelShutdown := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancelShutdown()
	if err := httpSrv.Shutdown(shutdownCtx); err != nil {
		log.Warn("http shutdown", "err", err)
	}
	if err := pl.Close(); err != nil {
		log.Warn("pipeline shutdown", "err", err)
	}
	if err := hooks.stop(cancel); err != nil {
		log.Warn("webhooks shutdown", "err", err)
	}
	<-pipelineDone
	return nil
}

// loadAll loads the configuration and every mapping, and checks that they agree.
func loadAll(path string, getenv func(string) string) (*config.Config, *mappings.Set, error) {
	cfg, err := config.Load(path, getenv)
	if err != nil {
		return nil, nil, err
	}
	set, err := mappings.Load(cfg.MappingsDir(), cfg.SinkNames())
	if err != nil {
		return nil, nil, err
	}
	if err := checkAssigned(cfg, set); err != nil {
		return nil, nil, err
	}
	return cfg, set, nil
}

// checkAssigned reports every format assigned to a client that no mapping of set defines.
func checkAssigned(cfg *config.Config, set *mappings.Set) error {
	var missing []error
	for _, c := range cfg.Clients {
		for _, f := range c.Formats {
			if _, ok := set.Get(f); !ok {
				missing = append(missing, fmt.Errorf("%s: client %q is assigned format %q, which no mapping in %s defines", cfg.File, c.ID, f, cfg.MappingsDir()))
			}
		}
	}
	return errors.Join(missing...)
}

func clientsOf(cfg *config.Config) []transports.Client {
	out := make([]transports.Client, len(cfg.Clients))
	for i, c := range cfg.Clients {
		out[i] = transports.Client{
			ID: c.ID, Name: c.Name, Secret: c.Secret, SecretBcrypt: c.SecretBcrypt, Tokens: c.Tokens,
			Scopes: c.Scopes, Formats: c.Formats, Tenants: c.Tenants, Hubs: c.Hubs,
			RateLimit: transports.RateLimit(c.RateLimit),
		}
	}
	return out
}
