package pipeline

import (
	"errors"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/opengw/gateway/internal/jsonkind"
)

func TestParseEnvelopeDepth(t *testing.T) {
	nest := func(n int) string { return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n) }
	cases := []struct {
		name, body string
		depth      int
		err        string
	}{
		// The record itself is level 3: body object, payload array, record.
		{"record at the limit", `{"format":"f","payload":[{},` + nest(8) + `]}`, 10, ""},
		{"record over the limit", `{"format":"f","payload":[{},{},` + nest(9) + `]}`, 10,
			"payload[2] is nested deeper than the limit of 10 levels (limits.max_depth) at payload[2].a.a.a.a.a.a…"},
		{"default limit", `{"format":"f","payload":[` + nest(63) + `]}`, 0,
			"payload[0] is nested deeper than the limit of 64 levels"},
		{"outside the payload", `{"format":"f","x":[[[[]]]],"payload":[]}`, 4,
			"the body is nested deeper than the limit of 4 levels (limits.max_depth) at x[0][0][0]"},
		{"hostile brackets", strings.Repeat("[", 5_000_000) + strings.Repeat("]", 5_000_000), 64,
			"the body is nested deeper than the limit of 64 levels"},
		{"syntax error names the byte", `{"format":"f","payload":[}`, 64,
			`the body is not valid JSON: unexpected "}"; a value was expected at byte 25`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env, err := EnvelopeParser{MaxDepth: c.depth}.Parse([]byte(c.body))
			if c.err == "" {
				if err != nil || env.Format != "f" {
					t.Fatalf("env = %+v, err = %v", env, err)
				}
				return
			}
			var ee *EnvelopeError
			if !errors.As(err, &ee) || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("err = %v, want an EnvelopeError containing %q", err, c.err)
			}
		})
	}
}

// FuzzParseEnvelope: whatever the body, Parse never panics, every error is an EnvelopeError
// with a message, and an accepted envelope keeps every limit: a non-empty format, at most
// MaxRecords records, each a JSON object cut exactly from the body, nothing nested deeper
// than MaxDepth.
func FuzzParseEnvelope(f *testing.F) {
	for _, s := range []string{
		`{"format":"activity","request_id":"r1","payload":[{"id":"a","type":"call"},{"id":"b","n":[1,{"x":null}]}]}`,
		`{"format":"f","payload":[]}`,
		`{"format":"f","request_id":null,"payload":[{}]}`,
		`{"format":1,"payload":[]}`,
		`{"format":"f","payload":{}}`,
		`{"format":"f","payload":[{},"x"]}`,
		`{"format":"f","payload":[{"a":{"a":{"a":{"a":{"a":{"a":{}}}}}}}]}`,
		`{"format":"f","payload":[ {"b":"}"} , {"c":"\u00e9\""}]}`,
		`[[[[[[[[[[]]]]]]]]]]`,
		`{"format":`,
		``,
	} {
		f.Add([]byte(s))
	}
	const maxDepth = 6
	f.Fuzz(func(t *testing.T, body []byte) {
		env, err := EnvelopeParser{MaxDepth: maxDepth}.Parse(body)
		if err != nil {
			var ee *EnvelopeError
			if !errors.As(err, &ee) || ee.Message == "" {
				t.Fatalf("error %v (%T) is not an EnvelopeError with a message", err, err)
			}
			return
		}
		if env.Format == "" || len(env.Records) > MaxRecords {
			t.Fatalf("accepted envelope breaks a limit: format %q, %d records", env.Format, len(env.Records))
		}
		if jsonkind.Check(body, maxDepth) != nil {
			t.Fatalf("accepted a body that is invalid or deeper than %d: %q", maxDepth, body)
		}
		for i, rec := range env.Records {
			if !gjson.ValidBytes(rec) || !gjson.ParseBytes(rec).IsObject() {
				t.Fatalf("record %d is not a JSON object: %q", i, rec)
			}
			if !strings.Contains(string(body), string(rec)) {
				t.Fatalf("record %d %q is not a slice of the body", i, rec)
			}
		}
	})
}
