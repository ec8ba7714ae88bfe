package pipeline

import (
	"errors"
	"fmt"

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
// input costs no more memory than any other) and returns its parts, read with gjson without
// decoding into maps. Every error is an *EnvelopeError naming the field, the record index or
// the limit.
func (p EnvelopeParser) Parse(body []byte) (Envelope, error) {
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

// joinRecords encodes records as one JSON array without re-encoding them.
func joinRecords(records [][]byte) []byte {
	size := 2
	for _, r := range records {
		size += len(r) + 1
	}
	out := make([]byte, 0, size)
	out = append(out, '[')
	for i, r := range records {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, r...)
	}
	return append(out, ']')
}

// splitRecords is the inverse of joinRecords for a trusted array (one the gateway wrote).
func splitRecords(array []byte) [][]byte {
	var out [][]byte
	gjson.ParseBytes(array).ForEach(func(_, rec gjson.Result) bool {
		out = append(out, recordBytes(array, rec))
		return true
	})
	return out
}
