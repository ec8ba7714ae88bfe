// Command gateway-bench measures the gateway as partners see it: it builds and starts the real
// binary on a fresh data folder (embedded SQLite, synchronous=FULL), pushes over loopback HTTP,
// and reports 202 latency percentiles, request rates, end-to-end records/s until every record is
// Complete in the tracker and in the sink, and the gateway's peak RSS. The soak scenario (run
// only when asked) offers a steady load for minutes and samples database size, RSS and backlog.
//
//	go run ./cmd/gateway-bench                # all scenarios but soak, 3 runs each, medians reported
//	go run ./cmd/gateway-bench -runs 5 -only small
//	go run ./cmd/gateway-bench -only soak -rate 1000 -duration 10m -retention 1m
package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/mattn/go-sqlite3"
	"github.com/tidwall/gjson"
)

func main() {
	runs := flag.Int("runs", 3, "repetitions of each scenario (medians are reported)")
	only := flag.String("only", "", "run one scenario: big1, big4, small, steady, e2e, soak")
	config := flag.String("config", "examples/gateway.yaml", "gateway configuration")
	var so soakOptions
	flag.IntVar(&so.rate, "rate", 1000, "soak: records per second offered")
	flag.IntVar(&so.batch, "batch", 10, "soak: records per push")
	flag.DurationVar(&so.duration, "duration", 10*time.Minute, "soak: how long the load lasts")
	flag.DurationVar(&so.sample, "sample", 10*time.Second, "soak: how often size and memory are sampled")
	flag.IntVar(&so.ids, "ids", 50000, "soak: distinct record ids, reused in turn")
	flag.StringVar(&so.retention, "retention", "", "soak: retention.tracking and retention.payloads to configure (e.g. 1m); empty keeps the config's")
	flag.Parse()
	if *only == "soak" {
		if err := soakRun(*config, so); err != nil {
			fmt.Fprintln(os.Stderr, "gateway-bench:", err)
			os.Exit(1)
		}
		return
	}
	if err := benchAll(*runs, *only, *config); err != nil {
		fmt.Fprintln(os.Stderr, "gateway-bench:", err)
		os.Exit(1)
	}
}

type scenario struct {
	name string
	run  func(g *gatewayProc) (map[string]float64, error)
}

func benchAll(runs int, only, config string) error {
	bin, err := build()
	if err != nil {
		return err
	}
	scenarios := []scenario{
		{"big1", func(g *gatewayProc) (map[string]float64, error) { return bigPushes(g, 1, 100) }},
		{"big4", func(g *gatewayProc) (map[string]float64, error) { return bigPushes(g, 4, 100) }},
		{"small", func(g *gatewayProc) (map[string]float64, error) { return smallPushes(g, 32, 30000) }},
		{"steady", func(g *gatewayProc) (map[string]float64, error) { return steadyPushes(g, 32, 3200, 15*time.Second) }},
		{"e2e", func(g *gatewayProc) (map[string]float64, error) { return endToEnd(g, 4, 30) }},
	}
	for _, sc := range scenarios {
		if only != "" && only != sc.name {
			continue
		}
		results := map[string][]float64{}
		for i := range runs {
			g, err := start(bin, config)
			if err != nil {
				return err
			}
			res, err := sc.run(g)
			res["peak_rss_mb"] = g.peakRSSMB()
			g.stop()
			if err != nil {
				return fmt.Errorf("%s run %d: %w", sc.name, i+1, err)
			}
			for k, v := range res {
				results[k] = append(results[k], v)
			}
			fmt.Fprintf(os.Stderr, "%s run %d: %s\n", sc.name, i+1, format(res, nil))
		}
		fmt.Printf("%-6s median of %d: %s\n", sc.name, runs, format(nil, results))
	}
	return nil
}

