// Package metrics holds the gateway's Prometheus metrics, on a registry of its own (never the
// global one, so tests and several gateways in one process never collide). One *Metrics is made
// in cmd/gateway and passed down; the pipeline, transports and integrations record into it
// through the methods below. Every method is safe for concurrent use and does nothing on a nil
// *Metrics, so components work unchanged without metrics.
//
// Label values are bounded: HTTP routes are mux patterns (never raw paths), formats, sinks and
// topics come from configuration, statuses and results from small fixed sets.
package metrics

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/components/metrics"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "gateway"

// Results of a sink write (label result of gateway_sink_writes_total).
const (
	SinkOK        = "ok"        // the sink took the records
	SinkError     = "error"     // a retryable failure: the write is tried again later
	SinkPermanent = "permanent" // the sink refused the records (sinks.ErrPermanent)
)

// Results of a webhook delivery attempt (label result of gateway_webhook_deliveries_total).
const (
	WebhookDelivered = "delivered" // the receiver answered 2xx
	WebhookRetrying  = "retrying"  // failed; another attempt is scheduled
	WebhookFailed    = "failed"    // failed for the last time (schedule exhausted)
	WebhookPaused    = "paused"    // the receiver answered 410 Gone: the integration was paused
)

// Results of a mapping reload (label result of gateway_mapping_reloads_total).
const (
	ReloadApplied = "applied" // a changed, valid mapping set now serves
	ReloadRefused = "refused" // the changed folder had problems; the previous set keeps serving
)

// Metrics is the gateway's metric set. Create it with New.
type Metrics struct {
	reg *prometheus.Registry

	httpRequests    *prometheus.CounterVec
	httpDuration    *prometheus.HistogramVec
	intakeCommit    *prometheus.HistogramVec
	recordsAccepted *prometheus.CounterVec
	recordsFinished *prometheus.CounterVec
	sinkWrites      *prometheus.CounterVec
	sinkRecords     *prometheus.CounterVec
	sinkDuration    *prometheus.HistogramVec
	webhooks        *prometheus.CounterVec
	webhookDuration prometheus.Histogram
	mappingReloads  *prometheus.CounterVec
	queue           *queueCollector
	handlers        metrics.HandlerPrometheusMetricsMiddleware
}

// New creates the metrics and registers them, with Go runtime and process metrics, on a new
// registry.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	// Commit and sink latencies: from a fraction of a millisecond (an fsync) to a minute (a
	// sink write's timeout).
	latency := []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	m := &Metrics{
		reg: reg,
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "http_requests_total",
			Help: "HTTP requests answered, by route pattern, method and status code.",
		}, []string{"route", "method", "status"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "http_request_duration_seconds",
			Help:    "Time from receiving an HTTP request to the end of its answer, by route pattern, method and status code.",
			Buckets: latency,
		}, []string{"route", "method", "status"}),
		intakeCommit: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "intake_commit_seconds",
			Help:    "Time to commit an accepted submission durably (the wait before a 202/201), by endpoint.",
			Buckets: latency,
		}, []string{"endpoint"}),
		recordsAccepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "records_accepted_total",
			Help: "Records committed at intake, by format.",
		}, []string{"format"}),
		recordsFinished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "records_finished_total",
			Help: "Records that reached a final status in the pipeline, by format and status (Complete, Failed, Invalid, Cancelled).",
		}, []string{"format", "status"}),
		sinkWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "sink_writes_total",
			Help: "Writes (batches) to each sink, by result: ok, error (retried later) or permanent (refused).",
		}, []string{"sink", "result"}),
		sinkRecords: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "sink_records_total",
			Help: "Records written to each sink successfully.",
		}, []string{"sink"}),
		sinkDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "sink_write_seconds",
			Help:    "Duration of one write to a sink, whatever its result.",
			Buckets: latency,
		}, []string{"sink"}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "webhook_deliveries_total",
			Help: "Webhook delivery attempts, by result: delivered, retrying, failed or paused.",
		}, []string{"result"}),
		webhookDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "webhook_delivery_seconds",
			Help:    "Duration of one webhook delivery attempt, whatever its result.",
			Buckets: latency,
		}),
		mappingReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "mapping_reloads_total",
			Help: "Changes of the mappings folder acted on while running, by result: applied or refused.",
		}, []string{"result"}),
		queue: newQueueCollector(),
	}
	reg.MustRegister(
		m.httpRequests, m.httpDuration, m.intakeCommit, m.recordsAccepted, m.recordsFinished,
		m.sinkWrites, m.sinkRecords, m.sinkDuration, m.webhooks, m.webhookDuration, m.mappingReloads,
		m.queue,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	for _, r := range []string{ReloadApplied, ReloadRefused} {
		m.mappingReloads.WithLabelValues(r) // shown at 0 before the first reload
	}
	// Watermill's handler execution time per router handler (process, deliver-<sink>, ...): how
	// long each pipeline stage takes, and how often it nacks.
	m.handlers = metrics.NewPrometheusMetricsBuilder(reg, namespace, "router").NewRouterMiddleware()
	return m
}

// Registry is the registry the metrics live on, for components that bring their own
// collectors.
func (m *Metrics) Registry() *prometheus.Registry {
	if m == nil {
		return nil
	}
	return m.reg
}

