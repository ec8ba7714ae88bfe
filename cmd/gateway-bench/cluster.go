package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	_ "github.com/mattn/go-sqlite3"
	"github.com/tidwall/gjson"
)

// clusterOptions say what the scenarios run against.
type clusterOptions struct {
	config   string // gateway.yaml
	postgres string // admin URL of a PostgreSQL server; "" runs on embedded SQLite
	nodes    int    // gateway processes (more than one only with postgres)
	bin      string // a prebuilt gateway binary; "" builds ./cmd/gateway
	pprof    string // HOST:PORT for the first node's --pprof listener ("" none)
}

// check validates the options and fills in the default config.
func (o *clusterOptions) check() error {
	if o.nodes < 1 {
		return fmt.Errorf("-nodes %d: want at least 1", o.nodes)
	}
	if o.postgres == "" && o.nodes > 1 {
		return fmt.Errorf("-nodes %d needs -postgres: on embedded SQLite one process owns the data folder", o.nodes)
	}
	if o.postgres != "" && !strings.HasPrefix(o.postgres, "postgres://") && !strings.HasPrefix(o.postgres, "postgresql://") {
		return fmt.Errorf("-postgres %q: want a postgres:// URL", o.postgres)
	}
	if o.config == "" {
		o.config = "examples/gateway.yaml"
		if o.postgres != "" {
			o.config = "examples/gateway-cluster.yaml"
		}
	}
	return nil
}

func (o clusterOptions) describe() string {
	if o.postgres == "" {
		return fmt.Sprintf("embedded SQLite, 1 node, %s", o.config)
	}
	return fmt.Sprintf("PostgreSQL at %s, %d node(s), %s", redact(o.postgres), o.nodes, o.config)
}

// binary returns the gateway binary to run: -gateway, or ./cmd/gateway built into a temporary
// folder.
func (o clusterOptions) binary() (string, error) {
	if o.bin != "" {
		return o.bin, nil
	}
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

// gatewayProc is one run's gateway: one process on a fresh data folder, or several processes
// on a fresh PostgreSQL database.
type gatewayProc struct {
	nodes  []*node
	next   atomic.Uint64 // round-robin over nodes
	client *http.Client

	admin    string // PostgreSQL admin URL ("" on SQLite)
	dbName   string // the run's database
	database string // its URL
	sinks    *sql.DB
}

// node is one gateway process.
type node struct {
	cmd     *exec.Cmd
	url     string
	dataDir string
}

var listenLine = regexp.MustCompile(`addr=http://(\S+)`)

// running holds the runs not yet stopped, so an interrupted bench still stops its gateways and
// drops its databases.
var running = struct {
	sync.Mutex
	runs map[*gatewayProc]bool
}{runs: map[*gatewayProc]bool{}}

func init() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sig
		running.Lock()
		for g := range running.runs {
			g.release()
		}
		os.Exit(128 + int(s.(syscall.Signal)))
	}()
}

// start starts the run's gateway: on PostgreSQL a fresh database and o.nodes processes on it.
func start(bin string, o clusterOptions) (*gatewayProc, error) {
	g := &gatewayProc{client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	running.Lock()
	running.runs[g] = true
	running.Unlock()
	if o.postgres != "" {
		if err := g.createDatabase(o.postgres); err != nil {
			g.stop()
			return nil, err
		}
	}
	for i := range o.nodes {
		pprof := ""
		if i == 0 {
			pprof = o.pprof
		}
		n, err := startNode(bin, o.config, g.database, pprof, i)
		if err != nil {
			g.stop()
			return nil, fmt.Errorf("node %d: %w", i+1, err)
		}
		g.nodes = append(g.nodes, n)
	}
	return g, nil
}

// createDatabase creates gw_bench_<random> on the server at admin.
func (g *gatewayProc) createDatabase(admin string) error {
	db, err := sql.Open("pgx", admin)
	if err != nil {
		return fmt.Errorf("open %s: %w", redact(admin), err)
	}
	defer db.Close()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "gw_bench_" + hex.EncodeToString(b[:])
	if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
		return fmt.Errorf("create database %s on %s: %w", name, redact(admin), err)
	}
	u, err := url.Parse(admin)
	if err != nil {
		return fmt.Errorf("-postgres %s: %w", redact(admin), err)
	}
	u.Path = "/" + name
	g.admin, g.dbName, g.database = admin, name, u.String()
	return nil
}

// startNode starts one gateway process on its own data folder (and on database, when set) and
// waits for its listen line. The process's error lines are echoed (at most 20), prefixed.
func startNode(bin, config, database, pprof string, i int) (*node, error) {
	dataDir, err := os.MkdirTemp("", "gateway-bench-data")
	if err != nil {
		return nil, err
	}
	args := []string{"serve", "--config", config, "--addr", "127.0.0.1:0", "--data", dataDir}
	if database != "" {
		args = append(args, "--database", database)
	}
	if pprof != "" {
		args = append(args, "--pprof", pprof)
	}
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // a ^C reaches the bench, which stops the gateway
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dataDir)
		return nil, err
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		echoed := 0
		for sc.Scan() {
			line := sc.Text()
			if m := listenLine.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
			if strings.Contains(line, "level=ERROR") && echoed < 20 {
				echoed++
				fmt.Fprintf(os.Stderr, "node %d: %s\n", i+1, line)
			}
		}
	}()
	n := &node{cmd: cmd, dataDir: dataDir}
	select {
	case a := <-addr:
		n.url = "http://" + a
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		os.RemoveAll(dataDir)
		return nil, errors.New("gateway did not start")
	}
	return n, nil
}

