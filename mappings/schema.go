package mappings

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
	"gopkg.in/yaml.v3"

	"github.com/opengw/gateway/internal/yamlcheck"
)

// maxViolations bounds how many schema violations one record reports: a record with a
// thousand bad array items needs the first few messages, not a thousand.
const maxViolations = 20

// recordSchema is a compiled `schema:` of a mapping. It is immutable and safe for concurrent
// use.
type recordSchema struct {
	sch *jsonschema.Schema
}

// check validates one record (a JSON object, already known to be valid JSON) and returns one
// message per violation, "schema: <JSON pointer>: <rule>", sorted by pointer; nil when the
// record conforms.
func (s *recordSchema) check(rec string) []string {
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(rec))
	if err != nil {
		return []string{fmt.Sprintf("schema: the record cannot be read as JSON: %v", err)}
	}
	err = s.sch.Validate(doc)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return []string{"schema: " + err.Error()}
	}
	vs := violations(ve)
	msgs := make([]string, 0, min(len(vs), maxViolations)+1)
	for i, v := range vs {
		if i == maxViolations {
			msgs = append(msgs, fmt.Sprintf("schema: and %d more violations", len(vs)-maxViolations))
			break
		}
		msgs = append(msgs, "schema: "+v.String())
	}
	return msgs
}

// violation is one failed schema rule at a place in the instance.
type violation struct {
	ptr  []string // JSON pointer tokens, unescaped
	rule string   // what the value must be, e.g. "must be >= 0, got -1"
}

func (v violation) pointer() string {
	if len(v.ptr) == 0 {
		return "/"
	}
	var b strings.Builder
	for _, t := range v.ptr {
		b.WriteByte('/')
		b.WriteString(strings.ReplaceAll(strings.ReplaceAll(t, "~", "~0"), "/", "~1"))
	}
	return b.String()
}

func (v violation) String() string { return v.pointer() + ": " + v.rule }

// violations flattens a validation error tree into the rules that failed, sorted by pointer
// and message, without duplicates. Wrappers (the schema, $ref, allOf, if/then) are looked
// through; anyOf and oneOf, whose branches are alternatives, are reported as one violation
// at their own place.
func violations(ve *jsonschema.ValidationError) []violation {
	var out []violation
	collect(ve, &out)
	slices.SortFunc(out, func(a, b violation) int {
		if c := strings.Compare(a.pointer(), b.pointer()); c != 0 {
			return c
		}
		return strings.Compare(a.rule, b.rule)
	})
	return slices.CompactFunc(out, func(a, b violation) bool { return a.String() == b.String() })
}

func collect(e *jsonschema.ValidationError, out *[]violation) {
	loc := e.InstanceLocation
	at := func(rule string, extra ...string) violation {
		return violation{ptr: append(slices.Clone(loc), extra...), rule: rule}
	}
	switch k := e.ErrorKind.(type) {
	case *kind.AnyOf:
		*out = append(*out, at(alternatives(e, "must match one of the anyOf schemas")))
		return
	case *kind.OneOf:
		if len(k.Subschemas) == 2 {
			*out = append(*out, at(fmt.Sprintf("must match exactly one of the oneOf schemas, matched %d and %d", k.Subschemas[0], k.Subschemas[1])))
		} else {
			*out = append(*out, at(alternatives(e, "must match exactly one of the oneOf schemas")))
		}
		return
	case *kind.Not:
		*out = append(*out, at("must not match the schema under not"))
		return
	case *kind.Required:
		for _, p := range k.Missing {
			*out = append(*out, at("is required", p))
		}
		return
	case *kind.DependentRequired:
		for _, p := range k.Missing {
			*out = append(*out, at(fmt.Sprintf("is required when %q is present", k.Prop), p))
		}
		return
	case *kind.Dependency:
		for _, p := range k.Missing {
			*out = append(*out, at(fmt.Sprintf("is required when %q is present", k.Prop), p))
		}
		return
	case *kind.AdditionalProperties:
		for _, p := range k.Properties {
			*out = append(*out, at("is not allowed (additionalProperties)", p))
		}
		return
	case *kind.Contains:
		*out = append(*out, at("must contain an item that matches the contains schema"))
		return
	case *kind.PropertyNames:
		*out = append(*out, at("is not an allowed property name (propertyNames)", k.Property))
		return
	}
	if len(e.Causes) > 0 {
		for _, c := range e.Causes {
			collect(c, out)
		}
		return
	}
	*out = append(*out, at(ruleText(e.ErrorKind)))
}

// alternatives describes a failed anyOf/oneOf: when every branch failed on exactly one rule at
// the same place, the rules joined with "or" ("must be of type string, got number, or must be
// null"); otherwise generic.
func alternatives(e *jsonschema.ValidationError, generic string) string {
	var rules []string
	for _, c := range e.Causes {
		var vs []violation
		collect(c, &vs)
		if len(vs) != 1 || !slices.Equal(vs[0].ptr, e.InstanceLocation) {
			return generic
		}
		rules = append(rules, vs[0].rule)
	}
	if len(rules) == 0 {
		return generic
	}
	return strings.Join(rules, ", or ")
}

