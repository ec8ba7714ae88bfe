package config

import (
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// UnknownKey is a mapping key that no field of the target type accepts.
type UnknownKey struct {
	Key     string
	Line    int
	Column  int
	Allowed []string
}

// UnknownKeys walks node alongside the Go type of target (a pointer to a struct) and returns
// every mapping key that no `yaml:"..."` field accepts, with its position. Unlike yaml.v3's
// KnownFields it reports all of them, and it works on a node tree we have already edited.
func UnknownKeys(node *yaml.Node, target any) []UnknownKey {
	var out []UnknownKey
	walkKnown(node, reflect.TypeOf(target), &out)
	return out
}

var durationType = reflect.TypeOf(time.Duration(0))

func walkKnown(node *yaml.Node, t reflect.Type, out *[]UnknownKey) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if node.Kind == yaml.AliasNode && node.Alias != nil {
		node = node.Alias
	}
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
		for i := 0; i+1 < len(node.Content); i += 2 {
			k, v := node.Content[i], node.Content[i+1]
			ft, ok := fields[k.Value]
			if !ok {
				*out = append(*out, UnknownKey{Key: k.Value, Line: k.Line, Column: k.Column, Allowed: allowed})
				continue
			}
			walkKnown(v, ft, out)
		}
	case t.Kind() == reflect.Map && node.Kind == yaml.MappingNode:
		for i := 1; i < len(node.Content); i += 2 {
			walkKnown(node.Content[i], t.Elem(), out)
		}
	case t.Kind() == reflect.Slice && node.Kind == yaml.SequenceNode:
		for _, item := range node.Content {
			walkKnown(item, t.Elem(), out)
		}
	}
}

// MissingEnv is a ${NAME} reference to an unset variable without a default.
type MissingEnv struct {
	Name string
	Line int
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// ExpandEnv replaces ${NAME} and ${NAME:-default} in every scalar value of the tree, in place,
// so line numbers stay those of the file. It returns the references to unset variables that
// have no default; an empty value counts as unset. "$${" escapes a literal "${".
func ExpandEnv(node *yaml.Node, getenv func(string) string) []MissingEnv {
	var missing []MissingEnv
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.ScalarNode && strings.Contains(n.Value, "${") {
			const escaped = "\x00"
			v := strings.ReplaceAll(n.Value, "$${", escaped)
			v = envRef.ReplaceAllStringFunc(v, func(ref string) string {
				m := envRef.FindStringSubmatch(ref)
				if val := getenv(m[1]); val != "" {
					return val
				}
				if m[2] != "" {
					return m[3]
				}
				missing = append(missing, MissingEnv{Name: m[1], Line: n.Line})
				return ""
			})
			n.Value = strings.ReplaceAll(v, escaped, "${")
			if n.Style == 0 {
				// A plain scalar is typed by what it now reads: ${PORT} can fill an int field.
				n.Tag = ""
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(node)
	return missing
}
