package sinks

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// docsPath is the sinks reference that must agree with the code.
const docsPath = "../docs/sinks.md"

// TestOptionsAreConfigKeys: options declares exactly the keys the config loader accepts (the
// yaml keys of Config), so nothing below can miss one.
func TestOptionsAreConfigKeys(t *testing.T) {
	declared := map[string]bool{}
	for _, o := range options {
		declared[o.key] = true
		if _, ok := configFields[o.key]; !ok {
			t.Errorf("option %q is not a yaml key of Config", o.key)
		}
		for typ := range o.defaults {
			if !slices.Contains(o.types, typ) {
				t.Errorf("option %q has a default for type %s, which it does not apply to", o.key, typ)
			}
		}
	}
	for key := range configFields {
		if !declared[key] {
			t.Errorf("Config has yaml key %q, which options does not declare", key)
		}
	}
}

// TestDocsKeys: each type's section of docs/sinks.md ("## `sqlite`", ...) has a key table
// ("| Key | Default | Meaning |") that lists exactly the keys that apply to the type, each
// default shown as the code applies it.
func TestDocsKeys(t *testing.T) {
	b, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	var sections []string
	for _, m := range regexp.MustCompile("(?m)^## `([^`]+)`$").FindAllStringSubmatch(doc, -1) {
		sections = append(sections, m[1])
	}
	if !slices.Equal(sections, typeNames) {
		t.Errorf("%s has sections for types %v; want one per type, in order: %v", docsPath, sections, typeNames)
	}
	row := regexp.MustCompile("(?m)^\\| `([^`]+)` \\| ([^|]*) \\|")
	for _, typ := range typeNames {
		section := docSection(doc, "`"+typ+"`")
		start := strings.Index(section, keyTableHeader)
		if start < 0 {
			t.Errorf("%s: section \"## `%s`\" has no key table (%s)", docsPath, typ, keyTableHeader)
			continue
		}
		table := section[start:]
		if end := strings.Index(table, "\n\n"); end >= 0 {
			table = table[:end]
		}
		documented := map[string]string{} // key → default cell
		for _, m := range row.FindAllStringSubmatch(table, -1) {
			if _, dup := documented[m[1]]; dup {
				t.Errorf("%s documents key %s twice under type %s", docsPath, m[1], typ)
			}
			documented[m[1]] = m[2]
		}
		for _, o := range options {
			applies := slices.Contains(o.types, typ)
			cell, isDocumented := documented[o.key]
			switch {
			case applies && !isDocumented:
				t.Errorf("key %s of type %s exists in code, but %s does not document it under \"## `%s`\"", o.key, typ, docsPath, typ)
			case !applies && isDocumented:
				t.Errorf("%s documents key %s under type %s, which does not have it", docsPath, o.key, typ)
			case applies:
				if def, ok := o.defaults[typ]; ok {
					if want := "`" + fmt.Sprint(def("<name>")) + "`"; !strings.Contains(cell, want) {
						t.Errorf("%s: the default of %s for type %s is %s, documented as %q", docsPath, o.key, typ, want, strings.TrimSpace(cell))
					}
				}
			}
			delete(documented, o.key)
		}
		for key := range documented {
			t.Errorf("%s documents key %s under type %s, which does not exist", docsPath, key, typ)
		}
	}
}

const keyTableHeader = "| Key | Default | Meaning |"

// docSection returns the text of the "## title" section, up to the next level-2 heading.
func docSection(doc, title string) string {
	start := strings.Index(doc, "\n## "+title+"\n")
	if start < 0 {
		return ""
	}
	rest := doc[start+len(title)+5:]
	if end := strings.Index(rest, "\n## "); end >= 0 {
		rest = rest[:end]
	}
	return rest
}
