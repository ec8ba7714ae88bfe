package mappings

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/expr-lang/expr/vm"
	"github.com/tidwall/gjson"
)

// Mapping is one compiled mapping file: how the records of one format are validated, routed
// to sinks and turned into fields. It does not change after loading; all its methods are
// safe for concurrent use.
type Mapping struct {
	Format   string   // the format named in the envelope
	File     string   // the file it was loaded from
	Version  string   // 12 hex digits of the SHA-256 of the file and its schema files, if any
	Required []string // gjson paths that must be present and not null, in declared order

	idPath    string        // "" when the file declares no id
	typePath  string        // "" when the file declares no type path
	typeConst string        // the type of every record (type: {const: NAME}); "" when not declared
	schema    *recordSchema // nil when the file declares no schema
	rules     []rule
	routesAll bool // routes_mode: all: every matching route takes the record, not the first
	routes    []route
	tests     []testCase
}

// rule is one compiled validate entry.
type rule struct {
	src     string
	message string
	prog    *vm.Program
}

// route is one compiled routes entry.
type route struct {
	name   string      // declared name, or "routes[N]"
	when   *vm.Program // nil: always matches
	sink   string
	fields []fieldExpr
}

// fieldExpr is one compiled field of a route.
type fieldExpr struct {
	name string
	prog *vm.Program
}

// Field is one output field of a record.
type Field struct {
	Name  string
	Value any // string, float64, bool, nil, map[string]any, []any, or another JSON-encodable value
}

// RouteOutput is what one route sends to its sink for one record.
type RouteOutput struct {
	Route  string  // the route's name, or "routes[N]" (0-based) if it has none
	Sink   string  // the route's sink
	Fields []Field // in the order the route declares them
}

// Outcome is the result of applying a mapping to one record.
type Outcome struct {
	// Routes lists every route that takes the record, in declared order, with what it sends
	// to its sink: exactly one in routes_mode first (the default), one or more in routes_mode
	// all, never two to the same sink. Nil when the record is invalid.
	Routes []RouteOutput
	// Errors lists why the record is invalid; empty for a valid record. Each message names
	// the rule, route or field concerned and the offending value.
	Errors []string
}

// Valid reports whether the record was mapped: Errors is empty.
func (o Outcome) Valid() bool { return len(o.Errors) == 0 }

// JSON returns Fields as a JSON object with the keys in declared order and HTML characters
// left unescaped. A value that cannot be encoded (which Apply never produces) is written as
// null.
func (o RouteOutput) JSON() []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	buf.WriteByte('{')
	for i, f := range o.Fields {
		if i > 0 {
			buf.WriteByte(',')
		}
		_ = enc.Encode(f.Name) // a string always encodes
		buf.Truncate(buf.Len() - 1)
		buf.WriteByte(':')
		n := buf.Len()
		if err := enc.Encode(f.Value); err != nil {
			buf.Truncate(n)
			buf.WriteString("null")
		} else {
			buf.Truncate(buf.Len() - 1) // Encode ends with a newline
		}
	}
	buf.WriteByte('}')
	return buf.Bytes()
}

// RecordID returns the record's id, read at the mapping's `id:` path, as a string: a JSON
// string as is, a number as written, an object or array as raw JSON. It returns "" when the
// mapping has no id path or the record has no value (or null) there.
func (m *Mapping) RecordID(rec []byte) string {
	if m.idPath == "" {
		return ""
	}
	return resultString(gjson.GetBytes(rec, m.idPath))
}

// RecordType returns the record's message type: read at the mapping's `type:` path ("" when
// the record has no value there, which makes Apply refuse it), or the constant of
// `type: {const: NAME}`. A mapping without `type:` has one type: its format.
func (m *Mapping) RecordType(rec []byte) string {
	switch {
	case m.typeConst != "":
		return m.typeConst
	case m.typePath == "":
		return m.Format
	}
	return resultString(gjson.GetBytes(rec, m.typePath))
}

func resultString(r gjson.Result) string {
	switch r.Type {
	case gjson.Null:
		return ""
	case gjson.JSON:
		return r.Raw
	default:
		return r.String()
	}
}

// Missing returns the Required paths that the record lacks or has as null, in declared
// order; nil when none is missing.
func (m *Mapping) Missing(rec []byte) []string {
	var missing []string
	for _, p := range m.Required {
		if r := gjson.GetBytes(rec, p); r.Type == gjson.Null {
			missing = append(missing, p)
		}
	}
	return missing
}

// evaluator is the per-goroutine state for running programs. A vm.VM must not be shared
// between goroutines, so evaluators are pooled.
type evaluator struct {
	vm  vm.VM
	rec record
}

var evaluators = sync.Pool{New: func() any { return new(evaluator) }}

// run runs one program against the evaluator's record. expr recovers from panics in
// functions itself; the recover here is for anything that escapes it, so that one bad record
// never takes the process down.
func (e *evaluator) run(p *vm.Program) (v any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("internal error: %v", r)
		}
	}()
	return e.vm.Run(p, env{Rec: &e.rec})
}

// cond runs a condition (see truth).
func (e *evaluator) cond(p *vm.Program) (bool, error) {
	v, err := e.run(p)
	if err != nil {
		return false, err
	}
	return truth(v)
}

