package dispatch_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/tidwall/gjson"

	"github.com/opengw/gateway/internal/integrations"
	"github.com/opengw/gateway/internal/integrations/dispatch"
	"github.com/opengw/gateway/internal/sqlitestore"
	"github.com/opengw/gateway/internal/store"
	"github.com/opengw/gateway/pipeline"
	"github.com/opengw/gateway/tracker"
)

// BenchmarkWebhooks measures the whole way back on SQLite: the pipeline's status events (as the
// pipeline publishes them, in a store transaction) through the real dispatcher and sender to
// local HTTP receivers. 100 integrations of one client, each taking message:*; 10 of their
// receivers are dead (they accept the connection and never answer, so each holds its lane
// for the whole timeout). Every event reports 10 records Complete.
//
// Reported: live deliveries/s, and the delay from the records becoming Complete (the event's
// time, the webhook's timestamp) to the webhook's arrival, p50 and p99.
//
//	burst: b.N events published at once (throughput; the delay includes the backlog)
//	paced: 20 events/s, 1,800 live deliveries/s offered (the delay of a gateway keeping up)
//
//	go test -run '^$' -bench Webhooks -benchtime 200x ./internal/integrations/dispatch/
func BenchmarkWebhooks(b *testing.B) {
	b.Run("burst", func(b *testing.B) { benchWebhooks(b, 0) })
	b.Run("paced", func(b *testing.B) { benchWebhooks(b, 50*time.Millisecond) })
}

const (
	benchIntegrations = 100
	benchDead         = 10
	benchRecords      = 10
)

func benchWebhooks(b *testing.B, every time.Duration) {
	st, err := sqlitestore.Open(sqlitestore.Config{Path: filepath.Join(b.TempDir(), "gateway.db")})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var (
		mu      sync.Mutex
		delays  []time.Duration
		arrived atomic.Int64
		release = make(chan struct{})
	)
	live := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		at, err := time.Parse(time.RFC3339Nano, gjson.GetBytes(body, "timestamp").String())
		if err == nil {
			mu.Lock()
			delays = append(delays, time.Since(at))
			mu.Unlock()
		}
		arrived.Add(1)
		w.WriteHeader(http.StatusNoContent)
	})
	dead := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	keys, _ := integrations.NewKeys()
	for i := range benchIntegrations {
		h := live
		if i < benchDead {
			h = dead
		}
		srv := httptest.NewServer(h)
		defer srv.Close()
		in := integrations.Integration{ID: uuid.NewString(), HubID: "hub", Channel: integrations.System, Name: fmt.Sprint("i", i),
			Status: integrations.Active, Config: integrations.Config{WebhookURL: srv.URL, Events: []string{"message:*"}}, Keys: keys,
			CreatedAt: time.Now(), UpdatedAt: time.Now()}
		if err := st.Integrations().Create(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
	defer close(release)

	log := slog.New(slog.DiscardHandler)
	wake := &integrations.Signal{}
	d, err := dispatch.New(dispatch.Config{Store: st, Integrations: st.Integrations(), Tracker: st.Tracker(),
		Directory: dispatch.NewDirectory([]dispatch.Client{{ID: "demo", Hubs: []string{"hub"}}}), Wake: wake, Log: log})
	if err != nil {
		b.Fatal(err)
	}
	sender := integrations.NewSender(integrations.SenderConfig{Store: st.Integrations(), Guard: &integrations.Guard{AllowPrivate: true},
		Wake: wake, Log: log})
	done := make(chan struct{}, 2)
	go func() { d.Run(ctx); done <- struct{}{} }()
	go func() { sender.Run(ctx); done <- struct{}{} }()
	<-d.Running()

	publish := func(n int) {
		ev := pipeline.Event{Type: pipeline.EventMessages, ID: uuid.NewString(), ClientID: "demo", RequestID: uuid.NewString(), At: time.Now().UTC()}
		for i := range benchRecords {
			ev.Messages = append(ev.Messages, pipeline.EventMessage{ID: uuid.NewString(), Index: i, ExternalReference: fmt.Sprint("r", n, "-", i), Status: tracker.Complete})
		}
		payload, _ := json.Marshal(ev)
		if err := st.Update(ctx, func(tx store.Tx) error {
			return tx.Publish(pipeline.TopicEvents, message.NewMessage(ev.ID, payload))
		}); err != nil {
			b.Fatal(err)
		}
	}
	want := int64(b.N * (benchIntegrations - benchDead))
	b.ResetTimer()
	start := time.Now()
	var tick *time.Ticker
	if every > 0 {
		tick = time.NewTicker(every)
		defer tick.Stop()
	}
	for n := range b.N {
		if tick != nil {
			<-tick.C
		}
		publish(n)
	}
	for arrived.Load() < want {
		time.Sleep(5 * time.Millisecond)
		if time.Since(start) > 10*time.Minute {
			b.Fatalf("%d of %d live deliveries arrived", arrived.Load(), want)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()

	mu.Lock()
	slices.Sort(delays)
	p50, p99 := delays[len(delays)/2], delays[len(delays)*99/100]
	mu.Unlock()
	b.ReportMetric(float64(want)/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	b.ReportMetric(0, "ns/op")
	cancel()
	d.Close()
	<-done
	<-done
}
