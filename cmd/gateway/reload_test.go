package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/opengw/gateway/internal/metrics/metricstest"
)

// copyExample copies examples/gateway.yaml and examples/mappings into a temporary folder
// and returns the config's path and the mappings folder.
func copyExample(t *testing.T) (configPath, mappingsDir string) {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{}
	cfg, err := os.ReadFile(exampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	files["gateway.yaml"] = string(cfg)
	src := filepath.Join(filepath.Dir(exampleConfig), "mappings")
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[filepath.Join("mappings", e.Name())] = string(b)
	}
	writeTree(t, dir, files)
	return filepath.Join(dir, "gateway.yaml"), filepath.Join(dir, "mappings")
}

// waitLog waits until the gateway's log matches re and returns the match.
func (g *gateway) waitLog(t *testing.T, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if m := re.FindStringSubmatch(g.logs.String()); m != nil {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("log does not match %s after %s:\n%s", re, timeout, g.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dryRunVersion asks the running gateway which activity mapping version it serves.
func (g *gateway) dryRunVersion(t *testing.T) string {
	t.Helper()
	status, _, out := g.do(t, "POST", "/push?dry_run=true", "demo", "demo-secret", "application/json",
		[]byte(`{"format":"activity","payload":[{"id":"probe","type":"call"}]}`))
	if status != 200 {
		t.Fatalf("dry run: %d %s", status, out)
	}
	return gjson.GetBytes(out, "mappingVersion").String()
}

// callRecord is a call activity pushed with the given id and direction.
func callRecord(id, direction string) []byte {
	return []byte(fmt.Sprintf(`{"format":"activity","payload":[{"id":%q,"type":"call","timestamp":"2020-05-18T21:15:00Z",
		"duration":"PT1M","user_email":"a@b.c","contact":"+4512345678","direction":%q}]}`, id, direction))
}

// TestHotReload edits a mapping under a running gateway: the next push uses the edit; a
// broken edit is refused with its file:line:col logged, and the previous version keeps
// serving; tracking errors name the version that processed the record.
func TestHotReload(t *testing.T) {
	cfg, mappingsDir := copyExample(t)
	g := startGateway(t, cfg, t.TempDir())
	file := filepath.Join(mappingsDir, "activity.yaml")
	original, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	v1 := g.dryRunVersion(t)

	id := g.push(t, callRecord("c1", "Outbound"))
	g.waitComplete(t, id, 30*time.Second)
	if rows := g.sinkRows(t, `SELECT direction FROM activities WHERE activity_id = 'c1'`); len(rows) != 1 || rows[0]["direction"] != "Outbound" {
		t.Fatalf("before the edit: %v", rows)
	}

	// 1. A valid edit: the direction is now upper-cased.
	edited := strings.Replace(string(original), "      direction: direction", "      direction: upper(direction)", 1)
	if edited == string(original) {
		t.Fatal("the example mapping no longer has the line this test edits")
	}
	if err := os.WriteFile(file, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	m := g.waitLog(t, regexp.MustCompile(`msg="mappings reloaded" .*versions="activity=(\w+) payment_status_updated=\w+" changed=activity`), 10*time.Second)
	v2 := m[1]
	if v2 == v1 {
		t.Fatalf("version did not change: %s", v2)
	}
	if got := g.dryRunVersion(t); got != v2 {
		t.Errorf("dry run serves %s, the log says %s", got, v2)
	}
	id = g.push(t, callRecord("c2", "Outbound"))
	g.waitComplete(t, id, 30*time.Second)
	if rows := g.sinkRows(t, `SELECT direction FROM activities WHERE activity_id = 'c2'`); len(rows) != 1 || rows[0]["direction"] != "OUTBOUND" {
		t.Fatalf("after the edit: %v", rows)
	}
	// The example's own test case expects the old behaviour: a warning, not a refusal.
	g.waitLog(t, regexp.MustCompile(`level=WARN msg="mapping test fails" file=\S+activity.yaml version=`+v2+` test="a call is mapped"`), 5*time.Second)

	// 2. A broken edit: refused, logged with file:line:col, and v2 keeps serving.
	lines := strings.Split(edited, "\n")
	line := 0
	for i, l := range lines {
		if strings.HasPrefix(l, "      duration_s: ") {
			lines[i], line = "      duration_s: seconds(duration", i+1
			break
		}
	}
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	g.waitLog(t, regexp.MustCompile(`level=ERROR msg="mapping change refused; the previous mappings keep serving" dir=\S+ serving="activity=`+v2+` `), 10*time.Second)
	g.waitLog(t, regexp.MustCompile(`level=ERROR msg="mapping problem" problem="`+regexp.QuoteMeta(file)+fmt.Sprintf(`:%d:\d+: routes\[0\]\.fields\.duration_s: `, line)), 5*time.Second)
	if got := g.dryRunVersion(t); got != v2 {
		t.Errorf("after a broken edit, dry run serves %s, want %s", got, v2)
	}
	id = g.push(t, []byte(`{"format":"activity","payload":[
		{"id":"c3","type":"call","timestamp":"2020-05-18T21:15:00Z","duration":"PT2M","user_email":"a@b.c","direction":"Inbound"},
		{"id":"x3","type":"visit"}]}`))
	r := g.waitComplete(t, id, 30*time.Second)
	if rows := g.sinkRows(t, `SELECT direction, duration_s FROM activities WHERE activity_id = 'c3'`); len(rows) != 1 || rows[0]["direction"] != "INBOUND" || fmt.Sprint(rows[0]["duration_s"]) != "120" {
		t.Fatalf("after the broken edit: %v", rows)
	}
	// Tracking names the version that processed each invalid record.
	for _, msg := range r.Get("payload").Array() {
		if msg.Get("externalReference").String() != "x3" {
			continue
		}
		if got, want := msg.Get("errors.0.errorMessage").String(), "type must be call or quote (mapping activity@"+v2+")"; got != want {
			t.Errorf("tracking error = %q, want %q", got, want)
		}
	}

	// 3. Fixing the file goes live again.
	if err := os.WriteFile(file, original, 0o644); err != nil {
		t.Fatal(err)
	}
	g.waitLog(t, regexp.MustCompile(`msg="mappings reloaded" .*versions="activity=`+v1+` `), 10*time.Second)
	if got := g.dryRunVersion(t); got != v1 {
		t.Errorf("after restoring the file, dry run serves %s, want %s", got, v1)
	}
	page := g.metrics(t)
	if applied, refused := metricstest.Sample(page, `gateway_mapping_reloads_total{result="applied"}`),
		metricstest.Sample(page, `gateway_mapping_reloads_total{result="refused"}`); applied != 2 || refused != 1 {
		t.Errorf("reload metrics: %v applied, %v refused; want 2, 1", applied, refused)
	}
}
