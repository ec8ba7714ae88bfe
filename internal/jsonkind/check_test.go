package jsonkind

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

func TestCheck(t *testing.T) {
	cases := []struct {
		name, json string
		depth      int
		err        string // "" for valid
	}{
		{"object", `{"a": [1, -2.5e+3, "x\"\u00e9", true, false, null, {}], "b": {"c": []}}`, 64, ""},
		{"scalar", ` 7 `, 64, ""},
		{"zero", `0`, 64, ""},
		{"empty", ``, 64, "unexpected end of input; a value was expected at byte 0"},
		{"white space only", "  \n", 64, "unexpected end of input"},
		{"two values", `{}{}`, 64, `unexpected "{" after the end of the value at byte 2`},
		{"trailing comma in array", `[1,]`, 64, `unexpected "]"; a value was expected at byte 3`},
		{"trailing comma in object", `{"a":1,}`, 64, `unexpected "}"; a member name in double quotes was expected at byte 7`},
		{"missing colon", `{"a" 1}`, 64, `unexpected "1"; : was expected at byte 5`},
		{"unquoted key", `{a:1}`, 64, "a member name in double quotes was expected"},
		{"leading zero", `01`, 64, `unexpected "1" after the end of the value`},
		{"bare minus", `-`, 64, "unexpected end of input in a number"},
		{"dot without digits", `1.`, 64, "a digit was expected"},
		{"exponent without digits", `1e+`, 64, "a digit was expected"},
		{"bad escape", `"\x"`, 64, `invalid escape \"x" in a string`},
		{"short unicode escape", `"\u12"`, 64, `invalid \u escape`},
		{"control character", "\"a\tb\"", 64, "control character byte 0x09 in a string"},
		{"unterminated string", `"abc`, 64, "unexpected end of input in a string"},
		{"bad literal", `tru`, 64, `unexpected "t"`},
		{"unclosed array", `[1`, 64, "unexpected end of input; , or ] was expected"},
		{"wrong closer", `[1}`, 64, `unexpected "}"; , or ] was expected`},
		{"at the depth limit", `[[[]]]`, 3, ""},
		{"over the depth limit", `[[[[]]]]`, 3, "JSON nested deeper than the limit of 3 levels at [0][0][0] (byte 3)"},
		{"depth path names keys and indexes", `{"payload":[{},{"a":{"b":[{}]}}]}`, 4, "at payload[1].a.b (byte 25)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Check([]byte(c.json), c.depth)
			if c.err == "" {
				if err != nil {
					t.Fatalf("Check(%s) = %v, want nil", c.json, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("Check(%s) = %v, want an error containing %q", c.json, err, c.err)
			}
		})
	}
}

func TestCheckDepthErrorPath(t *testing.T) {
	err := Check([]byte(`{"payload":[{},{},{"x":[[1]]}]}`), 4)
	var de *DepthError
	if !errors.As(err, &de) {
		t.Fatalf("err = %v, want a DepthError", err)
	}
	want := []Step{{Key: "payload"}, {Index: 2, InArray: true}, {Key: "x"}, {Index: 0, InArray: true}}
	if len(de.Path) != len(want) {
		t.Fatalf("path = %+v, want %+v", de.Path, want)
	}
	for i := range want {
		if de.Path[i] != want[i] {
			t.Fatalf("path = %+v, want %+v", de.Path, want)
		}
	}
}

// TestCheckHostileNesting: five million brackets cost no stack and next to no heap, whatever
// the limit. gjson.ValidBytes, which recurses, grew the goroutine stack by hundreds of MB on the
// same input.
func TestCheckHostileNesting(t *testing.T) {
	const n = 5_000_000
	body := []byte(strings.Repeat("[", n) + strings.Repeat("]", n))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for _, limit := range []int{64, 10000} {
		var de *DepthError
		if err := Check(body, limit); !errors.As(err, &de) || de.Offset != limit || len(de.Path) != limit {
			t.Fatalf("limit %d: err = %v", limit, err)
		}
	}
	runtime.ReadMemStats(&after)
	// What is allocated: the stack of open containers (10,000 frames) and the error's path.
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 4<<20 {
		t.Errorf("Check allocated %d bytes", grew)
	}
	if after.StackInuse > before.StackInuse+1<<20 {
		t.Errorf("goroutine stacks grew from %d to %d bytes", before.StackInuse, after.StackInuse)
	}
}

// FuzzCheck compares Check with encoding/json.Valid (an independent implementation) and with
// gjson.ValidBytes, and checks that a depth error is only ever reported for deep input.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{
		`{}`, `[]`, `{"a":[1,2,{"b":null}]}`, `"\u00e9\n"`, `-0.5e-7`, `[1,]`, `{"a" 1}`, `01`, `"\x"`,
		`[[[[[[[[]]]]]]]]`, "\"\xff\"", ` {"format":"f","payload":[{"id":"1"}]} `, `tru`, `[1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		err := Check(data, 4)
		var de *DepthError
		var se *SyntaxError
		switch {
		case err == nil:
			if !json.Valid(data) || !gjson.ValidBytes(data) {
				t.Fatalf("Check accepted %q, which is not JSON", data)
			}
			if d := nesting(data); d > 4 {
				t.Fatalf("Check accepted %q nested %d deep with limit 4", data, d)
			}
		case errors.As(err, &de):
			if de.Limit != 4 || len(de.Path) != 4 || de.Offset >= len(data) || (data[de.Offset] != '[' && data[de.Offset] != '{') {
				t.Fatalf("bad depth error %+v for %q", de, data)
			}
			if Check(data, 1_000_000) == nil && nesting(data) <= 4 {
				t.Fatalf("depth error for %q, which nests %d deep", data, nesting(data))
			}
		case errors.As(err, &se):
			if se.Reason == "" || se.Offset < 0 || se.Offset > len(data) {
				t.Fatalf("bad syntax error %+v for %q", se, data)
			}
			if json.Valid(data) {
				t.Fatalf("Check refused valid JSON %q: %v", data, err)
			}
		default:
			t.Fatalf("unexpected error type %T: %v", err, err)
		}
	})
}

// nesting counts the deepest bracket nesting outside strings of valid JSON.
func nesting(data []byte) int {
	depth, deepest := 0, 0
	inString, escaped := false, false
	for _, c := range data {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			depth++
			deepest = max(deepest, depth)
		case c == ']' || c == '}':
			depth--
		}
	}
	return deepest
}

func BenchmarkCheck(b *testing.B) {
	rec := `{"id":"02784e36-e70f4c86595b","type":"call","timestamp":"2020-05-18T21:15:00-5:00","duration":"PT25M30S","user_email":"jonny.test@mivation.com","contact":"+18774289403","direction":"outbound","n":[1.5,2,{"x":null}]}`
	body := []byte(`{"format":"activity","payload":[` + strings.Repeat(rec+",", 40000) + rec + `]}`)
	b.Run("Check", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if err := Check(body, 64); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("gjson.ValidBytes", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if !gjson.ValidBytes(body) {
				b.Fatal("invalid")
			}
		}
	})
}

// TestWalk: Walk hands over every value one or two levels deep, where it ends, with decoded
// member names; deeper values only as part of theirs.
func TestWalk(t *testing.T) {
	data := []byte(` {"a\u0062":[1, {"x":[true]}, []], "c":{"d\"":null}, "e":"s"} `)
	var got []string
	err := Walk(data, 10, func(v Value) {
		got = append(got, fmt.Sprintf("%d %s %s %s", v.Depth, FormatPath([]Step{v.Outer}, 1), FormatPath([]Step{v.Inner}, 1), data[v.Start:v.End]))
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`2 ab [0] 1`,
		`2 ab [1] {"x":[true]}`,
		`2 ab [2] []`,
		`1 ab  [1, {"x":[true]}, []]`,
		`2 c d" null`,
		`1 c  {"d\"":null}`,
		`1 e  "s"`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Walk visited\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if err := Walk([]byte(`[1,[2,[3]]`), 10, func(Value) {}); err == nil {
		t.Error("Walk accepted an unclosed array")
	}
}
