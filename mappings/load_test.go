package mappings

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the .want files of testdata/bad")

// testSinks are the sinks the broken files are checked against.
var testSinks = []string{"activities", "quotes", "payments", "s", "t"}

// TestLoadProblemsGolden loads each testdata/bad/*.yaml on its own and compares every problem
// reported with the file's .want (go test -run Golden -update rewrites them).
func TestLoadProblemsGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no broken files: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			m, err := LoadFile(file, testSinks)
			if err == nil {
				t.Fatalf("loaded %s without problems: %+v", file, m)
			}
			if m != nil {
				t.Errorf("a mapping was returned with problems")
			}
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("error is %T, want Problems", err)
			}
			for _, p := range ps {
				if p.File != file {
					t.Errorf("problem names file %q, want %q", p.File, file)
				}
			}
			got := err.Error() + "\n"
			wantFile := strings.TrimSuffix(file, ".yaml") + ".want"
			if *update {
				if err := os.WriteFile(wantFile, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(wantFile)
			if err != nil {
				t.Fatalf("%v (run go test -run Golden -update)", err)
			}
			if got != string(want) {
				t.Errorf("problems of %s\n got:\n%s\nwant:\n%s", file, got, want)
			}
		})
	}
}

// TestLoadProblemPositions pins the positions the brief calls out, independently of the
// golden files.
func TestLoadProblemPositions(t *testing.T) {
	tests := []struct {
		file string
		want string
	}{
		// rule: type in ["call" "quote"] -- the value starts at column 11, "quote" is 16
		// characters into it.
		{"testdata/bad/rule_syntax.yaml", `testdata/bad/rule_syntax.yaml:3:27: validate[0].rule: unexpected token String("quote")`},
		// The same in quotes: one more column for the quote.
		{"testdata/bad/rule_syntax.yaml", `testdata/bad/rule_syntax.yaml:5:28: validate[1].rule: unexpected token String("quote")`},
		// A literal block: second line of the block; the block is indented 6 and "b" is 19
		// characters into that line of the value.
		{"testdata/bad/rule_syntax.yaml", `testdata/bad/rule_syntax.yaml:9:26: validate[2].rule: unexpected token String("b")`},
		{"testdata/bad/unknown_key.yaml", `testdata/bad/unknown_key.yaml:3:1: unknown key "descripton"`},
		{"testdata/bad/unknown_key.yaml", `testdata/bad/unknown_key.yaml:6:5: validate[0]: unknown key "mesage"`},
		{"testdata/bad/unknown_key.yaml", `testdata/bad/unknown_key.yaml:11:5: routes[0]: unknown key "feilds"`},
		{"testdata/bad/unknown_key.yaml", `testdata/bad/unknown_key.yaml:16:5: tests[0]: unknown key "expected"`},
		{"testdata/bad/bad_sink.yaml", `testdata/bad/bad_sink.yaml:8:11: routes[1].sink: unknown sink "nowhere"`},
		{"testdata/bad/non_bool.yaml", `testdata/bad/non_bool.yaml:3:11: validate[0].rule: must be a condition: expected bool, but got int`},
		{"testdata/bad/non_bool.yaml", `testdata/bad/non_bool.yaml:8:11: routes[0].when: must be a condition: expected bool, but got string`},
		{"testdata/bad/non_bool.yaml", `testdata/bad/non_bool.yaml:11:11: routes[1].when: must be a condition: expected bool, but got string`},
		{"testdata/bad/bad_sink.yaml", `testdata/bad/bad_sink.yaml:13:14: tests[0].expect: no route has sink "elsewhere"`},
		{"testdata/bad/unknown_key.yaml", `testdata/bad/unknown_key.yaml:17:1: key "id" appears twice`},
	}
	for _, tt := range tests {
		_, err := LoadFile(tt.file, testSinks)
		if err == nil {
			t.Fatalf("%s loaded without problems", tt.file)
		}
		var found bool
		for _, line := range strings.Split(err.Error(), "\n") {
			if strings.HasPrefix(line, tt.want) {
				found = true
			}
		}
		if !found {
			t.Errorf("no problem starting with\n  %s\namong\n%v", tt.want, err)
		}
	}
}

