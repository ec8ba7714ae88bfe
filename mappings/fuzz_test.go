package mappings

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

// FuzzLoad loads arbitrary bytes as a mapping file. Whatever the bytes, loading must not
// panic or hang; it either returns a usable mapping (whose test cases then run) or Problems,
// each naming the file, with a message, and at a line unless it is about the whole file.
// The seeds are every mapping file of testdata and examples, good and bad.
func FuzzLoad(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.yaml")
	bad, _ := filepath.Glob("testdata/bad/*.yaml")
	examples, _ := filepath.Glob("../examples/mappings/*.yaml")
	for _, file := range append(append(seeds, bad...), examples...) {
		src, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src)
	}
	f.Add([]byte(""))
	f.Add([]byte("format: x\nroutes: [{sink: s, fields: {a: 'utc(t, \"dd/MM/yyyy\")'}}]\n"))
	path := filepath.Join(f.TempDir(), "m.yaml") // one per fuzzing process, rewritten each time
	f.Fuzz(func(t *testing.T, src []byte) {
		if err := os.WriteFile(path, src, 0o644); err != nil {
			t.Fatal(err)
		}
		m, err := LoadFile(path, []string{"s", "t", "activities", "quotes", "payments", "claims", "claims_api"})
		if err == nil {
			if m.Format == "" || len(m.routes) == 0 {
				t.Fatalf("loaded a mapping without format or routes: %+v", m)
			}
			m.RunTests() // must not panic
			return
		}
		var ps Problems
		if !errors.As(err, &ps) || len(ps) == 0 {
			t.Fatalf("error %v (%T) is not Problems", err, err)
		}
		for _, p := range ps {
			if p.File != path || p.Message == "" {
				t.Fatalf("problem without file or message: %+v", p)
			}
			whole := p.Message == "the file is empty" || strings.HasPrefix(p.Message, "invalid YAML: ")
			if p.Line <= 0 && !whole {
				t.Fatalf("problem without a line: %+v", p)
			}
		}
	})
}

// fuzzMapping exercises every step and most functions of Apply: required, the type field, a
// schema, rules, routes_mode all with a catch-all, and fields that use layouts, the timezone,
// decimal marks, predicates and expr built-ins.
const fuzzMapping = `format: fuzz
id: id
type: kind
timezone: Europe/Copenhagen
required: [id]
schema:
  properties:
    amount: {type: [string, number, "null"]}
validate:
  - rule: present(id)
    message: id must not be blank
  - rule: filed == nil or is_date(filed, "dd/MM/yyyy HH:mm")
    message: filed must be dd/MM/yyyy HH:mm
routes_mode: all
routes:
  - name: all
    sink: s
    fields:
      id: id
      filed: 'filed == nil ? nil : utc(filed, "dd/MM/yyyy HH:mm")'
      at: 'at == nil ? nil : utc(at)'
      amount: 'amount == nil ? nil : number(amount, ",")'
      total: sum(map(items ?? [], number(#.price ?? 0, ",")))
      flag: boolean(flag ?? "N")
      email: is_email(email)
      n: len(tags ?? [])
  - name: urgent
    when: boolean(urgent ?? "N")
    sink: t
    fields:
      id: id
      kind: upper(kind)
`

// fuzzErrorPrefixes are the beginnings an Apply error may have: each names the step, rule,
// route or field concerned.
var fuzzErrorPrefixes = []string{
	"record is not a JSON object", "required field ", "type field ", "schema: ", "rule ",
	"id must not be blank", "filed must be dd/MM/yyyy HH:mm", "route ", "routes ",
	"no route matches this record",
}

// FuzzApply applies a mapping to arbitrary record bytes, as the pipeline and the dry runs do
// (only JSON the intake would accept is applied). Apply must not panic; a valid outcome has
// routes to distinct sinks whose fields encode as JSON objects; an invalid one has none and
// errors that each name their place; the dry run of the record encodes as JSON.
func FuzzApply(f *testing.F) {
	m := mustLoadFile(f, writeMapping(f, "fuzz.yaml", fuzzMapping))
	for _, rec := range []string{
		`{"id": "c1", "kind": "claim", "filed": "18/05/2020 21:15", "amount": "1.299,50", "urgent": "Y",
		  "items": [{"price": "1,5"}, {"price": 2}], "flag": "yes", "email": "a@b.dk", "tags": ["x"]}`,
		`{"id": "c2", "kind": "claim", "at": "2020-05-18 21:15:00", "amount": 12}`,
		`{"id": "", "kind": "claim"}`,
		`{"id": "c3"}`,
		`{"id": "c4", "kind": "claim", "filed": "05/18/2020", "amount": "1,299.50", "urgent": "maybe"}`,
		`{"id": "c5", "kind": 7, "items": [{"price": "x"}], "flag": 2}`,
		`{"id": "c6", "kind": "claim", "amount": true}`,
		`[1, 2]`,
		`"x"`,
		`{}`,
	} {
		f.Add([]byte(rec))
	}
	f.Fuzz(func(t *testing.T, rec []byte) {
		if !gjson.ValidBytes(rec) {
			return
		}
		out := m.Apply(rec)
		if out.Valid() {
			if len(out.Routes) == 0 {
				t.Fatalf("a valid outcome without routes: %+v", out)
			}
			sinks := map[string]bool{}
			for _, r := range out.Routes {
				if sinks[r.Sink] {
					t.Fatalf("two routes to sink %s: %+v", r.Sink, out)
				}
				sinks[r.Sink] = true
				var fields map[string]any
				if err := json.Unmarshal(r.JSON(), &fields); err != nil {
					t.Fatalf("route %s: fields are not a JSON object: %v\n%s", r.Route, err, r.JSON())
				}
			}
		} else {
			if out.Routes != nil {
				t.Fatalf("an invalid outcome with routes: %+v", out)
			}
			for _, e := range out.Errors {
				ok := false
				for _, p := range fuzzErrorPrefixes {
					ok = ok || strings.HasPrefix(e, p)
				}
				if !ok {
					t.Fatalf("error %q does not name its place", e)
				}
			}
		}
		if _, err := json.Marshal(m.DryRun([][]byte{rec})); err != nil {
			t.Fatalf("dry run does not encode: %v", err)
		}
	})
}
