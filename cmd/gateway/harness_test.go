package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

// gateway is a gateway under test, started through run() or as a real process.
type gateway struct {
	URL     string
	DataDir string
	logs    *syncBuffer
	stop    func()
}

// listenLine finds the address in the listen line, logged as text or JSON.
var listenLine = regexp.MustCompile(`(?:addr=|"addr":")(https?://[^\s"]+)`)

// inProcessEnv is the environment of gateways run inside the test process. Its GOMEMLIMIT
// keeps limits.memory_limit_bytes from limiting the test process itself, which many gateways
// share (TestMemoryLimitFromConfig checks the setting on the real binary).
func inProcessEnv(key string) string {
	if key == "GOMEMLIMIT" {
		return "off"
	}
	return ""
}

// startGateway runs `serve` through run() on 127.0.0.1:0 with dataDir, config and any extra
// flags, and waits until it listens. It stops at test cleanup.
func startGateway(t *testing.T, configPath, dataDir string, flags ...string) *gateway {
	t.Helper()
	logs := &syncBuffer{}
	addrCh := make(chan string, 1)
	w := &lineWatcher{buf: logs, onLine: func(line string) {
		if m := listenLine.FindStringSubmatch(line); m != nil {
			select {
			case addrCh <- m[1]:
			default:
			}
		}
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		args := append([]string{"serve", "--config", configPath, "--addr", "127.0.0.1:0", "--data", dataDir}, flags...)
		done <- run(ctx, args, inProcessEnv, strings.NewReader(""), io.Discard, w)
	}()
	g := &gateway{DataDir: dataDir, logs: logs}
	select {
	case addr := <-addrCh:
		g.URL = addr
		validateResponsesOf(hostPort(addr))
	case err := <-done:
		cancel()
		t.Fatalf("gateway exited before listening: %v\n%s", err, logs.String())
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatalf("gateway did not start:\n%s", logs.String())
	}
	var once sync.Once
	g.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("gateway stopped with error: %v", err)
			}
		})
	}
	t.Cleanup(g.stop)
	return g
}

// gatewayBinary builds cmd/gateway once per test binary.
var gatewayBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "gateway-bin")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "gateway")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// startProcess runs the real binary; kill it with g.kill (SIGKILL) or let cleanup stop it.
func startProcess(t *testing.T, configPath, dataDir string) (*gateway, *exec.Cmd) {
	t.Helper()
	bin, err := gatewayBinary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--config", configPath, "--addr", "127.0.0.1:0", "--data", dataDir)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	addrCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.Write(append(sc.Bytes(), '\n'))
			if m := listenLine.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addrCh <- m[1]:
				default:
				}
			}
		}
	}()
	g := &gateway{DataDir: dataDir, logs: logs}
	select {
	case addr := <-addrCh:
		g.URL = addr
		validateResponsesOf(hostPort(addr))
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("gateway process did not start:\n%s", logs.String())
	}
	g.stop = func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}
	t.Cleanup(g.stop)
	return g, cmd
}

// do sends a request with Basic auth as client:secret (none when client is "").
func (g *gateway) do(t *testing.T, method, path, client, secret, contentType string, body []byte, headers ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, g.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if client != "" {
		req.SetBasicAuth(client, secret)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, out
}

// push posts body to /push as the demo client and returns the request id of a 202.
func (g *gateway) push(t *testing.T, body []byte) string {
	t.Helper()
	status, _, out := g.do(t, "POST", "/push", "demo", "demo-secret", "application/json", body)
	if status != http.StatusAccepted {
		t.Fatalf("push: %d %s\ngateway log (last lines):\n%s", status, out, lastLines(g.logs.String(), 15))
	}
	id := gjson.GetBytes(out, "id").String()
	if id == "" {
		t.Fatalf("push answered no id: %s", out)
	}
	return id
}

// tracked returns the tracking view of one request of the demo client.
func (g *gateway) tracked(t *testing.T, requestID string) gjson.Result {
	t.Helper()
	status, _, out := g.do(t, "POST", "/tracking", "demo", "demo-secret", "application/json",
		[]byte(`{"search":[{"by":"id","value":"`+requestID+`"}]}`))
	if status != http.StatusOK {
		t.Fatalf("tracking: %d %s", status, out)
	}
	return gjson.GetBytes(out, "data.requests.0")
}

// waitComplete polls tracking until the request's every message is terminal.
func (g *gateway) waitComplete(t *testing.T, requestID string, timeout time.Duration) gjson.Result {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r := g.tracked(t, requestID)
		if r.Get("requestStatus").String() == "Complete" {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("request %s not complete after %s: %s\nlogs:\n%s", requestID, timeout, r.Raw, g.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sinkRows reads a table of data/sinks.db as rows of column -> value.
func (g *gateway) sinkRows(t *testing.T, query string, args ...any) []map[string]any {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(g.DataDir, "sinks.db")+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []map[string]any
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		row := map[string]any{}
		for i, c := range cols {
			if b, ok := vals[i].([]byte); ok {
				vals[i] = string(b)
			}
			row[c] = vals[i]
		}
		out = append(out, row)
	}
	return out
}

// syncBuffer is a goroutine-safe log buffer.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lineWatcher copies writes into buf and calls onLine for each complete line.
type lineWatcher struct {
	buf     *syncBuffer
	mu      sync.Mutex
	partial []byte
	onLine  func(string)
}

func (w *lineWatcher) Write(p []byte) (int, error) {
	w.buf.Write(p)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.onLine(string(w.partial[:i]))
		w.partial = w.partial[i+1:]
	}
}

// exampleConfig is the shipped example configuration.
const exampleConfig = "../../examples/gateway.yaml"

// hostPort strips the scheme of a listen URL.
func hostPort(url string) string {
	return strings.TrimPrefix(strings.TrimPrefix(url, "http://"), "https://")
}

// lastLines is the last n lines of s, for failure messages.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}
