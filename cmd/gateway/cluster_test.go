package main

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/opengw/gateway/internal/pgtest"
)

// TestClusterNodeKilledUnderLoad: three gateway processes share one PostgreSQL database (the
// shipped examples/gateway-cluster.yaml, postgres sinks); pushes are spread over all three and
// one node is SIGKILLed mid-load and not restarted. Every acknowledged record reaches a terminal
// status exactly once in the tracker and is exactly once in the postgres sink, and both
// survivors answer tracking the same.
func TestClusterNodeKilledUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the real binary")
	}
	url := pgtest.New(t)
	data, err := os.ReadFile("../../examples/gateway-cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	mappings, _ := filepath.Abs("../../examples/mappings")
	cfg := strings.Replace(string(data), "mappings: mappings", "mappings: "+mappings, 1)
	cfgPath := filepath.Join(t.TempDir(), "gateway-cluster.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GATEWAY_DATABASE", url) // the example reads ${GATEWAY_DATABASE}; the binary inherits it

	var nodes []*gateway
	var victim interface{ Signal(os.Signal) error }
	for i := range 3 {
		g, cmd := startProcess(t, cfgPath, t.TempDir())
		nodes = append(nodes, g)
		if i == 0 {
			victim = cmd.Process
		}
	}

	type pushed struct {
		requestID string
		ids       []string
	}
	var (
		mu       sync.Mutex
		accepted []pushed
		wg       sync.WaitGroup
		killOnce sync.Once
	)
	const pushes, perPush = 60, 50
	for n := range pushes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if n == pushes/3 {
				killOnce.Do(func() { victim.Signal(syscall.SIGKILL) })
			}
			ids := make([]string, perPush)
			var b strings.Builder
			b.WriteString(`{"format":"activity","payload":[`)
			for i := range ids {
				var raw [12]byte
				rand.Read(raw[:])
				ids[i] = hex.EncodeToString(raw[:])
				if i > 0 {
					b.WriteByte(',')
				}
				fmt.Fprintf(&b, `{"id":"%s","type":"call","timestamp":"2020-05-18T21:15:00Z","duration":"PT1M","user_email":"a@b.c"}`, ids[i])
			}
			b.WriteString(`]}`)
			// Round robin over the nodes; a push the killed node never answered is not acknowledged.
			g := nodes[n%3]
			req, _ := http.NewRequest("POST", g.URL+"/push", strings.NewReader(b.String()))
			req.SetBasicAuth("demo", "demo-secret")
			req.Header.Set("Content-Type", "application/json")
			resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
			if err != nil {
				return
			}
			defer resp.Body.Close()
			var out [256]byte
			k, _ := resp.Body.Read(out[:])
			if resp.StatusCode == http.StatusAccepted {
				mu.Lock()
				accepted = append(accepted, pushed{gjson.GetBytes(out[:k], "id").String(), ids})
				mu.Unlock()
			}
		}()
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
	survivors := nodes[1:]
	if len(accepted) < pushes/2 {
		t.Fatalf("only %d of %d pushes acknowledged", len(accepted), pushes)
	}
	total := 0
	for _, p := range accepted {
		r := survivors[0].waitComplete(t, p.requestID, 2*time.Minute)
		if s := r.Get("messageStatusSummary"); s.Get("complete").Int() != perPush || s.Get("total").Int() != perPush {
			t.Errorf("request %s: summary %s, want %d Complete", p.requestID, s.Raw, perPush)
		}
		if other := survivors[1].tracked(t, p.requestID); other.Raw != r.Raw {
			t.Errorf("the survivors disagree on request %s:\n%s\n%s", p.requestID, r.Raw, other.Raw)
		}
		total += perPush
	}

	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var rows, distinct int
	if err := db.QueryRow(`SELECT count(*), count(DISTINCT activity_id) FROM activities WHERE _client_id = 'demo'`).Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	var tracked, complete int
	if err := db.QueryRow(`SELECT count(*), count(*) FILTER (WHERE status = 2) FROM tracker_messages`).Scan(&tracked, &complete); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d of %d pushes acknowledged (%d records); sink rows %d (%d ids); tracker %d messages, %d Complete",
		len(accepted), pushes, total, rows, distinct, tracked, complete)
	// Pushes the victim committed without answering also complete: at least every acknowledged
	// record, each exactly once.
	if distinct < total || rows != distinct {
		t.Fatalf("sink holds %d rows for %d distinct ids, %d acknowledged records", rows, distinct, total)
	}
	if complete != tracked || tracked < total {
		t.Fatalf("tracker: %d of %d messages Complete, %d acknowledged", complete, tracked, total)
	}
}
