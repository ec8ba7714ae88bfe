package mappings

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// testCase is one entry of a mapping file's `tests:`.
type testCase struct {
	name        string
	input       []byte         // the record as JSON
	sink        string         // expect: the sink ...
	expect      map[string]any // ... and exactly these fields, normalized as by encoding/json
	expectOrder []string       // the expected field names in declared order, for messages
	invalid     string         // or: an error message expected among Outcome.Errors
}

// TestResult is the result of one test case of a mapping file.
type TestResult struct {
	Name    string
	Passed  bool
	Message string // when failed: what was expected against what came out, one point per line
}

// RunTests applies the mapping to the input of each of its test cases and compares the
// outcome: an `expect` case passes when the record goes to the expected sink with exactly the
// expected fields (numbers compare as JSON numbers: 1530 equals 1530.0); an `invalid` case
// passes when the expected message is one of the outcome's errors. Results are in declared
// order.
func (m *Mapping) RunTests() []TestResult {
	results := make([]TestResult, 0, len(m.tests))
	for _, tc := range m.tests {
		out := m.Apply(tc.input)
		var msg string
		if tc.invalid != "" {
			msg = checkInvalid(tc, out)
		} else {
			msg = checkExpect(tc, out)
		}
		results = append(results, TestResult{Name: tc.name, Passed: msg == "", Message: msg})
	}
	return results
}

func checkInvalid(tc testCase, out Outcome) string {
	if out.Valid() {
		return fmt.Sprintf("expected an invalid record with error %q,\ngot a valid record for sink %s: %s",
			tc.invalid, out.Sink, out.JSON())
	}
	if slices.Contains(out.Errors, tc.invalid) {
		return ""
	}
	return fmt.Sprintf("expected error %q,\ngot errors:\n%s", tc.invalid, bullets(out.Errors))
}

func checkExpect(tc testCase, out Outcome) string {
	if !out.Valid() {
		return fmt.Sprintf("expected a record for sink %s,\ngot an invalid record:\n%s", tc.sink, bullets(out.Errors))
	}
	var diffs []string
	if out.Sink != tc.sink {
		diffs = append(diffs, fmt.Sprintf("sink: expected %s, got %s (route %s)", tc.sink, out.Sink, out.Route))
	}
	var got map[string]any
	if err := json.Unmarshal(out.JSON(), &got); err != nil {
		return fmt.Sprintf("the fields do not encode as JSON: %v", err)
	}
	for _, name := range tc.expectOrder {
		want := tc.expect[name]
		v, ok := got[name]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("field %s: expected %s, got no such field", name, jsonText(want)))
		case !reflect.DeepEqual(v, want):
			diffs = append(diffs, fmt.Sprintf("field %s: expected %s, got %s", name, jsonText(want), jsonText(v)))
		}
	}
	for _, f := range out.Fields {
		if _, ok := tc.expect[f.Name]; !ok {
			diffs = append(diffs, fmt.Sprintf("field %s: not expected, got %s", f.Name, jsonText(got[f.Name])))
		}
	}
	return strings.Join(diffs, "\n")
}

func bullets(lines []string) string {
	var b strings.Builder
	for i, l := range lines {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString("  - ")
		b.WriteString(l)
	}
	return b.String()
}

// jsonText renders a value as compact JSON for a message.
func jsonText(v any) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Sprintf("%v", v)
	}
	return strings.TrimSuffix(buf.String(), "\n")
}