// soakRun runs the soak scenario once on a fresh data folder and prints its figures.
func soakRun(config string, o soakOptions) error {
	bin, err := build()
	if err != nil {
		return err
	}
	cfg, err := soakConfig(config, o.retention)
	if err != nil {
		return err
	}
	defer os.RemoveAll(filepath.Dir(cfg))
	g, err := start(bin, cfg)
	if err != nil {
		return err
	}
	defer g.stop()
	fmt.Fprintf(os.Stderr, "soak: %s\n", describeSoak(o))
	res, err := soak(g, o)
	if err != nil {
		return fmt.Errorf("soak: %w", err)
	}
	res["peak_rss_mb"] = g.peakRSSMB()
	fmt.Printf("soak (%s): %s\n", describeSoak(o), format(res, nil))
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
	start := time.Now()
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
// the first request until every record is in the sink and Complete in the tracker.
func endToEnd(g *gatewayProc, c, n int) (map[string]float64, error) {
	start := time.Now()
	var ids []string
	var mu sync.Mutex
	_, _, err := pushPaced(g, c, n, nil, func(i int) []byte { return envelope(fmt.Sprintf("e%d-", i), 10000) }, func(id string) {
		mu.Lock()
		ids = append(ids, id)
		mu.Unlock()
	})
	if err != nil {
		return nil, err
	}
	records := n * 10000
	if err := g.waitSink(records, 10*time.Minute); err != nil {
		return nil, err
	}
	sinkDone := time.Since(start)
	for _, id := range ids {
		if err := g.waitTracked(id, 10000, 5*time.Minute); err != nil {
			return nil, err
		}
	}
	trackerDone := time.Since(start)
	return map[string]float64{
		"records":               float64(records),
		"sink_records_per_s":    float64(records) / sinkDone.Seconds(),
		"tracked_records_per_s": float64(records) / trackerDone.Seconds(),
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

// envelope builds an activity push of n records (calls and quotes, ~250 bytes each).
func envelope(prefix string, n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"format":"activity","request_id":"` + prefix + `batch","payload":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		if i%2 == 0 {
			fmt.Fprintf(&b, `{"id":"%s%d","type":"call","timestamp":"2020-05-18T21:15:00-5:00","duration":"PT25M30S","user_email":"Jonny.Test@mivation.com","contact":"+18774289403","direction":"outbound","note":"%08x"}`, prefix, i, rand.Uint32())
		} else {
			fmt.Fprintf(&b, `{"id":"%s%d","type":"quote","timestamp":"2020-05-18T21:20:00-5:00","user_email":"jonny.test@mivation.com","contact":"Jane S","product_line":"fire","product":"Renter","amount":123.45,"href":"https://my.quotes.net/%08x"}`, prefix, i, rand.Uint32())
		}
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

type gatewayProc struct {
	cmd     *exec.Cmd
	url     string
	dataDir string
	client  *http.Client
	sinks   *sql.DB
}

var listenLine = regexp.MustCompile(`addr=http://(\S+)`)

func build() (string, error) {
	dir, err := os.MkdirTemp("", "gateway-bench")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "gateway")
	out, err := exec.Command("go", "build", "-o", bin, "./cmd/gateway").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build gateway: %v\n%s", err, out)
	}
	return bin, nil
}

func start(bin, config string) (*gatewayProc, error) {
	dataDir, err := os.MkdirTemp("", "gateway-bench-data")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", "--config", config, "--addr", "127.0.0.1:0", "--data", dataDir)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := listenLine.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
	}()
	g := &gatewayProc{cmd: cmd, dataDir: dataDir, client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	select {
	case a := <-addr:
		g.url = "http://" + a
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		return nil, errors.New("gateway did not start")
	}
	return g, nil
}

func (g *gatewayProc) stop() {
	g.cmd.Process.Signal(os.Interrupt)
	g.cmd.Wait()
	if g.sinks != nil {
		g.sinks.Close()
	}
	os.RemoveAll(g.dataDir)
}

func (g *gatewayProc) push(body []byte) (string, error) {
	req, _ := http.NewRequestWithContext(context.Background(), "POST", g.url+"/push", bytes.NewReader(body))
	req.SetBasicAuth("demo", "demo-secret")
	req.Header.Set("Content-Type", "application/json")
	resp, err := g.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("push: %d %s", resp.StatusCode, out)
	}
	return gjson.GetBytes(out, "id").String(), nil
}

// sinkCount is the number of rows in both example sink tables.
func (g *gatewayProc) sinkCount() int {
	if g.sinks == nil {
		db, err := sql.Open("sqlite3", "file:"+filepath.Join(g.dataDir, "sinks.db")+"?mode=ro&_busy_timeout=5000")
		if err != nil {
			return 0
		}
		g.sinks = db
	}
	n := 0
	for _, table := range []string{"activities", "quotes"} {
		var c int
		if err := g.sinks.QueryRow("SELECT count(*) FROM " + table).Scan(&c); err == nil {
			n += c
		}
	}
	return n
}

func (g *gatewayProc) waitSink(want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for g.sinkCount() < want {
		if time.Now().After(deadline) {
			return fmt.Errorf("sink holds %d of %d records after %s", g.sinkCount(), want, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// waitTracked polls the Tracking API until the request has want Complete messages.
func (g *gatewayProc) waitTracked(id string, want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		complete, err := g.completeByID(id)
		if err != nil {
			return err
		}
		if complete >= int64(want) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("request %s: %d of %d complete after %s", id, complete, want, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (g *gatewayProc) completeByID(id string) (int64, error) {
	req, _ := http.NewRequest("POST", g.url+"/tracking", strings.NewReader(`{"search":[{"by":"id","value":"`+id+`"}],"paging":{"number":1,"size":1}}`))
	req.SetBasicAuth("demo", "demo-secret")
	req.Header.Set("Content-Type", "application/json")
	resp, err := g.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return gjson.GetBytes(out, "data.requests.0.messageStatusSummary.complete").Int(), nil
}

// peakRSSMB is the gateway's high-water resident set size (VmHWM).
func (g *gatewayProc) peakRSSMB() float64 { return g.procStatusMB("VmHWM:") }

// procStatusMB reads a kB field of the gateway's /proc/PID/status (e.g. "VmRSS:") in MB.
func (g *gatewayProc) procStatusMB(field string) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", g.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
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
