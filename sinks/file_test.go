package sinks_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opengw/gateway/sinks"
	"github.com/opengw/gateway/sinks/sinktest"
)

func TestFileSink(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) sinktest.Harness {
		path := filepath.Join(t.TempDir(), "out.ndjson")
		return sinktest.Harness{
			Sink:    openFile(t, path),
			Stored:  func(t *testing.T) []json.RawMessage { return readLines(t, path) },
			Upserts: false,
		}
	})
}

func TestFileSinkWritesOneCompactLinePerRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.ndjson")
	s := openFile(t, path)
	write(t, s,
		sinks.Record{ID: "m1", Data: json.RawMessage("{\n  \"id\": \"a\",\n  \"n\": [1, 2]\n}")},
		sinks.Record{ID: "m2", Data: json.RawMessage(`{"id":"b"}`)},
	)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopening appends.
	write(t, openFile(t, path), sinks.Record{ID: "m3", Data: json.RawMessage(`{"id":"c"}`)})
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := "{\"id\":\"a\",\"n\":[1,2]}\n{\"id\":\"b\"}\n{\"id\":\"c\"}\n"; string(got) != want {
		t.Errorf("file =\n%s\nwant\n%s", got, want)
	}
}

func TestFileSinkRejectsNonObjects(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.ndjson")
	s := openFile(t, path)
	for _, data := range []string{`[1]`, `{"a":`, ``} {
		err := s.Write(context.Background(), []sinks.Record{
			{ID: "m1", Data: json.RawMessage(`{"ok":true}`)},
			{ID: "m2", Data: json.RawMessage(data)},
		})
		if !errors.Is(err, sinks.ErrPermanent) || !strings.Contains(err.Error(), "record m2") {
			t.Errorf("data %q: err = %v; want a permanent error naming record m2", data, err)
		}
	}
	if lines := readLines(t, path); len(lines) != 0 {
		t.Errorf("file holds %s; want nothing from rejected batches", lines)
	}
}

func openFile(t *testing.T, path string) *sinks.FileSink {
	t.Helper()
	s, err := sinks.OpenFileSink("test", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func readLines(t *testing.T, path string) []json.RawMessage {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []json.RawMessage
	for _, line := range bytes.SplitAfter(b, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		if line[len(line)-1] != '\n' {
			t.Fatalf("unterminated last line %q", line)
		}
		out = append(out, json.RawMessage(line[:len(line)-1]))
	}
	return out
}
