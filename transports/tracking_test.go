package transports

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opengw/gateway/internal/sqlitestore"
	"github.com/opengw/gateway/internal/store"
	"github.com/opengw/gateway/tracker"
)

// Request ids of the tracking fixture; trackingNames maps them back to short names.
const (
	trackingD1 = "11111111-1111-4111-8111-111111111111" // demo, BATCH-1, 2024-05-01
	trackingD2 = "22222222-2222-4222-8222-222222222222" // demo, BATCH-2, 2024-05-02
	trackingD3 = "33333333-3333-4333-8333-333333333333" // demo, no batch, today
	trackingD4 = "44444444-4444-4444-8444-444444444444" // demo, BATCH-4, today, not split
	trackingO1 = "55555555-5555-4555-8555-555555555555" // other, BATCH-1, 2024-05-02
)

var trackingNames = map[string]string{trackingD1: "d1", trackingD2: "d2", trackingD3: "d3", trackingD4: "d4", trackingO1: "o1"}

// trackingToday is the API's clock: "today" is 2024-05-03 (UTC).
var trackingToday = time.Date(2024, 5, 3, 10, 0, 0, 0, time.UTC)

type trackingMsg struct {
	ref, typ string
	status   tracker.Status // final status; Queued and Processing as named
	errs     []string
}

type trackingReq struct {
	id, client, batch string
	received          time.Time
	total             int // when messages are not recorded (not split)
	msgs              []trackingMsg
	processed         time.Time // clock when its messages finish
}

// trackerWriter runs fn on the tracker writer of one transaction of st.
func trackerWriter(t *testing.T, st store.Store, fn func(w tracker.Writer) error) {
	t.Helper()
	if err := st.Update(context.Background(), func(tx store.Tx) error { return fn(tx.Tracker()) }); err != nil {
		t.Fatal(err)
	}
}

// newTrackingAPI builds a real store (SQLite) in a temporary database holding reqs.
func newTrackingAPI(t *testing.T, reqs []trackingReq) (*TrackingAPI, store.Store) {
	t.Helper()
	var clock atomic.Pointer[time.Time]
	st, err := sqlitestore.Open(sqlitestore.Config{Path: filepath.Join(t.TempDir(), "gateway.db"),
		Now: func() time.Time { return *clock.Load() }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, r := range reqs {
		total := r.total
		if r.msgs != nil {
			total = len(r.msgs)
		}
		req := tracker.Request{ID: r.id, ClientID: r.client, ClientName: r.client, BatchReference: r.batch,
			Format: "activity", ReceivedAt: r.received, Total: total}
		trackerWriter(t, st, func(w tracker.Writer) error { return w.Accept(req) })
		if r.msgs == nil {
			continue
		}
		var nm []tracker.NewMessage
		var claim []int
		var results []tracker.Result
		for i, m := range r.msgs {
			nm = append(nm, tracker.NewMessage{Index: i, ExternalReference: m.ref, Type: m.typ})
			if m.status != tracker.Queued && m.status != tracker.Invalid {
				claim = append(claim, i)
			}
			if m.status.Terminal() {
				results = append(results, tracker.Result{Index: i, Status: m.status, Errors: m.errs})
			}
		}
		processed := r.processed
		clock.Store(&processed)
		trackerWriter(t, st, func(w tracker.Writer) error {
			if _, err := w.AddMessages(r.id, nm); err != nil {
				return err
			}
			if _, err := w.Claim(r.id, claim); err != nil {
				return err
			}
			_, err := w.Finish(r.id, results)
			return err
		})
	}
	today := trackingToday
	clock.Store(&today)
	return &TrackingAPI{Store: st.Tracker(), Now: func() time.Time { return trackingToday }}, st
}

func trackingFixture(t *testing.T) (*TrackingAPI, store.Store) {
	day := func(d, h, m int) time.Time { return time.Date(2024, 5, d, h, m, 0, 0, time.UTC) }
	return newTrackingAPI(t, []trackingReq{
		{id: trackingD1, client: "demo", batch: "BATCH-1", received: day(1, 8, 0), processed: day(1, 9, 0), msgs: []trackingMsg{
			{"c-1", "call", tracker.Complete, nil},
			{"q-1", "quote", tracker.Failed, []string{"Unable to process"}},
			{"c-2", "call", tracker.Queued, nil},
		}},
		{id: trackingD2, client: "demo", batch: "BATCH-2", received: day(2, 9, 30), processed: day(2, 10, 0), msgs: []trackingMsg{
			{"q-2", "quote", tracker.Processing, nil},
			{"q-3", "quote", tracker.Complete, nil},
		}},
		{id: trackingD3, client: "demo", received: day(3, 7, 0), processed: day(3, 7, 30), msgs: []trackingMsg{
			{"c-3", "call", tracker.Queued, nil},
			{"", "call", tracker.Invalid, []string{"type must be call or quote", "id is required"}},
		}},
		{id: trackingD4, client: "demo", batch: "BATCH-4", received: day(3, 8, 0), total: 5},
		{id: trackingO1, client: "other", batch: "BATCH-1", received: day(2, 10, 0), processed: day(2, 11, 0), msgs: []trackingMsg{
			{"c-1", "call", tracker.Failed, []string{"sink down"}},
		}},
	})
}

// trackingOut mirrors the response for assertions.
type trackingOut struct {
	Success bool `json:"success"`
	Error   *struct {
		Message string `json:"message"`
	} `json:"error"`
	Data *struct {
		Search   json.RawMessage `json:"search"`
		Paging   trackingPaging  `json:"paging"`
		Requests []struct {
			FeedID               string          `json:"feedId"`
			ClientName           string          `json:"clientName"`
			ID                   string          `json:"id"`
			BatchReference       *string         `json:"batchReference"`
			ReceivedDate         string          `json:"receivedDate"`
			RequestStatus        string          `json:"requestStatus"`
			MessageStatusSummary trackingSummary `json:"messageStatusSummary"`
			Payload              []struct {
				ID                string  `json:"id"`
				ExternalReference *string `json:"externalReference"`
				MessageStatus     string  `json:"messageStatus"`
				MessageType       *string `json:"messageType"`
				ProcessedTime     *string `json:"processedTime"`
				Errors            []struct {
					ErrorMessage string `json:"errorMessage"`
				} `json:"errors"`
			} `json:"payload"`
		} `json:"requests"`
	} `json:"data"`
	raw string
}

// brief renders the requests as "d1:0,1 d2:1" (request name: indexes of its payload, which
// are recovered from the message ids).
func (o trackingOut) brief() string {
	if o.Data == nil {
		return "<no data>"
	}
	var parts []string
	for _, r := range o.Data.Requests {
		var idx []string
		for _, m := range r.Payload {
			i := 0
			for ; i < 10 && tracker.MessageID(r.ID, i) != m.ID; i++ {
			}
			idx = append(idx, fmt.Sprint(i))
		}
		parts = append(parts, trackingNames[r.ID]+":"+strings.Join(idx, ","))
	}
	return strings.Join(parts, " ")
}

func trackingDo(t *testing.T, api *TrackingAPI, client, path, body string) (int, trackingOut) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	if path == "/tracking/cancel" {
		api.Cancel(rec, req, client)
	} else {
		api.Search(rec, req, client, strings.ToUpper(client[:1])+client[1:]+" Partner")
	}
	var out trackingOut
	out.raw = rec.Body.String()
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q", ct)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("response %q: %v", rec.Body.String(), err)
	}
	return rec.Code, out
}

