// Package pipeline turns accepted envelopes into delivered records. It owns the intake
// transaction (an envelope's fragments + its tracker request, committed together before a
// partner hears 202) and the Watermill router whose handlers validate and map each record with
// its format's mapping, deliver mapped records to sinks, and record every status change in the
// tracker.
//
// Topics (all on the durable queue):
//
//	fragments       up to FragmentSize records of one request, to validate and map
//	deliver.<sink>  mapped records for one sink; one topic per sink, so a sink that is down
//	                only delays its own records
//
// Every handler is idempotent: a message redelivered after a crash re-does work that the
// tracker's compare-and-set transitions and the sinks' upserts absorb.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"golang.org/x/sync/semaphore"

	"github.com/opengw/gateway/internal/logging"
	"github.com/opengw/gateway/internal/metrics"
	"github.com/opengw/gateway/internal/store"
	"github.com/opengw/gateway/mappings"
	"github.com/opengw/gateway/sinks"
)

const (
	// TopicFragments schedules the processing of a request's fragments (see intake.go).
	TopicFragments     = "fragments"
	topicDeliverPrefix = "deliver."

	mdRequest = "request_id"
	mdClient  = "client_id"
	mdFormat  = "format"
	mdOffset  = "offset"
	mdCount   = "count"   // records in a fragment
	mdIndexes = "indexes" // a delivery's record indexes, so even an unreadable one can be failed
	mdTracked = "tracked" // "1": the fragment's messages were recorded at intake
)

// Config wires a Pipeline. Store, Mappings and Sinks are required.
type Config struct {
	Store    store.Store          // queue, tracker and intake tables, committed together
	Mappings func() *mappings.Set // the current mapping set; may change between calls (hot reload)
	Sinks    *sinks.Registry

	FragmentSize     int           // records per fragment
	DeliveryAttempts int           // delivery attempts before a record ends Failed
	DeliveryTimeout  time.Duration // one sink write; default 60s
	// RetryBackoff is how long a delivery waits after failed attempt n (1-based) before the
	// next; default: 1s doubling up to 5 minutes.
	RetryBackoff func(attempt int) time.Duration
	// TrackAtIntake is the largest request whose messages are recorded in the intake
	// transaction (findable by external reference from the 202 on); bigger requests' messages
	// are recorded when their fragments are split. Default 1,000; negative: never.
	TrackAtIntake int
	// RetainRecords and RetainTracking are how long raw records (for processing and replay)
	// and tracked requests are kept; zero keeps them for ever.
	RetainRecords, RetainTracking time.Duration
	// PublishEvents makes the pipeline publish what happens to each request on TopicEvents
	// (for webhooks); set it only when something consumes that topic.
	PublishEvents bool
	// EventsFor, when set, reports whether anything consumes the events of a client's
	// requests (the client has an integration); events for other clients are not published.
	// Every event costs a queue write and, consumed in order one at a time, a commit of its
	// own, which doubled the cost of a 1-record push for clients that have no integration.
	EventsFor func(clientID string) bool
	// MaxBacklog is how many fragments may wait to be processed before Accept refuses new
	// submissions with ErrBacklog (0: no limit). It keeps a flood from filling the disk.
	MaxBacklog int
	// Metrics, when set, receives intake, record, sink and handler metrics.
	Metrics *metrics.Metrics

	Log *slog.Logger
	Now func() time.Time
}

// Pipeline is the record-processing engine. Create it with New, start it with Run.
type Pipeline struct {
	cfg    Config
	router *message.Router
	log    *slog.Logger
	cpu    cpuSlots
	// backlog is the number of queued fragments, refreshed by backlogLoop.
	backlog atomic.Int64
	// committing holds the idempotency keys (client, endpoint, key) of submissions being
	// committed by this process, so a concurrent retry gets ErrIdempotencyInFlight.
	committing sync.Map
	// records bounds the raw records that process handlers hold at once (weighted by record
	// count), which is most of the pipeline's memory: 64 handlers of 1-record fragments keep
	// the writer's groups full, while 64 of 1,000-record fragments peaked at over 200 MB.
	records *semaphore.Weighted
}

