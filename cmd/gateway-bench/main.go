// Command gateway-bench measures the gateway as partners see it: it builds and starts the real
// binary on a fresh data folder (embedded SQLite, synchronous=FULL), pushes over loopback HTTP,
// and reports 202 latency percentiles, request rates, end-to-end records/s until every record is
// Complete in the tracker and in the sink, and the gateway's peak RSS. The soak scenario (run
// only when asked) offers a steady load for minutes and samples database size, RSS and backlog.
// Record ids are random UUIDs, as partners send them.
//
// With -postgres (the admin URL of a server) each run creates a fresh database gw_bench_<random>,
// starts -nodes gateway processes on it (examples/gateway-cluster.yaml, each with its own data
// folder), spreads the pushes round-robin over them, counts the postgres sinks' rows in that
// database, and drops it (WITH (FORCE)) afterwards.
//
//	go run ./cmd/gateway-bench                # all scenarios but soak, 3 runs each, medians reported
//	go run ./cmd/gateway-bench -runs 5 -only small
//	go run ./cmd/gateway-bench -runs 6 -baseline /tmp/gateway-old -baseline-config /tmp/old/examples/gateway.yaml
//	go run ./cmd/gateway-bench -only soak -rate 1000 -duration 10m -retention 1m
//	go run ./cmd/gateway-bench -postgres postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable -nodes 3 -only e2e
package main

import (
	"bytes"
	"cmp"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	runs := flag.Int("runs", 3, "repetitions of each scenario (medians are reported)")
	only := flag.String("only", "", "run one scenario: big1, big4, small, steady, e2e, peak, soak")
	config := flag.String("config", "", "gateway configuration (default examples/gateway.yaml, with -postgres examples/gateway-cluster.yaml)")
	var o clusterOptions
	flag.StringVar(&o.postgres, "postgres", "", "admin URL of a PostgreSQL server: run the gateway on a fresh database there (empty: embedded SQLite)")
	flag.IntVar(&o.nodes, "nodes", 1, "gateway processes sharing the database (with -postgres)")
	flag.StringVar(&o.pprof, "pprof", "", "HOST:PORT: the first node serves /debug/pprof there (profile it while a scenario runs)")
	flag.StringVar(&o.bin, "gateway", "", "a gateway binary to run instead of building ./cmd/gateway (e.g. an older commit's, to compare)")
	var base clusterOptions
	flag.StringVar(&base.bin, "baseline", "", "a second gateway binary (e.g. an older commit's) to compare with: the two alternate run by run, and medians and their ratios are reported")
	flag.StringVar(&base.config, "baseline-config", "", "the -baseline binary's configuration (default: -config)")
	var so soakOptions
	flag.IntVar(&so.rate, "rate", 1000, "soak: records per second offered")
	flag.IntVar(&so.batch, "batch", 10, "soak: records per push")
	flag.DurationVar(&so.duration, "duration", 10*time.Minute, "soak: how long the load lasts")
	flag.DurationVar(&so.sample, "sample", 10*time.Second, "soak: how often size and memory are sampled")
	flag.IntVar(&so.ids, "ids", 50000, "soak: distinct record ids, reused in turn")
	flag.StringVar(&so.retention, "retention", "", "soak: retention.tracking and retention.payloads to configure (e.g. 1m); empty keeps the config's")
	flag.Parse()
	o.config = *config
	if err := o.check(); err != nil {
		fmt.Fprintln(os.Stderr, "gateway-bench:", err)
		os.Exit(2)
	}
	if *only == "soak" {
		if err := soakRun(o, so); err != nil {
			fmt.Fprintln(os.Stderr, "gateway-bench:", err)
			os.Exit(1)
		}
		return
	}
	contenders := []contender{{"", o}}
	if base.bin != "" {
		b := o
		b.bin, b.config = base.bin, cmp.Or(base.config, o.config)
		contenders = []contender{{"baseline", b}, {"this", o}}
	}
	if err := benchAll(*runs, *only, contenders); err != nil {
		fmt.Fprintln(os.Stderr, "gateway-bench:", err)
		os.Exit(1)
	}
}

type scenario struct {
	name string
	run  func(g *gatewayProc) (map[string]float64, error)
}

// A contender is a gateway build to measure, with its options; name labels its figures when
// two are compared.
type contender struct {
	name string
	o    clusterOptions
}