func trackingSearch(t *testing.T, api *TrackingAPI, client, body string) trackingOut {
	t.Helper()
	code, out := trackingDo(t, api, client, "/tracking", body)
	if code != http.StatusOK || !out.Success || out.Error != nil || out.Data == nil {
		if len(body) > 300 {
			body = body[:300] + "..."
		}
		t.Fatalf("search %s: %d %s", body, code, out.raw)
	}
	return out
}

// TestTrackingResponseShape pins the whole response of a search, byte for byte.
func TestTrackingResponseShape(t *testing.T) {
	api, _ := trackingFixture(t)
	body := `{"search": [{"by": "id", "value": "` + trackingD1 + `"}]}`
	out := trackingSearch(t, api, "demo", body)
	want := `{"success":true,"error":null,"data":{"search":[{"by":"id","value":"` + trackingD1 + `"}],` +
		`"paging":{"number":1,"size":1,"totalRequests":1,"totalPages":1},"requests":[{"feedId":"demo","clientName":"Demo Partner",` +
		`"id":"` + trackingD1 + `","batchReference":"BATCH-1","receivedDate":"2024-05-01T08:00:00+00:00","requestStatus":"Processing",` +
		`"messageStatusSummary":{"total":3,"queued":1,"processing":0,"cancelled":0,"failed":1,"invalid":0,"complete":1},"payload":[` +
		`{"id":"` + tracker.MessageID(trackingD1, 0) + `","externalReference":"c-1","messageStatus":"Complete","messageType":"call","processedTime":"2024-05-01T09:00:00+00:00","errors":[]},` +
		`{"id":"` + tracker.MessageID(trackingD1, 1) + `","externalReference":"q-1","messageStatus":"Failed","messageType":"quote","processedTime":"2024-05-01T09:00:00+00:00","errors":[{"errorMessage":"Unable to process"}]},` +
		`{"id":"` + tracker.MessageID(trackingD1, 2) + `","externalReference":"c-2","messageStatus":"Queued","messageType":"call","processedTime":null,"errors":[]}]}]}}` + "\n"
	if out.raw != want {
		t.Fatalf("response\n got %s\nwant %s", out.raw, want)
	}
	// Not split yet: summary from the request's total, no payload; no batch/record id: null.
	out = trackingSearch(t, api, "demo", `{"search": [{"by": "id", "value": ["`+trackingD4+`", "`+trackingD3+`"]}]}`)
	r := out.Data.Requests[0] // newest first
	if r.ID != trackingD4 || r.RequestStatus != "Queued" || r.MessageStatusSummary != (trackingSummary{Total: 5, Queued: 5}) || r.Payload == nil || len(r.Payload) != 0 {
		t.Fatalf("unsplit request: %+v", r)
	}
	r = out.Data.Requests[1]
	if r.BatchReference != nil || r.Payload[1].ExternalReference != nil || len(r.Payload[1].Errors) != 2 || r.Payload[1].Errors[1].ErrorMessage != "id is required" {
		t.Fatalf("d3: %s", out.raw)
	}
}

