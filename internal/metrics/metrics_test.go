package metrics_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/opengw/gateway/internal/metrics"
	"github.com/opengw/gateway/internal/metrics/metricstest"
	"github.com/opengw/gateway/internal/sqlitestore"
	"github.com/opengw/gateway/internal/store"
)

var (
	scrape = metricstest.Scrape
	sample = metricstest.Sample
)

func TestRecordersMoveTheirSeries(t *testing.T) {
	m := metrics.New()
	before := scrape(t, m)
	if v := sample(before, `gateway_mapping_reloads_total{result="refused"}`); v != 0 {
		t.Fatalf("reloads before any: %v", v)
	}
	m.IntakeCommitted("push", "activity", 3, 2*time.Millisecond)
	m.RecordsFinished("activity", "Complete", 2)
	m.RecordsFinished("activity", "Invalid", 1)
	m.SinkWrite("quotes", metrics.SinkOK, 2, time.Millisecond)
	m.SinkWrite("quotes", metrics.SinkError, 5, time.Second)
	m.WebhookDelivery(metrics.WebhookRetrying, time.Second)
	m.MappingReload(metrics.ReloadApplied)
	after := scrape(t, m)
	for series, want := range map[string]float64{
		`gateway_intake_commit_seconds_count{endpoint="push"}`:                1,
		`gateway_records_accepted_total{format="activity"}`:                   3,
		`gateway_records_finished_total{format="activity",status="Complete"}`: 2,
		`gateway_records_finished_total{format="activity",status="Invalid"}`:  1,
		`gateway_sink_writes_total{result="ok",sink="quotes"}`:                1,
		`gateway_sink_writes_total{result="error",sink="quotes"}`:             1,
		`gateway_sink_records_total{sink="quotes"}`:                           2,
		`gateway_sink_write_seconds_count{sink="quotes"}`:                     2,
		`gateway_webhook_deliveries_total{result="retrying"}`:                 1,
		`gateway_mapping_reloads_total{result="applied"}`:                     1,
		`gateway_mapping_reloads_total{result="refused"}`:                     0,
		`gateway_intake_commit_seconds_bucket{endpoint="push",le="0.0025"}`:   1,
		`gateway_intake_commit_seconds_bucket{endpoint="push",le="0.001"}`:    0,
		`gateway_records_finished_total{format="activity",status="Failed"}`:   -1, // never seen
		`gateway_webhook_deliveries_total{result="delivered"}`:                -1,
		`gateway_intake_commit_seconds_count{endpoint="events"}`:              -1,
		`gateway_sink_writes_total{result="permanent",sink="quotes"}`:         -1,
		`gateway_sink_write_seconds_bucket{sink="quotes",le="+Inf"}`:          2,
		`gateway_webhook_delivery_seconds_count`:                              1,
		`gateway_sink_write_seconds_bucket{sink="quotes",le="1"}`:             2,
		`gateway_intake_commit_seconds_sum{endpoint="push"}`:                  0.002,
	} {
		if got := sample(after, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	if !strings.Contains(after, "go_goroutines") || !strings.Contains(after, "process_resident_memory_bytes") {
		t.Error("runtime and process metrics missing")
	}
}

func TestNilMetricsDoNothing(t *testing.T) {
	var m *metrics.Metrics
	m.IntakeCommitted("push", "activity", 1, time.Millisecond)
	m.RecordsFinished("activity", "Complete", 1)
	m.SinkWrite("s", metrics.SinkOK, 1, time.Millisecond)
	m.WebhookDelivery(metrics.WebhookDelivered, time.Millisecond)
	m.MappingReload(metrics.ReloadApplied)
	m.ObserveHTTP("/push", "POST", 202, time.Millisecond)
	m.WatchQueue(nil, "fragments")
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	if got := m.InstrumentHTTP(h); got == nil {
		t.Fatal("InstrumentHTTP on nil returned nil")
	}
	called := false
	if _, err := m.RouterMiddleware(func(*message.Message) ([]*message.Message, error) { called = true; return nil, nil })(message.NewMessage("1", nil)); err != nil || !called {
		t.Fatal("RouterMiddleware on nil does not pass through")
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusNotFound {
		t.Fatalf("nil handler: %d", rec.Code)
	}
}

// TestHTTPByRoutePattern: requests are labelled by the pattern that matched, never the raw path,
// with their status; unmatched requests and panics are counted too.
func TestHTTPByRoutePattern(t *testing.T) {
	m := metrics.New()
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/integrations/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") == "missing" {
			http.Error(w, "no", http.StatusNotFound)
			return
		}
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("/boom", func(w http.ResponseWriter, r *http.Request) { panic("boom") })
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		w.(http.Flusher).Flush()
	})
	srv := httptest.NewServer(m.InstrumentHTTP(mux))
	defer srv.Close()
	for _, p := range []string{"/api/v1/integrations/a", "/api/v1/integrations/b", "/api/v1/integrations/missing", "/nowhere", "/boom", "/stream"} {
		resp, err := http.Get(srv.URL + p)
		if err == nil {
			resp.Body.Close()
		}
	}
	// A handler records its request when it returns, which may be after its client has read
	// the answer (/stream flushes first): Close waits for every handler.
	srv.Close()
	page := scrape(t, m)
	for series, want := range map[string]float64{
		`gateway_http_requests_total{method="GET",route="/api/v1/integrations/{id}",status="200"}`:                 2,
		`gateway_http_requests_total{method="GET",route="/api/v1/integrations/{id}",status="404"}`:                 1,
		`gateway_http_requests_total{method="GET",route="unmatched",status="404"}`:                                 1,
		`gateway_http_requests_total{method="GET",route="/boom",status="500"}`:                                     1,
		`gateway_http_requests_total{method="GET",route="/stream",status="200"}`:                                   1,
		`gateway_http_request_duration_seconds_count{method="GET",route="/api/v1/integrations/{id}",status="200"}`: 2,
	} {
		if got := sample(page, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	if strings.Contains(page, `route="/api/v1/integrations/a"`) {
		t.Error("a raw path became a label")
	}
}

// TestQueueDepthAndAge reads a real SQLite queue at scrape time.
func TestQueueDepthAndAge(t *testing.T) {
	st, err := sqlitestore.Open(sqlitestore.Config{Path: filepath.Join(t.TempDir(), "gateway.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m := metrics.New()
	m.WatchQueue(st.Queue(), "fragments", "deliver.quotes")
	page := scrape(t, m)
	if d := sample(page, `gateway_queue_depth{topic="fragments"}`); d != 0 {
		t.Fatalf("empty depth = %v", d)
	}
	err = st.Update(context.Background(), func(tx store.Tx) error {
		return tx.Publish("fragments", message.NewMessage("a", []byte("[]")), message.NewMessage("b", []byte("[]")))
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // ages are stored in milliseconds: let one whole second pass
	page = scrape(t, m)
	if d := sample(page, `gateway_queue_depth{topic="fragments"}`); d != 2 {
		t.Errorf("depth after publishing 2 = %v\n%s", d, page)
	}
	if a := sample(page, `gateway_queue_oldest_age_seconds{topic="fragments"}`); a < 1 {
		t.Errorf("oldest age = %v, want >= 1s", a)
	}
	if d := sample(page, `gateway_queue_depth{topic="deliver.quotes"}`); d != 0 {
		t.Errorf("other topic depth = %v", d)
	}

	// A queue that cannot answer is reported without hiding the other metrics.
	st.Close()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "go_goroutines") ||
		strings.Contains(rec.Body.String(), `gateway_queue_depth{topic="fragments"}`) {
		t.Fatalf("scrape with a closed queue: %d\n%s", rec.Code, rec.Body)
	}
}
