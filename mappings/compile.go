package mappings

import (
	"errors"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
)

// maxNodes bounds the size of one expression. Mapping expressions are a few dozen nodes; a
// thousand means something generated or pasted by mistake.
const maxNodes = 1000

// compileError is an expression that does not compile, with the place inside the expression
// (1-based line, 0-based column in runes) when expr reports one.
type compileError struct {
	line, col int
	msg       string
}

func (e *compileError) Error() string { return e.msg }

// compileExpr compiles one expression of a mapping file with the record patcher and the
// function table. asBool requires a boolean result: an expression whose type is known not to
// be bool is an error, one whose type is only known at run time (a record field) is checked
// when it runs.
func compileExpr(src string, asBool bool) (*vm.Program, error) {
	opts := []expr.Option{
		expr.Env(env{}),
		expr.Function(fieldFuncName, fieldFunc, new(func(*record, string) any)),
		expr.Patch(newFieldPatcher(src)),
		expr.MaxNodes(maxNodes),
		// The optimizer turns `x in ["a", "b"]` into a map lookup that panics when x is a
		// number ("reflect.Value.MapIndex: value of type float64 is not assignable to type
		// string"), where a record should just fail the rule. Mapping expressions are small
		// enough that nothing else it does is measurable.
		expr.Optimize(false),
	}
	opts = append(opts, functionOptions...)
	if asBool {
		opts = append(opts, expr.AsBool())
	}
	prog, err := expr.Compile(src, opts...)
	if err == nil {
		return prog, nil
	}
	var fe *file.Error
	if errors.As(err, &fe) {
		return nil, &compileError{line: fe.Line, col: fe.Column, msg: cleanMessage(fe.Message)}
	}
	msg := cleanMessage(err.Error())
	if asBool && strings.HasPrefix(msg, "expected bool") {
		msg = "must be a condition: " + msg
	}
	return nil, &compileError{msg: msg}
}

// cleanMessage hides the names the patcher introduced.
func cleanMessage(msg string) string {
	return strings.ReplaceAll(msg, fieldFuncName, "field")
}

// runError returns the message of an error from running a program, without expr's source
// snippet: "utc: cannot parse \"yesterday\" as a timestamp".
func runError(err error) string {
	var fe *file.Error
	if errors.As(err, &fe) {
		return cleanMessage(fe.Message)
	}
	return cleanMessage(err.Error())
}
