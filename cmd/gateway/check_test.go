package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// runTool runs a gateway command through run() and returns its stdout and error.
func runTool(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, func(string) string { return "" }, strings.NewReader(stdin), &stdout, &stderr)
	return stdout.String(), err
}

// writeTree writes files (path relative to dir -> content) under dir.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

const checkConfig = `mappings: mappings
sinks:
  orders: {type: sqlite, table: orders, key: order_id}
clients:
  - {id: demo, name: Demo, secret: demo-secret, formats: [orders], scopes: [push, tracking]}
`

// TestCheckReportsEveryProblemSorted: problems of several files come out together, one
// "file:line:col: message" per line in file, line and column order, then a count; the
// command fails.
func TestCheckReportsEveryProblemSorted(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"gateway.yaml": checkConfig,
		// Problems are written out of order on purpose: the output is sorted anyway.
		"mappings/orders.yaml": `format: orders
id: id
schema:
  properties:
    amount: {type: number, minimum: "0"}
validate:
  - rule: total > 0 &&
    message: total must be positive
routes:
  - sink: orders
    when: '"yes"'
    fields:
      order_id: id
      total: numbr(total)
tests:
  - name: an order
    input: {id: o1, total: 3}
    expected: {orders: {order_id: o1}}
`,
		"mappings/activity.yaml": `format: activity
colour: blue
routes:
  - sink: activities
    fields:
      id: id
`,
		"mappings/dup.yml": `format: orders
routes:
  - sink: orders
    fields: {id: id}
`,
		"mappings/README.txt": "not a mapping: ignored",
	})
	m := filepath.Join(dir, "mappings")
	out, err := runTool(t, "", "check", "--config", filepath.Join(dir, "gateway.yaml"))
	if !errors.Is(err, errReported) {
		t.Fatalf("check returned %v, want errReported", err)
	}
	want := strings.Join([]string{
		m + `/activity.yaml:2:1: unknown key "colour" (allowed: format, id, type, timezone, required, schema, validate, routes_mode, routes, tests)`,
		m + `/activity.yaml:4:11: routes[0].sink: unknown sink "activities" (known sinks: orders)`,
		m + `/orders.yaml:1:9: format "orders" is already defined at ` + m + `/dup.yml:1:9`,
		m + `/orders.yaml:5:37: schema: not a valid JSON Schema: /properties/amount/minimum: must be of type number, got string`,
		m + `/orders.yaml:7:22: validate[0].rule: unexpected token EOF`,
		m + `/orders.yaml:11:11: routes[0].when: must be a condition: expected bool, but got string`,
		m + `/orders.yaml:14:14: routes[0].fields.total: unknown name numbr`,
		m + `/orders.yaml:16:5: tests[0]: needs "expect" (sink: fields, ...) or "invalid" (an expected error message)`,
		m + `/orders.yaml:18:5: tests[0]: unknown key "expected" (did you mean "expect"?)`,
		"9 problems; mapping tests not run",
	}, "\n") + "\n"
	if out != want {
		t.Errorf("check output\n got:\n%s\nwant:\n%s", out, want)
	}
}

// TestCheckRunsMappingTests: a mapping that loads but whose own test fails makes check fail
// with a readable expected-vs-got message and the summary.
func TestCheckRunsMappingTests(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"gateway.yaml": checkConfig,
		"mappings/orders.yaml": `format: orders
id: id
routes:
  - sink: orders
    fields:
      order_id: id
      total: number(total)
tests:
  - name: passes
    input: {id: o1, total: "3"}
    expect: {orders: {order_id: o1, total: 3}}
  - name: fails
    input: {id: o2, total: "4"}
    expect: {orders: {order_id: o2, total: 5}}
`,
	})
	out, err := runTool(t, "", "check", "--config", filepath.Join(dir, "gateway.yaml"))
	if !errors.Is(err, errReported) {
		t.Fatalf("check returned %v, want errReported", err)
	}
	want := "FAIL " + filepath.Join(dir, "mappings", "orders.yaml") + ": fails: field total: expected 5, got 4\n" +
		"1 mappings, 2 tests: 1 passed, 1 failed\n"
	if out != want {
		t.Errorf("check output\n got:\n%s\nwant:\n%s", out, want)
	}
}

// TestCheckExamples: the shipped example passes, with the summary line.
func TestCheckExamples(t *testing.T) {
	out, err := runTool(t, "", "check", "--config", exampleConfig)
	if err != nil {
		t.Fatalf("check failed: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`^\d+ mappings, \d+ tests: \d+ passed, 0 failed\n$`).MatchString(out) {
		t.Errorf("check output: %q", out)
	}
}

// TestCheckUnassignedFormat: a client assigned a format no mapping defines is a problem too.
func TestCheckUnassignedFormat(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"gateway.yaml":         strings.Replace(checkConfig, "formats: [orders]", "formats: [orders, refunds]", 1),
		"mappings/orders.yaml": "format: orders\nroutes: [{sink: orders, fields: {id: id}}]\n",
	})
	cfg := filepath.Join(dir, "gateway.yaml")
	out, err := runTool(t, "", "check", "--config", cfg)
	if !errors.Is(err, errReported) {
		t.Fatalf("check returned %v", err)
	}
	want := cfg + `: client "demo" is assigned format "refunds", which no mapping in ` + filepath.Join(dir, "mappings") + " defines\n" +
		"1 problem; mapping tests not run\n"
	if out != want {
		t.Errorf("check output\n got:\n%s\nwant:\n%s", out, want)
	}
}
