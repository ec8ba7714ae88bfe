package mappings

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/builtin"
)

// FunctionDoc documents one function that mapping expressions can call.
type FunctionDoc struct {
	Name      string // the name used in expressions
	Signature string // parameters and result, e.g. "utc(x) string"
	Doc       string // one line: what it does and when it fails
	Example   string // an expression that holds, e.g. `number("12.5") == 12.5`
}

// function is one entry of the function table: its documentation and its implementation.
// Every function that expressions can call is registered from this table, so Functions()
// documents all of them.
type function struct {
	FunctionDoc
	fn    func(args ...any) (any, error)
	types []any // expr signatures (pointers to func types) checked at load time
}

// functions is the single table of functions available to mapping expressions. lower, upper
// and trim replace expr's builtins of the same name so that a null or a number is reported as
// "lower: expected a string, got null" rather than as a Go interface conversion panic.
var functions = []function{
	{
		FunctionDoc: FunctionDoc{
			Name:      "utc",
			Signature: "utc(x) string",
			Doc: "Normalises a timestamp to RFC 3339 in UTC (fraction kept only if non-zero); accepts RFC 3339 " +
				"with or without fraction, offsets like -05:00, -0500, -5:00 or none (UTC), a space for T, " +
				"a date alone, and unix epoch seconds as a number; anything else is an error.",
			Example: `utc("2020-05-18T21:15:00-5:00") == "2020-05-19T02:15:00Z"`,
		},
		fn:    fnUTC,
		types: []any{new(func(any) string)},
	},
	{
		FunctionDoc: FunctionDoc{
			Name:      "seconds",
			Signature: "seconds(x) float",
			Doc: "Converts an ISO-8601 duration (PT25M30S, P1DT2H, PT0.5S, P1W) to a number of seconds; " +
				"a day is 86400 s; years, months and anything else are errors.",
			Example: `seconds("PT25M30S") == 1530`,
		},
		fn:    fnSeconds,
		types: []any{new(func(any) float64)},
	},
	{
		FunctionDoc: FunctionDoc{
			Name:      "number",
			Signature: "number(x) float",
			Doc:       "Converts a number or a decimal numeric string (surrounding spaces allowed) to a float; anything else, null included, is an error.",
			Example:   `number(" 123.45") == 123.45`,
		},
		fn:    fnNumber,
		types: []any{new(func(any) float64)},
	},
	{
		FunctionDoc: FunctionDoc{
			Name:      "coalesce",
			Signature: "coalesce(a, b, ...) any",
			Doc:       `Returns the first argument that is neither null nor ""; null if there is none.`,
			Example:   `coalesce(nil, "", "fallback") == "fallback"`,
		},
		fn:    fnCoalesce,
		types: []any{new(func(any, ...any) any)},
	},
	{
		FunctionDoc: FunctionDoc{
			Name:      "field",
			Signature: "field(path string) any",
			Doc:       "Reads the record at a gjson path, for keys that are not identifiers (e.g. in {\"first name\": \"Jane\"}); null if absent.",
			Example:   `field("first name") == "Jane"`,
		},
		// Calls to field are rewritten to fieldFunc with the record by the patcher; this body
		// only runs if that rewrite was impossible.
		fn: func(args ...any) (any, error) {
			return nil, errors.New("field: used outside a mapping expression")
		},
		types: []any{new(func(string) any)},
	},
	{
		FunctionDoc: FunctionDoc{
			Name:      "lower",
			Signature: "lower(s string) string",
			Doc:       "Lower-cases a string; null or a non-string is an error.",
			Example:   `lower("Jonny.Test@Mivation.com") == "jonny.test@mivation.com"`,
		},
		fn:    stringFunc("lower", strings.ToLower),
		types: []any{new(func(any) string)},
	},
	{
		FunctionDoc: FunctionDoc{
			Name:      "upper",
			Signature: "upper(s string) string",
			Doc:       "Upper-cases a string; null or a non-string is an error.",
			Example:   `upper("dkk") == "DKK"`,
		},
		fn:    stringFunc("upper", strings.ToUpper),
		types: []any{new(func(any) string)},
	},
	{
		FunctionDoc: FunctionDoc{
			Name:      "trim",
			Signature: "trim(s string[, cutset string]) string",
			Doc:       "Removes surrounding white space, or the characters of cutset, from a string; null or a non-string is an error.",
			Example:   `trim("  Jane S ") == "Jane S"`,
		},
		fn:    fnTrim,
		types: []any{new(func(any) string), new(func(any, string) string)},
	},
}