func TestTrackingCriteria(t *testing.T) {
	api, _ := trackingFixture(t)
	crit := func(by string, value any) string {
		v, _ := json.Marshal(value)
		return fmt.Sprintf(`{"by": %q, "value": %s}`, by, v)
	}
	search := func(criteria ...string) string { return `{"search": [` + strings.Join(criteria, ", ") + `]}` }
	cases := []struct {
		name, body, want string
	}{
		{"empty body: today", ``, "d4: d3:0,1"},
		{"no criteria: today", `{}`, "d4: d3:0,1"},
		{"empty search list: today", `{"search": []}`, "d4: d3:0,1"},
		{"null search: today", `{"search": null, "paging": null, "sorts": null}`, "d4: d3:0,1"},
		{"id", search(crit("id", trackingD2)), "d2:0,1"},
		{"id in upper case", search(crit("id", strings.ToUpper(trackingD2))), "d2:0,1"},
		{"ids OR", search(crit("id", []string{trackingD1, trackingD2, "nope"})), "d2:0,1 d1:0,1,2"},
		{"by in any case", search(crit("ID", trackingD2)), "d2:0,1"},
		{"batch reference: all its messages", search(crit("externalReference", "BATCH-1")), "d1:0,1,2"},
		{"record id: that message", search(crit("externalReference", "q-3")), "d2:1"},
		{"references OR", search(crit("externalReference", []string{"BATCH-2", "c-1"})), "d2:0,1 d1:0"},
		{"reference matches nothing", search(crit("externalReference", "nope")), ""},
		{"messageType", search(crit("messageType", "quote")), "d2:0,1 d1:1"},
		{"messageType any case, OR", search(crit("messageType", []string{"QUOTE", "Call"})), "d3:0,1 d2:0,1 d1:0,1,2"},
		{"messageStatus", search(crit("messageStatus", "failed")), "d1:1"},
		{"messageStatus OR", search(crit("messageStatus", []string{"Queued", "PROCESSING"})), "d3:0 d2:0 d1:2"},
		{"messageStatus Invalid", search(crit("messageStatus", "Invalid")), "d3:1"},
		{"receivedDate one day", search(crit("receivedDate", "2024-05-02")), "d2:0,1"},
		{"receivedDate one day as a list", search(crit("receivedDate", []string{"2024-05-01"})), "d1:0,1,2"},
		{"receivedDate one time: its day as written", search(crit("receivedDate", "2024-05-02T23:00:00-05:00")), "d2:0,1"},
		{"receivedDate dates inclusive", search(crit("receivedDate", []string{"2024-05-01", "2024-05-02"})), "d2:0,1 d1:0,1,2"},
		{"receivedDate times inclusive", search(crit("receivedDate", []string{"2024-05-01T08:00:00+00:00", "2024-05-02T09:30:00+00:00"})), "d2:0,1 d1:0,1,2"},
		{"receivedDate times exclusive of neighbours", search(crit("receivedDate", []string{"2024-05-01T08:00:01Z", "2024-05-02T09:29:59Z"})), ""},
		{"receivedDate with offsets", search(crit("receivedDate", []string{"2024-05-02T11:30:00+02:00", "2024-05-02T05:30:00-04:00"})), "d2:0,1"},
		{"receivedDate fractional to is exact", search(crit("receivedDate", []string{"2024-05-02T09:00:00Z", "2024-05-02T09:29:59.999Z"})), ""},
		{"receivedDate without offset is UTC", search(crit("receivedDate", []string{"2024-05-02T09:30:00", "2024-05-02T09:30:00"})), "d2:0,1"},
		{"receivedDate all time", search(crit("receivedDate", []string{"0001-01-01", "9999-12-31"})), "d4: d3:0,1 d2:0,1 d1:0,1,2"},
		{"recievedDate (seed spelling)", search(crit("recievedDate", "2024-05-01")), "d1:0,1,2"},
		{"type AND status on one message", search(crit("messageType", "quote"), crit("messageStatus", "Complete")), "d2:1"},
		{"type AND status, no such message", search(crit("messageType", "call"), crit("messageStatus", "Failed")), ""},
		{"status AND date", search(crit("messageStatus", "Queued"), crit("receivedDate", []string{"2024-05-02", "2024-05-03"})), "d3:0"},
		{"batch AND status", search(crit("externalReference", "BATCH-1"), crit("messageStatus", []string{"Queued", "Failed"})), "d1:1,2"},
		{"id AND type", search(crit("id", trackingD1), crit("messageType", "call")), "d1:0,2"},
		{"id AND date that excludes it", search(crit("id", trackingD1), crit("receivedDate", "2024-05-02")), ""},
		{"reference AND type AND date", search(crit("externalReference", []string{"c-1", "q-2"}), crit("messageType", "quote"), crit("receivedDate", []string{"2024-05-01", "2024-05-03"})), "d2:0"},
		{"repeated status: values in both", search(crit("messageStatus", []string{"Failed", "Queued"}), crit("messageStatus", "queued")), "d3:0 d1:2"},
		{"repeated status: none in both", search(crit("messageStatus", "Failed"), crit("messageStatus", "Queued")), ""},
		{"repeated dates intersect", search(crit("receivedDate", []string{"2024-05-01", "2024-05-02"}), crit("receivedDate", []string{"2024-05-02", "2024-05-03"})), "d2:0,1"},
		{"repeated dates disjoint", search(crit("receivedDate", "2024-05-01"), crit("receivedDate", "2024-05-02")), ""},
		{"repeated id", search(crit("id", []string{trackingD1, trackingD2}), crit("id", trackingD2)), "d2:0,1"},
		{"batchReference", search(crit("batchReference", "BATCH-1")), "d1:0,1,2"},
		{"batchReference OR, any by case", search(crit("BatchReference", []string{"BATCH-2", "BATCH-4", "nope"})), "d4: d2:0,1"},
		{"batchReference is exact", search(crit("batchReference", "batch-1")), ""},
		{"batchReference is not a record id", search(crit("batchReference", "c-1")), ""},
		{"batchReference AND status", search(crit("batchReference", []string{"BATCH-1", "BATCH-2"}), crit("messageStatus", "Complete")), "d2:1 d1:0"},
		{"repeated batchReference: values in both", search(crit("batchReference", []string{"BATCH-1", "BATCH-2"}), crit("batchReference", "BATCH-2")), "d2:0,1"},
		{"repeated batchReference: none in both", search(crit("batchReference", "BATCH-1"), crit("batchReference", "BATCH-2")), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := trackingSearch(t, api, "demo", c.body)
			if got := out.brief(); got != c.want {
				t.Fatalf("got %q, want %q\n%s", got, c.want, out.raw)
			}
			if n := len(out.Data.Requests); out.Data.Paging.TotalRequests != n || out.Data.Paging.Size != n {
				t.Fatalf("paging %+v for %d requests", out.Data.Paging, n)
			}
			want := strings.TrimSpace(c.body)
			var in struct{ Search json.RawMessage }
			if json.Unmarshal([]byte(want), &in); len(in.Search) == 0 || string(in.Search) == "null" {
				in.Search = json.RawMessage("[]")
			}
			if echo, _ := json.Marshal(in.Search); string(out.Data.Search) != string(echo) {
				t.Fatalf("search echo %s, want %s", out.Data.Search, echo)
			}
			for _, r := range out.Data.Requests {
				if r.FeedID != "demo" || r.ClientName != "Demo Partner" {
					t.Fatalf("request of %s/%s", r.FeedID, r.ClientName)
				}
			}
		})
	}
}

func TestTrackingPaging(t *testing.T) {
	api, _ := trackingFixture(t)
	all := `"search": [{"by": "receivedDate", "value": ["2024-05-01", "2024-05-03"]}]`
	cases := []struct {
		paging, want string
		p            trackingPaging
	}{
		{``, "d4: d3:0,1 d2:0,1 d1:0,1,2", trackingPaging{Number: 1, Size: 4, TotalRequests: 4, TotalPages: 1}},
		{`, "paging": {}`, "d4: d3:0,1 d2:0,1 d1:0,1,2", trackingPaging{Number: 1, Size: 4, TotalRequests: 4, TotalPages: 1}},
		{`, "paging": {"number": 1, "size": 2}`, "d4: d3:0,1", trackingPaging{Number: 1, Size: 2, TotalRequests: 4, TotalPages: 2}},
		{`, "paging": {"number": "2", "size": "2"}`, "d2:0,1 d1:0,1,2", trackingPaging{Number: 2, Size: 2, TotalRequests: 4, TotalPages: 2}},
		{`, "paging": {"number": 2, "size": 3}`, "d1:0,1,2", trackingPaging{Number: 2, Size: 3, TotalRequests: 4, TotalPages: 2}},
		{`, "paging": {"number": 3, "size": 2}`, "", trackingPaging{Number: 3, Size: 2, TotalRequests: 4, TotalPages: 2}},
		{`, "paging": {"number": 99999999999, "size": 1000}`, "", trackingPaging{Number: 99999999999, Size: 1000, TotalRequests: 4, TotalPages: 1}},
		{`, "paging": {"size": 1}`, "d4:", trackingPaging{Number: 1, Size: 1, TotalRequests: 4, TotalPages: 4}},
		{`, "paging": {"number": " 4 ", "size": 1}`, "d1:0,1,2", trackingPaging{Number: 4, Size: 1, TotalRequests: 4, TotalPages: 4}},
		{`, "paging": {"number": 1, "size": 1000}`, "d4: d3:0,1 d2:0,1 d1:0,1,2", trackingPaging{Number: 1, Size: 1000, TotalRequests: 4, TotalPages: 1}},
	}
	for _, c := range cases {
		out := trackingSearch(t, api, "demo", `{`+all+c.paging+`}`)
		if got := out.brief(); got != c.want || out.Data.Paging != c.p {
			t.Errorf("%s: got %q %+v, want %q %+v", c.paging, got, out.Data.Paging, c.want, c.p)
		}
		if out.Data.Requests == nil {
			t.Errorf("%s: requests is null, want []", c.paging)
		}
	}
	// Nothing found, with paging.
	out := trackingSearch(t, api, "demo", `{"search": [{"by": "id", "value": "nope"}], "paging": {"number": 1, "size": 10}}`)
	if (out.Data.Paging != trackingPaging{Number: 1, Size: 10}) || !strings.Contains(out.raw, `"requests":[]`) {
		t.Fatalf("empty page: %s", out.raw)
	}
}

