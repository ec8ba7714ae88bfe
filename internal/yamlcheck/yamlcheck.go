// Package yamlcheck checks YAML files read as yaml.v3 node trees and reports every problem at
// its line and column: unknown keys (with "did you mean"), keys given twice, values of the
// wrong kind, YAML syntax and type errors. The mapping loader and the gateway.yaml loader both
// use it, so a user sees the same kind of message, at the real place, from either file.
//
// Checkers collect problems instead of stopping at the first one, so that a file can be fixed
// in one pass.
package yamlcheck

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Problem is one thing wrong at a place in a YAML file.
type Problem struct {
	Line    int // 1-based; 0 when unknown
	Col     int // 1-based; 0 when unknown
	Message string
}

// at returns a problem at a node's place.
func at(n *yaml.Node, format string, args ...any) Problem {
	return Problem{Line: n.Line, Col: n.Column, Message: fmt.Sprintf(format, args...)}
}

// Resolve follows an alias to the node it names.
func Resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// KindName describes a node for a message: "a mapping", "a list", "a scalar" or "nothing".
func KindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.ShortTag() == "!!null" || strings.TrimSpace(n.Value) == "" {
			return "nothing"
		}
		return "a scalar"
	}
	return "nothing"
}

// prefix returns "what: ", or "" at the top of a file (what == "").
func prefix(what string) string {
	if what == "" {
		return ""
	}
	return what + ": "
}

// Join returns the name of key inside what: "routes[0].sink", or "sink" at the top.
func Join(what, key string) string {
	if what == "" {
		return key
	}
	return what + "." + key
}

// Keys checks that n is a mapping whose keys are scalars among allowed, each given once, and
// returns the value nodes by key (aliases resolved). what names n in messages ("" at the top
// of a file): `routes[0]: unknown key "feilds" (did you mean "fields"?)`,
// `key "sink" appears twice`. When n is not a mapping, ok is false and the one problem says so.
func Keys(n *yaml.Node, what string, allowed []string) (vals map[string]*yaml.Node, problems []Problem, ok bool) {
	if n.Kind != yaml.MappingNode {
		return nil, []Problem{at(n, "%sexpected a mapping, got %s", prefix(what), KindName(n))}, false
	}
	vals = map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := Resolve(n.Content[i]), Resolve(n.Content[i+1])
		switch {
		case k.Kind != yaml.ScalarNode:
			problems = append(problems, at(k, "%sa key must be a scalar, got %s", prefix(what), KindName(k)))
		case !slices.Contains(allowed, k.Value):
			problems = append(problems, at(k, "%s%s", prefix(what), unknownKey(k.Value, allowed)))
		case vals[k.Value] != nil:
			problems = append(problems, at(k, "%skey %q appears twice", prefix(what), k.Value))
		default:
			vals[k.Value] = v
		}
	}
	return vals, problems, true
}

// unknownKey is the message for a key that is not among allowed: with the closest allowed
// key when one is within two edits, else with the list of allowed keys.
func unknownKey(key string, allowed []string) string {
	if near := closest(key, allowed); near != "" {
		return fmt.Sprintf("unknown key %q (did you mean %q?)", key, near)
	}
	return fmt.Sprintf("unknown key %q (allowed: %s)", key, strings.Join(allowed, ", "))
}