// benchAll runs each scenario runs times for every contender. With two, their runs alternate
// and the order flips every run (A B, B A, ...), so that a machine whose speed drifts — shared
// VMs do, by 10–30 % within an hour — favours neither; each figure is then reported as both
// medians and their ratio (this / baseline).
func benchAll(runs int, only string, contenders []contender) error {
	bins := make([]string, len(contenders))
	for i, c := range contenders {
		bin, err := c.o.binary()
		if err != nil {
			return err
		}
		bins[i] = bin
	}
	scenarios := []scenario{
		{"big1", func(g *gatewayProc) (map[string]float64, error) { return bigPushes(g, 1, 100) }},
		{"big4", func(g *gatewayProc) (map[string]float64, error) { return bigPushes(g, 4, 100) }},
		{"small", func(g *gatewayProc) (map[string]float64, error) { return smallPushes(g, 32, 30000) }},
		{"steady", func(g *gatewayProc) (map[string]float64, error) { return steadyPushes(g, 32, 3200, 15*time.Second) }},
		{"e2e", func(g *gatewayProc) (map[string]float64, error) { return endToEnd(g, 1, 20) }},
		{"peak", peakMemory},
	}
	for _, c := range contenders {
		fmt.Fprintf(os.Stderr, "gateway-bench: %s%s\n", label(c.name), c.o.describe())
	}
	for _, sc := range scenarios {
		if only != "" && only != sc.name {
			continue
		}
		results := make([]map[string][]float64, len(contenders))
		for i := range results {
			results[i] = map[string][]float64{}
		}
		for run := range runs {
			for k := range contenders {
				if run%2 == 1 {
					k = len(contenders) - 1 - k
				}
				res, err := runOnce(sc, bins[k], contenders[k].o)
				if err != nil {
					return fmt.Errorf("%s run %d: %s%w", sc.name, run+1, label(contenders[k].name), err)
				}
				for key, v := range res {
					results[k][key] = append(results[k][key], v)
				}
				fmt.Fprintf(os.Stderr, "%s run %d: %s%s\n", sc.name, run+1, label(contenders[k].name), format(res, nil))
			}
		}
		for k, c := range contenders {
			fmt.Printf("%-6s median of %d: %s%s\n", sc.name, runs, label(c.name), format(nil, results[k]))
		}
		if len(contenders) == 2 {
			fmt.Printf("%-6s ratio this/baseline: %s\n", sc.name, ratios(results[0], results[1]))
		}
	}
	return nil
}

// runOnce runs sc once on a fresh gateway and returns its figures with the peak RSS.
func runOnce(sc scenario, bin string, o clusterOptions) (map[string]float64, error) {
	g, err := start(bin, o)
	if err != nil {
		return nil, err
	}
	res, err := sc.run(g)
	if err == nil {
		res["peak_rss_mb"] = g.peakRSSMB()
		if len(g.nodes) > 1 {
			res["peak_rss_max_mb"] = g.maxPeakRSSMB()
		}
	}
	g.stop()
	return res, err
}

// label prefixes a contender's figures with its name, if it has one.
func label(name string) string {
	if name == "" {
		return ""
	}
	return name + ": "
}

// ratios is, for each figure, the median of this over the median of baseline.
func ratios(baseline, this map[string][]float64) string {
	var keys []string
	for k := range this {
		if _, ok := baseline[k]; ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		if b := median(baseline[k]); b != 0 {
			parts = append(parts, fmt.Sprintf("%s=%.2f", k, median(this[k])/b))
		}
	}
	return strings.Join(parts, " ")
}

// soakRun runs the soak scenario once on a fresh data folder and prints its figures.
func soakRun(o clusterOptions, so soakOptions) error {
	if o.postgres != "" {
		return errors.New("-only soak samples the SQLite files of the data folder: run it without -postgres")
	}
	bin, err := o.binary()
	if err != nil {
		return err
	}
	cfg, err := soakConfig(o.config, so.retention)
	if err != nil {
		return err
	}
	defer os.RemoveAll(filepath.Dir(cfg))
	o.config = cfg
	g, err := start(bin, o)
	if err != nil {
		return err
	}
	defer g.stop()
	fmt.Fprintf(os.Stderr, "soak: %s\n", describeSoak(so))
	res, err := soak(g, so)
	if err != nil {
		return fmt.Errorf("soak: %w", err)
	}
	res["peak_rss_mb"] = g.peakRSSMB()
	fmt.Printf("soak (%s): %s\n", describeSoak(so), format(res, nil))
	return nil
}

func format(one map[string]float64, many map[string][]float64) string {
	var keys []string
	for k := range one {
		keys = append(keys, k)
	}
	for k := range many {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		v := one[k]
		if many != nil {
			v = median(many[k])
		}
		parts = append(parts, fmt.Sprintf("%s=%.1f", k, v))
	}
	return strings.Join(parts, " ")
}