// TestTrackingMessagePaging: one response holds at most 1,000 messages of a request;
// paging.messages pages through the rest, and the summary always counts them all.
func TestTrackingMessagePaging(t *testing.T) {
	const n = 2500
	big := make([]trackingMsg, n)
	for i := range big {
		big[i] = trackingMsg{ref: fmt.Sprint("r-", i), typ: "call", status: tracker.Complete}
		if i%2 == 1 {
			big[i].status = tracker.Failed
		}
	}
	api, _ := newTrackingAPI(t, []trackingReq{
		{id: "big", client: "demo", batch: "BIG", received: trackingToday, processed: trackingToday, msgs: big},
		{id: "small", client: "demo", batch: "SMALL", received: trackingToday.Add(-time.Hour), processed: trackingToday, msgs: big[:3]},
	})
	type page struct {
		big, small []int // payload indexes, from the external references
	}
	get := func(paging string) (page, trackingOut) {
		t.Helper()
		body := `{"search": [{"by": "receivedDate", "value": "2024-05-03"}]`
		if paging != "" {
			body += `, "paging": ` + paging
		}
		out := trackingSearch(t, api, "demo", body+`}`)
		var p page
		for _, r := range out.Data.Requests {
			var idx []int
			for _, m := range r.Payload {
				var i int
				fmt.Sscanf(*m.ExternalReference, "r-%d", &i)
				idx = append(idx, i)
			}
			switch r.ID {
			case "big":
				p.big = idx
				if (r.MessageStatusSummary != trackingSummary{Total: n, Complete: n / 2, Failed: n / 2}) {
					t.Fatalf("%s: big's summary %+v", paging, r.MessageStatusSummary)
				}
			case "small":
				p.small = idx
			}
		}
		return p, out
	}
	span := func(from, to, step int) []int {
		var out []int
		for i := from; i < to; i += step {
			out = append(out, i)
		}
		return out
	}
	for _, c := range []struct {
		paging     string
		big, small []int
		echo       *trackingMessagesPaging
	}{
		{``, span(0, 1000, 1), span(0, 3, 1), nil},
		{`{"number": 1, "size": 10}`, span(0, 1000, 1), span(0, 3, 1), nil},
		{`{"messages": {"number": 2}}`, span(1000, 2000, 1), nil, &trackingMessagesPaging{Number: 2, Size: 1000}},
		{`{"messages": {"number": "3", "size": "1000"}}`, span(2000, 2500, 1), nil, &trackingMessagesPaging{Number: 3, Size: 1000}},
		{`{"messages": {"number": 4}}`, nil, nil, &trackingMessagesPaging{Number: 4, Size: 1000}},
		{`{"messages": {"size": 2}}`, span(0, 2, 1), span(0, 2, 1), &trackingMessagesPaging{Number: 1, Size: 2}},
		{`{"number": 1, "size": 1, "messages": {"number": 2, "size": 2}}`, span(2, 4, 1), nil, &trackingMessagesPaging{Number: 2, Size: 2}},
		{`{"messages": {"number": 99999999999, "size": 1000}}`, nil, nil, &trackingMessagesPaging{Number: 99999999999, Size: 1000}},
	} {
		p, out := get(c.paging)
		if !slices.Equal(p.big, c.big) || !slices.Equal(p.small, c.small) {
			t.Errorf("paging %s: big %d messages from %v, small %v", c.paging, len(p.big), p.big[:min(len(p.big), 1)], p.small)
		}
		if got := out.Data.Paging.Messages; (got == nil) != (c.echo == nil) || (got != nil && *got != *c.echo) {
			t.Errorf("paging %s: echoed %+v, want %+v", c.paging, got, c.echo)
		}
		if len(out.Data.Requests) != 2 && c.paging != `{"number": 1, "size": 1, "messages": {"number": 2, "size": 2}}` {
			t.Errorf("paging %s: %d requests, want both (message paging selects no request away)", c.paging, len(out.Data.Requests))
		}
	}
	// With a status criterion the pages are of the matching messages.
	out := trackingSearch(t, api, "demo", `{"search": [{"by": "batchReference", "value": "BIG"}, {"by": "messageStatus", "value": "Failed"}], "paging": {"messages": {"number": 2}}}`)
	if pl := out.Data.Requests[0].Payload; len(pl) != 250 || *pl[0].ExternalReference != "r-2001" || pl[0].MessageStatus != "Failed" {
		t.Fatalf("failed messages, page 2: %d, first %v", len(pl), pl[0])
	}
}

// trackingWriteCounter is a ResponseWriter that records the size of every Write.
type trackingWriteCounter struct {
	*httptest.ResponseRecorder
	writes []int
}

func (w *trackingWriteCounter) Write(b []byte) (int, error) {
	w.writes = append(w.writes, len(b))
	return w.ResponseRecorder.Write(b)
}

// TestTrackingStreamed: a search's response is written request by request, never encoded
// whole in one buffer.
func TestTrackingStreamed(t *testing.T) {
	var reqs []trackingReq
	for r := range 20 {
		msgs := make([]trackingMsg, 200)
		for i := range msgs {
			msgs[i] = trackingMsg{ref: fmt.Sprintf("r-%d-%d", r, i), typ: "call", status: tracker.Failed, errs: []string{"the sink refused it"}}
		}
		reqs = append(reqs, trackingReq{id: fmt.Sprint("req-", r), client: "demo", received: trackingToday.Add(-time.Duration(r) * time.Minute), processed: trackingToday, msgs: msgs})
	}
	api, _ := newTrackingAPI(t, reqs)
	w := &trackingWriteCounter{ResponseRecorder: httptest.NewRecorder()}
	api.Search(w, httptest.NewRequest(http.MethodPost, "/tracking", strings.NewReader(`{}`)), "demo", "Demo Partner")
	var out trackingOut
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil || w.Code != http.StatusOK || len(out.Data.Requests) != 20 || len(out.Data.Requests[19].Payload) != 200 {
		t.Fatalf("%d %v: %.200s", w.Code, err, w.Body.String())
	}
	total, largest := 0, 0
	for _, n := range w.writes {
		total += n
		largest = max(largest, n)
	}
	if len(w.writes) < 20 || largest > total/10 {
		t.Fatalf("%d bytes in %d writes, the largest %d bytes: not written request by request", total, len(w.writes), largest)
	}
}