// Handler serves the metrics in the Prometheus text format (GET /metrics). A collector that
// fails (e.g. the queue depth while the database is unreachable) is reported in the scrape
// without hiding the others. On a nil *Metrics it answers 404.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, Registry: m.reg})
}

// ObserveHTTP counts one answered HTTP request of route (a mux pattern such as
// "/api/v1/integrations/{id}", never a raw path).
func (m *Metrics) ObserveHTTP(route, method string, status int, d time.Duration) {
	if m == nil {
		return
	}
	code := strconv.Itoa(status)
	m.httpRequests.WithLabelValues(route, method, code).Inc()
	m.httpDuration.WithLabelValues(route, method, code).Observe(d.Seconds())
}

// IntakeCommitted records a successful intake commit of records records of format through
// endpoint ("push", "events", ...) that took d.
func (m *Metrics) IntakeCommitted(endpoint, format string, records int, d time.Duration) {
	if m == nil {
		return
	}
	m.intakeCommit.WithLabelValues(endpoint).Observe(d.Seconds())
	m.recordsAccepted.WithLabelValues(format).Add(float64(records))
}

// RecordsFinished counts n records of format that reached final status status.
func (m *Metrics) RecordsFinished(format, status string, n int) {
	if m == nil || n == 0 {
		return
	}
	m.recordsFinished.WithLabelValues(format, status).Add(float64(n))
}

// SinkWrite records one write of records records to sink that took d and ended with result
// (SinkOK, SinkError or SinkPermanent).
func (m *Metrics) SinkWrite(sink, result string, records int, d time.Duration) {
	if m == nil {
		return
	}
	m.sinkWrites.WithLabelValues(sink, result).Inc()
	m.sinkDuration.WithLabelValues(sink).Observe(d.Seconds())
	if result == SinkOK {
		m.sinkRecords.WithLabelValues(sink).Add(float64(records))
	}
}

// WebhookDelivery records one webhook delivery attempt that took d and ended with result
// (WebhookDelivered, WebhookRetrying, WebhookFailed or WebhookPaused).
func (m *Metrics) WebhookDelivery(result string, d time.Duration) {
	if m == nil {
		return
	}
	m.webhooks.WithLabelValues(result).Inc()
	m.webhookDuration.Observe(d.Seconds())
}

// MappingReload counts a reload of the mappings folder with result ReloadApplied or
// ReloadRefused.
func (m *Metrics) MappingReload(result string) {
	if m == nil {
		return
	}
	m.mappingReloads.WithLabelValues(result).Inc()
}

// RouterMiddleware times every handler of a Watermill router (gateway_router_handler_execution_time_seconds
// by handler name and success). On a nil *Metrics it passes messages through.
func (m *Metrics) RouterMiddleware(h message.HandlerFunc) message.HandlerFunc {
	if m == nil {
		return h
	}
	return m.handlers.Middleware(h)
}

// QueueStats is what the queue metrics read: store.Queue implements it.
type QueueStats interface {
	// Depth counts the messages of topic not yet settled.
	Depth(ctx context.Context, topic string) (int, error)
	// OldestAge is how long the oldest unsettled message of topic has waited (0 if none).
	OldestAge(ctx context.Context, topic string) (time.Duration, error)
}

// WatchQueue reports the depth and oldest age of each of topics of q at every scrape
// (gateway_queue_depth, gateway_queue_oldest_age_seconds by topic). Calling it again adds
// topics; a topic given twice is reported once, by the queue given last.
func (m *Metrics) WatchQueue(q QueueStats, topics ...string) {
	if m == nil {
		return
	}
	m.queue.watch(q, topics)
}

// queueScrapeTimeout bounds the queue queries of one scrape.
const queueScrapeTimeout = 5 * time.Second

// queueCollector reads queue depth and age when scraped: two indexed queries per topic, only as
// often as Prometheus asks.
type queueCollector struct {
	depth, age *prometheus.Desc

	mu     sync.Mutex
	topics map[string]QueueStats
	order  []string
}

func newQueueCollector() *queueCollector {
	return &queueCollector{
		depth: prometheus.NewDesc(namespace+"_queue_depth",
			"Messages of a queue topic not yet settled (fragments to process, deliveries to a sink, events).",
			[]string{"topic"}, nil),
		age: prometheus.NewDesc(namespace+"_queue_oldest_age_seconds",
			"How long the oldest unsettled message of a queue topic has waited (0 when the topic is empty).",
			[]string{"topic"}, nil),
		topics: map[string]QueueStats{},
	}
}

func (c *queueCollector) watch(q QueueStats, topics []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range topics {
		if _, seen := c.topics[t]; !seen {
			c.order = append(c.order, t)
		}
		c.topics[t] = q
	}
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.depth
	ch <- c.age
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	order := append([]string(nil), c.order...)
	topics := make(map[string]QueueStats, len(c.topics))
	for t, q := range c.topics {
		topics[t] = q
	}
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), queueScrapeTimeout)
	defer cancel()
	for _, t := range order {
		q := topics[t]
		n, err := q.Depth(ctx, t)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(c.depth, err)
		} else {
			ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(n), t)
		}
		age, err := q.OldestAge(ctx, t)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(c.age, err)
		} else {
			ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, age.Seconds(), t)
		}
	}
}