// stop stops every node (SIGINT, a graceful shutdown), removes their data folders and drops
// the run's database.
func (g *gatewayProc) stop() {
	running.Lock()
	defer running.Unlock()
	if running.runs[g] {
		delete(running.runs, g)
		g.release()
	}
}

func (g *gatewayProc) release() {
	var wg sync.WaitGroup
	for _, n := range g.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.cmd.Process.Signal(os.Interrupt)
			n.cmd.Wait()
			os.RemoveAll(n.dataDir)
		}()
	}
	wg.Wait()
	if g.sinks != nil {
		g.sinks.Close()
	}
	if g.dbName != "" {
		if db, err := sql.Open("pgx", g.admin); err == nil {
			if _, err := db.Exec("DROP DATABASE IF EXISTS " + g.dbName + " WITH (FORCE)"); err != nil {
				fmt.Fprintf(os.Stderr, "gateway-bench: drop database %s: %v\n", g.dbName, err)
			}
			db.Close()
		}
	}
}

// pick returns the next node, round-robin.
func (g *gatewayProc) pick() *node { return g.nodes[(g.next.Add(1)-1)%uint64(len(g.nodes))] }

func (g *gatewayProc) push(body []byte) (string, error) {
	req, _ := http.NewRequestWithContext(context.Background(), "POST", g.pick().url+"/push", bytes.NewReader(body))
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

// sinkCount is the number of rows in both example sink tables: in the first node's sinks.db on
// SQLite, in the run's database on PostgreSQL.
func (g *gatewayProc) sinkCount() int {
	if g.sinks == nil {
		driver, dsn := "sqlite3", "file:"+filepath.Join(g.nodes[0].dataDir, "sinks.db")+"?mode=ro&_busy_timeout=5000"
		if g.database != "" {
			driver, dsn = "pgx", g.database
		}
		db, err := sql.Open(driver, dsn)
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

// sinkLastWrite is the latest _updated_at of both example sink tables: when the last sink
// write began.
func (g *gatewayProc) sinkLastWrite() (time.Time, error) {
	var last time.Time
	for _, table := range []string{"activities", "quotes"} {
		var t time.Time
		if g.database != "" {
			if err := g.sinks.QueryRow("SELECT max(_updated_at) FROM " + table).Scan(&t); err != nil {
				return last, fmt.Errorf("last write to %s: %w", table, err)
			}
		} else {
			var s string
			if err := g.sinks.QueryRow("SELECT max(_updated_at) FROM " + table).Scan(&s); err != nil {
				return last, fmt.Errorf("last write to %s: %w", table, err)
			}
			var err error
			if t, err = time.Parse(time.RFC3339Nano, s); err != nil {
				return last, fmt.Errorf("last write to %s: %w", table, err)
			}
		}
		if t.After(last) {
			last = t
		}
	}
	return last, nil
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
	req, _ := http.NewRequest("POST", g.pick().url+"/tracking", strings.NewReader(`{"search":[{"by":"id","value":"`+id+`"}],"paging":{"number":1,"size":1,"messages":{"number":1,"size":1}}}`))
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

// peakRSSMB is the sum over nodes of each one's high-water resident set size (VmHWM): an upper
// bound of the cluster's peak, as the nodes need not peak at the same moment.
func (g *gatewayProc) peakRSSMB() float64 {
	sum := 0.0
	for _, n := range g.nodes {
		sum += n.procStatusMB("VmHWM:")
	}
	return sum
}

// maxPeakRSSMB is the highest VmHWM of one node.
func (g *gatewayProc) maxPeakRSSMB() float64 {
	m := 0.0
	for _, n := range g.nodes {
		m = max(m, n.procStatusMB("VmHWM:"))
	}
	return m
}

// cpuSeconds is the CPU time (user + system) the nodes have used so far.
func (g *gatewayProc) cpuSeconds() float64 {
	sum := 0.0
	for _, n := range g.nodes {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", n.cmd.Process.Pid))
		if err != nil {
			continue
		}
		// Fields after the command name (which may hold spaces) start at state, field 3;
		// utime and stime are fields 14 and 15, in clock ticks (100 per second on Linux).
		f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
		if len(f) < 13 {
			continue
		}
		utime, _ := strconv.ParseFloat(f[11], 64)
		stime, _ := strconv.ParseFloat(f[12], 64)
		sum += (utime + stime) / 100
	}
	return sum
}

// procStatusMB reads a kB field of the process's /proc/PID/status (e.g. "VmRSS:") in MB.
func (n *node) procStatusMB(field string) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", n.cmd.Process.Pid))
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

// redact hides a URL's password.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return s
	}
	return u.Redacted()
}
