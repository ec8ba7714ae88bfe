package transports

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// FuzzTrackingSearch: whatever the body of POST /tracking, the search parser never panics and
// never fails internally: the answer is 200 with success true and data, or a 4xx with success
// false and an error message, always as JSON.
func FuzzTrackingSearch(f *testing.F) {
	for _, s := range []string{
		`{"search":[{"by":"messageStatus","value":["Failed","Invalid"]},{"by":"receivedDate","value":["2020-05-01","2020-05-31"]}],"paging":{"number":"2","size":10},"sorts":[{"by":"processedDate","order":"asc"}]}`,
		`{"search":[{"by":"recievedDate","value":"2020-05-18"},{"by":"id","value":"x"},],}`,
		`{"search":[{"by":"externalReference","value":[]}]}`,
		`{"search":{"by":"id"}}`,
		`{"paging":{"number":0,"size":-1}}`,
		`{"sorts":[{"by":"colour"}]}`,
		`{"search":[{"by":"messageType","value":[1,null,{"a":1}]}]}`,
		`[]`, `{`, ``, `null`, `{"search":null,"paging":null,"sorts":null}`,
	} {
		f.Add([]byte(s))
	}
	api := &TrackingAPI{Now: func() time.Time { return time.Date(2020, 5, 18, 12, 0, 0, 0, time.UTC) }}
	f.Fuzz(func(t *testing.T, body []byte) {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "/tracking", bytes.NewReader(body))
		api.Search(w, r, "demo", "Demo Partner")
		var out struct {
			Success bool `json:"success"`
			Error   *struct {
				Message string `json:"message"`
			} `json:"error"`
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			t.Fatalf("status %d with a body that is not JSON (%v): %q", w.Code, err, w.Body)
		}
		switch {
		case w.Code == http.StatusOK:
			if !out.Success || out.Error != nil || len(out.Data) == 0 || string(out.Data) == "null" {
				t.Fatalf("200 without data: %s", w.Body)
			}
		case w.Code >= 400 && w.Code < 500:
			if out.Success || out.Error == nil || out.Error.Message == "" {
				t.Fatalf("%d without an error message: %s", w.Code, w.Body)
			}
		default:
			t.Fatalf("status %d for %q: %s", w.Code, body, w.Body)
		}
	})
}
