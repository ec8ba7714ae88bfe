package mappings

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFunctionsGolden evaluates every expression of testdata/functions/*.expr and compares
// what each gives (a JSON value, or the error) with the file's .golden (go test -run
// FunctionsGolden -update rewrites them). A file may start with header comments:
//
//	// timezone: Europe/Copenhagen      the mapping's timezone (default UTC)
//	// record: {"a": 1}                 the record the expressions read (default {})
//
// Other lines starting with // are comments, copied to the golden file to explain the cases.
func TestFunctionsGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/functions/*.expr")
	if err != nil || len(files) == 0 {
		t.Fatalf("no expression files: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			src, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			s, rec := utcSettings, "{}"
			var out bytes.Buffer
			sc := bufio.NewScanner(bytes.NewReader(src))
			for sc.Scan() {
				line := sc.Text()
				switch {
				case strings.HasPrefix(line, "// timezone: "):
					loc, err := loadLocation(strings.TrimPrefix(line, "// timezone: "))
					if err != nil {
						t.Fatal(err)
					}
					s = &settings{loc: loc}
				case strings.HasPrefix(line, "// record: "):
					rec = strings.TrimPrefix(line, "// record: ")
				}
				if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "//") {
					out.WriteString(line + "\n")
					continue
				}
				out.WriteString(line + "\n=> " + evalForGolden(line, s, rec) + "\n")
			}
			got := out.String()
			golden := strings.TrimSuffix(file, ".expr") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run FunctionsGolden -update)", err)
			}
			if got != string(want) {
				t.Errorf("results of %s differ from %s:\n%s", file, golden, lineDiff(string(want), got))
			}
		})
	}
}

// evalForGolden compiles and runs one expression as a mapping field would and renders the
// result: JSON, or "load error: ..." / "error: ...".
func evalForGolden(src string, s *settings, rec string) string {
	prog, err := compileExpr(src, false, s)
	if err != nil {
		return "load error: " + err.Error()
	}
	ev := &evaluator{rec: record{json: rec}}
	v, err := ev.run(prog)
	if err == nil {
		err = checkJSON(v)
	}
	if err != nil {
		return "error: " + runError(err)
	}
	return jsonText(v)
}

// lineDiff lists the lines that differ, for a readable failure.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n  want %s\n   got %s\n", i+1, wl, gl)
		}
	}
	return b.String()
}
