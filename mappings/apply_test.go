package mappings

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
)

func mustLoadFile(t testing.TB, path string) *Mapping {
	t.Helper()
	m, err := LoadFile(path, nil)
	if err != nil {
		t.Fatalf("load %s:\n%v", path, err)
	}
	return m
}

// writeMapping writes a mapping file into a temporary directory and returns its path.
func writeMapping(t testing.TB, name, src string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestApply(t *testing.T) {
	m := mustLoadFile(t, "testdata/orders.yaml")
	tests := []struct {
		name string
		rec  string
		want Outcome
	}{
		{
			name: "valid sale",
			rec: `{"kind": "sale", "order": {"id": "o1", "total": "12.50", "at": "2020-05-18T21:15:00-5:00",
				"customer": "Jane@Example.COM", "lines": [{"sku": "A"}, {"sku": "B"}]}}`,
			want: Outcome{Routes: []RouteOutput{{Route: "sales", Sink: "sales", Fields: []Field{
				{"order_id", "o1"},
				{"total", 12.5},
				{"at", "2020-05-19T02:15:00Z"},
				{"customer", "jane@example.com"},
				{"skus", []any{"A", "B"}},
				{"first_sku", "A"},
				{"note", "none"},
				{"href", "https://shop.example/orders?id=o1&x=<1>"},
			}}}},
		},
		{
			name: "route without a name",
			rec:  `{"kind": "refund", "order": {"id": "o2", "total": 10, "refunded": 2.5}}`,
			want: Outcome{Routes: []RouteOutput{{Route: "routes[1]", Sink: "refunds", Fields: []Field{{"order_id", "o2"}, {"ratio", 0.25}}}}},
		},
		{
			name: "condition on a record field",
			rec:  `{"kind": "other", "order": {"id": "o3", "flag": true}}`,
			want: Outcome{Routes: []RouteOutput{{Route: "routes[2]", Sink: "flagged", Fields: []Field{{"order_id", "o3"}}}}},
		},
		{
			name: "not an object",
			rec:  `[{"kind": "sale"}]`,
			want: Outcome{Errors: []string{"record is not a JSON object"}},
		},
		{
			name: "required field missing",
			rec:  `{"kind": "sale", "order": {"total": -1}}`,
			want: Outcome{Errors: []string{"required field order.id is missing"}},
		},
		{
			name: "required field null",
			rec:  `{"kind": "sale", "order": {"id": null}}`,
			want: Outcome{Errors: []string{"required field order.id is null"}},
		},
		{
			name: "every failing rule is reported",
			rec:  `{"kind": "gift", "order": {"id": "o4", "total": -1}}`,
			want: Outcome{Errors: []string{"kind must be sale, refund or other", "total must not be negative"}},
		},
		{
			name: "a number where a string is expected fails the rule",
			rec:  `{"kind": 7, "order": {"id": "o4"}}`,
			want: Outcome{Errors: []string{"kind must be sale, refund or other"}},
		},
		{
			name: "rule that cannot be evaluated",
			rec:  `{"kind": "sale", "order": {"id": "o5", "total": "abc"}}`,
			want: Outcome{Errors: []string{`rule "order.total == nil || number(order.total) >= 0": number: cannot parse "abc" as a number`}},
		},
		{
			name: "no route matches",
			rec:  `{"kind": "other", "order": {"id": "o6"}}`,
			want: Outcome{Errors: []string{"no route matches this record"}},
		},
		{
			name: "when that is not a boolean",
			rec:  `{"kind": "other", "order": {"id": "o7", "flag": "yes"}}`,
			want: Outcome{Errors: []string{`route routes[2]: when: expected a boolean, got "yes"`}},
		},
		{
			name: "every failing field is reported",
			rec:  `{"kind": "sale", "order": {"id": "o8", "total": 1, "at": "yesterday", "lines": []}}`,
			want: Outcome{Errors: []string{
				`field at: utc: cannot parse "yesterday" as a timestamp`,
				`field customer: lower: expected a string, got null`,
			}},
		},
		{
			name: "field that is not JSON",
			rec:  `{"kind": "refund", "order": {"id": "o9", "total": 0, "refunded": 1}}`,
			want: Outcome{Errors: []string{"field ratio: +Inf is not a JSON number"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := m.Apply([]byte(tt.rec))
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Apply:\n got %#v\nwant %#v", got, tt.want)
			}
			if got.Valid() != (len(tt.want.Errors) == 0) {
				t.Errorf("Valid() = %v with errors %q", got.Valid(), got.Errors)
			}
		})
	}
}

// TestApplyRoutesModeAll: every matching route takes the record, in declared order; errors of
// every route are reported and name it.
func TestApplyRoutesModeAll(t *testing.T) {
	m := mustLoadFile(t, "testdata/fanout.yaml")
	tests := []struct {
		name string
		rec  string
		want Outcome
	}{
		{
			name: "two routes match",
			rec:  `{"id": "c1", "amount": "1.299,50", "urgent": "Y"}`,
			want: Outcome{Routes: []RouteOutput{
				{Route: "table", Sink: "claims", Fields: []Field{{"id", "c1"}, {"amount", 1299.5}}},
				{Route: "api", Sink: "claims_api", Fields: []Field{{"id", "c1"}, {"urgent", true}}},
			}},
		},
		{
			name: "one route matches",
			rec:  `{"id": "c2", "amount": 5, "urgent": "N"}`,
			want: Outcome{Routes: []RouteOutput{{Route: "table", Sink: "claims", Fields: []Field{{"id", "c2"}, {"amount", 5.0}}}}},
		},
		{
			name: "two matching routes to one sink",
			rec:  `{"id": "c3", "amount": 5, "urgent": "N", "kind": "audit"}`,
			want: Outcome{Errors: []string{"routes table and audit both take this record to sink claims; a record goes to a sink once"}},
		},
		{
			name: "every when is evaluated",
			rec:  `{"id": "c4", "amount": 5, "urgent": "maybe", "kind": 7}`,
			want: Outcome{Errors: []string{`route api: when: boolean: cannot read "maybe" as yes or no (Y/N, yes/no, true/false, 1/0)`}},
		},
		{
			name: "field errors name their route",
			rec:  `{"id": "c5", "amount": "1,299.50", "urgent": "Y"}`,
			want: Outcome{Errors: []string{`route table: field amount: number: cannot parse "1,299.50" as a number with decimal mark ",": the fraction must be digits only`}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := m.Apply([]byte(tt.rec)); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Apply:\n got %#v\nwant %#v", got, tt.want)
			}
		})
	}
	if got := m.RecordType([]byte(`{"id": "c1"}`)); got != "claim" {
		t.Errorf("RecordType with type: {const: claim} = %q", got)
	}
}

