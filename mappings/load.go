package mappings

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/expr-lang/expr/vm"
	"gopkg.in/yaml.v3"

	"github.com/opengw/gateway/internal/yamlcheck"
)

// Set is the mappings of a directory, one per format. It does not change after loading and
// is safe for concurrent use.
type Set struct {
	byFormat map[string]*Mapping
	formats  []string
}

// Get returns the mapping of a format.
func (s *Set) Get(format string) (*Mapping, bool) {
	m, ok := s.byFormat[format]
	return m, ok
}

// Formats returns the formats of the set, sorted.
func (s *Set) Formats() []string { return slices.Clone(s.formats) }

// Load loads every *.yaml and *.yml file of dir (not of its subdirectories) as a mapping.
// sinks lists the sink names that routes may use; nil means any name is accepted.
//
// The error, if any, is Problems holding every problem of every file: YAML errors, unknown
// keys, expressions that do not compile, unknown sinks, a format defined by two files, a
// directory without mapping files. A Set is returned only when there is no problem.
func Load(dir string, sinks []string) (*Set, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, Problems{{File: dir, Message: fmt.Sprintf("read mapping directory: %v", err)}}
	}
	set := &Set{byFormat: map[string]*Mapping{}}
	var problems Problems
	defined := map[string]string{} // format -> "file:line:col" of its first definition
	files := 0
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if e.IsDir() || (ext != ".yaml" && ext != ".yml") {
			continue
		}
		files++
		l := loadFile(filepath.Join(dir, e.Name()), sinks)
		problems = append(problems, l.problems...)
		if l.formatNode != nil {
			if first, dup := defined[l.m.Format]; dup {
				problems = append(problems, l.at(l.formatNode, "format %q is already defined at %s", l.m.Format, first))
			} else {
				defined[l.m.Format] = fmt.Sprintf("%s:%d:%d", l.file, l.formatNode.Line, l.formatNode.Column)
			}
		}
		if len(l.problems) == 0 {
			set.byFormat[l.m.Format] = l.m
			set.formats = append(set.formats, l.m.Format)
		}
	}
	if files == 0 {
		problems = append(problems, Problem{File: dir, Message: "no mapping files (*.yaml, *.yml)"})
	}
	if err := problems.err(); err != nil {
		return nil, err
	}
	sort.Strings(set.formats)
	return set, nil
}

// LoadFile loads one mapping file. sinks lists the sink names that routes may use; nil means
// any name is accepted. The error, if any, is Problems holding every problem of the file.
func LoadFile(path string, sinks []string) (*Mapping, error) {
	l := loadFile(path, sinks)
	if err := l.problems.err(); err != nil {
		return nil, err
	}
	return l.m, nil
}

// loader holds the state of loading one file: what has been built so far and every problem
// found. It keeps going after a problem so that one pass reports them all.
type loader struct {
	file       string
	lines      []string // of the source, for positions inside block scalars
	sinks      []string
	m          *Mapping
	formatNode *yaml.Node // set when the format was read, even if other things are wrong
	problems   Problems
	// schemaFiles holds every schema file read for `schema:` (absolute path -> content).
	schemaFiles map[string][]byte
	settings    *settings // what the mapping's functions know of it; set before expressions compile
	values      int       // values built by value so far, bounded by maxValues
}

// maxValues bounds the values a file's test records and inline schema may hold once YAML
// aliases are expanded: nine nested aliases of nine items each (a "billion laughs") would
// otherwise take all memory.
const maxValues = 100000