// Functions documents every function that mapping expressions can call besides expr's own
// builtins (len, split, replace, ...), in table order.
func Functions() []FunctionDoc {
	docs := make([]FunctionDoc, len(functions))
	for i, f := range functions {
		docs[i] = f.FunctionDoc
	}
	return docs
}

// functionOptions registers the function table with expr. Names that are also expr builtins
// are disabled as builtins first so that ours are used.
var functionOptions = func() []expr.Option {
	var opts []expr.Option
	for _, f := range functions {
		if _, ok := builtin.Index[f.Name]; ok {
			opts = append(opts, expr.DisableBuiltin(f.Name))
		}
		opts = append(opts, expr.Function(f.Name, f.fn, f.types...))
	}
	return opts
}()

func fnUTC(args ...any) (any, error) {
	t, err := toTime(args[0])
	if err != nil {
		return nil, fmt.Errorf("utc: %w", err)
	}
	return t.UTC().Format(time.RFC3339Nano), nil
}

func fnSeconds(args ...any) (any, error) {
	s, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("seconds: cannot parse %s as an ISO-8601 duration", describe(args[0]))
	}
	secs, err := parseISODuration(s)
	if err != nil {
		return nil, fmt.Errorf("seconds: %w", err)
	}
	return secs, nil
}

func fnNumber(args ...any) (any, error) {
	if f, ok := toFloat(args[0]); ok {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("number: %s is not a finite number", describe(args[0]))
		}
		return f, nil
	}
	if s, ok := args[0].(string); ok {
		if f, ok := parseDecimal(strings.TrimSpace(s)); ok {
			return f, nil
		}
	}
	return nil, fmt.Errorf("number: cannot parse %s as a number", describe(args[0]))
}

func fnCoalesce(args ...any) (any, error) {
	for _, a := range args {
		if a == nil {
			continue
		}
		if s, ok := a.(string); ok && s == "" {
			continue
		}
		return a, nil
	}
	return nil, nil
}

func stringFunc(name string, f func(string) string) func(args ...any) (any, error) {
	return func(args ...any) (any, error) {
		s, ok := args[0].(string)
		if !ok {
			return nil, fmt.Errorf("%s: expected a string, got %s", name, describe(args[0]))
		}
		return f(s), nil
	}
}

func fnTrim(args ...any) (any, error) {
	s, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("trim: expected a string, got %s", describe(args[0]))
	}
	if len(args) == 2 {
		cutset, ok := args[1].(string)
		if !ok {
			return nil, fmt.Errorf("trim: expected a string cutset, got %s", describe(args[1]))
		}
		return strings.Trim(s, cutset), nil
	}
	return strings.TrimSpace(s), nil
}

// toFloat converts any Go number to float64.
func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case float32:
		return float64(n), true
	case int:
		return float64(n), true
	case int8:
		return float64(n), true
	case int16:
		return float64(n), true
	case int32:
		return float64(n), true
	case int64:
		return float64(n), true
	case uint:
		return float64(n), true
	case uint8:
		return float64(n), true
	case uint16:
		return float64(n), true
	case uint32:
		return float64(n), true
	case uint64:
		return float64(n), true
	}
	return 0, false
}

// maxDescribe bounds how much of a value an error message quotes.
const maxDescribe = 80

// describe renders a value for an error message the way it looked in JSON: strings quoted,
// null for nil, long values cut short.
func describe(v any) string {
	var s string
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		if utf8.RuneCountInString(x) > maxDescribe {
			x = string([]rune(x)[:maxDescribe]) + "…"
		}
		return strconv.Quote(x)
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return strconv.FormatFloat(x, 'g', -1, 64)
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		s = fmt.Sprintf("%v", v)
	} else {
		s = string(b)
	}
	if utf8.RuneCountInString(s) > maxDescribe {
		s = string([]rune(s)[:maxDescribe]) + "…"
	}
	return s
}