// TestApplyTypeFieldMissing: a record without the field that `type:` names is invalid, and
// the message says how to give every record one type.
func TestApplyTypeFieldMissing(t *testing.T) {
	m := mustLoadFile(t, writeMapping(t, "typed.yaml", `
format: typed
type: claim
routes:
  - sink: s
    fields: {a: a}
`))
	want := []string{"type field claim is missing (for one type on every record, write type: {const: NAME})"}
	for _, rec := range []string{`{"a": 1}`, `{"a": 1, "claim": null}`} {
		if got := m.Apply([]byte(rec)); !reflect.DeepEqual(got.Errors, want) {
			t.Errorf("Apply(%s) errors = %q, want %q", rec, got.Errors, want)
		}
	}
	if got := m.Apply([]byte(`{"a": 1, "claim": "x"}`)); !got.Valid() {
		t.Errorf("a record with its type field is invalid: %q", got.Errors)
	}
}

// TestApplyFirstModeRouteErrorStops: in routes_mode first a when that fails ends routing,
// as before routes_mode existed, even if a later route would match.
func TestApplyFirstModeRouteErrorStops(t *testing.T) {
	m := mustLoadFile(t, "testdata/orders.yaml")
	got := m.Apply([]byte(`{"kind": "other", "order": {"id": "o7", "flag": "yes"}}`))
	if want := []string{`route routes[2]: when: expected a boolean, got "yes"`}; !reflect.DeepEqual(got.Errors, want) || got.Routes != nil {
		t.Errorf("Apply = %+v, want errors %q", got, want)
	}
}

