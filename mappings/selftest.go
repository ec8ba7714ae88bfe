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
	name    string
	input   []byte           // the record as JSON
	expect  []expectedOutput // the sinks the record must go to, in declared order ...
	invalid string           // or: an error message expected among Outcome.Errors
}

// expectedOutput is one sink of a test's `expect:` with the fields it must receive.
type expectedOutput struct {
	sink   string
	fields map[string]any // exactly these fields, normalized as by encoding/json
	order  []string       // the field names in declared order, for messages
}

// TestResult is the result of one test case of a mapping file.
type TestResult struct {
	Name    string
	Passed  bool
	Message string // when failed: what was expected against what came out, one point per line
}

// RunTests applies the mapping to the input of each of its test cases and compares the
// outcome: an `expect` case passes when the record goes to exactly the expected sinks, each
// with exactly the expected fields (numbers compare as JSON numbers: 1530 equals 1530.0); an
// `invalid` case passes when the expected message is one of the outcome's errors. Results are
// in declared order.
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
		got := make([]string, len(out.Routes))
		for i, r := range out.Routes {
			got[i] = fmt.Sprintf("sink %s: %s", r.Sink, r.JSON())
		}
		return fmt.Sprintf("expected an invalid record with error %q,\ngot a valid record for %s",
			tc.invalid, strings.Join(got, "; "))
	}
	if slices.Contains(out.Errors, tc.invalid) {
		return ""
	}
	return fmt.Sprintf("expected error %q,\ngot errors:\n%s", tc.invalid, bullets(out.Errors))
}

func checkExpect(tc testCase, out Outcome) string {
	wantSinks := make([]string, len(tc.expect))
	for i, e := range tc.expect {
		wantSinks[i] = e.sink
	}
	label := "sink"
	if len(tc.expect) > 1 || len(out.Routes) > 1 {
		label = "sinks"
	}
	if !out.Valid() {
		return fmt.Sprintf("expected a record for %s %s,\ngot an invalid record:\n%s", label, strings.Join(wantSinks, ", "), bullets(out.Errors))
	}
	var diffs []string
	got := make([]string, len(out.Routes))
	same := len(out.Routes) == len(tc.expect)
	for i, r := range out.Routes {
		got[i] = fmt.Sprintf("%s (route %s)", r.Sink, r.Route)
		same = same && slices.Contains(wantSinks, r.Sink)
	}
	if !same {
		diffs = append(diffs, fmt.Sprintf("%s: expected %s, got %s", label, strings.Join(wantSinks, ", "), strings.Join(got, ", ")))
	}
	for _, e := range tc.expect {
		i := slices.IndexFunc(out.Routes, func(r RouteOutput) bool { return r.Sink == e.sink })
		if i < 0 {
			continue
		}
		prefix := ""
		if len(tc.expect) > 1 {
			prefix = "sink " + e.sink + ": "
		}
		for _, d := range fieldDiffs(e, out.Routes[i]) {
			diffs = append(diffs, prefix+d)
		}
	}
	return strings.Join(diffs, "\n")
}

// fieldDiffs compares what a route sends with the fields a test expects at its sink.
func fieldDiffs(e expectedOutput, r RouteOutput) []string {
	var got map[string]any
	if err := json.Unmarshal(r.JSON(), &got); err != nil {
		return []string{fmt.Sprintf("the fields do not encode as JSON: %v", err)}
	}
	var diffs []string
	for _, name := range e.order {
		want := e.fields[name]
		v, ok := got[name]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("field %s: expected %s, got no such field", name, jsonText(want)))
		case !reflect.DeepEqual(v, want):
			diffs = append(diffs, fmt.Sprintf("field %s: expected %s, got %s", name, jsonText(want), jsonText(v)))
		}
	}
	for _, f := range r.Fields {
		if _, ok := e.fields[f.Name]; !ok {
			diffs = append(diffs, fmt.Sprintf("field %s: not expected, got %s", f.Name, jsonText(got[f.Name])))
		}
	}
	return diffs
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
