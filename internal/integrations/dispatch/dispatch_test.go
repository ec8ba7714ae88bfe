package dispatch

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/opengw/gateway/internal/integrations"
	"github.com/opengw/gateway/pipeline"
	"github.com/opengw/gateway/tracker"
)

// TestMessageWebhooks: an event's outcomes become one webhook per status, cut at the
// integration's messagesPerWebhook, with ids stable across a redelivery of the event.
func TestMessageWebhooks(t *testing.T) {
	ev := pipeline.Event{Type: pipeline.EventMessages, ID: "ev1", ClientID: "demo", RequestID: "r1", At: time.Unix(1700000000, 0)}
	for i := range 5 {
		st := tracker.Complete
		if i == 3 {
			st = tracker.Failed
		}
		ev.Messages = append(ev.Messages, pipeline.EventMessage{ID: fmt.Sprint("m", i), Index: i, ExternalReference: fmt.Sprint("ref", i), Status: st, Errors: map[bool][]string{true: {"boom"}}[i == 3]})
	}
	all := integrations.Integration{ID: "all", Channel: integrations.System, Config: integrations.Config{Events: []string{"*"}}}
	one := integrations.Integration{ID: "one", Channel: integrations.System, Config: integrations.Config{Events: []string{"message:complete"}, MessagesPerWebhook: 2}}
	none := integrations.Integration{ID: "none", Channel: integrations.System, Config: integrations.Config{Events: []string{"request:*"}}}
	ds, err := messageDeliveries(ev, []integrations.Integration{all, one, none})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range ds {
		got = append(got, fmt.Sprintf("%s:%s:%d", d.IntegrationID, d.Type, len(gjson.GetBytes(d.Body, "data.messages").Array())))
	}
	want := []string{"all:message:complete:4", "one:message:complete:2", "one:message:complete:2", "all:message:failed:1"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("webhooks = %v, want %v", got, want)
	}
	failed := gjson.ParseBytes(ds[3].Body)
	if failed.Get("type").String() != "message:failed" || failed.Get("data.requestId").String() != "r1" || failed.Get("data.feedId").String() != "demo" ||
		failed.Get("data.messages.0.externalReference").String() != "ref3" || failed.Get("data.messages.0.errors.0.errorMessage").String() != "boom" ||
		failed.Get("timestamp").String() != "2023-11-14T22:13:20Z" {
		t.Fatalf("message:failed body = %s", ds[3].Body)
	}
	again, _ := messageDeliveries(ev, []integrations.Integration{all, one, none})
	for i := range ds {
		if again[i].ID != ds[i].ID || !json.Valid(ds[i].Body) {
			t.Fatalf("webhook %d: id %s then %s", i, ds[i].ID, again[i].ID)
		}
	}
	if ds[1].ID == ds[2].ID || ds[0].ID == ds[1].ID {
		t.Fatal("two webhooks share an id")
	}
}
