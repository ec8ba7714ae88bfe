package jsonkind

import (
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

func TestKinds(t *testing.T) {
	cases := []struct{ json, of, describe string }{
		{`{}`, "an object", "an object"},
		{`[1]`, "an array", "an array"},
		{`"abc"`, "a string", `the string "abc"`},
		{`"` + strings.Repeat("x", 50) + `"`, "a string", `the string "` + strings.Repeat("x", 40) + `…"`},
		{`7.5`, "a number", "the number 7.5"},
		{`false`, "a boolean", "the boolean false"},
		{`null`, "null", "null"},
	}
	for _, c := range cases {
		v := gjson.Parse(c.json)
		if got := Of(v); got != c.of {
			t.Errorf("Of(%s) = %q, want %q", c.json, got, c.of)
		}
		if got := Describe(v); got != c.describe {
			t.Errorf("Describe(%s) = %q, want %q", c.json, got, c.describe)
		}
	}
}
