package mappings

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

// patchRecord is the record the patching tests read.
const patchRecord = `{
	"type": "call",
	"payment": {"status": "paid", "amount": 12.5, "tags": ["a", "b"]},
	"items": [{"name": "first", "price": 5}, {"name": "second", "price": 15}],
	"a": {"b.c": "dotted", "0": "zero key"},
	"first name": "Jane",
	"null": null,
	"x": 2,
	"y": 3,
	"i": 1
}`

// eval compiles src as a value expression and runs it against rec.
func eval(t *testing.T, src, rec string) (any, error) {
	t.Helper()
	prog, err := compileExpr(src, false, utcSettings)
	if err != nil {
		t.Fatalf("compile %q: %v", src, err)
	}
	ev := &evaluator{rec: record{json: rec}}
	return ev.run(prog)
}

func TestPatchedExpressions(t *testing.T) {
	tests := []struct {
		name    string
		src     string
		patched string // the expression after patching, as expr prints it
		want    any
	}{
		{"identifier", `type`, `__field(__rec, "type")`, "call"},
		{"identifier that is also a builtin name", `type == "call"`, `__field(__rec, "type") == "call"`, true},
		{"nested path", `payment.status`, `__field(__rec, "payment.status")`, "paid"},
		{"number", `payment.amount * 2`, `__field(__rec, "payment.amount") * 2`, 25.0},
		{"array index", `items[1].name`, `__field(__rec, "items.1.name")`, "second"},
		{"array in object", `payment.tags[0]`, `__field(__rec, "payment.tags.0")`, "a"},
		{"bracket key with a dot", `a["b.c"]`, `__field(__rec, "a.b\\.c")`, "dotted"},
		{"numeric key of an object", `a["0"]`, `__field(__rec, "a.0")`, "zero key"},
		{"optional chaining", `payment?.status`, `__field(__rec, "payment.status")`, "paid"},
		{"absent is nil", `missing.deeply.nested`, `__field(__rec, "missing.deeply.nested")`, nil},
		{"null is nil", `null == nil`, `__field(__rec, "null") == nil`, true},
		{"nil coalescing", `missing ?? "default"`, `__field(__rec, "missing") ?? "default"`, "default"},
		{"object value", `payment.tags`, `__field(__rec, "payment.tags")`, []any{"a", "b"}},
		{"negative index is left to expr", `items[-1].name`, `__field(__rec, "items")[-1].name`, "second"},
		{"dynamic index is left to expr", `items[i].name`, `__field(__rec, "items")[__field(__rec, "i")].name`, "second"},
		{"field() for keys that are not identifiers", `field("first name")`, `__field(__rec, "first name")`, "Jane"},
		{"field() is not extended", `field("payment").status`, `__field(__rec, "payment").status`, "paid"},
		{"field() with gjson syntax", `field("items.#.name")`, `__field(__rec, "items.#.name")`, []any{"first", "second"}},
		{"function callee untouched", `lower(type)`, `lower(__field(__rec, "type"))`, "call"},
		{"let variable untouched", `let t = type; t + "!"`, `let t = __field(__rec, "type"); t + "!"`, "call!"},
		{"let variable member untouched", `let p = payment; p.status`, `let p = __field(__rec, "payment"); p.status`, "paid"},
		{"let shadows a field only in its scope", `let x = x + 1; x * y`, `let x = __field(__rec, "x") + 1; x * __field(__rec, "y")`, 9.0},
		{"predicate pointer untouched", `filter(items, .price > 10)[0].name`, `filter(__field(__rec, "items"), .price > 10)[0].name`, "second"},
		{"# untouched", `map(items, #.name)`, `map(__field(__rec, "items"), .name)`, []any{"first", "second"}},
		{"record field inside a predicate", `filter(items, .price > x * 4) | map(.name)`, `map(filter(__field(__rec, "items"), .price > __field(__rec, "x") * 4), .name)`, []any{"second"}},
		{"$env untouched", `$env.__rec != nil`, `$env.__rec != nil`, true},
		{"map literal keys untouched", `{type: payment.status}`, `{type: __field(__rec, "payment.status")}`, map[string]any{"type": "paid"}},
		{"pipe into a function", `type | upper()`, `upper(__field(__rec, "type"))`, "CALL"},
		{"pipe into field", `"first name" | field()`, `__field(__rec, "first name")`, "Jane"},
		{"conditional", `type == "call" ? x : y`, `__field(__rec, "type") == "call" ? __field(__rec, "x") : __field(__rec, "y")`, 2.0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prog, err := compileExpr(tt.src, false, utcSettings)
			if err != nil {
				t.Fatalf("compile %q: %v", tt.src, err)
			}
			if got := prog.Node().String(); got != tt.patched {
				t.Errorf("patched %q\n got %s\nwant %s", tt.src, got, tt.patched)
			}
			ev := &evaluator{rec: record{json: patchRecord}}
			got, err := ev.run(prog)
			if err != nil {
				t.Fatalf("run %q: %v", tt.src, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("%q = %#v, want %#v", tt.src, got, tt.want)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		src       string
		asBool    bool
		line, col int
		msg       string
	}{
		{`type in ["call" "quote"]`, true, 1, 16, `unexpected token String("quote")`},
		{`utcc(timestamp)`, false, 1, 0, `unknown name utcc`},
		{`utc()`, false, 1, 0, `not enough arguments to call utc`},
		{`field("a", "b")`, false, 1, 0, `too many arguments to call field`},
		{`"call"`, true, 0, 0, `must be a condition: expected bool, but got string`},
		{`1 + 2`, true, 0, 0, `must be a condition: expected bool, but got int`},
	}
	for _, tt := range tests {
		_, err := compileExpr(tt.src, tt.asBool, utcSettings)
		ce, ok := err.(*compileError)
		if !ok {
			t.Errorf("compile %q: error %v (%T), want a *compileError", tt.src, err, err)
			continue
		}
		if ce.line != tt.line || ce.col != tt.col || ce.msg != tt.msg {
			t.Errorf("compile %q: got %d:%d %q, want %d:%d %q", tt.src, ce.line, ce.col, ce.msg, tt.line, tt.col, tt.msg)
		}
	}
}

func TestBoolResultOfUnknownTypeIsCheckedAtRunTime(t *testing.T) {
	prog, err := compileExpr(`type`, true, utcSettings)
	if err != nil {
		t.Fatal(err)
	}
	ev := &evaluator{rec: record{json: patchRecord}}
	if _, err := ev.cond(prog); err == nil || err.Error() != `expected a boolean, got "call"` {
		t.Errorf(`"type" as a condition on a string: error %v, want expected a boolean, got "call"`, err)
	}
	ev.rec.json = `{"type": true}`
	if ok, err := ev.cond(prog); err != nil || !ok {
		t.Errorf("on true: got %v, %v; want true", ok, err)
	}
	ev.rec.json = `{}`
	if ok, err := ev.cond(prog); err != nil || ok {
		t.Errorf("on absent: got %v, %v; want false", ok, err)
	}
}

// decodeCases are JSON values decodeJSON must read exactly as gjson's Result.Value does.
var decodeCases = []string{
	`{}`, `[]`, `[[]]`, `{"a":{}}`,
	`{"s":"plain","n":-12.5e3,"i":42,"t":true,"f":false,"z":null}`,
	` [ 1 , "two" , [ 3 , { "four" : 4 } ] , null ] `,
	"{\n\t\"pretty\": [\n\t\t1,\n\t\t2\n\t]\n}",
	`{"esc":"a\"b\\c\/d\n\u00e9\ud83d\ude00","key \"quoted\"":1,"back\\":"slash\\"}`,
	`{"dup":1,"dup":2}`,
	`{"big":1e400,"tiny":-1e-400,"exp":1E+2}`,
	`{"nested":{"deeper":{"deepest":[{"x":[[[["y"]]]]}]}}}`,
	`["", "ünïcødé", "\u0000"]`,
}

func TestDecodeJSONMatchesGJSON(t *testing.T) {
	for _, raw := range decodeCases {
		if !gjson.Valid(raw) {
			t.Fatalf("test case %s is not valid JSON", raw)
		}
		want := gjson.Parse(raw).Value()
		if got := decodeJSON(raw); !reflect.DeepEqual(got, want) {
			t.Errorf("decodeJSON(%s) =\n  %#v\nwant (gjson)\n  %#v", raw, got, want)
		}
	}
}

func TestDecodeJSONMalformedIsNil(t *testing.T) {
	for _, raw := range []string{``, `{`, `[1,`, `{"a"`, `{"a":"unterminated`, `}`, `{1:2}`, `@`, `["\`, `[[[[`} {
		if got := decodeJSON(raw); got != nil {
			t.Errorf("decodeJSON(%q) = %#v, want nil", raw, got)
		}
	}
}

// nested returns a record whose field "v" holds depth arrays nested in each other, around "x".
func nested(depth int) string {
	return `{"v":` + strings.Repeat("[", depth) + `"x"` + strings.Repeat("]", depth) + `}`
}

// TestFieldReadsDeepNesting reads a field nested 150,000 levels deep (as in the attack)
// through an expression: it must neither blow the stack nor lose a level.
func TestFieldReadsDeepNesting(t *testing.T) {
	const depth = 150_000
	prog, err := compileExpr(`v`, false, utcSettings)
	if err != nil {
		t.Fatal(err)
	}
	ev := &evaluator{rec: record{json: nested(depth)}}
	got, err := ev.run(prog)
	if err != nil {
		t.Fatal(err)
	}
	levels := 0
	for {
		a, ok := got.([]any)
		if !ok {
			break
		}
		if len(a) != 1 {
			t.Fatalf("level %d holds %d values, want 1", levels, len(a))
		}
		levels, got = levels+1, a[0]
	}
	if levels != depth || got != "x" {
		t.Errorf("read %d levels around %#v, want %d around \"x\"", levels, got, depth)
	}
}

// FuzzDecodeJSON: on any valid JSON container decodeJSON agrees with gjson; on anything else
// it returns without panicking.
func FuzzDecodeJSON(f *testing.F) {
	for _, c := range decodeCases {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got := decodeJSON(raw)
		res := gjson.Parse(raw)
		if !gjson.Valid(raw) || res.Type != gjson.JSON || strings.Count(raw, "[")+strings.Count(raw, "{") > 500 {
			return // gjson's Value is quadratic in depth: keep the reference cheap
		}
		if want := res.Value(); !reflect.DeepEqual(got, want) {
			t.Errorf("decodeJSON(%q) = %#v, gjson gives %#v", raw, got, want)
		}
	})
}

// BenchmarkFieldNesting reads a field nested depth levels deep; allocs/op grow in step with
// depth and ns/byte stays within a small factor (cache misses on a larger heap) as depth grows
// a hundredfold. gjson's Result.Value, used before, grew tenfold in ns/byte per tenfold depth
// (quadratic time). Measured on the 2-core machine, ns/byte at depth 1k / 10k / 100k:
// decodeJSON 72 / 122 / 193; Result.Value 640 / 5,875 / (not run: extrapolated, about 10 s per read).
//
//	go test ./mappings -run '^$' -bench FieldNesting
func BenchmarkFieldNesting(b *testing.B) {
	prog, err := compileExpr(`v`, false, utcSettings)
	if err != nil {
		b.Fatal(err)
	}
	for _, depth := range []int{1_000, 10_000, 100_000} {
		rec := nested(depth)
		b.Run(fmt.Sprintf("depth=%d", depth), func(b *testing.B) {
			ev := &evaluator{rec: record{json: rec}}
			b.SetBytes(int64(len(rec)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ev.run(prog); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(rec)), "ns/byte")
		})
	}
}
