package main

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestPprofFlag: serve --pprof serves Go's profiles on a listener of its own, logged after the
// listen line (which stays the first), and the API listener does not serve them.
func TestPprofFlag(t *testing.T) {
	g := startGateway(t, exampleConfig, t.TempDir(), "--pprof", "127.0.0.1:0")
	// The profiles line follows the listen line, which startGateway waited for: wait for it too.
	profiles := regexp.MustCompile(`pprof=(http://\S+/debug/pprof/)`)
	var logs string
	var m []string
	for deadline := time.Now().Add(10 * time.Second); m == nil; time.Sleep(10 * time.Millisecond) {
		logs = g.logs.String()
		if m = profiles.FindStringSubmatch(logs); m == nil && time.Now().After(deadline) {
			t.Fatalf("no profiles line in the log:\n%s", logs)
		}
	}
	if first := strings.SplitN(logs, "\n", 2)[0]; !strings.Contains(first, "gateway listening") {
		t.Fatalf("the first log line is %q, want the listen line", first)
	}
	resp, err := http.Get(m[1] + "goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "goroutine profile") {
		t.Fatalf("profile: %d %.200s", resp.StatusCode, body)
	}
	resp, err = http.Get(g.URL + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Fatal("the API listener serves profiles")
	}
}
