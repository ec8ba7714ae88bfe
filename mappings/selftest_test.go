package mappings

import (
	"fmt"
	"strings"
	"testing"
)

// TestExampleMappings loads the mappings shipped in examples/mappings and runs their tests.
func TestExampleMappings(t *testing.T) {
	set, err := Load("../examples/mappings", []string{"activities", "quotes", "payments"})
	if err != nil {
		t.Fatalf("load examples:\n%v", err)
	}
	for _, format := range set.Formats() {
		m, _ := set.Get(format)
		results := m.RunTests()
		if len(results) == 0 {
			t.Errorf("%s: no tests", m.File)
		}
		for _, r := range results {
			t.Run(format+"/"+r.Name, func(t *testing.T) {
				if !r.Passed {
					t.Errorf("%s: test %q failed:\n%s", m.File, r.Name, r.Message)
				}
			})
		}
	}
}

func TestRunTestsReportsDifferences(t *testing.T) {
	m := mustLoadFile(t, "testdata/failing.yaml")
	want := []TestResult{
		{Name: "passes", Passed: true},
		{Name: "wrong values", Message: strings.Join([]string{
			`field id: expected "y", got "x"`,
			`field n: expected 1, got 2`,
			`field missing: expected true, got no such field`,
			`field extra: not expected, got "surprise"`,
		}, "\n")},
		{Name: "wrong sink", Message: `sink: expected sa, got sb (route b)`},
		{Name: "unexpectedly invalid", Message: "expected a record for sink sa,\ngot an invalid record:\n" +
			`  - field n: number: cannot parse "abc" as a number`},
		{Name: "unexpectedly valid", Message: "expected an invalid record with error \"kind must not be bad\",\n" +
			`got a valid record for sink sb: {"id":"x"}`},
		{Name: "other error", Message: "expected error \"kind must be good\",\ngot errors:\n  - kind must not be bad"},
	}
	got := m.RunTests()
	if len(got) != len(want) {
		t.Fatalf("%d results, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("result %d:\n got %s\nwant %s", i, show(got[i]), show(want[i]))
		}
	}
}

func TestRunTestsSeveralSinks(t *testing.T) {
	m := mustLoadFile(t, "testdata/fanout.yaml")
	want := []TestResult{
		{Name: "an urgent claim goes to both sinks", Passed: true},
		{Name: "a normal claim goes to the table only", Passed: true},
		{Name: "expecting one sink of two fails", Message: "sinks: expected claims_api, got claims (route table), claims_api (route api)"},
		{Name: "expecting two sinks of one fails, with the fields of each compared", Message: strings.Join([]string{
			"sinks: expected claims, claims_api, got claims (route table)",
			"sink claims: field amount: expected 3, got 2",
		}, "\n")},
		{Name: "a valid record is not invalid", Message: "expected an invalid record with error \"nope\",\n" +
			`got a valid record for sink claims: {"id":"c5","amount":1}; sink claims_api: {"id":"c5","urgent":true}`},
	}
	got := m.RunTests()
	if len(got) != len(want) {
		t.Fatalf("%d results, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("result %d:\n got %s\nwant %s", i, show(got[i]), show(want[i]))
		}
	}
}

func show(r TestResult) string {
	return fmt.Sprintf("{%q passed=%v\n%s}", r.Name, r.Passed, r.Message)
}