func TestLoadDuplicateFormat(t *testing.T) {
	_, err := Load("testdata/duplicate", nil)
	want := `testdata/duplicate/b.yml:2:9: format "twice" is already defined at testdata/duplicate/a.yaml:1:9`
	if err == nil || err.Error() != want {
		t.Errorf("Load(duplicate) error\n got %v\nwant %s", err, want)
	}
}

func TestLoadCollectsAllFiles(t *testing.T) {
	_, err := Load("testdata/bad", testSinks)
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error %v is not Problems", err)
	}
	files := map[string]bool{}
	for _, p := range ps {
		files[p.File] = true
	}
	all, _ := filepath.Glob("testdata/bad/*.yaml")
	if len(files) != len(all) {
		t.Errorf("problems in %d files, want all %d: %v", len(files), len(all), files)
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(ps) {
		t.Errorf("Error() has %d lines for %d problems", len(lines), len(ps))
	}
	sorted := append(Problems(nil), ps...)
	sorted.sort()
	if !reflect.DeepEqual(sorted, ps) {
		t.Errorf("Load's problems are not sorted")
	}
}

func TestLoadDirectoryProblems(t *testing.T) {
	if _, err := Load("testdata/does-not-exist", nil); err == nil ||
		!strings.HasPrefix(err.Error(), "testdata/does-not-exist: read mapping directory: ") {
		t.Errorf("missing directory: %v", err)
	}
	if _, err := Load(t.TempDir(), nil); err == nil || !strings.HasSuffix(err.Error(), ": no mapping files (*.yaml, *.yml)") {
		t.Errorf("empty directory: %v", err)
	}
	if _, err := LoadFile("testdata/does-not-exist.yaml", nil); err == nil ||
		!strings.HasPrefix(err.Error(), "testdata/does-not-exist.yaml: read mapping file: ") {
		t.Errorf("missing file: %v", err)
	}
}

func TestLoadSinksNilAcceptsAnySink(t *testing.T) {
	if _, err := LoadFile("testdata/bad/bad_sink.yaml", nil); err == nil || strings.Contains(err.Error(), "unknown sink") {
		t.Errorf("with sinks nil, sinks were checked: %v", err)
	}
	_, err := LoadFile("testdata/bad/bad_sink.yaml", []string{})
	if err == nil || !strings.Contains(err.Error(), `unknown sink "activities" (no sinks are configured)`) {
		t.Errorf("with no sinks: %v", err)
	}
}

func TestSet(t *testing.T) {
	s, err := Load("../examples/mappings", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.Formats(), []string{"activity", "payment_status_updated"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Formats() = %q, want %q", got, want)
	}
	m, ok := s.Get("activity")
	if !ok || m.Format != "activity" || m.File != filepath.Join("../examples/mappings", "activity.yaml") {
		t.Fatalf("Get(activity) = %+v, %v", m, ok)
	}
	if len(m.Version) != 12 || strings.Trim(m.Version, "0123456789abcdef") != "" {
		t.Errorf("Version = %q, want 12 hex digits", m.Version)
	}
	if !reflect.DeepEqual(m.Required, []string{"id", "type"}) {
		t.Errorf("Required = %q", m.Required)
	}
	if _, ok := s.Get("nope"); ok {
		t.Errorf("Get(nope) found a mapping")
	}
}

func TestProblemString(t *testing.T) {
	tests := []struct {
		p    Problem
		want string
	}{
		{Problem{"a.yaml", 3, 7, "bad"}, "a.yaml:3:7: bad"},
		{Problem{"a.yaml", 3, 0, "bad"}, "a.yaml:3: bad"},
		{Problem{"a.yaml", 0, 0, "bad"}, "a.yaml: bad"},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
	ps := Problems{{"b.yaml", 1, 1, "x"}, {"a.yaml", 9, 1, "y"}, {"a.yaml", 2, 5, "z"}, {"a.yaml", 2, 3, "w"}}
	want := "a.yaml:2:3: w\na.yaml:2:5: z\na.yaml:9:1: y\nb.yaml:1:1: x"
	if got := ps.Error(); got != want {
		t.Errorf("Error()\n got %s\nwant %s", got, want)
	}
}