func TestTrackingSorts(t *testing.T) {
	api, _ := trackingFixture(t)
	all := `"search": [{"by": "receivedDate", "value": ["2024-05-01", "2024-05-03"]}]`
	cases := []struct{ sorts, want string }{
		{``, "d4 d3 d2 d1"},
		{`[{"by": "receivedDate", "order": "asc"}]`, "d1 d2 d3 d4"},
		{`[{"by": "receivedDate", "order": "ASCENDING"}]`, "d1 d2 d3 d4"},
		{`[{"by": "RecievedDate", "order": "Desc"}]`, "d4 d3 d2 d1"},
		{`[{"by": "receivedDate"}]`, "d4 d3 d2 d1"},
		{`[{"by": "processedDate", "order": "descending"}]`, "d3 d2 d1 d4"},
		{`[{"by": "processedDate", "order": "asc"}]`, "d1 d2 d3 d4"},
		{`[{"by": "batchReference", "order": "asc"}]`, "d1 d2 d4 d3"}, // d3 has none: last
		{`[{"by": "batchReference"}]`, "d1 d2 d4 d3"},
		{`[{"by": "batchReference", "order": "DESC"}]`, "d4 d2 d1 d3"},
		{`[]`, "d4 d3 d2 d1"},
	}
	for _, c := range cases {
		body := `{` + all + `}`
		if c.sorts != "" {
			body = `{` + all + `, "sorts": ` + c.sorts + `}`
		}
		out := trackingSearch(t, api, "demo", body)
		var got []string
		for _, r := range out.Data.Requests {
			got = append(got, trackingNames[r.ID])
		}
		if strings.Join(got, " ") != c.want {
			t.Errorf("sorts %s: got %v, want %s", c.sorts, got, c.want)
		}
	}
	// Several sorts apply in order; paging follows the order.
	api2, _ := newTrackingAPI(t, []trackingReq{
		{id: "r1", client: "demo", batch: "A", received: trackingToday.Add(-3 * time.Hour), total: 1},
		{id: "r2", client: "demo", batch: "B", received: trackingToday.Add(-2 * time.Hour), total: 1},
		{id: "r3", client: "demo", batch: "A", received: trackingToday.Add(-1 * time.Hour), total: 1},
	})
	var got []string
	for page := 1; page <= 3; page++ {
		out := trackingSearch(t, api2, "demo", fmt.Sprintf(`{"sorts": [{"by": "batchReference", "order": "asc"}, {"by": "receivedDate", "order": "desc"}], "paging": {"number": %d, "size": 1}}`, page))
		for _, r := range out.Data.Requests {
			got = append(got, r.ID)
		}
	}
	if !slices.Equal(got, []string{"r3", "r1", "r2"}) {
		t.Fatalf("two sorts: %v", got)
	}
}

func TestTrackingScoping(t *testing.T) {
	api, _ := trackingFixture(t)
	for _, c := range []struct{ body, want string }{
		{`{"search": [{"by": "id", "value": "` + trackingD1 + `"}]}`, ""},              // demo's request, asked by other
		{`{"search": [{"by": "externalReference", "value": "BATCH-1"}]}`, "o1:0"},      // same batch reference in both clients
		{`{"search": [{"by": "batchReference", "value": "BATCH-1"}]}`, "o1:0"},         // same batch reference in both clients
		{`{"search": [{"by": "externalReference", "value": ["c-1", "q-1"]}]}`, "o1:0"}, // same record id in both clients
		{`{"search": [{"by": "messageStatus", "value": ["Failed", "Queued", "Complete"]}]}`, "o1:0"},
		{`{"search": [{"by": "receivedDate", "value": ["2024-01-01", "2024-12-31"]}]}`, "o1:0"},
		{`{"search": [{"by": "id", "value": ["` + trackingD1 + `", "` + trackingO1 + `"]}]}`, "o1:0"},
		{``, ""}, // today: demo has two requests, other none
	} {
		out := trackingSearch(t, api, "other", c.body)
		if got := out.brief(); got != c.want {
			t.Errorf("other %s: got %q, want %q", c.body, got, c.want)
		}
		for _, r := range out.Data.Requests {
			if r.FeedID != "other" || r.ClientName != "Other Partner" {
				t.Errorf("feedId %s clientName %s", r.FeedID, r.ClientName)
			}
		}
	}
	out := trackingSearch(t, api, "demo", `{"search": [{"by": "id", "value": "`+trackingO1+`"}]}`)
	if out.brief() != "" || out.Data.Paging.TotalRequests != 0 {
		t.Fatalf("demo sees other's request: %s", out.raw)
	}
	if code, out := trackingDo(t, api, "other", "/tracking/cancel", `{"id": "`+trackingD1+`"}`); code != http.StatusNotFound || out.Error.Message != "no request "+trackingD1 {
		t.Fatalf("other cancels demo's request: %d %s", code, out.raw)
	}
	out = trackingSearch(t, api, "demo", `{"search": [{"by": "id", "value": "`+trackingD1+`"}]}`)
	if out.Data.Requests[0].MessageStatusSummary.Cancelled != 0 {
		t.Fatalf("other's cancel changed demo's request: %s", out.raw)
	}
}

// The three request bodies of seed 002, verbatim.
const (
	trackingSeedByID = `{

"search": [

{

"by": "id",

"value": [

"78452e72-0fcb-4455-afc3-68fadb22646f"

]

}

],

"paging": {

"number": "1",

"size": "10"

},

"sorts": [

{

"by": "receivedDate",

"order": "78452e72-0fcb-4455-afc3-68fadb22646f"

}

]

}`
	trackingSeedEstimates = `{
  "search": [
    {
      "by": "messageType",
      "value": [ "Estimate" ]
    },
    {
      "by": "messageStatus",
      "value": ["Failed", "Complete"]   
    },
    {
      "by": "recievedDate",
      "value": ["2018-10-01T00:00:00+00:00", "2018-10-02T00:00:00+00:00"]
    },
    ]
}`
	trackingSeedOpportunities = `{
  "search": [
    {
      "by": "messageType",
      "value": "Opportunity"
    },
    {
      "by": "messageStatus",
      "value": "Failed"
    },
    {
      "by": "receivedDate",
      "value": [
        "2018-10-01T00:00:00+00:00",
        "2018-10-03T00:00:00+00:00"
      ]
    }
  ],
  "requests": []
}`
)

