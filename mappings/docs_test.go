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
		// Its entry shows it at work in an expr block, which TestDocsExamples runs.
		entry := section[strings.Index(section, "### `"+f.Name+"`\n"):]
		if end := strings.Index(entry[4:], "\n### "); end >= 0 {
			entry = entry[:end+4]
		}
		examples := false
		for _, b := range exprBlocks(entry) {
			examples = examples || strings.Contains(b, f.Name+"(")
		}
		if !examples {
			t.Errorf("the entry of %s in %s has no expr block that calls it", f.Name, docsPath)
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

// exprBlocks returns the bodies of the ```expr blocks of a text.
func exprBlocks(text string) []string {
	var out []string
	for _, m := range regexp.MustCompile("(?s)```expr\n(.*?)```").FindAllStringSubmatch(text, -1) {
		out = append(out, m[1])
	}
	return out
}

// TestDocsExamples runs every line of every ```expr block of the reference, the way a
// mapping field runs: a line must evaluate to true, or, written `EXPR  // error: MESSAGE`,
// fail (when loaded or when run) with exactly that message. `// record: {...}` sets the
// record the following lines read and `// timezone: NAME` the mapping's timezone, until the
// block ends; other lines starting with // are comments.
func TestDocsExamples(t *testing.T) {
	blocks := exprBlocks(readDocs(t))
	if len(blocks) < 18 {
		t.Fatalf("found %d expr blocks in %s; the functions and built-ins should all have examples", len(blocks), docsPath)
	}
	lines := 0
	for _, block := range blocks {
		s, rec := utcSettings, "{}"
		for _, line := range strings.Split(strings.TrimSpace(block), "\n") {
			switch {
			case strings.HasPrefix(line, "// timezone: "):
				loc, err := loadLocation(strings.TrimPrefix(line, "// timezone: "))
				if err != nil {
					t.Fatalf("%s: %v", line, err)
				}
				s = &settings{loc: loc}
				continue
			case strings.HasPrefix(line, "// record: "):
				rec = strings.TrimPrefix(line, "// record: ")
				continue
			case strings.HasPrefix(line, "//") || strings.TrimSpace(line) == "":
				continue
			}
			lines++
			src, wantErr, isErr := strings.Cut(line, "  // error: ")
			prog, err := compileExpr(src, false, s)
			var v any
			if err == nil {
				ev := &evaluator{rec: record{json: rec}}
				v, err = ev.run(prog)
			}
			switch {
			case isErr && err == nil:
				t.Errorf("%s: %s = %v, want the error %q", docsPath, src, v, wantErr)
			case isErr && runError(err) != wantErr:
				t.Errorf("%s: %s\n  error %q\n   want %q", docsPath, src, runError(err), wantErr)
			case !isErr && err != nil:
				t.Errorf("%s: %s: %v", docsPath, src, runError(err))
			case !isErr && v != true:
				t.Errorf("%s: %s = %v, want true", docsPath, src, v)
			}
		}
	}
	t.Logf("%d example lines in %d blocks", lines, len(blocks))
}