func loadFile(path string, sinks []string) *loader {
	l := &loader{file: path, sinks: sinks, m: &Mapping{File: path}, settings: utcSettings}
	src, err := os.ReadFile(path)
	if err != nil {
		l.problems = append(l.problems, Problem{File: path, Message: fmt.Sprintf("read mapping file: %v", err)})
		return l
	}
	sum := sha256.Sum256(src)
	l.m.Version = hex.EncodeToString(sum[:])[:12]
	l.lines = strings.Split(string(src), "\n")

	dec := yaml.NewDecoder(bytes.NewReader(src))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			l.problems = append(l.problems, Problem{File: path, Message: "the file is empty"})
		} else {
			l.yamlError(err)
		}
		return l
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		l.add(&extra, "a mapping file holds one YAML document; this is a second one")
	} else if !errors.Is(err, io.EOF) {
		l.yamlError(err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	l.root(yamlcheck.Resolve(root))
	if len(l.schemaFiles) > 0 {
		l.m.Version = version(src, l.schemaFiles)
	}
	return l
}

// version is the first 12 hex digits of the SHA-256 of a mapping file followed by the schema
// files it uses (each as its path and content, in path order), so that editing a schema
// file makes a new version of the mapping too.
func version(src []byte, schemaFiles map[string][]byte) string {
	h := sha256.New()
	h.Write(src)
	for _, path := range slices.Sorted(maps.Keys(schemaFiles)) {
		fmt.Fprintf(h, "\x00%s\x00%d\x00", path, len(schemaFiles[path]))
		h.Write(schemaFiles[path])
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// yamlError reports a YAML syntax error on its line.
func (l *loader) yamlError(err error) {
	l.addAll(yamlcheck.FromError(err))
}

// addAll adds problems found by yamlcheck.
func (l *loader) addAll(ps []yamlcheck.Problem) {
	for _, p := range ps {
		l.problems = append(l.problems, Problem{File: l.file, Line: p.Line, Col: p.Col, Message: p.Message})
	}
}

func (l *loader) at(n *yaml.Node, format string, args ...any) Problem {
	return Problem{File: l.file, Line: n.Line, Col: n.Column, Message: fmt.Sprintf(format, args...)}
}

func (l *loader) add(n *yaml.Node, format string, args ...any) {
	l.problems = append(l.problems, l.at(n, format, args...))
}

// mapping checks that n is a mapping whose keys are among allowed and appear once, reporting
// every other key, and returns the value nodes by key.
func (l *loader) mapping(n *yaml.Node, what string, allowed ...string) (map[string]*yaml.Node, bool) {
	if n.Kind != yaml.MappingNode && what == "" {
		l.add(n, "a mapping file must be a mapping (format: ..., routes: ...), got %s", yamlcheck.KindName(n))
		return nil, false
	}
	vals, problems, ok := yamlcheck.Keys(n, what, allowed)
	l.addAll(problems)
	return vals, ok
}

// scalar returns the text of a scalar that is not null or empty.
func (l *loader) scalar(n *yaml.Node, what string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" {
		l.add(n, "%s: expected a string, got %s", what, yamlcheck.KindName(n))
		return "", false
	}
	if strings.TrimSpace(n.Value) == "" {
		l.add(n, "%s: must not be empty", what)
		return "", false
	}
	return n.Value, true
}

// list returns the items of a sequence.
func (l *loader) list(n *yaml.Node, what string) ([]*yaml.Node, bool) {
	if n.Kind != yaml.SequenceNode {
		l.add(n, "%s: expected a list, got %s", what, yamlcheck.KindName(n))
		return nil, false
	}
	items := make([]*yaml.Node, len(n.Content))
	for i, c := range n.Content {
		items[i] = yamlcheck.Resolve(c)
	}
	return items, true
}

// The keys a mapping file may use, in the order the reference documents them: at the top of
// the file, in a validate entry, in a route and in a test case.
var (
	rootKeys  = []string{"format", "id", "type", "timezone", "required", "schema", "validate", "routes_mode", "routes", "tests"}
	typeKeys  = []string{"const"}
	ruleKeys  = []string{"rule", "message"}
	routeKeys = []string{"name", "when", "sink", "fields"}
	testKeys  = []string{"name", "input", "expect", "invalid"}
)

var formatName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

func (l *loader) root(n *yaml.Node) {
	vals, ok := l.mapping(n, "", rootKeys...)
	if !ok {
		return
	}
	if v := vals["format"]; v == nil {
		l.add(n, "missing key \"format\"")
	} else if s, ok := l.scalar(v, "format"); ok {
		if !formatName.MatchString(s) {
			l.add(v, "format: %q is not a format name (letters, digits, '_', '.', '-')", s)
		} else {
			l.m.Format, l.formatNode = s, v
		}
	}
	if v := vals["id"]; v != nil {
		l.m.idPath, _ = l.scalar(v, "id")
	}
	if v := vals["type"]; v != nil {
		l.messageType(v)
	}
	if v := vals["timezone"]; v != nil {
		if s, ok := l.scalar(v, "timezone"); ok {
			if loc, err := loadLocation(s); err != nil {
				l.add(v, "timezone: %v", err)
			} else {
				l.settings = &settings{loc: loc}
			}
		}
	}
	if v := vals["required"]; v != nil {
		items, _ := l.list(v, "required")
		for i, item := range items {
			if s, ok := l.scalar(item, fmt.Sprintf("required[%d]", i)); ok {
				l.m.Required = append(l.m.Required, s)
			}
		}
	}
	if v := vals["schema"]; v != nil {
		l.schema(v)
	}
	if v := vals["validate"]; v != nil {
		items, _ := l.list(v, "validate")
		for i, item := range items {
			l.rule(item, fmt.Sprintf("validate[%d]", i))
		}
	}
	if v := vals["routes_mode"]; v != nil {
		if s, ok := l.scalar(v, "routes_mode"); ok {
			switch s {
			case "first":
			case "all":
				l.m.routesAll = true
			default:
				l.add(v, "routes_mode: %q is not first or all", s)
			}
		}
	}
	routesOK := false
	if v := vals["routes"]; v == nil {
		l.add(n, "missing key \"routes\"")
	} else if items, ok := l.list(v, "routes"); ok {
		if len(items) == 0 {
			l.add(v, "routes: at least one route is needed")
		}
		routesOK = l.routes(items)
	}
	if v := vals["tests"]; v != nil {
		items, _ := l.list(v, "tests")
		names := map[string]bool{}
		for i, item := range items {
			l.test(item, fmt.Sprintf("tests[%d]", i), names, routesOK)
		}
	}
}

// messageType reads `type:`: a gjson path, or {const: NAME} for one type on every record.
func (l *loader) messageType(n *yaml.Node) {
	if n.Kind != yaml.MappingNode {
		l.m.typePath, _ = l.scalar(n, "type")
		return
	}
	vals, ok := l.mapping(n, "type", typeKeys...)
	if !ok {
		return
	}
	if v := vals["const"]; v == nil {
		l.add(n, "type: missing key \"const\" (type is a path, or {const: NAME})")
	} else {
		l.m.typeConst, _ = l.scalar(v, "type.const")
	}
}

func (l *loader) rule(n *yaml.Node, what string) {
	vals, ok := l.mapping(n, what, ruleKeys...)
	if !ok {
		return
	}
	r := rule{}
	if v := vals["rule"]; v == nil {
		l.add(n, "%s: missing key \"rule\"", what)
	} else {
		r.src = v.Value
		r.prog = l.expr(v, yamlcheck.Join(what, "rule"), true)
	}
	if v := vals["message"]; v != nil {
		r.message, _ = l.scalar(v, yamlcheck.Join(what, "message"))
	}
	if r.message == "" {
		r.message = "rule failed: " + r.src
	}
	l.m.rules = append(l.m.rules, r)
}

// routes compiles the routes and reports whether every route was read.
func (l *loader) routes(items []*yaml.Node) bool {
	ok := true
	names := map[string]bool{}
	for i, n := range items {
		what := fmt.Sprintf("routes[%d]", i)
		vals, isMap := l.mapping(n, what, routeKeys...)
		if !isMap {
			ok = false
			continue
		}
		r := route{name: what}
		if v := vals["name"]; v != nil {
			if s, sOK := l.scalar(v, yamlcheck.Join(what, "name")); sOK {
				if names[s] {
					l.add(v, "%s.name: another route is named %q", what, s)
				}
				names[s], r.name = true, s
			}
		}
		if v := vals["when"]; v != nil {
			r.when = l.expr(v, yamlcheck.Join(what, "when"), true)
		} else if i < len(items)-1 && !l.m.routesAll {
			l.add(items[i+1], "routes[%d]: unreachable: %s has no \"when\" and takes every record (with routes_mode: all, every matching route takes it)", i+1, what)
		}
		if v := vals["sink"]; v == nil {
			l.add(n, "%s: missing key \"sink\"", what)
			ok = false
		} else if s, sOK := l.scalar(v, yamlcheck.Join(what, "sink")); sOK {
			r.sink = s
			if l.sinks != nil && !slices.Contains(l.sinks, s) {
				known := "no sinks are configured"
				if len(l.sinks) > 0 {
					known = "known sinks: " + strings.Join(l.sinks, ", ")
				}
				l.add(v, "%s.sink: unknown sink %q (%s)", what, s, known)
			}
		} else {
			ok = false
		}
		if v := vals["fields"]; v == nil {
			l.add(n, "%s: missing key \"fields\"", what)
		} else {
			r.fields = l.fields(v, yamlcheck.Join(what, "fields"))
		}
		l.m.routes = append(l.m.routes, r)
	}
	return ok
}

func (l *loader) fields(n *yaml.Node, what string) []fieldExpr {
	if n.Kind != yaml.MappingNode {
		l.add(n, "%s: expected a mapping of field names to expressions, got %s", what, yamlcheck.KindName(n))
		return nil
	}
	if len(n.Content) == 0 {
		l.add(n, "%s: at least one field is needed", what)
	}
	var fields []fieldExpr
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := yamlcheck.Resolve(n.Content[i]), yamlcheck.Resolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode || k.Value == "" {
			l.add(k, "%s: a field name must be a non-empty string", what)
			continue
		}
		if seen[k.Value] {
			l.add(k, "%s: field %q appears twice", what, k.Value)
			continue
		}
		seen[k.Value] = true
		if v.Kind != yaml.ScalarNode {
			l.add(v, "%s.%s: expected an expression, got %s (build objects and lists with expr literals: {a: x}, [x, y])", what, k.Value, yamlcheck.KindName(v))
			continue
		}
		fields = append(fields, fieldExpr{name: k.Value, prog: l.expr(v, yamlcheck.Join(what, k.Value), false)})
	}
	return fields
}

// expr compiles the expression held by a scalar node. Compile errors are reported at their
// place in the file: the node's position plus the position inside the expression.
func (l *loader) expr(n *yaml.Node, what string, asBool bool) *vm.Program {
	if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" || strings.TrimSpace(n.Value) == "" {
		l.add(n, "%s: expected an expression, got %s", what, yamlcheck.KindName(n))
		return nil
	}
	prog, err := compileExpr(n.Value, asBool, l.settings)
	if err != nil {
		var ce *compileError
		errors.As(err, &ce)
		line, col := l.position(n, ce.line, ce.col)
		msg := what + ": " + ce.msg
		if n.Style == 0 && strings.HasPrefix(n.LineComment, "#") {
			// `map(items, #.sku)` unquoted: YAML took " #.sku)" for a comment.
			msg += fmt.Sprintf(" (YAML read %q as a comment: quote the expression, '...')", n.LineComment)
		}
		l.problems = append(l.problems, Problem{File: l.file, Line: line, Col: col, Message: msg})
	}
	return prog
}