// ruleText words one failed keyword as what the value must be, naming the value it got where
// the library reports it.
func ruleText(k jsonschema.ErrorKind) string {
	switch k := k.(type) {
	case *kind.Type:
		return fmt.Sprintf("must be of type %s, got %s", strings.Join(k.Want, " or "), k.Got)
	case *kind.Enum:
		want := make([]string, len(k.Want))
		for i, w := range k.Want {
			want[i] = describe(w)
		}
		if len(want) == 1 {
			return fmt.Sprintf("must be %s, got %s", want[0], describe(k.Got))
		}
		return fmt.Sprintf("must be one of %s, got %s", strings.Join(want, ", "), describe(k.Got))
	case *kind.Const:
		return fmt.Sprintf("must be %s, got %s", describe(k.Want), describe(k.Got))
	case *kind.Format:
		return fmt.Sprintf("must be a valid %s, got %s", k.Want, describe(k.Got))
	case *kind.Minimum:
		return fmt.Sprintf("must be >= %s, got %s", ratText(k.Want), ratText(k.Got))
	case *kind.Maximum:
		return fmt.Sprintf("must be <= %s, got %s", ratText(k.Want), ratText(k.Got))
	case *kind.ExclusiveMinimum:
		return fmt.Sprintf("must be > %s, got %s", ratText(k.Want), ratText(k.Got))
	case *kind.ExclusiveMaximum:
		return fmt.Sprintf("must be < %s, got %s", ratText(k.Want), ratText(k.Got))
	case *kind.MultipleOf:
		return fmt.Sprintf("must be a multiple of %s, got %s", ratText(k.Want), ratText(k.Got))
	case *kind.MinLength:
		return fmt.Sprintf("must be at least %d characters long, got %d", k.Want, k.Got)
	case *kind.MaxLength:
		return fmt.Sprintf("must be at most %d characters long, got %d", k.Want, k.Got)
	case *kind.Pattern:
		return fmt.Sprintf("must match the pattern %q, got %s", k.Want, describe(k.Got))
	case *kind.MinItems:
		return fmt.Sprintf("must have at least %d items, got %d", k.Want, k.Got)
	case *kind.MaxItems:
		return fmt.Sprintf("must have at most %d items, got %d", k.Want, k.Got)
	case *kind.MinProperties:
		return fmt.Sprintf("must have at least %d properties, got %d", k.Want, k.Got)
	case *kind.MaxProperties:
		return fmt.Sprintf("must have at most %d properties, got %d", k.Want, k.Got)
	case *kind.UniqueItems:
		return fmt.Sprintf("must have unique items, items %d and %d are equal", k.Duplicates[0], k.Duplicates[1])
	case *kind.FalseSchema:
		return "is not allowed"
	}
	// Everything else (minContains, contentEncoding, ...): the library's own words.
	return k.LocalizedString(english)
}

// english prints the library's messages for the kinds ruleText does not word itself.
var english = message.NewPrinter(language.English)

// ratText prints an exact number of the library as JSON would: 3, 0.5, 1e+21.
func ratText(r *big.Rat) string {
	if r == nil {
		return "?"
	}
	if r.IsInt() {
		return r.Num().String()
	}
	f, _ := r.Float64()
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// schemaCompiler compiles the `schema:` of one mapping file. It reads the files the schema
// refers to itself, so that their bytes can go into the mapping's Version.
type schemaCompiler struct {
	dir   string            // absolute folder of the mapping file; relative paths start here
	files map[string][]byte // absolute path -> content of every schema file read
}

// Load implements jsonschema.URLLoader for file URLs: a .yaml or .yml file is read as YAML,
// anything else as JSON.
func (c *schemaCompiler) Load(url string) (any, error) {
	path, err := jsonschema.FileLoader{}.ToFile(url)
	if err != nil {
		return nil, err
	}
	src, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, &schemaReadError{path: path, err: err}
	}
	c.files[path] = src
	doc, err := decodeSchemaFile(path, src)
	if err != nil {
		return nil, &schemaReadError{path: path, err: err}
	}
	return doc, nil
}

// schemaReadError is a schema file that cannot be read or parsed.
type schemaReadError struct {
	path string
	err  error
}

func (e *schemaReadError) Error() string { return fmt.Sprintf("read %s: %v", e.path, e.err) }
func (e *schemaReadError) Unwrap() error { return e.err }

// decodeSchemaFile parses a schema file into what jsonschema expects: JSON values with
// json.Number numbers.
func decodeSchemaFile(path string, src []byte) (any, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".yaml", ".yml":
		var v any
		if err := yaml.Unmarshal(src, &v); err != nil {
			return nil, fmt.Errorf("invalid YAML: %w", err)
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("not representable as JSON: %w", err)
		}
		return jsonschema.UnmarshalJSON(bytes.NewReader(b))
	default:
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(src))
		if err != nil {
			return nil, fmt.Errorf("invalid JSON: %w", err)
		}
		return doc, nil
	}
}