// Apply maps one record, given as the bytes of one JSON object (the caller has checked the
// payload is valid JSON), in five steps; the first step that fails makes the record invalid
// and ends it:
//
//  1. required: every Required path, and the `type:` path if there is one, is present and not
//     null;
//  2. schema: the record conforms to the mapping's JSON Schema, if it declares one (each
//     violation is reported as "schema: <JSON pointer>: <rule>", sorted by pointer);
//  3. validate: every rule holds (all rules are evaluated, each failure is reported);
//  4. routes: the first route whose `when` holds is taken, or in routes_mode all every such
//     route ("no route matches this record" when none does; in routes_mode all, two matching
//     routes to one sink are an error);
//  5. fields: every field of those routes evaluates (all are evaluated, each error is
//     reported; in routes_mode all, prefixed with "route NAME: ").
//
// Apply never panics and is safe for concurrent use.
func (m *Mapping) Apply(rec []byte) Outcome {
	var out Outcome
	if !isObject(rec) {
		out.Errors = []string{"record is not a JSON object"}
		return out
	}
	// One copy per record: gjson reads a string, and values read from it (which alias it)
	// end up in the Outcome, so it must not alias the caller's buffer.
	src := string(rec)
	for _, p := range m.Required {
		switch r := gjson.Get(src, p); {
		case !r.Exists():
			out.Errors = append(out.Errors, fmt.Sprintf("required field %s is missing", p))
		case r.Type == gjson.Null:
			out.Errors = append(out.Errors, fmt.Sprintf("required field %s is null", p))
		}
	}
	if m.typePath != "" {
		if r := gjson.Get(src, m.typePath); r.Type == gjson.Null {
			out.Errors = append(out.Errors, fmt.Sprintf("type field %s is missing (for one type on every record, write type: {const: NAME})", m.typePath))
		}
	}
	if len(out.Errors) > 0 {
		return out
	}
	if m.schema != nil {
		if out.Errors = m.schema.check(src); len(out.Errors) > 0 {
			return out
		}
	}

	ev := evaluators.Get().(*evaluator)
	ev.rec.json = src
	defer func() {
		ev.rec.json = "" // do not keep the record alive in the pool
		evaluators.Put(ev)
	}()

	for _, r := range m.rules {
		ok, err := ev.cond(r.prog)
		switch {
		case err != nil:
			out.Errors = append(out.Errors, fmt.Sprintf("rule %q: %s", r.src, runError(err)))
		case !ok:
			out.Errors = append(out.Errors, r.message)
		}
	}
	if len(out.Errors) > 0 {
		return out
	}

	var buf [4]*route // routes taken; a record seldom has more than a few
	taken := buf[:0]
	for i := range m.routes {
		r := &m.routes[i]
		ok := true
		if r.when != nil {
			var err error
			if ok, err = ev.cond(r.when); err != nil {
				out.Errors = append(out.Errors, fmt.Sprintf("route %s: when: %s", r.name, runError(err)))
				if !m.routesAll {
					return out
				}
				continue
			}
		}
		if !ok {
			continue
		}
		if i := slices.IndexFunc(taken, func(t *route) bool { return t.sink == r.sink }); i >= 0 {
			out.Errors = append(out.Errors, fmt.Sprintf("routes %s and %s both take this record to sink %s; a record goes to a sink once", taken[i].name, r.name, r.sink))
			continue
		}
		taken = append(taken, r)
		if !m.routesAll {
			break
		}
	}
	if len(out.Errors) > 0 {
		return out
	}
	if len(taken) == 0 {
		out.Errors = []string{"no route matches this record"}
		return out
	}

	routes := make([]RouteOutput, len(taken))
	for i, rt := range taken {
		prefix := ""
		if m.routesAll {
			prefix = "route " + rt.name + ": "
		}
		fields := make([]Field, 0, len(rt.fields))
		for _, f := range rt.fields {
			v, err := ev.run(f.prog)
			if err == nil {
				err = checkJSON(v)
			}
			if err != nil {
				out.Errors = append(out.Errors, fmt.Sprintf("%sfield %s: %s", prefix, f.name, runError(err)))
				continue
			}
			fields = append(fields, Field{Name: f.name, Value: v})
		}
		routes[i] = RouteOutput{Route: rt.name, Sink: rt.sink, Fields: fields}
	}
	if len(out.Errors) == 0 {
		out.Routes = routes
	}
	return out
}

// isObject reports whether rec starts, after white space, with '{'. Full validation is the
// caller's job: it is done once per payload, not once per record.
func isObject(rec []byte) bool {
	for _, c := range rec {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		case '{':
			return true
		default:
			return false
		}
	}
	return false
}

// checkJSON reports a value that encoding/json cannot write, so that Outcome.JSON never has
// to.
func checkJSON(v any) error {
	switch x := v.(type) {
	case nil, bool, string, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("%v is not a JSON number", x)
		}
		return nil
	case []any:
		for _, e := range x {
			if err := checkJSON(e); err != nil {
				return err
			}
		}
		return nil
	case map[string]any:
		for _, e := range x {
			if err := checkJSON(e); err != nil {
				return err
			}
		}
		return nil
	}
	if _, err := json.Marshal(v); err != nil {
		return fmt.Errorf("a value of type %T cannot be written as JSON", v)
	}
	return nil
}
