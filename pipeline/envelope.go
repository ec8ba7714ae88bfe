package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/tidwall/gjson"

	"github.com/opengw/gateway/internal/jsonkind"
)

// MaxRecords is the most records one envelope may carry.
const MaxRecords = 10000

// Envelope is a validated push body: {format, request_id?, payload: [object, ...]}.
// Records are slices of the original body, not copies.
type Envelope struct {
	Format         string
	BatchReference string // the partner's request_id
	Records        [][]byte
}

// EnvelopeError says what is wrong with an envelope; its message names the field and value.
type EnvelopeError struct{ Message string }

func (e *EnvelopeError) Error() string { return e.Message }

func envelopeErrorf(format string, args ...any) error {
	return &EnvelopeError{Message: fmt.Sprintf(format, args...)}
}

// DefaultMaxDepth is how deep JSON may nest in a body unless limits.max_depth says otherwise;
// the envelope itself takes three levels (object, payload array, record).
const DefaultMaxDepth = 64

// EnvelopeParser parses push bodies under the configured limits. The zero value uses
// DefaultMaxDepth. It holds no state and is safe for concurrent use.
type EnvelopeParser struct {
	MaxDepth int // deepest nesting allowed anywhere in the body (limits.max_depth)
}

// ParseEnvelope parses body with the default limits; see EnvelopeParser.Parse.
func ParseEnvelope(body []byte) (Envelope, error) { return EnvelopeParser{}.Parse(body) }

// Parse validates body (syntax and nesting depth in one pass, without recursion, so hostile
// input costs no more memory than any other) and takes it apart in that same pass
// (jsonkind.Walk): a 10,000-record body is read once, not once to check it and three times more
// to find its members and records. Every error is an *EnvelopeError naming the field, the
// record index or the limit. Of repeated members, the first counts.
func (p EnvelopeParser) Parse(body []byte) (Envelope, error) {
	maxDepth := p.MaxDepth
	if maxDepth <= 0 {
		maxDepth = DefaultMaxDepth
	}
	var env Envelope
	var format, ref, payload []byte // the first value of each member, nil if absent
	var payloadDone bool            // the first payload member has ended
	var bad error                   // the first record that breaks a rule
	visit := func(v jsonkind.Value) {
		value := body[v.Start:v.End]
		if v.Depth == 1 {
			switch {
			case v.Outer.InArray:
			case v.Outer.Key == "format" && format == nil:
				format = value
			case v.Outer.Key == "request_id" && ref == nil:
				ref = value
			case v.Outer.Key == "payload" && !payloadDone:
				payload, payloadDone = value, true
			}
			return
		}
		if v.Outer.Key != "payload" || v.Outer.InArray || payloadDone || !v.Inner.InArray || bad != nil {
			return
		}
		switch {
		case len(env.Records) == MaxRecords:
			bad = envelopeErrorf("payload has more than %d records", MaxRecords)
		case value[0] != '{':
			bad = envelopeErrorf("payload[%d] must be an object, not %s", len(env.Records), jsonkind.Describe(gjson.ParseBytes(value)))
		default:
			env.Records = append(env.Records, value[:len(value):len(value)])
		}
	}
	if err := jsonkind.Walk(body, maxDepth, visit); err != nil {
		return Envelope{}, checkError(err)
	}
	if trimmed := bytes.TrimLeft(body, " \t\r\n"); trimmed[0] != '{' {
		return Envelope{}, envelopeErrorf("the body must be a JSON object with format and payload, not %s", jsonkind.Describe(gjson.ParseBytes(trimmed)))
	}
	f := gjson.ParseBytes(format)
	switch {
	case format == nil:
		return Envelope{}, envelopeErrorf("format is required")
	case f.Type != gjson.String:
		return Envelope{}, envelopeErrorf("format must be a string, not %s", jsonkind.Describe(f))
	case f.Str == "":
		return Envelope{}, envelopeErrorf("format must not be empty")
	}
	env.Format = f.Str
	if r := gjson.ParseBytes(ref); ref != nil && r.Type != gjson.Null {
		if r.Type != gjson.String {
			return Envelope{}, envelopeErrorf("request_id must be a string, not %s", jsonkind.Describe(r))
		}
		env.BatchReference = r.Str
	}
	switch {
	case payload == nil:
		return Envelope{}, envelopeErrorf("payload is required")
	case payload[0] != '[':
		return Envelope{}, envelopeErrorf("payload must be an array of objects, not %s", jsonkind.Describe(gjson.ParseBytes(payload)))
	case bad != nil:
		return Envelope{}, bad
	}
	return env, nil
}

// checkError describes a jsonkind.Check error; a depth error inside payload names the record.
func checkError(err error) error {
	var deep *jsonkind.DepthError
	if !errors.As(err, &deep) {
		return envelopeErrorf("the body is not valid JSON: %v", err)
	}
	where := "the body"
	if len(deep.Path) >= 2 && deep.Path[0] == (jsonkind.Step{Key: "payload"}) && deep.Path[1].InArray {
		where = fmt.Sprintf("payload[%d]", deep.Path[1].Index)
	}
	return envelopeErrorf("%s is nested deeper than the limit of %d levels (limits.max_depth) at %s",
		where, deep.Limit, jsonkind.FormatPath(deep.Path, 8))
}

// recordBytes returns rec's raw JSON as a slice of body when gjson can say where it is.
func recordBytes(body []byte, rec gjson.Result) []byte {
	if rec.Index > 0 && rec.Index+len(rec.Raw) <= len(body) {
		return body[rec.Index : rec.Index+len(rec.Raw) : rec.Index+len(rec.Raw)]
	}
	return []byte(rec.Raw)
}

// appendRecords appends records to dst as one JSON array, without re-encoding them.
func appendRecords(dst []byte, records [][]byte) []byte {
	size := 2
	for _, r := range records {
		size += len(r) + 1
	}
	dst = slices.Grow(dst, size)
	dst = append(dst, '[')
	for i, r := range records {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, r...)
	}
	return append(dst, ']')
}

// splitRecords is the inverse of appendRecords for a trusted array (one the gateway wrote).
func splitRecords(array []byte) [][]byte {
	var out [][]byte
	gjson.ParseBytes(array).ForEach(func(_, rec gjson.Result) bool {
		out = append(out, recordBytes(array, rec))
		return true
	})
	return out
}
