package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

// TestReadmeCommands: every file of examples/ that the README names exists, and every
// `go run ./cmd/gateway map|check ...` command it shows runs as written, from the repository
// root, and succeeds (a dry run with every record valid).
func TestReadmeCommands(t *testing.T) {
	t.Chdir("../..")
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	files := regexp.MustCompile(`examples/records/[A-Za-z0-9_.-]+`).FindAllString(string(readme), -1)
	if len(files) < 3 {
		t.Errorf("README names %d files of examples/records, want the push, the event and a record", len(files))
	}
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("README names %s: %v", f, err)
		}
	}
	cmds := regexp.MustCompile(`(?m)^go run \./cmd/gateway ((?:map|check) [^#\n]*)`).FindAllStringSubmatch(string(readme), -1)
	if len(cmds) < 2 {
		t.Fatalf("README shows %d map/check commands", len(cmds))
	}
	for _, c := range cmds {
		args := strings.Fields(c[1])
		out, err := runTool(t, "", args...)
		if err != nil {
			t.Errorf("README command %q: %v\n%s", c[1], err, out)
			continue
		}
		if args[0] == "map" {
			recs := gjson.Get(out, "records").Array()
			if len(recs) == 0 || !gjson.Get(out, "records.#.valid").IsArray() || strings.Contains(gjson.Get(out, "records.#.valid").Raw, "false") {
				t.Errorf("README command %q: not every record is valid:\n%s", c[1], out)
			}
		}
	}
}
