package sinks

import (
	"path/filepath"
	"testing"
)

func TestOpenSharesOneDatabasePerFile(t *testing.T) {
	dir := t.TempDir()
	r, err := Open(map[string]Config{
		"a": {Type: "sqlite"},
		"b": {Type: "sqlite", Path: "sinks.db"},
		"c": {Type: "sqlite", Path: filepath.Join(dir, "sub", "..", "sinks.db")},
		"d": {Type: "sqlite", Path: "other.db"},
	}, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if len(r.dbs) != 2 {
		t.Fatalf("%d databases open, want 2", len(r.dbs))
	}
	a, _ := r.Get("a")
	for _, name := range []string{"b", "c"} {
		s, _ := r.Get(name)
		if s.(*SQLiteSink).db != a.(*SQLiteSink).db {
			t.Errorf("sink %s does not share sink a's database", name)
		}
	}
}
