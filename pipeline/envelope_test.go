package pipeline

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"reflect"
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
// with a message, it reads the body as gjson does (parseWithGjson, the reading it replaced,
// three passes over the body after the check), and an accepted envelope keeps every limit: a non-empty format, at most
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
		`{"format":"f","payload":[{}],"payload":[1],"format":2}`,
		`{"form\u0061t":"f","pay\u006coad":[{"a":1}],"request_id":{"x":[]}}`,
		` [{"format":"f","payload":[]}] `,
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
		}
		if want, wantErr := parseWithGjson(EnvelopeParser{MaxDepth: maxDepth}, body); !reflect.DeepEqual(env, want) || fmt.Sprint(err) != fmt.Sprint(wantErr) {
			t.Fatalf("Parse(%q) = %+v, %v; the gjson reading gives %+v, %v", body, env, err, want, wantErr)
		}
		if err != nil {
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

// parseWithGjson is how Parse read envelopes before it took them apart in the pass that checks
// them: FuzzParseEnvelope holds the two to the same results and the same errors.
func parseWithGjson(p EnvelopeParser, body []byte) (Envelope, error) {
	maxDepth := p.MaxDepth
	if maxDepth <= 0 {
		maxDepth = DefaultMaxDepth
	}
	if err := jsonkind.Check(body, maxDepth); err != nil {
		return Envelope{}, checkError(err)
	}
	root := gjson.ParseBytes(body)
	if !root.IsObject() {
		return Envelope{}, envelopeErrorf("the body must be a JSON object with format and payload, not %s", jsonkind.Describe(root))
	}
	var env Envelope
	format := root.Get("format")
	switch {
	case !format.Exists():
		return Envelope{}, envelopeErrorf("format is required")
	case format.Type != gjson.String:
		return Envelope{}, envelopeErrorf("format must be a string, not %s", jsonkind.Describe(format))
	case format.Str == "":
		return Envelope{}, envelopeErrorf("format must not be empty")
	}
	env.Format = format.Str
	if ref := root.Get("request_id"); ref.Exists() && ref.Type != gjson.Null {
		if ref.Type != gjson.String {
			return Envelope{}, envelopeErrorf("request_id must be a string, not %s", jsonkind.Describe(ref))
		}
		env.BatchReference = ref.Str
	}
	payload := root.Get("payload")
	if !payload.Exists() {
		return Envelope{}, envelopeErrorf("payload is required")
	}
	if !payload.IsArray() {
		return Envelope{}, envelopeErrorf("payload must be an array of objects, not %s", jsonkind.Describe(payload))
	}
	var bad error
	payload.ForEach(func(_, rec gjson.Result) bool {
		if len(env.Records) == MaxRecords {
			bad = envelopeErrorf("payload has more than %d records", MaxRecords)
			return false
		}
		if !rec.IsObject() {
			bad = envelopeErrorf("payload[%d] must be an object, not %s", len(env.Records), jsonkind.Describe(rec))
			return false
		}
		env.Records = append(env.Records, recordBytes(body, rec))
		return true
	})
	if bad != nil {
		return Envelope{}, bad
	}
	return env, nil
}

// BenchmarkParseEnvelope parses a 10,000-record body (random ids) with Parse and with the
// gjson reading it replaced: the CPU a 10,000-record push spends before its commit.
func BenchmarkParseEnvelope(b *testing.B) {
	var body bytes.Buffer
	body.WriteString(`{"format":"activity","request_id":"r","payload":[`)
	for i := range 10000 {
		if i > 0 {
			body.WriteByte(',')
		}
		var id [16]byte
		_, _ = rand.Read(id[:])
		fmt.Fprintf(&body, `{"id":"%x","type":"call","timestamp":"2020-05-18T21:15:00-5:00","duration":"PT25M30S","user_email":"Jonny.Test@mivation.com","contact":"+18774289403","direction":"outbound","note":"n\u00e9"}`, id)
	}
	body.WriteString(`]}`)
	for _, c := range []struct {
		name  string
		parse func(EnvelopeParser, []byte) (Envelope, error)
	}{{"walk", EnvelopeParser.Parse}, {"gjson", parseWithGjson}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(body.Len()))
			for range b.N {
				if env, err := c.parse(EnvelopeParser{}, body.Bytes()); err != nil || len(env.Records) != 10000 {
					b.Fatal(len(env.Records), err)
				}
			}
		})
	}
}
