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
			Stored:  func(t *testing.T) []sinktest.Row { return splitClient(t, readLines(t, path)) },
			Upserts: false,
		}
	})
}

func TestFileSinkWritesOneCompactLinePerRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.ndjson")
	s := openFile(t, path)
	write(t, s,
		sinks.Record{ClientID: "acme", ID: "m1", Data: json.RawMessage("{\n  \"id\": \"a\",\n  \"n\": [1, 2]\n}")},
		sinks.Record{ClientID: "acme", ID: "m2", Data: json.RawMessage(`{"id":"b"}`)},
	)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopening appends.
	write(t, openFile(t, path), sinks.Record{ClientID: "acme", ID: "m3", Data: json.RawMessage(`{"id":"c"}`)})
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"_client_id":"acme","id":"a","n":[1,2]}` + "\n" + `{"_client_id":"acme","id":"b"}` + "\n" +
		`{"_client_id":"acme","id":"c"}` + "\n"; string(got) != want {
		t.Errorf("file =\n%s\nwant\n%s", got, want)
	}
}

func TestFileSinkRejectsNonObjects(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.ndjson")
	s := openFile(t, path)
	for _, data := range []string{`[1]`, `{"a":`, ``} {
		err := s.Write(context.Background(), []sinks.Record{
			{ClientID: "acme", ID: "m1", Data: json.RawMessage(`{"ok":true}`)},
			{ClientID: "acme", ID: "m2", Data: json.RawMessage(data)},
		})
		if !errors.Is(err, sinks.ErrPermanent) || !strings.Contains(err.Error(), "record m2") {
			t.Errorf("data %q: err = %v; want a permanent error naming record m2", data, err)
		}
	}
	if lines := readLines(t, path); len(lines) != 0 {
		t.Errorf("file holds %s; want nothing from rejected batches", lines)
	}
}

func TestFileSinkWritesEachRecordsClient(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.ndjson")
	write(t, openFile(t, path),
		sinks.Record{ClientID: "demo", ID: "m1", Data: json.RawMessage(` { } `)},
		sinks.Record{ClientID: "other \"quoted\"", ID: "m2", Data: json.RawMessage(`{"id":"a"}`)},
	)
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"_client_id":"demo"}` + "\n" + `{"_client_id":"other \"quoted\"","id":"a"}` + "\n"; string(got) != want {
		t.Errorf("file =\n%s\nwant\n%s", got, want)
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

// splitClient parses NDJSON lines into the client id each carries and the rest of the object.
func splitClient(t *testing.T, lines []json.RawMessage) []sinktest.Row {
	t.Helper()
	out := make([]sinktest.Row, len(lines))
	for i, line := range lines {
		var obj map[string]any
		if err := json.Unmarshal(line, &obj); err != nil {
			t.Fatalf("line %s: %v", line, err)
		}
		client, ok := obj[sinks.ClientField].(string)
		if !ok {
			t.Fatalf("line %s has no string %s", line, sinks.ClientField)
		}
		delete(obj, sinks.ClientField)
		b, err := json.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = sinktest.Row{Client: client, Data: b}
	}
	return out
}
