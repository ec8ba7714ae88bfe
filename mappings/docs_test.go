package mappings

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// docsPath is the mapping reference that must agree with the engine.
const docsPath = "../docs/mappings.md"

// docSection returns the text of the "## title" section of the reference, up to the next
// level-2 heading.
func docSection(t *testing.T, doc, title string) string {
	t.Helper()
	start := strings.Index(doc, "\n## "+title+"\n")
	if start < 0 {
		t.Fatalf("%s has no section %q", docsPath, "## "+title)
	}
	rest := doc[start+len(title)+5:]
	if end := strings.Index(rest, "\n## "); end >= 0 {
		rest = rest[:end]
	}
	return rest
}

func readDocs(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDocsFunctions: every function the engine registers has a "### `name`" entry in the
// Functions section with its example, and every entry there is a registered function.
func TestDocsFunctions(t *testing.T) {
	section := docSection(t, readDocs(t), "Functions")
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^### `([^`]+)`$").FindAllStringSubmatch(section, -1) {
		documented[m[1]] = true
	}
	registered := map[string]bool{}
	for _, f := range Functions() {
		registered[f.Name] = true
		if !documented[f.Name] {
			t.Errorf("function %s is registered but %s has no \"### `%s`\" entry under Functions", f.Name, docsPath, f.Name)
			continue
		}
		if !strings.Contains(section, f.Example) {
			t.Errorf("the example of %s, %s, is not in %s", f.Name, f.Example, docsPath)
		}
	}
	for name := range documented {
		if !registered[name] {
			t.Errorf("%s documents function %s, which the engine does not register", docsPath, name)
		}
	}
}

// TestDocsKeys: the Keys table lists every key the loader accepts, and only those.
func TestDocsKeys(t *testing.T) {
	section := docSection(t, readDocs(t), "Keys")
	real := map[string]bool{}
	for prefix, keys := range map[string][]string{"": rootKeys, "validate[].": ruleKeys, "routes[].": routeKeys, "tests[].": testKeys} {
		for _, k := range keys {
			real[prefix+k] = true
		}
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([^`]+)` \\|").FindAllStringSubmatch(section, -1) {
		key := m[1]
		if documented[key] {
			t.Errorf("key %s is documented twice", key)
		}
		documented[key] = true
		if !real[key] {
			t.Errorf("%s documents key %s, which is not a key of a mapping file", docsPath, key)
		}
	}
	for key := range real {
		if !documented[key] {
			t.Errorf("key %s is not documented in the Keys table of %s", key, docsPath)
		}
	}
}

// TestDocsMappingsLoad: every complete mapping file shown in the reference (a YAML block with
// a format and routes) loads, and its test cases pass, so the walkthrough works as written.
func TestDocsMappingsLoad(t *testing.T) {
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(readDocs(t), -1)
	complete := 0
	for i, b := range blocks {
		src := b[1]
		if !regexp.MustCompile(`(?m)^format: `).MatchString(src) || !regexp.MustCompile(`(?m)^routes:`).MatchString(src) {
			continue
		}
		complete++
		file := filepath.Join(t.TempDir(), "mapping.yaml")
		if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		m, err := LoadFile(file, nil)
		if err != nil {
			t.Errorf("yaml block %d of %s does not load:\n%v\n%s", i, docsPath, err, src)
			continue
		}
		for _, r := range m.RunTests() {
			if !r.Passed {
				t.Errorf("%s, mapping %s: test %q fails:\n%s", docsPath, m.Format, r.Name, r.Message)
			}
		}
	}
	if complete < 2 {
		t.Errorf("found %d complete mapping files in %s, want the example and the walkthrough", complete, docsPath)
	}
}
