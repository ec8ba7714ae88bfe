package mappings

import (
	"reflect"
	"testing"
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
