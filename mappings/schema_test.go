package mappings

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// writeFiles writes files (relative path -> content) into a new temporary folder and returns
// it.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// paymentsMapping declares an inline schema and a validate rule, to show the order in which
// they run.
const paymentsMapping = `format: payments
id: id
required: [id]
schema:
  type: object
  required: [amount, currency]
  properties:
    id: {type: string}
    amount: {type: number, minimum: 0}
    currency: {enum: [DKK, EUR]}
    email: {type: string, format: email}
    lines:
      type: array
      maxItems: 2
      items: {type: object, required: [sku], properties: {sku: {type: string, pattern: "^[A-Z]+$"}}}
    note: {anyOf: [{type: string}, {type: "null"}]}
    "a/b": {type: integer}
  additionalProperties: false
validate:
  - rule: amount < 1000
    message: amount must be under 1000
routes:
  - sink: payments
    fields:
      payment_id: id
      amount: amount
`

func TestSchemaViolations(t *testing.T) {
	dir := writeFiles(t, map[string]string{"payments.yaml": paymentsMapping})
	m, err := LoadFile(filepath.Join(dir, "payments.yaml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		rec  string
		want []string // nil: valid
	}{
		{"valid", `{"id":"p1","amount":12.5,"currency":"DKK","lines":[{"sku":"AB"}],"note":null}`, nil},
		{"minimum", `{"id":"p1","amount":-1,"currency":"DKK"}`, []string{"schema: /amount: must be >= 0, got -1"}},
		{"type", `{"id":"p1","amount":"12","currency":"DKK"}`, []string{"schema: /amount: must be of type number, got string"}},
		{"required, each missing property at its own pointer", `{"id":"p1"}`,
			[]string{"schema: /amount: is required", "schema: /currency: is required"}},
		{"enum", `{"id":"p1","amount":1,"currency":"USD"}`, []string{`schema: /currency: must be one of "DKK", "EUR", got "USD"`}},
		{"format is asserted", `{"id":"p1","amount":1,"currency":"EUR","email":"not-an-address"}`,
			[]string{`schema: /email: must be a valid email, got "not-an-address"`}},
		{"nested items and pattern", `{"id":"p1","amount":1,"currency":"EUR","lines":[{"sku":"ok"},{}]}`,
			[]string{`schema: /lines/0/sku: must match the pattern "^[A-Z]+$", got "ok"`, "schema: /lines/1/sku: is required"}},
		{"maxItems", `{"id":"p1","amount":1,"currency":"EUR","lines":[{"sku":"A"},{"sku":"B"},{"sku":"C"}]}`,
			[]string{"schema: /lines: must have at most 2 items, got 3"}},
		{"anyOf of single rules is worded as alternatives", `{"id":"p1","amount":1,"currency":"EUR","note":5}`,
			[]string{"schema: /note: must be of type string, got number, or must be of type null, got number"}},
		{"additionalProperties names each property, sorted", `{"id":"p1","amount":1,"currency":"EUR","zz":1,"yy":2}`,
			[]string{"schema: /yy: is not allowed (additionalProperties)", "schema: /zz: is not allowed (additionalProperties)"}},
		{"pointer escapes / as ~1", `{"id":"p1","amount":1,"currency":"EUR","a/b":1.5}`,
			[]string{"schema: /a~1b: must be of type integer, got number"}},
		{"every violation is reported, sorted by pointer", `{"id":7,"amount":-3,"currency":"X"}`, []string{
			"schema: /amount: must be >= 0, got -3",
			`schema: /currency: must be one of "DKK", "EUR", got "X"`,
			"schema: /id: must be of type string, got number",
		}},
		// The steps: required first, then schema, then validate rules.
		{"required runs before schema", `{"amount":-1}`, []string{"required field id is missing"}},
		{"validate runs after the schema passes", `{"id":"p1","amount":5000,"currency":"DKK"}`, []string{"amount must be under 1000"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Repeat: map iteration inside the validator must not change the order.
			for range 5 {
				out := m.Apply([]byte(tt.rec))
				if !reflect.DeepEqual(out.Errors, tt.want) {
					t.Fatalf("Apply(%s).Errors =\n  %q\nwant\n  %q", tt.rec, out.Errors, tt.want)
				}
				if tt.want == nil && out.Routes[0].Sink != "payments" {
					t.Fatalf("valid record went to %q", out.Routes[0].Sink)
				}
			}
		})
	}
}

func TestSchemaViolationsAreCapped(t *testing.T) {
	dir := writeFiles(t, map[string]string{"m.yaml": `format: m
schema: {properties: {xs: {items: {type: string}}}}
routes: [{sink: s, fields: {a: xs}}]
`})
	m, err := LoadFile(filepath.Join(dir, "m.yaml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := `{"xs":[` + strings.TrimSuffix(strings.Repeat("1,", 50), ",") + `]}`
	errs := m.Apply([]byte(rec)).Errors
	if len(errs) != maxViolations+1 || errs[maxViolations] != "schema: and 30 more violations" {
		t.Fatalf("errors (%d): %q", len(errs), errs)
	}
}

// TestSchemaFile: `schema:` may name a JSON or YAML file relative to the mapping file; $ref
// between local files works; editing a schema file makes a new mapping Version.
func TestSchemaFile(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"orders.yaml": `format: orders
schema: schemas/order.json
routes: [{sink: s, fields: {n: n}}]
`,
		"yamlschema.yaml": `format: yamlschema
schema: schemas/order.yaml
routes: [{sink: s, fields: {n: n}}]
`,
		"schemas/order.json":  `{"type": "object", "properties": {"n": {"$ref": "common.json#/$defs/positive"}}}`,
		"schemas/order.yaml":  "type: object\nproperties:\n  n: {$ref: 'common.json#/$defs/positive'}\n",
		"schemas/common.json": `{"$defs": {"positive": {"type": "integer", "exclusiveMinimum": 0}}}`,
	})
	set, err := Load(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"orders", "yamlschema"} {
		m, _ := set.Get(format)
		if got := m.Apply([]byte(`{"n":0}`)).Errors; !reflect.DeepEqual(got, []string{"schema: /n: must be > 0, got 0"}) {
			t.Errorf("%s: errors %q", format, got)
		}
		if got := m.Apply([]byte(`{"n":3}`)).Errors; got != nil {
			t.Errorf("%s: valid record: %q", format, got)
		}
	}
	before, _ := set.Get("orders")
	// A change in a file the schema only refers to is a new version as well.
	if err := os.WriteFile(filepath.Join(dir, "schemas/common.json"), []byte(`{"$defs": {"positive": {"type": "integer", "minimum": 1}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	after, err := LoadFile(filepath.Join(dir, "orders.yaml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if after.Version == before.Version {
		t.Errorf("Version %s did not change with the schema file", after.Version)
	}
	if got := after.Apply([]byte(`{"n":0}`)).Errors; !reflect.DeepEqual(got, []string{"schema: /n: must be >= 1, got 0"}) {
		t.Errorf("after the edit: %q", got)
	}
}

// TestSchemaInMappingTests: a mapping file's own test cases can expect a schema message.
func TestSchemaInMappingTests(t *testing.T) {
	dir := writeFiles(t, map[string]string{"payments.yaml": paymentsMapping + `tests:
  - name: a negative amount breaks the schema
    input: {id: p1, amount: -1, currency: DKK}
    invalid: 'schema: /amount: must be >= 0, got -1'
  - name: a payment is mapped
    input: {id: p1, amount: 10, currency: DKK}
    expect: {payments: {payment_id: p1, amount: 10}}
`})
	m, err := LoadFile(filepath.Join(dir, "payments.yaml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range m.RunTests() {
		if !r.Passed {
			t.Errorf("%s: %s", r.Name, r.Message)
		}
	}
}

func TestSchemaConcurrentApply(t *testing.T) {
	dir := writeFiles(t, map[string]string{"payments.yaml": paymentsMapping})
	m, err := LoadFile(filepath.Join(dir, "payments.yaml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				rec, want := `{"id":"p","amount":1,"currency":"DKK"}`, 0
				if i%2 == 1 {
					rec, want = `{"id":"p","amount":-1,"currency":"DKK"}`, 1
				}
				if got := len(m.Apply([]byte(rec)).Errors); got != want {
					t.Errorf("errors = %d, want %d", got, want)
					return
				}
			}
		}()
	}
	wg.Wait()
}
