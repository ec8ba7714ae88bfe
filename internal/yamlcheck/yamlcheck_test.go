package yamlcheck

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func parse(t *testing.T, src string) *yaml.Node {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Content[0]
}

func messages(ps []Problem) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = fmt.Sprintf("%d:%d: %s", p.Line, p.Col, p.Message)
	}
	return out
}

func TestKeys(t *testing.T) {
	n := parse(t, "name: a\nfeilds: x\nsink: s\nsink: t\n[1]: 2\nzzzzzz: 1\n")
	vals, ps, ok := Keys(n, "routes[0]", []string{"name", "sink", "fields"})
	if !ok {
		t.Fatal("not ok on a mapping")
	}
	want := []string{
		`2:1: routes[0]: unknown key "feilds" (did you mean "fields"?)`,
		`4:1: routes[0]: key "sink" appears twice`,
		`5:1: routes[0]: a key must be a scalar, got a list`,
		`6:1: routes[0]: unknown key "zzzzzz" (allowed: name, sink, fields)`,
	}
	if got := messages(ps); !reflect.DeepEqual(got, want) {
		t.Errorf("problems\n got %q\nwant %q", got, want)
	}
	if vals["sink"].Value != "s" || vals["name"].Value != "a" || len(vals) != 2 {
		t.Errorf("values: %v", vals)
	}
	_, ps, ok = Keys(parse(t, "[1, 2]"), "", nil)
	if ok || len(ps) != 1 || ps[0].Message != "expected a mapping, got a list" {
		t.Errorf("a list: ok=%v %q", ok, messages(ps))
	}
}

func TestClosest(t *testing.T) {
	for _, tt := range []struct{ s, want string }{
		{"feilds", "fields"}, // a swap of neighbours is one edit
		{"rout", "routes"},
		{"sinks", "sink"},
		{"xyz", ""},
	} {
		if got := closest(tt.s, []string{"fields", "routes", "sink"}); got != tt.want {
			t.Errorf("closest(%q) = %q, want %q", tt.s, got, tt.want)
		}
	}
}

type inner struct {
	URL     string        `yaml:"url"`
	Timeout time.Duration `yaml:"timeout"`
}

type outer struct {
	Name  string           `yaml:"name"`
	Sinks map[string]inner `yaml:"sinks"`
	List  []inner          `yaml:"list"`
	Skip  string           `yaml:"-"`
}

func TestStruct(t *testing.T) {
	n := parse(t, `name: x
nmae: y
sinks:
  a: {url: u, timeout: 1s, tmeout: 2s}
  a: {url: v}
list:
  - url: w
    Skip: 1
`)
	want := []string{
		`2:1: unknown key "nmae" (did you mean "name"?)`,
		`4:28: sinks.a: unknown key "tmeout" (did you mean "timeout"?)`,
		`5:3: sinks: key "a" appears twice`,
		`8:5: list[0]: unknown key "Skip" (allowed: timeout, url)`,
	}
	if got := messages(Struct(n, &outer{})); !reflect.DeepEqual(got, want) {
		t.Errorf("problems\n got %q\nwant %q", got, want)
	}
}

func TestFromError(t *testing.T) {
	var v struct {
		N int `yaml:"n"`
	}
	err := yaml.Unmarshal([]byte("a: 1\nn: many\n"), &v)
	if got := messages(FromError(err)); !reflect.DeepEqual(got, []string{"2:0: cannot unmarshal !!str `many` into int"}) {
		t.Errorf("type error: %q", got)
	}
	var doc yaml.Node
	err = yaml.Unmarshal([]byte("a: 1\nb: [x\n"), &doc)
	ps := FromError(err)
	if len(ps) != 1 || ps[0].Line == 0 || ps[0].Message[:13] != "invalid YAML:" {
		t.Errorf("syntax error %v: %q", err, messages(ps))
	}
}

func TestFind(t *testing.T) {
	n := parse(t, "sinks:\n  hook:\n    type: http\n    url: x\n")
	if k, ok := Find(n, "sinks", "hook", "url"); !ok || k.Line != 4 || k.Value != "url" {
		t.Errorf("url: %v %+v", ok, k)
	}
	if k, ok := Find(n, "sinks", "hook", "headers"); ok || k.Line != 2 || k.Value != "hook" {
		t.Errorf("missing key: %v %+v", ok, k)
	}
	if k, ok := Find(n, "nothing"); ok || k != n {
		t.Errorf("missing top key: %v %+v", ok, k)
	}
}

type nest []nest

// TestStructAliasBomb: nested aliases that would expand to 9^9 nodes are walked once each.
func TestStructAliasBomb(t *testing.T) {
	src := "list:\n  - &a {url: x, bad: 1}\n"
	prev := "a"
	for _, name := range []string{"b", "c", "d", "e", "f", "g", "h", "i"} {
		src += "  - &" + name + " [" + strings.Repeat("*"+prev+", ", 8) + "*" + prev + "]\n"
		prev = name
	}
	// Walked as lists of lists of lists..., every alias would be followed again and again.
	type bomb struct {
		List nest `yaml:"list"`
	}
	type typed struct {
		List []inner `yaml:"list"`
	}
	if got := messages(Struct(parse(t, src), &bomb{})); len(got) != 0 {
		t.Errorf("problems in nested lists: %q", got)
	}
	got := messages(Struct(parse(t, src), &typed{}))
	if want := []string{`2:17: list[0]: unknown key "bad" (allowed: timeout, url)`}; !reflect.DeepEqual(got, want) {
		t.Errorf("problems\n got %q\nwant %q", got, want)
	}
}
