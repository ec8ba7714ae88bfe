package config

import (
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

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