func TestTrackingSeedExamples(t *testing.T) {
	at := func(d, h, m, s int) time.Time { return time.Date(2018, 10, d, h, m, s, 0, time.UTC) }
	opp := func(ref string, st tracker.Status) trackingMsg {
		var errs []string
		if st == tracker.Failed {
			errs = []string{"Unable to process"}
		}
		return trackingMsg{ref, "Opportunity", st, errs}
	}
	api, _ := newTrackingAPI(t, []trackingReq{
		{id: "78452e72-0fcb-4455-afc3-68fadb22646f", client: "demo", batch: "EST1", received: at(1, 0, 0, 0), processed: at(1, 1, 0, 0), msgs: []trackingMsg{
			{"est-1", "Estimate", tracker.Failed, []string{"Unable to process"}},
			{"est-2", "Estimate", tracker.Queued, nil},
		}},
		{id: "99662e72-0fcb-4455-afc3-68fadb22646f", client: "demo", batch: "ABC12345", received: at(1, 8, 38, 14), processed: at(1, 9, 0, 0), msgs: []trackingMsg{
			opp("oppref-ABC12345", tracker.Failed), opp("o2", tracker.Complete), opp("o3", tracker.Complete), opp("o4", tracker.Complete), opp("o5", tracker.Complete),
		}},
		{id: "88552e72-0fcb-4455-afc3-68fadb22646f", client: "demo", batch: "XYZ67890", received: at(2, 8, 38, 14), processed: at(2, 9, 0, 0), msgs: []trackingMsg{
			opp("x1", tracker.Complete), opp("x2", tracker.Complete), opp("x3", tracker.Complete), opp("x4", tracker.Complete), opp("x5", tracker.Complete),
			opp("x6", tracker.Complete), opp("x7", tracker.Failed), opp("x8", tracker.Complete), opp("x9", tracker.Complete), opp("x10", tracker.Complete),
		}},
	})

	// 1. Search by id, paging as strings, and a UUID where the sort order belongs: 400 naming
	// the allowed orders.
	code, out := trackingDo(t, api, "demo", "/tracking", trackingSeedByID)
	if code != http.StatusBadRequest || out.Success || out.Data != nil ||
		out.Error.Message != `sorts[0].order "78452e72-0fcb-4455-afc3-68fadb22646f" is not one of asc, desc, ascending, descending` {
		t.Fatalf("seed example 1: %d %s", code, out.raw)
	}
	// ... and with a proper order it finds the request.
	fixed := strings.Replace(trackingSeedByID, `"order": "78452e72-0fcb-4455-afc3-68fadb22646f"`, `"order": "ascending"`, 1)
	out = trackingSearch(t, api, "demo", fixed)
	if len(out.Data.Requests) != 1 || out.Data.Requests[0].BatchReference == nil || *out.Data.Requests[0].BatchReference != "EST1" ||
		(out.Data.Paging != trackingPaging{Number: 1, Size: 10, TotalRequests: 1, TotalPages: 1}) {
		t.Fatalf("seed example 1 fixed: %s", out.raw)
	}

	// 2. The misspelt recievedDate, verbatim with the seed's trailing comma (forgiven: a
	// partner copying the document sends it), and without it.
	for name, body := range map[string]string{
		"verbatim":                   trackingSeedEstimates,
		"without the trailing comma": strings.Replace(trackingSeedEstimates, "},\n    ]", "}\n    ]", 1),
	} {
		out = trackingSearch(t, api, "demo", body)
		if len(out.Data.Requests) != 1 || out.Data.Requests[0].ID != "78452e72-0fcb-4455-afc3-68fadb22646f" ||
			len(out.Data.Requests[0].Payload) != 1 || *out.Data.Requests[0].Payload[0].ExternalReference != "est-1" {
			t.Fatalf("seed example 2 %s: %s", name, out.raw)
		}
	}
	// Other malformed JSON is still refused, with its position.
	code, out = trackingDo(t, api, "demo", "/tracking", `{"search": [{"by": "id" "value": "x"}]}`)
	if code != http.StatusBadRequest || !strings.Contains(out.Error.Message, "malformed JSON at byte") {
		t.Fatalf("malformed body: %d %s", code, out.raw)
	}

	// 3. Plain-string values; the response's "requests" in the body is ignored.
	out = trackingSearch(t, api, "demo", trackingSeedOpportunities)
	if len(out.Data.Requests) != 2 {
		t.Fatalf("seed example 3: %s", out.raw)
	}
	r := out.Data.Requests[0] // newest first
	if r.ID != "88552e72-0fcb-4455-afc3-68fadb22646f" || r.ReceivedDate != "2018-10-02T08:38:14+00:00" || r.RequestStatus != "Complete" ||
		r.MessageStatusSummary != (trackingSummary{Total: 10, Failed: 1, Complete: 9}) || len(r.Payload) != 1 {
		t.Fatalf("seed example 3, request 1: %+v", r)
	}
	r = out.Data.Requests[1]
	if r.ID != "99662e72-0fcb-4455-afc3-68fadb22646f" || *r.BatchReference != "ABC12345" || r.ReceivedDate != "2018-10-01T08:38:14+00:00" ||
		r.MessageStatusSummary != (trackingSummary{Total: 5, Failed: 1, Complete: 4}) || len(r.Payload) != 1 {
		t.Fatalf("seed example 3, request 2: %+v", r)
	}
	m := r.Payload[0]
	if *m.ExternalReference != "oppref-ABC12345" || m.MessageStatus != "Failed" || *m.MessageType != "Opportunity" ||
		*m.ProcessedTime != "2018-10-01T09:00:00+00:00" || len(m.Errors) != 1 || m.Errors[0].ErrorMessage != "Unable to process" {
		t.Fatalf("seed example 3 message: %+v", m)
	}
	if !strings.Contains(string(out.Data.Search), `"value":"Opportunity"`) {
		t.Fatalf("search not echoed as given: %s", out.Data.Search)
	}
}