// schema compiles the `schema:` key: either a mapping (the schema itself, written in YAML) or
// the path of a schema file (.json, or .yaml/.yml), relative to the mapping file. Schemas
// without $schema are draft 2020-12; `format` is asserted. $ref may name other local files
// (relative to the referring schema); other URL schemes are refused so that loading never
// touches the network. Problems are reported at the `schema:` value, or for an inline schema
// at the offending node when the problem has a place in it.
func (l *loader) schema(n *yaml.Node) {
	abs, err := filepath.Abs(l.file)
	if err != nil {
		l.add(n, "schema: %v", err)
		return
	}
	sc := &schemaCompiler{dir: filepath.Dir(abs), files: map[string][]byte{}}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.UseLoader(jsonschema.SchemeURLLoader{"file": sc})

	var loc string // what Compile is given
	inline := n.Kind == yaml.MappingNode
	switch {
	case inline:
		v, ok := l.value(n, "schema")
		if !ok {
			return
		}
		b, err := json.Marshal(v)
		if err == nil {
			v, err = jsonschema.UnmarshalJSON(bytes.NewReader(b))
		}
		if err != nil {
			l.add(n, "schema: %v", err)
			return
		}
		// The inline schema takes the mapping file's own place, so that a relative $ref
		// resolves against the mapping's folder.
		loc = abs
		if err := c.AddResource(loc, v); err != nil {
			l.add(n, "schema: %v", err)
			return
		}
	case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" && strings.TrimSpace(n.Value) != "":
		loc = n.Value
		if !filepath.IsAbs(loc) {
			loc = filepath.Join(sc.dir, loc)
		}
	default:
		l.add(n, "schema: expected a JSON Schema (a mapping) or the path of a schema file, got %s", yamlcheck.KindName(n))
		return
	}

	sch, err := c.Compile(loc)
	for path, src := range sc.files {
		if l.schemaFiles == nil {
			l.schemaFiles = map[string][]byte{}
		}
		l.schemaFiles[path] = src
	}
	if err != nil {
		l.schemaError(n, inline, sc.dir, err)
		return
	}
	l.m.schema = &recordSchema{sch: sch}
}

// schemaError reports why a schema does not compile, in short: one problem per rule of the
// meta-schema that the schema breaks, placed at the offending node of an inline schema.
func (l *loader) schemaError(n *yaml.Node, inline bool, dir string, err error) {
	short := func(s string) string {
		s = strings.ReplaceAll(s, "file://"+filepath.ToSlash(dir)+"/", "")
		return strings.ReplaceAll(s, dir+string(filepath.Separator), "")
	}
	var sve *jsonschema.SchemaValidationError
	var lue *jsonschema.LoadURLError
	var re *schemaReadError
	var ue *jsonschema.UnsupportedURLSchemeError
	if errors.As(err, &lue) {
		err = lue.Err // LoadURLError does not unwrap; what went wrong is inside
	}
	switch {
	case errors.As(err, &sve):
		var ve *jsonschema.ValidationError
		if !errors.As(sve.Err, &ve) {
			l.add(n, "schema: %s", short(sve.Error()))
			return
		}
		// Which schema broke the rules: this one, or a file it refers to.
		where := ""
		if u := strings.TrimSuffix(short(sve.URL), "#"); !inline || u != filepath.Base(l.file) {
			where = u + ": "
		}
		for _, v := range violations(ve) {
			at := n
			if inline && where == "" {
				at = nodeAt(n, v.ptr)
			}
			l.add(at, "schema: %snot a valid JSON Schema: %s", where, v)
		}
	case errors.As(err, &re):
		l.add(n, "schema: cannot load %s: %v", short(re.path), re.err)
	case errors.As(err, &ue):
		l.add(n, "schema: cannot load %s: only local schema files can be referenced", strings.TrimPrefix(ue.Error(), "no URLLoader registered for "))
	default:
		l.add(n, "schema: %s", short(err.Error()))
	}
}

// nodeAt follows JSON pointer tokens from n through YAML mappings and lists, and returns the
// deepest node it reaches.
func nodeAt(n *yaml.Node, ptr []string) *yaml.Node {
	for _, tok := range ptr {
		n = yamlcheck.Resolve(n)
		var next *yaml.Node
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if yamlcheck.Resolve(n.Content[i]).Value == tok {
					next = n.Content[i+1]
					break
				}
			}
		case yaml.SequenceNode:
			if i, err := strconv.Atoi(tok); err == nil && i >= 0 && i < len(n.Content) {
				next = n.Content[i]
			}
		}
		if next == nil {
			return n
		}
		n = next
	}
	return yamlcheck.Resolve(n)
}