// position maps a place inside a scalar's value (1-based line, 0-based column, 0 line when
// unknown) to a place in the file. It is exact for one-line plain and quoted scalars and for
// literal blocks (|); for scalars that YAML folds it points into the right neighbourhood.
func (l *loader) position(n *yaml.Node, line, col int) (int, int) {
	if line == 0 {
		return n.Line, n.Column
	}
	switch n.Style {
	case yaml.LiteralStyle, yaml.FoldedStyle:
		// The value starts on the line after the indicator; its columns count from the
		// block's indentation, which its first non-blank line sets.
		indent := 0
		for i := n.Line + 1; i <= len(l.lines); i++ {
			if strings.TrimSpace(l.lines[i-1]) != "" {
				indent = l.indent(i)
				break
			}
		}
		return n.Line + line, indent + col + 1
	case yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
		if line == 1 {
			return n.Line, n.Column + 1 + col
		}
	default:
		if line == 1 {
			return n.Line, n.Column + col
		}
	}
	fileLine := n.Line + line - 1
	return fileLine, l.indent(fileLine) + col + 1
}

// indent returns the number of leading spaces of a 1-based line of the file.
func (l *loader) indent(line int) int {
	if line < 1 || line > len(l.lines) {
		return 0
	}
	s := l.lines[line-1]
	return len(s) - len(strings.TrimLeft(s, " "))
}