func TestTrackingBadRequests(t *testing.T) {
	api, _ := trackingFixture(t)
	s := func(items string) string { return `{"search": [` + items + `]}` }
	cases := []struct{ name, body, want string }{
		{"malformed JSON", `{"search": [`, "malformed JSON at byte"},
		{"not an object", `[{"by": "id"}]`, "the body must be a JSON object"},
		{"a string", `"id"`, "the body must be a JSON object"},
		{"garbage", `search=id`, "malformed JSON"},
		{"search not a list", `{"search": {"by": "id", "value": "x"}}`, `search must be a list of {"by": ..., "value": ...} criteria, got {"by": "id", "value": "x"}`},
		{"criterion not an object", s(`"id"`), `search[0] must be an object {"by": ..., "value": ...}, got "id"`},
		{"criterion null", s(`null`), `search[0] must be an object`},
		{"unknown by", s(`{"by": "colour", "value": "red"}`), `search[0].by "colour" is not one of messageType, messageStatus, receivedDate, id, externalReference`},
		{"by missing", s(`{"value": "red"}`), `search[0].by must be one of messageType, messageStatus, receivedDate, id, externalReference, batchReference, got nothing`},
		{"by not a string", s(`{"by": 3, "value": "red"}`), `search[0].by must be one of`},
		{"value missing", s(`{"by": "id"}`), `search[0].value (id) must be a string or a non-empty list of strings, got nothing`},
		{"value empty list", s(`{"by": "id", "value": []}`), `search[0].value (id) must be a string or a non-empty list of strings, got []`},
		{"value a number", s(`{"by": "messageType", "value": 7}`), `search[0].value (messageType) must be a string or a non-empty list of strings, got 7`},
		{"value list of numbers", s(`{"by": "id", "value": [1, 2]}`), `got [1, 2]`},
		{"unknown status", s(`{"by": "id", "value": "x"}, {"by": "messageStatus", "value": ["Failed", "Lost"]}`), `search[1].value "Lost" is not a message status (Queued, Processing, Complete, Failed, Invalid, Cancelled)`},
		{"unparsable date", s(`{"by": "receivedDate", "value": "yesterday"}`), `search[0].value (receivedDate): "yesterday" is not a date (2018-10-01) or an RFC 3339 time`},
		{"unparsable to", s(`{"by": "recievedDate", "value": ["2018-10-01", "2018-13-01"]}`), `search[0].value (recievedDate): "2018-13-01" is not a date`},
		{"three dates", s(`{"by": "receivedDate", "value": ["2018-10-01", "2018-10-02", "2018-10-03"]}`), `give one date (a whole day) or [from, to], not 3 values`},
		{"from after to", s(`{"by": "receivedDate", "value": ["2018-10-02", "2018-10-01"]}`), `from "2018-10-02" is after to "2018-10-01"`},
		{"too many values", s(`{"by": "externalReference", "value": [` + strings.Repeat(`"r",`, 1000) + `"r"]}`), `search[0].value (externalReference) has 1001 values; at most 1000 are allowed`},
		{"repeated externalReference", s(`{"by": "externalReference", "value": "a"}, {"by": "externalReference", "value": "b"}`), `search[1]: externalReference is given more than once`},
		{"paging not an object", `{"paging": [1, 10]}`, `paging must be an object {"number": ..., "size": ..., "messages": {"number": ..., "size": ...}}, got [1, 10]`},
		{"messages paging not an object", `{"paging": {"messages": 5}}`, `paging.messages must be an object {"number": ..., "size": ...}, got 5`},
		{"messages page size 0", `{"paging": {"messages": {"size": 0}}}`, `paging.messages.size must be a number from 1 to 1000, got 0`},
		{"messages page size over max", `{"paging": {"number": 1, "size": 10, "messages": {"number": 1, "size": "1001"}}}`, `paging.messages.size must be a number from 1 to 1000, got "1001"`},
		{"messages page number 0", `{"paging": {"messages": {"number": 0, "size": 10}}}`, `paging.messages.number must be a page number from 1, got 0`},
		{"messages page number not a number", `{"paging": {"messages": {"number": "two"}}}`, `paging.messages.number must be a page number from 1, got "two"`},
		{"page size 0", `{"paging": {"number": 1, "size": 0}}`, `paging.size must be a number from 1 to 1000, got 0`},
		{"page size negative", `{"paging": {"number": 1, "size": -5}}`, `paging.size must be a number from 1 to 1000, got -5`},
		{"page size over max", `{"paging": {"number": 1, "size": 1001}}`, `paging.size must be a number from 1 to 1000, got 1001`},
		{"page size string over max", `{"paging": {"number": 1, "size": "5000"}}`, `paging.size must be a number from 1 to 1000, got "5000"`},
		{"page size not a number", `{"paging": {"number": 1, "size": "ten"}}`, `paging.size must be a number from 1 to 1000, got "ten"`},
		{"page size fractional", `{"paging": {"number": 1, "size": 2.5}}`, `paging.size must be a number from 1 to 1000, got 2.5`},
		{"page size missing", `{"paging": {"number": 2}}`, `paging.size is required with paging (1 to 1000)`},
		{"page number 0", `{"paging": {"number": 0, "size": 10}}`, `paging.number must be a page number from 1, got 0`},
		{"page number negative string", `{"paging": {"number": "-1", "size": 10}}`, `paging.number must be a page number from 1, got "-1"`},
		{"page number bool", `{"paging": {"number": true, "size": 10}}`, `paging.number must be a page number from 1, got true`},
		{"sorts not a list", `{"sorts": {"by": "receivedDate"}}`, `sorts must be a list of {"by": ..., "order": ...}`},
		{"sort not an object", `{"sorts": ["receivedDate"]}`, `sorts[0] must be an object {"by": ..., "order": ...}, got "receivedDate"`},
		{"unknown sort", `{"sorts": [{"by": "size", "order": "asc"}]}`, `sorts[0].by "size" is not one of receivedDate, processedDate, batchReference`},
		{"sort by missing", `{"sorts": [{"order": "asc"}]}`, `sorts[0].by nothing is not one of receivedDate, processedDate, batchReference`},
		{"unknown order", `{"sorts": [{"by": "batchReference", "order": "up"}]}`, `sorts[1].order`},
		{"order not a string", `{"sorts": [{"by": "processedDate", "order": 1}]}`, `sorts[0].order 1 is not one of asc, desc, ascending, descending`},
	}
	cases[len(cases)-2].body = `{"sorts": [{"by": "receivedDate"}, {"by": "batchReference", "order": "up"}]}`
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out := trackingDo(t, api, "demo", "/tracking", c.body)
			if code != http.StatusBadRequest || out.Success || out.Data != nil || out.Error == nil || !strings.Contains(out.Error.Message, c.want) {
				t.Fatalf("got %d %s, want 400 with %q", code, out.raw, c.want)
			}
			if !strings.Contains(out.raw, `"data":null`) || !strings.Contains(out.raw, `"success":false`) {
				t.Fatalf("error shape: %s", out.raw)
			}
		})
	}
	// Over 1 MiB: 413 in the same shape.
	big := `{"search": [{"by": "id", "value": "` + strings.Repeat("x", 1<<20) + `"}]}`
	code, out := trackingDo(t, api, "demo", "/tracking", big)
	if code != http.StatusRequestEntityTooLarge || out.Success || out.Error == nil || !strings.Contains(out.Error.Message, "1048576 bytes") {
		t.Fatalf("big body: %d %s", code, out.raw)
	}
	// The most values a criterion may have.
	refs := make([]string, 1000)
	for i := range refs {
		refs[i] = fmt.Sprintf("%q", fmt.Sprint("ref-", i))
	}
	refs[999] = `"q-3"`
	out = trackingSearch(t, api, "demo", `{"search": [{"by": "externalReference", "value": [`+strings.Join(refs, ",")+`]}, {"by": "id", "value": [`+strings.Join(refs[:999], ",")+`, "`+trackingD2+`"]}]}`)
	if out.brief() != "d2:1" {
		t.Fatalf("1000 values: %s", out.brief())
	}
	// Just under the limit is fine.
	ok := `{"search": [{"by": "id", "value": "` + strings.Repeat("x", 1<<20-100) + `"}]}`
	if code, _ := trackingDo(t, api, "demo", "/tracking", ok); code != http.StatusOK {
		t.Fatalf("body under the limit: %d", code)
	}
}