// recordsInFlight is how many fragments of FragmentSize records process handlers may hold at
// once. Measured end to end (20 × 10,000 records): 8 process as many records/s as 64 did, at a
// peak RSS of 98–118 MB instead of 220–245 MB.
const recordsInFlight = 8

// cpuSlots bounds how many handlers do CPU-heavy work (mapping a fragment, decoding a
// delivery) at once to all cores but one. Handlers are many and mostly wait on the writer;
// unbounded, a backlog's runnable handlers would crowd out the HTTP goroutines whose
// acknowledgements partners wait for.
type cpuSlots chan struct{}

func newCPUSlots() cpuSlots { return make(cpuSlots, max(1, runtime.GOMAXPROCS(0)-1)) }

func (c cpuSlots) acquire() { c <- struct{}{} }
func (c cpuSlots) release() { <-c }

// New checks cfg, creates the intake tables and registers the router's handlers.
// Wiring mistakes are reported here, not at the first message.
func New(cfg Config) (*Pipeline, error) {
	if cfg.Store == nil || cfg.Mappings == nil || cfg.Sinks == nil {
		return nil, errors.New("pipeline: Store, Mappings and Sinks are required")
	}
	if cfg.FragmentSize <= 0 {
		cfg.FragmentSize = 1000
	}
	if cfg.TrackAtIntake == 0 {
		cfg.TrackAtIntake = 1000
	}
	if cfg.DeliveryAttempts <= 0 {
		cfg.DeliveryAttempts = 10
	}
	if cfg.DeliveryTimeout <= 0 {
		cfg.DeliveryTimeout = time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RetryBackoff == nil {
		cfg.RetryBackoff = DoublingBackoff(time.Second, 5*time.Minute)
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 30 * time.Second}, logging.Watermill(cfg.Log))
	if err != nil {
		return nil, fmt.Errorf("create router: %w", err)
	}
	p := &Pipeline{cfg: cfg, router: router, log: cfg.Log, cpu: newCPUSlots(),
		records: semaphore.NewWeighted(int64(recordsInFlight * cfg.FragmentSize))}
	// Outermost first: every failure is logged once with its request id, handler times are
	// measured, and a panicking handler nacks its message instead of killing the gateway.
	router.AddMiddleware(p.logFailures, cfg.Metrics.RouterMiddleware, middleware.Recoverer)

	sub := cfg.Store.Queue()
	router.AddConsumerHandler("process", TopicFragments, sub, p.process)
	for _, name := range cfg.Sinks.Names() {
		sink, _ := cfg.Sinks.Get(name)
		router.AddConsumerHandler("deliver-"+name, topicDeliverPrefix+name, sub, p.deliverTo(name, p.metered(name, sink)))
	}
	return p, nil
}

// QueueTopics names the topics the pipeline consumes, with the batch and in-flight limits that
// suit their message sizes, for configuring the queue.
//
// Many messages in flight keep the writer's groups full when they are small: with 1-record
// pushes, the handlers of 64 fragments and 32 deliveries gave it groups of 5–9 jobs once
// intake stopped, each paying a commit; 512 and 256 give it 20–35 (gateway-bench small:
// records processed ×1.27–1.66 with sqlitedb's urgent writes first, BENCHMARKS.md). Big
// messages are bounded by other means: a fragment's records are read in its handler, under
// the records semaphore (the queue message carries only their coordinates), and deliveries
// by their payload bytes: inFlightPayloadBytes holds about as many 1,000-record deliveries as
// the 32 in flight did before.
func QueueTopics(sinkNames []string) map[string]store.TopicConfig {
	topics := map[string]store.TopicConfig{
		TopicFragments: {BatchSize: 64, MaxInFlight: 512, MaxInFlightBytes: inFlightPayloadBytes, Large: true},
	}
	for _, n := range sinkNames {
		topics[topicDeliverPrefix+n] = store.TopicConfig{BatchSize: 64, MaxInFlight: 256, MaxInFlightBytes: inFlightPayloadBytes}
	}
	return topics
}

// inFlightPayloadBytes bounds the queue payloads each pipeline topic holds in memory: about 36
// deliveries of 1,000 mapped records (145 KB each with the example mapping). Fragments queued
// by versions that put their records in the message, not in the store, are bounded by it too.
const inFlightPayloadBytes = 5 << 20