func (l *loader) test(n *yaml.Node, what string, names map[string]bool, routesOK bool) {
	vals, ok := l.mapping(n, what, testKeys...)
	if !ok {
		return
	}
	tc := testCase{}
	if v := vals["name"]; v == nil {
		l.add(n, "%s: missing key \"name\"", what)
	} else if s, ok := l.scalar(v, yamlcheck.Join(what, "name")); ok {
		if names[s] {
			l.add(v, "%s.name: another test is named %q", what, s)
		}
		names[s], tc.name = true, s
	}
	if v := vals["input"]; v == nil {
		l.add(n, "%s: missing key \"input\"", what)
	} else if v.Kind != yaml.MappingNode {
		l.add(v, "%s.input: expected a record (a mapping), got %s", what, yamlcheck.KindName(v))
	} else if rec, ok := l.value(v, yamlcheck.Join(what, "input")); ok {
		tc.input, _ = json.Marshal(rec) // l.value returns only JSON-encodable values
	}
	expect, invalid := vals["expect"], vals["invalid"]
	switch {
	case expect == nil && invalid == nil:
		l.add(n, "%s: needs \"expect\" (sink: fields, ...) or \"invalid\" (an expected error message)", what)
	case expect != nil && invalid != nil:
		l.add(invalid, "%s: \"expect\" and \"invalid\" exclude each other", what)
	case invalid != nil:
		tc.invalid, _ = l.scalar(invalid, yamlcheck.Join(what, "invalid"))
	default:
		l.expect(expect, yamlcheck.Join(what, "expect"), &tc, routesOK)
	}
	l.m.tests = append(l.m.tests, tc)
}