func TestOutcomeJSON(t *testing.T) {
	m := mustLoadFile(t, "testdata/orders.yaml")
	out := m.Apply([]byte(`{"kind": "sale", "order": {"id": "o1", "total": 12.5, "at": 1589854500,
		"customer": "jane@example.com", "lines": [{"sku": "A"}], "note": "gift"}}`))
	want := `{"order_id":"o1","total":12.5,"at":"2020-05-19T02:15:00Z","customer":"jane@example.com",` +
		`"skus":["A"],"first_sku":"A","note":"gift","href":"https://shop.example/orders?id=o1&x=<1>"}`
	if got := string(out.Routes[0].JSON()); got != want {
		t.Errorf("JSON()\n got %s\nwant %s", got, want)
	}
	if got := string((RouteOutput{}).JSON()); got != "{}" {
		t.Errorf("empty JSON() = %s", got)
	}
	bad := RouteOutput{Fields: []Field{{"f", make(chan int)}, {"g", 1}}}
	if got := string(bad.JSON()); got != `{"f":null,"g":1}` {
		t.Errorf("JSON() with an unencodable value = %s", got)
	}
}

func TestRecordIDTypeMissing(t *testing.T) {
	m := mustLoadFile(t, "testdata/orders.yaml")
	tests := []struct {
		rec, id, typ string
		missing      []string
	}{
		{`{"kind": "sale", "order": {"id": "o1"}}`, "o1", "sale", nil},
		{`{"kind": "sale", "order": {"id": 12345678901234567890}}`, "12345678901234567890", "sale", nil},
		{`{"kind": "sale", "order": {"id": 1.5}}`, "1.5", "sale", nil},
		{`{"order": {"id": null}}`, "", "", []string{"order.id"}},
		{`{"kind": null}`, "", "", []string{"order.id"}},
	}
	for _, tt := range tests {
		if got := m.RecordID([]byte(tt.rec)); got != tt.id {
			t.Errorf("RecordID(%s) = %q, want %q", tt.rec, got, tt.id)
		}
		if got := m.RecordType([]byte(tt.rec)); got != tt.typ {
			t.Errorf("RecordType(%s) = %q, want %q", tt.rec, got, tt.typ)
		}
		if got := m.Missing([]byte(tt.rec)); !reflect.DeepEqual(got, tt.missing) {
			t.Errorf("Missing(%s) = %q, want %q", tt.rec, got, tt.missing)
		}
	}

	untyped := mustLoadFile(t, writeMapping(t, "plain.yaml", `
format: plain
routes:
  - sink: s
    fields: {a: a}
`))
	if got := untyped.RecordType([]byte(`{"type": "x"}`)); got != "plain" {
		t.Errorf("RecordType without a type path = %q, want the format", got)
	}
	if got := untyped.RecordID([]byte(`{"id": "x"}`)); got != "" {
		t.Errorf("RecordID without an id path = %q, want \"\"", got)
	}
	if got := untyped.Apply([]byte(`{"a": 1}`)); !got.Valid() || got.Routes[0].Route != "routes[0]" {
		t.Errorf("a route without when did not match: %+v", got)
	}
}

// TestApplyConcurrent runs Apply from many goroutines (run with -race).
func TestApplyConcurrent(t *testing.T) {
	m := mustLoadFile(t, "testdata/orders.yaml")
	recs := []string{
		`{"kind": "sale", "order": {"id": "o1", "total": 1, "at": "2020-05-18", "customer": "A", "lines": [{"sku": "A"}]}}`,
		`{"kind": "refund", "order": {"id": "o2", "total": 10, "refunded": 5}}`,
		`{"kind": "gift", "order": {"id": "o3"}}`,
	}
	want := make([]Outcome, len(recs))
	for i, r := range recs {
		want[i] = m.Apply([]byte(r))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 300; i++ {
				k := (g + i) % len(recs)
				if got := m.Apply([]byte(recs[k])); !reflect.DeepEqual(got, want[k]) {
					errs <- fmt.Errorf("record %d: got %+v, want %+v", k, got, want[k])
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestApplyDoesNotAliasInput checks that values in an Outcome survive the caller reusing the
// record's buffer.
func TestApplyDoesNotAliasInput(t *testing.T) {
	m := mustLoadFile(t, "testdata/orders.yaml")
	buf := []byte(`{"kind": "refund", "order": {"id": "o2", "total": 10, "refunded": 5}}`)
	out := m.Apply(buf)
	for i := range buf {
		buf[i] = 'x'
	}
	if out.Routes[0].Fields[0].Value != "o2" {
		t.Errorf("order_id = %v after the buffer was overwritten", out.Routes[0].Fields[0].Value)
	}
}