// bigPushes sends n pushes of 10,000 records (~2.5 MB) at concurrency c and reports 202
// latency. The pipeline drains between runs, not between pushes.
func bigPushes(g *gatewayProc, c, n int) (map[string]float64, error) {
	bodies := make([][]byte, 4)
	for i := range bodies {
		bodies[i] = envelope(fmt.Sprintf("b%d-", i), 10000)
	}
	lat, _, err := pushPaced(g, c, n, nil, func(i int) []byte { return bodies[i%len(bodies)] }, nil)
	if err != nil {
		return nil, err
	}
	return map[string]float64{
		"body_mb": float64(len(bodies[0])) / 1e6,
		"p50_ms":  percentile(lat, 50), "p99_ms": percentile(lat, 99),
	}, nil
}

// smallPushes sends n one-record pushes at concurrency c, then waits for the pipeline to finish
// them: requests/s measures intake, records/s the whole path, backlog what was left when intake
// ended.
func smallPushes(g *gatewayProc, c, n int) (map[string]float64, error) {
	start, cpu0 := time.Now(), g.cpuSeconds()
	lat, elapsed, err := pushPaced(g, c, n, nil, func(i int) []byte { return envelope(fmt.Sprintf("s%d-", i), 1) }, nil)
	if err != nil {
		return nil, err
	}
	backlog := n - g.sinkCount()
	if err := g.waitSink(n, 5*time.Minute); err != nil {
		return nil, err
	}
	total := time.Since(start)
	return map[string]float64{
		"p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99),
		"req_per_s":         float64(n) / elapsed.Seconds(),
		"backlog_at_end":    float64(backlog),
		"e2e_records_per_s": float64(n) / total.Seconds(),
		"cpu_ms_per_push":   (g.cpuSeconds() - cpu0) * 1000 / float64(n),
	}, nil
}

// steadyPushes offers one-record pushes at a fixed rate from c clients for d (an open-loop
// load, as partners produce it) and reports whether the pipeline keeps up: the backlog when the
// load stops, and how long it then takes to drain.
func steadyPushes(g *gatewayProc, c, rate int, d time.Duration) (map[string]float64, error) {
	n := int(float64(rate) * d.Seconds())
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	// Request i is due at start + i*interval; a late client sends at once.
	due := func(i int) time.Time { return start.Add(time.Duration(i) * interval) }
	lat, elapsed, err := pushPaced(g, c, n, due, func(i int) []byte { return envelope(fmt.Sprintf("t%d-", i), 1) }, nil)
	if err != nil {
		return nil, err
	}
	backlog := n - g.sinkCount()
	drainStart := time.Now()
	if err := g.waitSink(n, 5*time.Minute); err != nil {
		return nil, err
	}
	return map[string]float64{
		"offered_per_s":  float64(rate),
		"achieved_per_s": float64(n) / elapsed.Seconds(),
		"p50_ms":         percentile(lat, 50),
		"p99_ms":         percentile(lat, 99),
		"backlog_at_end": float64(backlog),
		"drain_ms":       float64(time.Since(drainStart).Milliseconds()),
	}, nil
}

// endToEnd pushes n envelopes of 10,000 records at concurrency c and measures records/s from
// the first request until every record is in the sink and Complete in the tracker
// (tracked_records_per_s), and until the last sink write began (sink_records_per_s). The bodies
// are built beforehand, so the clock holds no load generation.
func endToEnd(g *gatewayProc, c, n int) (map[string]float64, error) {
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = envelope(fmt.Sprintf("e%d-", i), 10000)
	}
	start, cpu0 := time.Now(), g.cpuSeconds()
	var ids []string
	var mu sync.Mutex
	_, _, err := pushPaced(g, c, n, nil, func(i int) []byte { return bodies[i] }, func(id string) {
		mu.Lock()
		ids = append(ids, id)
		mu.Unlock()
	})
	if err != nil {
		return nil, err
	}
	// The tracker first: its Tracking API answers from per-request counters, while counting a
	// sink table of 300,000 rows every few milliseconds would take CPU from the gateway. A
	// record is Complete only after its sink write committed, so the sink is then complete too
	// (checked), and its _updated_at says when the last write began.
	for _, id := range ids {
		if err := g.waitTracked(id, 10000, 10*time.Minute); err != nil {
			return nil, err
		}
	}
	trackerDone := time.Since(start)
	records := n * 10000
	if err := g.waitSink(records, time.Minute); err != nil {
		return nil, err
	}
	allDone := time.Since(start)
	last, err := g.sinkLastWrite()
	if err != nil {
		return nil, err
	}
	return map[string]float64{
		"records":               float64(records),
		"sink_records_per_s":    float64(records) / last.Sub(start).Seconds(),
		"tracked_records_per_s": float64(records) / allDone.Seconds(),
		"tracker_lag_ms":        float64(allDone-trackerDone) / 1e6,
		"cpu_ms_per_1k_records": (g.cpuSeconds() - cpu0) * 1000 / float64(records) * 1000,
	}, nil
}