// expect reads `expect: {sink: {field: value, ...}, ...}`: one sink in routes_mode first,
// one or more in routes_mode all.
func (l *loader) expect(n *yaml.Node, what string, tc *testCase, routesOK bool) {
	if n.Kind != yaml.MappingNode || len(n.Content) == 0 {
		l.add(n, "%s: expected a mapping of sinks to their fields, e.g. {activities: {activity_id: a1}}", what)
		return
	}
	if sinks := len(n.Content) / 2; sinks > 1 && !l.m.routesAll {
		l.add(n, "%s: names %d sinks, but a record goes to one sink (the first matching route's) unless routes_mode is all", what, sinks)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := yamlcheck.Resolve(n.Content[i]), yamlcheck.Resolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			l.add(k, "%s: a sink name must be a scalar, got %s", what, yamlcheck.KindName(k))
			continue
		}
		if slices.ContainsFunc(tc.expect, func(e expectedOutput) bool { return e.sink == k.Value }) {
			l.add(k, "%s: sink %q appears twice", what, k.Value)
			continue
		}
		if routesOK && !slices.ContainsFunc(l.m.routes, func(r route) bool { return r.sink == k.Value }) {
			l.add(k, "%s: no route has sink %q", what, k.Value)
		}
		if v.Kind != yaml.MappingNode {
			l.add(v, "%s.%s: expected a mapping of field names to values, got %s", what, k.Value, yamlcheck.KindName(v))
			continue
		}
		fields, ok := l.value(v, yamlcheck.Join(what, k.Value))
		if !ok {
			continue
		}
		e := expectedOutput{sink: k.Value}
		e.fields, _ = normalize(fields).(map[string]any)
		for j := 0; j+1 < len(v.Content); j += 2 {
			e.order = append(e.order, yamlcheck.Resolve(v.Content[j]).Value)
		}
		tc.expect = append(tc.expect, e)
	}
}

// value converts a YAML node to the value JSON would give: strings (timestamps included, as
// written), float64 or int64 numbers, bools, nil, map[string]any and []any.
func (l *loader) value(n *yaml.Node, what string) (any, bool) {
	l.values++
	if l.values > maxValues {
		if l.values == maxValues+1 {
			l.add(n, "%s: more than %d values once YAML aliases are expanded", what, maxValues)
		}
		return nil, false
	}
	n = yamlcheck.Resolve(n)
	switch n.Kind {
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		ok := true
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := yamlcheck.Resolve(n.Content[i])
			if k.Kind != yaml.ScalarNode {
				l.add(k, "%s: a key must be a scalar, got %s", what, yamlcheck.KindName(k))
				ok = false
				continue
			}
			if _, dup := m[k.Value]; dup {
				l.add(k, "%s: key %q appears twice", what, k.Value)
				ok = false
				continue
			}
			v, vOK := l.value(n.Content[i+1], yamlcheck.Join(what, k.Value))
			m[k.Value], ok = v, ok && vOK
		}
		return m, ok
	case yaml.SequenceNode:
		s := make([]any, len(n.Content))
		ok := true
		for i, c := range n.Content {
			v, vOK := l.value(c, fmt.Sprintf("%s[%d]", what, i))
			s[i], ok = v, ok && vOK
		}
		return s, ok
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return nil, true
		case "!!bool":
			var b bool
			if err := n.Decode(&b); err == nil {
				return b, true
			}
		case "!!int":
			var i int64
			if err := n.Decode(&i); err == nil {
				return i, true
			}
			var f float64
			if err := n.Decode(&f); err == nil && !math.IsInf(f, 0) {
				return f, true
			}
		case "!!float":
			var f float64
			if err := n.Decode(&f); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
				return f, true
			}
		default: // !!str, !!timestamp, !!binary: the text as written
			return n.Value, true
		}
		l.add(n, "%s: %q is not a JSON value", what, n.Value)
		return nil, false
	}
	l.add(n, "%s: unsupported YAML node", what)
	return nil, false
}

// normalize returns v as encoding/json would decode it (numbers as float64), so that expected
// and actual values compare with reflect.DeepEqual.
func normalize(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return v
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		return v
	}
	return out
}
