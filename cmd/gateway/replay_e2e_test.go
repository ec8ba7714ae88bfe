package main

import (
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

// invalidUntilFixed starts a gateway whose activity mapping wrongly refuses calls, pushes two
// calls (they end Invalid), then fixes the mapping and waits for the hot reload. It returns the
// gateway, the request id, the config and the data folder.
func invalidUntilFixed(t *testing.T, b gatewayBackend) (g *gateway, requestID, cfgPath, dataDir string) {
	t.Helper()
	cfgPath, mappingsDir := copyExample(t)
	cfgPath = b.config(t, cfgPath)
	activity := filepath.Join(mappingsDir, "activity.yaml")
	good, err := os.ReadFile(activity)
	if err != nil {
		t.Fatal(err)
	}
	buggy := strings.Replace(string(good), `type in ["call", "quote"]`, `type in ["quote"]`, 1)
	if buggy == string(good) {
		t.Fatal("the example mapping's rule changed; update this test")
	}
	if err := os.WriteFile(activity, []byte(buggy), 0o600); err != nil {
		t.Fatal(err)
	}
	dataDir = t.TempDir()
	g = startGateway(t, cfgPath, dataDir)
	requestID = g.push(t, []byte(`{"format":"activity","payload":[
		{"id":"r1","type":"call","timestamp":"2020-05-18T21:15:00Z","duration":"PT1M","user_email":"a@b.c"},
		{"id":"r2","type":"call","timestamp":"2020-05-18T21:15:00Z","duration":"PT2M","user_email":"a@b.c"}]}`))
	if r := g.waitComplete(t, requestID, 30*time.Second); r.Get("messageStatusSummary.invalid").Int() != 2 {
		t.Fatalf("before the fix: %s", r.Raw)
	}
	if err := os.WriteFile(activity, good, 0o600); err != nil {
		t.Fatal(err)
	}
	g.waitLog(t, regexp.MustCompile(`msg="mappings reloaded" .*changed=activity`), 10*time.Second)
	return g, requestID, cfgPath, dataDir
}

// TestReplayAfterMappingFix: records made Invalid by a mapping bug are replayed through
// POST /tracking/replay once the mapping is fixed (hot reload) and end Complete, their earlier
// errors still shown; another client cannot replay them; a second replay finds nothing.
func TestReplayAfterMappingFix(t *testing.T) { forEachBackend(t, testReplayAfterMappingFix) }

func testReplayAfterMappingFix(t *testing.T, b gatewayBackend) {
	g, id, _, _ := invalidUntilFixed(t, b)
	replay := func(client, secret, body string) (int, []byte) {
		status, _, out := g.do(t, "POST", "/tracking/replay", client, secret, "application/json", []byte(body))
		return status, out
	}
	if status, out := replay("other", "other-secret", `{"id":"`+id+`"}`); status != http.StatusAccepted || gjson.GetBytes(out, "replayed").Int() != 0 {
		t.Fatalf("replay by another client: %d %s; want 202 replaying nothing", status, out)
	}
	if status, out := replay("demo", "demo-secret", `{"search":[{"by":"messageStatus","value":"Complete"}]}`); status != http.StatusBadRequest ||
		!strings.Contains(string(out), "only Failed and Invalid") {
		t.Fatalf("replaying Complete messages: %d %s", status, out)
	}
	status, out := replay("demo", "demo-secret", `{"search":[{"by":"messageStatus","value":"Invalid"},{"by":"batchReference","value":"none"}]}`)
	if status != http.StatusAccepted || gjson.GetBytes(out, "replayed").Int() != 0 {
		t.Fatalf("replay by a search matching nothing: %d %s", status, out)
	}
	status, out = replay("demo", "demo-secret", `{"id":"`+id+`"}`)
	if status != http.StatusAccepted || gjson.GetBytes(out, "replayed").Int() != 2 {
		t.Fatalf("replay: %d %s; want 202 {\"replayed\":2}", status, out)
	}
	r := g.waitComplete(t, id, 30*time.Second)
	if r.Get("messageStatusSummary.complete").Int() != 2 {
		t.Fatalf("after the replay: %s", r.Raw)
	}
	for _, m := range r.Get("payload").Array() {
		if m.Get("messageStatus").String() != "Complete" || !strings.Contains(m.Get("errors.0.errorMessage").String(), "type must be call or quote") {
			t.Fatalf("replayed message %s: want Complete with its earlier error still shown", m.Raw)
		}
	}
	if rows := g.sinkRows(t, `SELECT activity_id FROM activities WHERE activity_id IN ('r1', 'r2')`); len(rows) != 2 {
		t.Fatalf("sink rows after replay: %v", rows)
	}
	if status, out := replay("demo", "demo-secret", `{"id":"`+id+`"}`); status != http.StatusAccepted || gjson.GetBytes(out, "replayed").Int() != 0 {
		t.Fatalf("second replay: %d %s; want nothing replayed", status, out)
	}
}

// TestReplayCommand: `gateway replay --status Invalid` beside a running gateway (same data
// folder) puts the messages back to Queued; the gateway processes them through the fixed mapping.
func TestReplayCommand(t *testing.T) { forEachBackend(t, testReplayCommand) }

func testReplayCommand(t *testing.T, b gatewayBackend) {
	g, id, cfgPath, dataDir := invalidUntilFixed(t, b)
	out, err := runTool(t, "", "replay", "--config", cfgPath, "--data", dataDir, "--status", "Invalid", "--format", "activity")
	if err != nil || !strings.Contains(out, "client demo: 2 messages replayed") {
		t.Fatalf("gateway replay: %v\n%s", err, out)
	}
	if r := g.waitComplete(t, id, 30*time.Second); r.Get("messageStatusSummary.complete").Int() != 2 {
		t.Fatalf("after gateway replay: %s", r.Raw)
	}
	out, err = runTool(t, "", "replay", "--config", cfgPath, "--data", dataDir, "--status", "Complete")
	if err == nil || !strings.Contains(err.Error(), "only Failed and Invalid") {
		t.Fatalf("replay --status Complete: %v %s", err, out)
	}
}
