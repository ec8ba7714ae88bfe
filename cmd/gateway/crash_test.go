package main

import (
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestCrashAfterAcknowledgement kills the gateway with SIGKILL right after a burst of pushes has
// been acknowledged, restarts it on the same data folder, and checks that every acknowledged
// record reaches a terminal status and lands in the sink exactly once.
func TestCrashAfterAcknowledgement(t *testing.T) { forEachBackend(t, testCrashAfterAcknowledgement) }

func testCrashAfterAcknowledgement(t *testing.T, b gatewayBackend) {
	cfg := b.config(t, exampleConfig)
	if testing.Short() {
		t.Skip("builds and kills the real binary")
	}
	dataDir := t.TempDir()
	g, cmd := startProcess(t, cfg, dataDir)

	type pushed struct {
		requestID string
		records   int
	}
	var (
		mu       sync.Mutex
		accepted []pushed
		wg       sync.WaitGroup
	)
	// Small pushes go straight to processing; the two big ones go through the split stage.
	sizes := []int{3000, 2500}
	for range 40 {
		sizes = append(sizes, 25)
	}
	for n, size := range sizes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := g.push(t, callsEnvelope(fmt.Sprintf("p%d-", n), size))
			mu.Lock()
			accepted = append(accepted, pushed{id, size})
			mu.Unlock()
		}()
	}
	wg.Wait()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	before := any(0) // the table appears with the first delivered record
	if len(g.sinkRows(t, `SELECT name FROM sqlite_master WHERE name = 'activities'`)) == 1 {
		before = g.sinkRows(t, `SELECT count(*) AS n FROM activities`)[0]["n"]
	}
	t.Logf("%d pushes acknowledged; %v records in the sink when killed", len(accepted), before)

	g2, _ := startProcess(t, cfg, dataDir)
	total := 0
	for _, p := range accepted {
		r := g2.waitComplete(t, p.requestID, 2*time.Minute)
		s := r.Get("messageStatusSummary")
		if s.Get("total").Int() != int64(p.records) || s.Get("complete").Int() != int64(p.records) {
			t.Errorf("request %s after restart: summary %s, want %d complete", p.requestID, s.Raw, p.records)
		}
		total += p.records
	}
	rows := g2.sinkRows(t, `SELECT count(*) AS n, count(DISTINCT activity_id) AS ids FROM activities`)
	if fmt.Sprint(rows[0]["n"]) != fmt.Sprint(total) || fmt.Sprint(rows[0]["ids"]) != fmt.Sprint(total) {
		t.Fatalf("sink holds %v rows for %d acknowledged records", rows[0], total)
	}
}

// callsEnvelope is an activity push of n call records with ids prefix0..prefixN-1.
func callsEnvelope(prefix string, n int) []byte {
	var b strings.Builder
	b.WriteString(`{"format":"activity","request_id":"` + prefix + `batch","payload":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"%s%d","type":"call","timestamp":"2020-05-18T21:15:00-5:00","duration":"PT25M30S","user_email":"Jonny.Test@mivation.com","contact":"+18774289403","direction":"outbound"}`, prefix, i)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}