// peakMemory is the memory target of issue 13: a backlog of a million records (100 pushes of
// 10,000 at concurrency 4), then four pushes of 10,000 records averaging 1 kB (just under the
// 10 MiB limit) at once. It reports the big pushes' slowest 202, the records not yet in the
// sink when they were acknowledged, and how long the whole backlog took to reach the sink;
// runOnce adds the peak RSS.
func peakMemory(g *gatewayProc) (map[string]float64, error) {
	// callPad makes a 10,000-record push 10.2 MB: its 5,000 calls ~1.8 kB, its quotes ~250 bytes.
	const backlogPushes, bigPushes, callPad = 100, 4, 1560
	bodies := make([][]byte, backlogPushes+bigPushes)
	for i := range backlogPushes {
		bodies[i] = envelope(fmt.Sprintf("m%d-", i), 10000)
	}
	for i := range bigPushes {
		bodies[backlogPushes+i] = paddedEnvelope(fmt.Sprintf("M%d-", i), 10000, callPad)
	}
	start := time.Now()
	if _, _, err := pushPaced(g, 4, backlogPushes, nil, func(i int) []byte { return bodies[i] }, nil); err != nil {
		return nil, err
	}
	lat, _, err := pushPaced(g, bigPushes, bigPushes, nil, func(i int) []byte { return bodies[backlogPushes+i] }, nil)
	if err != nil {
		return nil, err
	}
	records := (backlogPushes + bigPushes) * 10000
	backlog := records - g.sinkCount()
	if err := g.waitSink(records, 10*time.Minute); err != nil {
		return nil, err
	}
	return map[string]float64{
		"big_body_mb":    float64(len(bodies[backlogPushes])) / 1e6,
		"big_max_ms":     slices.Max(lat),
		"backlog_at_big": float64(backlog),
		"drained_s":      time.Since(start).Seconds(),
	}, nil
}

// pushPaced sends n pushes from c clients; request i waits until due(i) when due is set, and
// onID, when set, receives each request id. It returns each request's latency in ms and the
// elapsed time.
func pushPaced(g *gatewayProc, c, n int, due func(int) time.Time, body func(int) []byte, onID func(string)) ([]float64, time.Duration, error) {
	var next atomic.Int64
	lat := make([]float64, n)
	errs := make(chan error, c)
	var wg sync.WaitGroup
	start := time.Now()
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				b := body(i)
				if due != nil {
					time.Sleep(time.Until(due(i)))
				}
				t0 := time.Now()
				id, err := g.push(b)
				lat[i] = float64(time.Since(t0).Microseconds()) / 1000
				if err != nil {
					errs <- err
					return
				}
				if onID != nil {
					onID(id)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	select {
	case err := <-errs:
		return nil, 0, err
	default:
	}
	return lat, elapsed, nil
}

// envelope builds an activity push of n records (calls and quotes, ~250 bytes each) with random
// UUID ids; prefix names the push (its request_id).
func envelope(prefix string, n int) []byte { return paddedEnvelope(prefix, n, 0) }

// paddedEnvelope is envelope with pad more bytes in each call's note.
func paddedEnvelope(prefix string, n, pad int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"format":"activity","request_id":"` + prefix + `batch","payload":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		writeRecord(&b, i%2 == 0, randomUUID(), pad)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// writeRecord writes one record of the Push API: a call (its note padded by pad bytes) or a
// quote with the given id.
func writeRecord(b *bytes.Buffer, call bool, id string, pad int) {
	if call {
		fmt.Fprintf(b, `{"id":"%s","type":"call","timestamp":"2020-05-18T21:15:00-5:00","duration":"PT25M30S","user_email":"Jonny.Test@mivation.com","contact":"+18774289403","direction":"outbound","note":"%08x%s"}`,
			id, rand.Uint32(), strings.Repeat("x", pad))
	} else {
		fmt.Fprintf(b, `{"id":"%s","type":"quote","timestamp":"2020-05-18T21:20:00-5:00","user_email":"jonny.test@mivation.com","contact":"Jane S","product_line":"fire","product":"Renter","amount":123.45,"href":"https://my.quotes.net/%08x"}`, id, rand.Uint32())
	}
}

// randomUUID is a random (version 4) UUID, as partners' record ids are: they land anywhere in a
// key's index, unlike sequential ids, which B-trees append cheaply.
func randomUUID() string {
	hi, lo := rand.Uint64(), rand.Uint64()
	hi = hi&^0xf000 | 0x4000     // version 4
	lo = lo&^(3<<62) | (2 << 62) // RFC 4122 variant
	return fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", hi>>32, hi>>16&0xffff, hi&0xffff, lo>>48, lo&0xffffffffffff)
}

func percentile(xs []float64, p float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}

func median(xs []float64) float64 { return percentile(xs, 50) }