// DoublingBackoff waits first after the first failed attempt, doubling per attempt up to max.
func DoublingBackoff(first, max time.Duration) func(attempt int) time.Duration {
	return func(attempt int) time.Duration {
		d := first
		for i := 1; i < attempt && d < max; i++ {
			d *= 2
		}
		return min(d, max)
	}
}

// Run processes messages until ctx is cancelled or Close is called, then waits for running
// handlers (unfinished messages return to the queue).
func (p *Pipeline) Run(ctx context.Context) error {
	go p.purgeLoop(ctx)
	if p.cfg.MaxBacklog > 0 {
		go p.backlogLoop(ctx)
	}
	if err := p.router.Run(ctx); err != nil {
		return fmt.Errorf("run router: %w", err)
	}
	return nil
}

// Running is closed once every handler is subscribed.
func (p *Pipeline) Running() chan struct{} { return p.router.Running() }

// Close stops the router, waiting for running handlers.
func (p *Pipeline) Close() error { return p.router.Close() }

func (p *Pipeline) now() time.Time { return p.cfg.Now() }

// backlogEvery is how often the queued-fragment count behind ErrBacklog is refreshed.
const backlogEvery = 250 * time.Millisecond

func (p *Pipeline) backlogLoop(ctx context.Context) {
	t := time.NewTicker(backlogEvery)
	defer t.Stop()
	for {
		if err := p.refreshBacklog(ctx); err != nil && ctx.Err() == nil {
			p.log.Warn("count queued fragments", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// refreshBacklog counts the fragments waiting in the queue (a covering-index count).
func (p *Pipeline) refreshBacklog(ctx context.Context) error {
	n, err := p.cfg.Store.Queue().Depth(ctx, TopicFragments)
	if err != nil {
		return err
	}
	p.backlog.Store(int64(n))
	return nil
}

func (p *Pipeline) purgeLoop(ctx context.Context) {
	every := time.Hour
	for _, d := range []time.Duration{p.cfg.RetainRecords, p.cfg.RetainTracking} {
		if d > 0 {
			every = min(every, max(d/10, time.Second))
		}
	}
	t := time.NewTicker(every)
	defer t.Stop()
	lastKeys := time.Time{}
	for {
		if time.Since(lastKeys) >= time.Hour {
			if err := p.purgeIdempotencyKeys(ctx); err != nil && ctx.Err() == nil {
				p.log.Warn("purge idempotency keys", "err", err)
			}
			lastKeys = time.Now()
		}
		if n, err := p.purgeExpired(ctx); err != nil && ctx.Err() == nil {
			p.log.Warn("purge expired data", "err", err)
		} else if n > 0 {
			p.log.Debug("purged expired data", "rows", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// purgeBatch is how many rows of each kind one purge transaction deletes: small, so the writer
// is never held long and intake never waits behind retention.
const purgeBatch = 500

// purgeExpired deletes what retention (Config.RetainRecords, RetainTracking) no longer keeps,
// batch by batch, and returns the rows deleted.
func (p *Pipeline) purgeExpired(ctx context.Context) (int, error) {
	return p.purgeOlder(ctx, p.cfg.RetainRecords, p.cfg.RetainTracking)
}

// purgeOlder deletes raw records older than retainRecords and tracked requests older than
// retainTracking (zero keeps them), batch by batch, and returns the rows deleted.
func (p *Pipeline) purgeOlder(ctx context.Context, retainRecords, retainTracking time.Duration) (int, error) {
	var recordsBefore, trackingBefore time.Time
	if retainRecords > 0 {
		recordsBefore = p.now().Add(-retainRecords)
	}
	if retainTracking > 0 {
		trackingBefore = p.now().Add(-retainTracking)
	}
	if recordsBefore.IsZero() && trackingBefore.IsZero() {
		return 0, nil
	}
	total := 0
	for ctx.Err() == nil {
		n, err := p.cfg.Store.Purge(ctx, recordsBefore, trackingBefore, purgeBatch)
		total += n
		if err != nil || n == 0 {
			return total, err
		}
	}
	return total, ctx.Err()
}
