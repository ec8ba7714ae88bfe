package main

import (
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

// TestEventFlowSurvivesRestart follows the README: a token from /connect/token, the seed's
// example event sent with it (201 {"_id": n}), the event found in tracking; after a restart on
// the same data folder the token still works and _id keeps increasing.
func TestEventFlowSurvivesRestart(t *testing.T) { forEachBackend(t, testEventFlowSurvivesRestart) }

func testEventFlowSurvivesRestart(t *testing.T, b gatewayBackend) {
	cfg := b.config(t, exampleConfig)
	dataDir := t.TempDir()
	event, err := os.ReadFile("testdata/seed001_event.json")
	if err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, cfg, dataDir)

	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"events tracking"}}
	status, hdr, out := g.do(t, "POST", "/connect/token", "demo", "demo-secret", "application/x-www-form-urlencoded", []byte(form.Encode()))
	if status != http.StatusOK || hdr.Get("Cache-Control") != "no-store" {
		t.Fatalf("token: %d %s", status, out)
	}
	token := gjson.GetBytes(out, "access_token").String()

	send := func(g *gateway) int64 {
		t.Helper()
		status, _, out := g.do(t, "POST", "/api/events/v1/dk/external/abcinsurance/send", "", "", "application/json;charset=utf-8", event,
			"Authorization", "Bearer "+token, "Event-Type", "payment_status_updated")
		if status != http.StatusCreated {
			t.Fatalf("send: %d %s", status, out)
		}
		return gjson.GetBytes(out, "_id").Int()
	}
	first, second := send(g), send(g)
	if first < 1 || second != first+1 {
		t.Fatalf("_id sequence %d, %d", first, second)
	}

	// The event is tracked like a push: found by its correlationId, mapped, Complete.
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, _, out = g.do(t, "POST", "/tracking", "", "", "application/json",
			[]byte(`{"search":[{"by":"externalReference","value":"70c6d351-016f-4c9e-b1a9-d581fc3a596b"}]}`),
			"Authorization", "Bearer "+token)
		reqs := gjson.GetBytes(out, "data.requests")
		if status == http.StatusOK && len(reqs.Array()) == 2 && reqs.Get("0.requestStatus").String() == "Complete" && reqs.Get("1.requestStatus").String() == "Complete" {
			m := reqs.Get("0.payload.0")
			if m.Get("messageType").String() != "payment_status_updated" || m.Get("messageStatus").String() != "Complete" {
				t.Fatalf("tracked event: %s", m.Raw)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("event not tracked: %d %s", status, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	rows := g.sinkRows(t, `SELECT payment_uuid, status FROM payment_status`)
	if len(rows) != 1 || rows[0]["payment_uuid"] != "967ce1a4-a55a-4765-bd5b-bafcb4178fd3" || rows[0]["status"] != "canceled" {
		t.Fatalf("payment rows = %v", rows)
	}

	g.stop()
	g2 := startGateway(t, cfg, dataDir)
	if third := send(g2); third != second+1 {
		t.Fatalf("_id after restart = %d, want %d", third, second+1)
	}
	if !strings.Contains(g2.logs.String(), "gateway listening") {
		t.Fatal("no listening log line")
	}
}