// closest returns the candidate within two edits of s, for "did you mean"; "" if none. Of
// candidates equally close, the first wins.
func closest(s string, candidates []string) string {
	best, bestDist := "", 3
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the Damerau-Levenshtein (optimal string alignment) distance of two short
// strings: insertions, deletions, substitutions and swaps of neighbours count one each.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}

// Struct walks node alongside the Go type of target (a pointer to a struct whose fields carry
// `yaml:"name"` tags) and reports, at every level, keys that no field accepts and keys given
// twice, in mappings that become structs and in those that become Go maps. Values whose kind
// does not fit are left to yaml.v3's decoder, whose errors FromError places. A node that
// aliases make appear in several places is checked once per Go type, so that nested aliases
// cannot make the walk exponential.
func Struct(node *yaml.Node, target any) []Problem {
	w := &walker{seen: map[walked]bool{}}
	w.walk(node, reflect.TypeOf(target), "")
	return w.out
}

// walker is the state of one Struct walk.
type walker struct {
	out  []Problem
	seen map[walked]bool
}

type walked struct {
	node *yaml.Node
	t    reflect.Type
}

var durationType = reflect.TypeOf(time.Duration(0))

func (w *walker) walk(node *yaml.Node, t reflect.Type, what string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	node = Resolve(node)
	if node == nil || w.seen[walked{node, t}] {
		return
	}
	w.seen[walked{node, t}] = true
	out := &w.out
	switch {
	case t.Kind() == reflect.Struct && t != durationType && node.Kind == yaml.MappingNode:
		fields := map[string]reflect.Type{}
		var allowed []string
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			fields[name] = f.Type
			allowed = append(allowed, name)
		}
		sort.Strings(allowed)
		vals, problems, _ := Keys(node, what, allowed)
		*out = append(*out, problems...)
		for i := 0; i+1 < len(node.Content); i += 2 {
			k := Resolve(node.Content[i])
			if v, ok := vals[k.Value]; ok && Resolve(node.Content[i+1]) == v {
				w.walk(v, fields[k.Value], Join(what, k.Value))
			}
		}
	case t.Kind() == reflect.Map && node.Kind == yaml.MappingNode:
		seen := map[string]bool{}
		for i := 0; i+1 < len(node.Content); i += 2 {
			k := Resolve(node.Content[i])
			if k.Kind == yaml.ScalarNode && seen[k.Value] {
				*out = append(*out, at(k, "%skey %q appears twice", prefix(what), k.Value))
				continue
			}
			seen[k.Value] = true
			w.walk(node.Content[i+1], t.Elem(), Join(what, k.Value))
		}
	case t.Kind() == reflect.Slice && node.Kind == yaml.SequenceNode:
		for i, item := range node.Content {
			w.walk(item, t.Elem(), fmt.Sprintf("%s[%d]", what, i))
		}
	}
}

var (
	syntaxLine = regexp.MustCompile(`^yaml: line (\d+): `)
	typeLine   = regexp.MustCompile(`^line (\d+): `)
)

// FromError turns an error of yaml.v3 into problems on their lines: a syntax error
// ("yaml: line 3: did not find expected key") becomes one problem "invalid YAML: ...", a
// decoding error (*yaml.TypeError, "line 9: cannot unmarshal !!str `abc` into int") one
// problem per value that did not fit.
func FromError(err error) []Problem {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		out := make([]Problem, 0, len(te.Errors))
		for _, msg := range te.Errors {
			line := 0
			if m := typeLine.FindStringSubmatch(msg); m != nil {
				line, _ = strconv.Atoi(m[1])
				msg = msg[len(m[0]):]
			}
			out = append(out, Problem{Line: line, Message: msg})
		}
		return out
	}
	msg := err.Error()
	line := 0
	if m := syntaxLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	}
	return []Problem{{Line: line, Message: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}}
}

// Find returns the node of the key at the end of path, walking mappings from n (aliases
// resolved), and whether the whole path was found. When it was not, the node returned is the
// key of the deepest step that was, or n itself, so that a problem about a missing or invalid
// value can still be reported near it.
func Find(n *yaml.Node, path ...string) (*yaml.Node, bool) {
	at := n
	for _, step := range path {
		n = Resolve(n)
		if n == nil || n.Kind != yaml.MappingNode {
			return at, false
		}
		found := false
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k := Resolve(n.Content[i]); k.Value == step {
				at, n, found = k, n.Content[i+1], true
				break
			}
		}
		if !found {
			return at, false
		}
	}
	return at, true
}