func TestTrackingCancel(t *testing.T) {
	api, tr := trackingFixture(t)
	summary := func(id string) (trackingSummary, string, []string) {
		out := trackingSearch(t, api, "demo", `{"search": [{"by": "id", "value": "`+id+`"}]}`)
		r := out.Data.Requests[0]
		var st []string
		for _, m := range r.Payload {
			st = append(st, m.MessageStatus)
		}
		return r.MessageStatusSummary, r.RequestStatus, st
	}
	// d1: Complete, Failed, Queued -> the Queued one is cancelled.
	code, out := trackingDo(t, api, "demo", "/tracking/cancel", `{"id": "`+trackingD1+`"}`)
	if code != http.StatusOK || out.raw != `{"success":true,"error":null,"data":{"id":"`+trackingD1+`","cancelled":1}}`+"\n" {
		t.Fatalf("cancel d1: %d %s", code, out.raw)
	}
	sum, status, st := summary(trackingD1)
	if (sum != trackingSummary{Total: 3, Cancelled: 1, Failed: 1, Complete: 1}) || status != "Complete" || !slices.Equal(st, []string{"Complete", "Failed", "Cancelled"}) {
		t.Fatalf("d1 after cancel: %+v %s %v", sum, status, st)
	}
	// A cancelled message is never claimed (so never delivered).
	trackerWriter(t, tr, func(w tracker.Writer) error {
		if got, err := w.Claim(trackingD1, []int{2}); err != nil || len(got) != 0 {
			t.Fatalf("claim after cancel: %v %v", got, err)
		}
		return nil
	})
	// Cancelled messages show with a processed time.
	out = trackingSearch(t, api, "demo", `{"search": [{"by": "messageStatus", "value": "cancelled"}]}`)
	if out.brief() != "d1:2" || *out.Data.Requests[0].Payload[0].ProcessedTime != "2024-05-03T10:00:00+00:00" {
		t.Fatalf("cancelled messages: %s", out.raw)
	}
	// d2: Processing and Complete are unaffected; id in upper case.
	code, out = trackingDo(t, api, "demo", "/tracking/cancel", `{"id": "`+strings.ToUpper(trackingD2)+`"}`)
	if code != http.StatusOK || out.raw != `{"success":true,"error":null,"data":{"id":"`+trackingD2+`","cancelled":0}}`+"\n" {
		t.Fatalf("cancel d2: %d %s", code, out.raw)
	}
	if sum, status, _ := summary(trackingD2); (sum != trackingSummary{Total: 2, Processing: 1, Complete: 1}) || status != "Processing" {
		t.Fatalf("d2 after cancel: %+v %s", sum, status)
	}
	// d4, not split yet: all of it, including what the split records later.
	if code, out = trackingDo(t, api, "demo", "/tracking/cancel", `{"id": "`+trackingD4+`"}`); code != http.StatusOK || !strings.Contains(out.raw, `"cancelled":5`) {
		t.Fatalf("cancel d4: %d %s", code, out.raw)
	}
	trackerWriter(t, tr, func(w tracker.Writer) error {
		if cancelled, err := w.AddMessages(trackingD4, []tracker.NewMessage{{Index: 0}, {Index: 1}, {Index: 2}, {Index: 3}, {Index: 4}}); err != nil || !cancelled {
			t.Fatalf("split after cancel: %v %v", cancelled, err)
		}
		return nil
	})
	if sum, status, st := summary(trackingD4); (sum != trackingSummary{Total: 5, Cancelled: 5}) || status != "Complete" || len(st) != 5 {
		t.Fatalf("d4 after cancel: %+v %s %v", sum, status, st)
	}
	// Cancelling again cancels nothing more.
	if code, out = trackingDo(t, api, "demo", "/tracking/cancel", `{"id": "`+trackingD1+`"}`); code != http.StatusOK || !strings.Contains(out.raw, `"cancelled":0`) {
		t.Fatalf("cancel d1 again: %d %s", code, out.raw)
	}
	// Errors.
	for _, c := range []struct {
		body string
		code int
		want string
	}{
		{`{"id": "nope"}`, http.StatusNotFound, "no request nope"},
		{`{"id": "` + trackingO1 + `"}`, http.StatusNotFound, "no request " + trackingO1},
		{`{}`, http.StatusBadRequest, `id is required: {"id": "<request id>"}`},
		{``, http.StatusBadRequest, `id is required`},
		{`{"id": ""}`, http.StatusBadRequest, `id must be a request id (a non-empty string), got ""`},
		{`{"id": 42}`, http.StatusBadRequest, `id must be a request id (a non-empty string), got 42`},
		{`{"id": `, http.StatusBadRequest, `malformed JSON`},
		{`["x"]`, http.StatusBadRequest, `the body must be a JSON object`},
	} {
		code, out := trackingDo(t, api, "demo", "/tracking/cancel", c.body)
		if code != c.code || out.Success || out.Data != nil || out.Error == nil || !strings.Contains(out.Error.Message, c.want) {
			t.Errorf("cancel %s: %d %s, want %d %q", c.body, code, out.raw, c.code, c.want)
		}
	}
}

// trackingFailingStore fails every call.
type trackingFailingStore struct{}

func (trackingFailingStore) Find(context.Context, string, tracker.Filter) (tracker.Page, error) {
	return tracker.Page{}, errors.New("disk on fire at /var/lib/secret")
}

func (trackingFailingStore) Cancel(context.Context, string, string) (bool, int, error) {
	return false, 0, errors.New("disk on fire at /var/lib/secret")
}

func TestTrackingStoreFailure(t *testing.T) {
	var logged strings.Builder
	api := &TrackingAPI{Store: trackingFailingStore{}, Log: slog.New(slog.NewTextHandler(&logged, nil))}
	for _, path := range []string{"/tracking", "/tracking/cancel"} {
		code, out := trackingDo(t, api, "demo", path, `{"id": "x"}`)
		if code != http.StatusInternalServerError || out.Success || out.Data != nil || out.Error == nil || strings.Contains(out.raw, "secret") {
			t.Fatalf("%s: %d %s", path, code, out.raw)
		}
	}
	if !strings.Contains(logged.String(), "disk on fire") {
		t.Fatalf("failure not logged: %s", logged.String())
	}
}
