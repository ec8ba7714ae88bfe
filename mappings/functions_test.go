package mappings

import (
	"strings"
	"testing"
	"time"
)

// call runs one function of the table the way an expression would.
func call(t *testing.T, name string, args ...any) (any, error) {
	t.Helper()
	for _, f := range functions {
		if f.Name == name {
			return f.fn(utcSettings, args...)
		}
	}
	t.Fatalf("no function %s", name)
	return nil, nil
}

func TestUTC(t *testing.T) {
	tests := []struct {
		name string
		in   any
		want string
	}{
		{"seed 000: one-digit offset hour", "2020-05-18T21:15:00-5:00", "2020-05-19T02:15:00Z"},
		{"seed 000: quote", "2020-05-18T21:20:00-5:00", "2020-05-19T02:20:00Z"},
		{"seed 001: seven fraction digits", "2017-07-25T10:31:28.2519514Z", "2017-07-25T10:31:28.2519514Z"},
		{"RFC 3339 offset", "2020-05-18T21:15:00-05:00", "2020-05-19T02:15:00Z"},
		{"positive offset", "2020-05-19T04:15:00+02:00", "2020-05-19T02:15:00Z"},
		{"offset without colon", "2020-05-18T21:15:00-0500", "2020-05-19T02:15:00Z"},
		{"offset hours only", "2020-05-18T21:15:00-05", "2020-05-19T02:15:00Z"},
		{"offset with minutes", "2020-05-18T21:15:00+05:30", "2020-05-18T15:45:00Z"},
		{"Z", "2020-05-18T21:15:00Z", "2020-05-18T21:15:00Z"},
		{"lower-case t and z", "2020-05-18t21:15:00z", "2020-05-18T21:15:00Z"},
		{"space instead of T", "2020-05-18 21:15:00", "2020-05-18T21:15:00Z"},
		{"space before offset", "2020-05-18 21:15:00 -05:00", "2020-05-19T02:15:00Z"},
		{"UTC suffix", "2020-05-18 21:15:00 UTC", "2020-05-18T21:15:00Z"},
		{"no offset is UTC", "2020-05-18T21:15:00", "2020-05-18T21:15:00Z"},
		{"no seconds", "2020-05-18T21:15", "2020-05-18T21:15:00Z"},
		{"one-digit hour", "2020-05-18T9:15:00Z", "2020-05-18T09:15:00Z"},
		{"date only", "2020-05-18", "2020-05-18T00:00:00Z"},
		{"zero fraction dropped", "2020-05-18T21:15:00.000Z", "2020-05-18T21:15:00Z"},
		{"trailing fraction zeros dropped", "2020-05-18T21:15:00.500Z", "2020-05-18T21:15:00.5Z"},
		{"nine fraction digits", "2020-05-18T21:15:00.123456789Z", "2020-05-18T21:15:00.123456789Z"},
		{"comma fraction", "2020-05-18T21:15:00,5Z", "2020-05-18T21:15:00.5Z"},
		{"fraction and offset", "2020-05-18T23:59:59.9-5:00", "2020-05-19T04:59:59.9Z"},
		{"surrounding space", "  2020-05-18T21:15:00Z ", "2020-05-18T21:15:00Z"},
		{"leap day", "2020-02-29T00:00:00Z", "2020-02-29T00:00:00Z"},
		{"epoch seconds", float64(1589854500), "2020-05-19T02:15:00Z"},
		{"epoch seconds int", 1589854500, "2020-05-19T02:15:00Z"},
		{"epoch seconds int64", int64(1589854500), "2020-05-19T02:15:00Z"},
		{"epoch with milliseconds", 1589854500.123, "2020-05-19T02:15:00.123Z"},
		{"epoch zero", float64(0), "1970-01-01T00:00:00Z"},
		{"negative epoch", float64(-86400), "1969-12-31T00:00:00Z"},
		{"time.Time", time.Date(2020, 5, 18, 21, 15, 0, 0, time.FixedZone("", -5*3600)), "2020-05-19T02:15:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := call(t, "utc", tt.in)
			if err != nil {
				t.Fatalf("utc(%#v): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("utc(%#v) = %v, want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestUTCErrors(t *testing.T) {
	tests := []struct {
		name string
		in   any
		want string
	}{
		{"word", "yesterday", `utc: cannot parse "yesterday" as a timestamp`},
		{"null", nil, `utc: cannot parse null as a timestamp`},
		{"bool", true, `utc: cannot parse true as a timestamp`},
		{"empty", "", `utc: cannot parse "" as a timestamp`},
		{"US date", "05/18/2020", `utc: cannot parse "05/18/2020" as a timestamp`},
		{"numeric string", "1589854500", `utc: cannot parse "1589854500" as a timestamp`},
		{"month 13", "2020-13-01", `utc: cannot parse "2020-13-01" as a timestamp: month out of range`},
		{"February 30", "2020-02-30T00:00:00Z", `utc: cannot parse "2020-02-30T00:00:00Z" as a timestamp: day out of range`},
		{"not a leap year", "2019-02-29", `utc: cannot parse "2019-02-29" as a timestamp: day out of range`},
		{"hour 24", "2020-05-18T24:00:00Z", `utc: cannot parse "2020-05-18T24:00:00Z" as a timestamp: hour out of range`},
		{"second 60", "2020-05-18T21:15:60Z", `utc: cannot parse "2020-05-18T21:15:60Z" as a timestamp: second out of range`},
		{"offset 25h", "2020-05-18T21:15:00+25:00", `utc: cannot parse "2020-05-18T21:15:00+25:00" as a timestamp: offset out of range`},
		{"ten fraction digits", "2020-05-18T21:15:00.1234567891Z", `utc: cannot parse "2020-05-18T21:15:00.1234567891Z" as a timestamp: more than 9 fraction digits`},
		{"empty fraction", "2020-05-18T21:15:00.Z", `utc: cannot parse "2020-05-18T21:15:00.Z" as a timestamp`},
		{"garbage after", "2020-05-18T21:15:00Zx", `utc: cannot parse "2020-05-18T21:15:00Zx" as a timestamp`},
		{"offset without digits", "2020-05-18T21:15:00+", `utc: cannot parse "2020-05-18T21:15:00+" as a timestamp`},
		{"offset with three digits", "2020-05-18T21:15:00-500", `utc: cannot parse "2020-05-18T21:15:00-500" as a timestamp`},
		{"date with offset only", "2020-05-18Z", `utc: cannot parse "2020-05-18Z" as a timestamp`},
		{"epoch out of range", 1e15, `utc: cannot parse 1000000000000000 as a timestamp: epoch seconds out of range`},
		{"map", map[string]any{"a": 1.0}, `utc: cannot parse {"a":1} as a timestamp`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := call(t, "utc", tt.in)
			if err == nil {
				t.Fatalf("utc(%#v) = %v, want error %q", tt.in, got, tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("utc(%#v) error\n got %q\nwant %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestSeconds(t *testing.T) {
	tests := []struct {
		in   string
		want float64
	}{
		{"PT25M30S", 1530},
		{"PT1H", 3600},
		{"P1DT2H", 93600},
		{"P1D", 86400},
		{"P1W", 604800},
		{"P2W3D", 1468800},
		{"PT0.5S", 0.5},
		{"PT1,5S", 1.5},
		{"PT1.5H", 5400},
		{"PT0S", 0},
		{"P0D", 0},
		{"PT36H", 129600},
		{"PT90M", 5400},
		{"-PT1M", -60},
		{"+PT1M", 60},
		{"pt25m30s", 1530},
		{" PT25M30S ", 1530},
		{"P1DT1H1M1.25S", 90061.25},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := call(t, "seconds", tt.in)
			if err != nil {
				t.Fatalf("seconds(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("seconds(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestSecondsErrors(t *testing.T) {
	tests := []struct {
		in   any
		want string
	}{
		{"25 minutes", `seconds: cannot parse "25 minutes" as an ISO-8601 duration`},
		{"", `seconds: cannot parse "" as an ISO-8601 duration`},
		{"P", `seconds: cannot parse "P" as an ISO-8601 duration`},
		{"PT", `seconds: cannot parse "PT" as an ISO-8601 duration`},
		{"P1DT", `seconds: cannot parse "P1DT" as an ISO-8601 duration`},
		{"PT1H2H", `seconds: cannot parse "PT1H2H" as an ISO-8601 duration`},
		{"PT1S1M", `seconds: cannot parse "PT1S1M" as an ISO-8601 duration`},
		{"P1H", `seconds: cannot parse "P1H" as an ISO-8601 duration`},
		{"PT1D", `seconds: cannot parse "PT1D" as an ISO-8601 duration`},
		{"PTS", `seconds: cannot parse "PTS" as an ISO-8601 duration`},
		{"PT1", `seconds: cannot parse "PT1" as an ISO-8601 duration`},
		{"1h30m", `seconds: cannot parse "1h30m" as an ISO-8601 duration`},
		{"P1M", `seconds: cannot convert "P1M" to seconds: years and months have no fixed length in seconds`},
		{"P1Y", `seconds: cannot convert "P1Y" to seconds: years and months have no fixed length in seconds`},
		{nil, `seconds: cannot parse null as an ISO-8601 duration`},
		{1530.0, `seconds: cannot parse 1530 as an ISO-8601 duration`},
	}
	for _, tt := range tests {
		got, err := call(t, "seconds", tt.in)
		if err == nil {
			t.Errorf("seconds(%#v) = %v, want error %q", tt.in, got, tt.want)
			continue
		}
		if err.Error() != tt.want {
			t.Errorf("seconds(%#v) error\n got %q\nwant %q", tt.in, err, tt.want)
		}
	}
}

func TestNumber(t *testing.T) {
	tests := []struct {
		in   any
		want float64
	}{
		{123.45, 123.45},
		{7, 7},
		{int64(-3), -3},
		{"123.45", 123.45},
		{" 12 ", 12},
		{"-0.5", -0.5},
		{"+3", 3},
		{".5", 0.5},
		{"5.", 5},
		{"1e3", 1000},
		{"1.5E-2", 0.015},
	}
	for _, tt := range tests {
		got, err := call(t, "number", tt.in)
		if err != nil {
			t.Errorf("number(%#v): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("number(%#v) = %v, want %v", tt.in, got, tt.want)
		}
	}
	for _, in := range []any{nil, "", "abc", "12abc", "1,5", "0x10", "1_000", "NaN", "Inf", "1e999", ".", "-", true, []any{1.0}} {
		got, err := call(t, "number", in)
		if err == nil {
			t.Errorf("number(%#v) = %v, want an error", in, got)
			continue
		}
		if !strings.HasPrefix(err.Error(), "number: cannot parse ") {
			t.Errorf("number(%#v) error %q does not name the value", in, err)
		}
	}
	if _, err := call(t, "number", "abc"); err.Error() != `number: cannot parse "abc" as a number` {
		t.Errorf("number(\"abc\") error = %q", err)
	}
}

func TestCoalesce(t *testing.T) {
	tests := []struct {
		name string
		in   []any
		want any
	}{
		{"first", []any{"a", "b"}, "a"},
		{"skips nil", []any{nil, "b"}, "b"},
		{"skips empty string", []any{"", nil, "c"}, "c"},
		{"keeps zero", []any{nil, 0.0, 1.0}, 0.0},
		{"keeps false", []any{nil, false}, false},
		{"none", []any{nil, ""}, nil},
		{"one", []any{nil}, nil},
	}
	for _, tt := range tests {
		got, err := call(t, "coalesce", tt.in...)
		if err != nil || got != tt.want {
			t.Errorf("%s: coalesce(%#v) = %#v, %v; want %#v", tt.name, tt.in, got, err, tt.want)
		}
	}
}

func TestStringFunctions(t *testing.T) {
	tests := []struct {
		name    string
		args    []any
		want    any
		wantErr string
	}{
		{"lower", []any{"Jonny.Test@Mivation.com"}, "jonny.test@mivation.com", ""},
		{"lower", []any{nil}, nil, "lower: expected a string, got null"},
		{"lower", []any{12.0}, nil, "lower: expected a string, got 12"},
		{"upper", []any{"dkk"}, "DKK", ""},
		{"upper", []any{nil}, nil, "upper: expected a string, got null"},
		{"trim", []any{"  a b \n"}, "a b", ""},
		{"trim", []any{"--a--", "-"}, "a", ""},
		{"trim", []any{nil}, nil, "trim: expected a string, got null"},
	}
	for _, tt := range tests {
		got, err := call(t, tt.name, tt.args...)
		switch {
		case tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr):
			t.Errorf("%s(%#v) error = %v, want %q", tt.name, tt.args, err, tt.wantErr)
		case tt.wantErr == "" && (err != nil || got != tt.want):
			t.Errorf("%s(%#v) = %#v, %v; want %#v", tt.name, tt.args, got, err, tt.want)
		}
	}
}

func TestDescribeCutsLongValues(t *testing.T) {
	got := describe(strings.Repeat("x", 200))
	if want := `"` + strings.Repeat("x", maxDescribe) + `…"`; got != want {
		t.Errorf("describe(long) = %s, want %s", got, want)
	}
}

// TestFunctionsAreDocumented checks that every function expressions can call is documented
// and that each documented example holds.
func TestFunctionsAreDocumented(t *testing.T) {
	docs := Functions()
	if len(docs) != len(functions) {
		t.Fatalf("Functions() has %d entries, the table %d", len(docs), len(functions))
	}
	seen := map[string]bool{}
	// field's example reads this record.
	rec := []byte(`{"first name": "Jane"}`)
	for _, d := range docs {
		if seen[d.Name] {
			t.Errorf("%s is registered twice", d.Name)
		}
		seen[d.Name] = true
		if d.Signature == "" || d.Doc == "" || d.Example == "" {
			t.Errorf("%s: signature, doc and example are all needed: %+v", d.Name, d)
		}
		if !strings.HasPrefix(d.Signature, d.Name+"(") {
			t.Errorf("%s: signature %q does not start with the name", d.Name, d.Signature)
		}
		if !strings.Contains(d.Example, d.Name+"(") {
			t.Errorf("%s: example %q does not call it", d.Name, d.Example)
		}
		prog, err := compileExpr(d.Example, true, utcSettings)
		if err != nil {
			t.Errorf("%s: example %q does not compile: %v", d.Name, d.Example, err)
			continue
		}
		ev := &evaluator{rec: record{json: string(rec)}}
		if v, err := ev.run(prog); err != nil || v != true {
			t.Errorf("%s: example %q = %v, %v; want true", d.Name, d.Example, v, err)
		}
	}
	for _, name := range []string{"utc", "seconds", "number", "coalesce", "field"} {
		if !seen[name] {
			t.Errorf("%s is not in Functions()", name)
		}
	}
}
