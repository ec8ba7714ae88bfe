package mappings

import (
	"errors"
	"fmt"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser"
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
// function table of a mapping with settings s. asBool requires a condition: an expression
// whose type is known not to be bool is an error; one whose type is only known at run time (a
// record field) is checked by truth when it runs.
func compileExpr(src string, asBool bool, s *settings) (*vm.Program, error) {
	if asBool {
		// expr.AsBool checks the type, but also makes the program end in a cast that fails
		// with "invalid operation: bool(string)". Check with it, run without it, so that a
		// run-time failure can name the value (see truth).
		if _, err := compile(src, s, expr.AsBool()); err != nil {
			return nil, err
		}
	}
	prog, err := compile(src, s)
	if err != nil {
		return nil, err
	}
	if err := checkConstArgs(src); err != nil {
		return nil, err
	}
	return prog, nil
}

func compile(src string, s *settings, extra ...expr.Option) (*vm.Program, error) {
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
	opts = append(opts, functionOptions(s)...)
	opts = append(opts, extra...)
	prog, err := expr.Compile(src, opts...)
	if err == nil {
		return prog, nil
	}
	var fe *file.Error
	if errors.As(err, &fe) {
		return nil, &compileError{line: fe.Line, col: fe.Column, msg: cleanMessage(fe.Message)}
	}
	msg := cleanMessage(err.Error())
	if strings.HasPrefix(msg, "expected bool") {
		msg = "must be a condition: " + msg
	}
	return nil, &compileError{msg: msg}
}

// checkConstArgs checks the arguments that are string constants in calls of the functions
// that have a constArgs check (a layout, a decimal mark), and reports the first wrong one at
// its place in src. src has compiled, so it parses.
func checkConstArgs(src string) error {
	tree, err := parser.Parse(src)
	if err != nil {
		return nil
	}
	v := &constArgsVisitor{}
	ast.Walk(&tree.Node, v)
	if v.err == nil {
		return nil
	}
	v.err = v.err.Bind(file.NewSource(src))
	return &compileError{line: v.err.Line, col: v.err.Column, msg: v.err.Message}
}

// constArgsVisitor finds the first constant argument that its function's check refuses.
type constArgsVisitor struct {
	err *file.Error
}

// Visit implements ast.Visitor.
func (v *constArgsVisitor) Visit(node *ast.Node) {
	call, ok := (*node).(*ast.CallNode)
	if !ok || v.err != nil {
		return
	}
	callee, ok := call.Callee.(*ast.IdentifierNode)
	if !ok {
		return
	}
	for _, f := range functions {
		if f.Name != callee.Value {
			continue
		}
		for i, check := range f.constArgs {
			if i >= len(call.Arguments) {
				continue
			}
			if s, ok := call.Arguments[i].(*ast.StringNode); ok {
				if err := check(s.Value); err != nil {
					v.err = &file.Error{Location: s.Location(), Message: f.Name + ": " + err.Error()}
					return
				}
			}
		}
	}
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

// truth interprets the result of a condition: null (an absent field) does not hold, and
// anything but a bool or null is an error naming the value.
func truth(v any) (bool, error) {
	switch b := v.(type) {
	case bool:
		return b, nil
	case nil:
		return false, nil
	}
	return false, fmt.Errorf("expected a boolean, got %s", describe(v))
}
