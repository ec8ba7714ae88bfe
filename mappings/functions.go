package mappings

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/mail"
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
	Signature string // parameters and result, e.g. "utc(x[, layout]) string"
	Doc       string // one line: what it does and when it fails
	Example   string // an expression that holds, e.g. `number("12.5") == 12.5`
}

// settings is what functions know of the mapping that calls them.
type settings struct {
	loc *time.Location // where offset-less times are: the mapping's timezone, UTC by default
}

// utcSettings are the settings of a mapping without `timezone:`.
var utcSettings = &settings{loc: time.UTC}

// function is one entry of the function table: its documentation and its implementation.
// Every function that expressions can call is registered from this table, so Functions()
// documents all of them.
type function struct {
	FunctionDoc
	fn    func(s *settings, args ...any) (any, error)
	types []any // expr signatures (pointers to func types) checked at load time
	// constArgs checks arguments given as string constants when the mapping is loaded, by
	// position (a layout, a decimal mark), so that a mistake there is a load error at its place.
	constArgs map[int]func(string) error
}

// functions is the single table of functions available to mapping expressions. lower, upper
// and trim replace expr's builtins of the same name so that a null or a number is reported as
// "lower: expected a string, got null" rather than as a Go interface conversion panic.
var functions = []function{
	{
		FunctionDoc: FunctionDoc{
			Name:      "utc",
			Signature: "utc(x[, layout]) string",
			Doc: "Normalises a timestamp to RFC 3339 in UTC (fraction kept only if non-zero). Without a layout it accepts " +
				"RFC 3339 with or without fraction, offsets like -05:00, -0500, -5:00 or none, a space for T, a date alone, " +
				"and unix epoch seconds as a number; with a layout such as \"dd/MM/yyyy HH:mm\" exactly that. A time " +
				"without an offset is in the mapping's timezone (UTC unless `timezone:` says otherwise); anything else is an error.",
			Example: `utc("2020-05-18T21:15:00-5:00") == "2020-05-19T02:15:00Z"`,
		},
		fn:        fnUTC,
		types:     []any{new(func(any) string), new(func(any, string) string)},
		constArgs: map[int]func(string) error{1: checkLayout},
	},
	{
		FunctionDoc: FunctionDoc{
			Name:      "epoch",
			Signature: "epoch(x[, layout]) float",
			Doc:       "Reads a timestamp as utc does and returns it as unix epoch seconds (with a fraction if it has one), to compare or subtract times.",
			Example:   `epoch("1970-01-02") == 86400`,
		},
		fn:        fnEpoch,
		types:     []any{new(func(any) float64), new(func(any, string) float64)},
		constArgs: map[int]func(string) error{1: checkLayout},
	},
	{
		FunctionDoc: FunctionDoc{
			Name:      "is_date",
			Signature: "is_date(x[, layout]) bool",
			Doc:       "Reports whether utc(x[, layout]) would succeed; false for null. For rules: `is_date(filed, \"dd/MM/yyyy HH:mm\")`.",
			Example:   `is_date("18/05/2020 21:15", "dd/MM/yyyy HH:mm")`,
		},
		fn:        fnIsDate,
		types:     []any{new(func(any) bool), new(func(any, string) bool)},
		constArgs: map[int]func(string) error{1: checkLayout},
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
			Signature: "number(x[, mark]) float",
			Doc: "Converts a number or a numeric string to a number. Without mark the string is written as in JSON " +
				"(\"1299.50\", \"-3\", \"1e3\"), and \"1.299\" (1.299 or 1299?) is refused as ambiguous; with mark \",\" or \".\" the " +
				"string has that decimal mark and may group thousands (\"1.299,50\", \"1 299,50\", \"1,299.50\"). " +
				"Anything else, null included, is an error: a number is never misread.",
			Example: `number("1.299,50", ",") == 1299.5`,
		},
		fn:        fnNumber,
		types:     []any{new(func(any) float64), new(func(any, string) float64)},
		constArgs: map[int]func(string) error{1: checkMark},
	},
	{
		FunctionDoc: FunctionDoc{
			Name:      "is_number",
			Signature: "is_number(x[, mark]) bool",
			Doc:       "Reports whether number(x[, mark]) would succeed; false for null.",
			Example:   `is_number("1 299,50", ",") and not is_number("1.299")`,
		},
		fn:        fnIsNumber,
		types:     []any{new(func(any) bool), new(func(any, string) bool)},
		constArgs: map[int]func(string) error{1: checkMark},
	},
	{
		FunctionDoc: FunctionDoc{
			Name:      "boolean",
			Signature: "boolean(x) bool",
			Doc: "Reads a flag: true, \"Y\", \"yes\", \"true\", \"1\" and 1 are true; false, \"N\", \"no\", \"false\", \"0\" and 0 " +
				"are false (strings in any case, surrounding spaces allowed); anything else, null included, is an error.",
			Example: `boolean("Y") and not boolean("n")`,
		},
		fn:    fnBoolean,
		types: []any{new(func(any) bool)},
	},
	{
		FunctionDoc: FunctionDoc{
			Name:      "is_email",
			Signature: "is_email(x) bool",
			Doc:       "Reports whether x is a string holding one plain e-mail address (local@domain.tld, no display name); false for null.",
			Example:   `is_email("jane@example.com") and not is_email("Jane <jane@example.com>")`,
		},
		fn:    fnIsEmail,
		types: []any{new(func(any) bool)},
	},
	{
		FunctionDoc: FunctionDoc{
			Name:      "blank",
			Signature: "blank(x) bool",
			Doc:       `Reports whether x is null (an absent field included), "", only white space, an empty list or an empty map.`,
			Example:   `blank(nil) and blank("  ") and not blank(0)`,
		},
		fn:    fnBlank,
		types: []any{new(func(any) bool)},
	},
	{
		FunctionDoc: FunctionDoc{
			Name:      "present",
			Signature: "present(x) bool",
			Doc:       `The opposite of blank: x is there and not empty. ` + "`present(claimNo)`" + ` is what ` + "`claimNo != \"\"`" + ` does not say (an absent field is null, and null != "").`,
			Example:   `present("C-1") and not present(nil)`,
		},
		fn: func(s *settings, args ...any) (any, error) {
			b, err := fnBlank(s, args...)
			return b == false, err
		},
		types: []any{new(func(any) bool)},
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
		fn: func(*settings, ...any) (any, error) {
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

// functionOptions registers the function table with expr for a mapping with settings s.
// Names that are also expr builtins are disabled as builtins first so that ours are used.
func functionOptions(s *settings) []expr.Option {
	var opts []expr.Option
	for _, f := range functions {
		if _, ok := builtin.Index[f.Name]; ok {
			opts = append(opts, expr.DisableBuiltin(f.Name))
		}
		fn := f.fn
		opts = append(opts, expr.Function(f.Name, func(args ...any) (any, error) { return fn(s, args...) }, f.types...))
	}
	return opts
}

// timeArg reads the timestamp argument of utc, epoch and is_date, with the layout if one is
// given.
func timeArg(s *settings, args []any) (time.Time, error) {
	if len(args) < 2 {
		return toTime(args[0], s.loc)
	}
	layout, ok := args[1].(string)
	if !ok {
		return time.Time{}, fmt.Errorf("the layout must be a string, got %s", describe(args[1]))
	}
	return parseWithLayout(args[0], layout, s.loc)
}

func fnUTC(s *settings, args ...any) (any, error) {
	t, err := timeArg(s, args)
	if err != nil {
		return nil, fmt.Errorf("utc: %w", err)
	}
	return t.UTC().Format(time.RFC3339Nano), nil
}

func fnEpoch(s *settings, args ...any) (any, error) {
	t, err := timeArg(s, args)
	if err != nil {
		return nil, fmt.Errorf("epoch: %w", err)
	}
	return float64(t.Unix()) + float64(t.Nanosecond())/1e9, nil
}

func fnIsDate(s *settings, args ...any) (any, error) {
	if len(args) == 2 {
		if layout, ok := args[1].(string); !ok || checkLayout(layout) != nil {
			// A wrong layout is the mapping's mistake, not a property of the value.
			_, err := timeArg(s, args)
			return nil, fmt.Errorf("is_date: %w", err)
		}
	}
	_, err := timeArg(s, args)
	return err == nil, nil
}

func fnSeconds(_ *settings, args ...any) (any, error) {
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

// numberArg converts the argument of number and is_number.
func numberArg(args []any) (float64, error) {
	if f, ok := toFloat(args[0]); ok {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, fmt.Errorf("%s is not a finite number", describe(args[0]))
		}
		return f, nil
	}
	str, ok := args[0].(string)
	if !ok {
		return 0, fmt.Errorf("cannot parse %s as a number", describe(args[0]))
	}
	if len(args) < 2 {
		return parsePlainNumber(str)
	}
	mark, ok := args[1].(string)
	if !ok {
		return 0, fmt.Errorf("the decimal mark must be a string, got %s", describe(args[1]))
	}
	return parseLocaleNumber(str, mark)
}

func fnNumber(_ *settings, args ...any) (any, error) {
	f, err := numberArg(args)
	if err != nil {
		return nil, fmt.Errorf("number: %w", err)
	}
	return f, nil
}

func fnIsNumber(_ *settings, args ...any) (any, error) {
	if len(args) == 2 {
		if mark, ok := args[1].(string); !ok || checkMark(mark) != nil {
			_, err := numberArg(args)
			return nil, fmt.Errorf("is_number: %w", err)
		}
	}
	_, err := numberArg(args)
	return err == nil, nil
}

func fnBoolean(_ *settings, args ...any) (any, error) {
	switch x := args[0].(type) {
	case bool:
		return x, nil
	case string:
		switch strings.ToLower(strings.TrimSpace(x)) {
		case "y", "yes", "true", "1":
			return true, nil
		case "n", "no", "false", "0":
			return false, nil
		}
	default:
		if f, ok := toFloat(x); ok && (f == 0 || f == 1) {
			return f == 1, nil
		}
	}
	return nil, fmt.Errorf("boolean: cannot read %s as yes or no (Y/N, yes/no, true/false, 1/0)", describe(args[0]))
}

func fnIsEmail(_ *settings, args ...any) (any, error) {
	s, ok := args[0].(string)
	if !ok {
		return false, nil
	}
	addr, err := mail.ParseAddress(s)
	if err != nil || addr.Name != "" || addr.Address != s {
		return false, nil
	}
	_, domain, _ := strings.Cut(addr.Address, "@")
	dot := strings.LastIndexByte(domain, '.')
	return dot > 0 && dot < len(domain)-1, nil
}

func fnBlank(_ *settings, args ...any) (any, error) {
	switch x := args[0].(type) {
	case nil:
		return true, nil
	case string:
		return strings.TrimSpace(x) == "", nil
	case []any:
		return len(x) == 0, nil
	case map[string]any:
		return len(x) == 0, nil
	}
	return false, nil
}

func fnCoalesce(_ *settings, args ...any) (any, error) {
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

func stringFunc(name string, f func(string) string) func(*settings, ...any) (any, error) {
	return func(_ *settings, args ...any) (any, error) {
		s, ok := args[0].(string)
		if !ok {
			return nil, fmt.Errorf("%s: expected a string, got %s", name, describe(args[0]))
		}
		return f(s), nil
	}
}

func fnTrim(_ *settings, args ...any) (any, error) {
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
