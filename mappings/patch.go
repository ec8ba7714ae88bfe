package mappings

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"
	"github.com/tidwall/gjson"
)

// Names the patcher introduces. They start with "__" so that no record field a mapping author
// is likely to use collides with them; a record field of that name is still reachable with
// field("__rec").
const (
	recName       = "__rec"   // the env field holding the record
	fieldFuncName = "__field" // __field(__rec, "gjson path") reads the record
)

// record is the raw JSON of the record being evaluated, shared by the expressions of one
// Apply.
type record struct {
	json string
}

// get reads the record at a gjson path as string, float64, bool, nil, map[string]any or
// []any.
func (r *record) get(path string) any {
	return jsonValue(gjson.Get(r.json, path))
}

// jsonValue converts a gjson result to the Go value expressions work with; absent and null
// are both nil.
func jsonValue(res gjson.Result) any {
	switch res.Type {
	case gjson.String:
		return res.Str
	case gjson.Number:
		return res.Num
	case gjson.True:
		return true
	case gjson.False:
		return false
	case gjson.JSON:
		return decodeJSON(res.Raw)
	default:
		return nil
	}
}

// decodeJSON converts the raw text of a JSON object or array, as gjson returns it, to
// map[string]any and []any values, in the conventions of gjson's Result.Value: numbers are
// float64, the first of repeated keys wins, empty containers are empty (not nil).
//
// Result.Value cannot be used: it finds the end of each nested value by scanning it, then
// converts it by recursing, so a value nested d levels deep is scanned d times (time quadratic
// in depth) and the goroutine stack grows with depth. decodeJSON reads each byte once and keeps
// its own stack of open containers on the heap: time and memory are linear in len(raw),
// whatever the nesting. Records are validated before they are mapped; malformed text gives nil,
// never a panic.
func decodeJSON(raw string) any {
	type open struct {
		obj    map[string]any // nil for an array
		arr    []any
		key    string // the object's key awaiting its value
		hasKey bool
	}
	var stack []open
	for i := 0; i < len(raw); {
		var v any
		switch c := raw[i]; {
		case c <= ' ' || c == ',' || c == ':':
			i++
			continue
		case c == '{':
			stack = append(stack, open{obj: map[string]any{}})
			i++
			continue
		case c == '[':
			stack = append(stack, open{arr: []any{}})
			i++
			continue
		case c == '}' || c == ']':
			if len(stack) == 0 {
				return nil
			}
			top := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if top.obj != nil {
				v = top.obj
			} else {
				v = top.arr
			}
			i++
		case c == '"':
			var s string
			var ok bool
			if i, s, ok = readString(raw, i); !ok {
				return nil
			}
			if n := len(stack); n > 0 && stack[n-1].obj != nil && !stack[n-1].hasKey {
				stack[n-1].key, stack[n-1].hasKey = s, true
				continue
			}
			v = s
		case c == '-' || (c >= '0' && c <= '9'):
			start := i
			for i++; i < len(raw) && raw[i] > ' ' && raw[i] != ',' && raw[i] != ']' && raw[i] != '}'; i++ {
			}
			v, _ = strconv.ParseFloat(raw[start:i], 64) // as gjson: 0 if it does not parse
		case c >= 'a' && c <= 'z':
			start := i
			for i++; i < len(raw) && raw[i] >= 'a' && raw[i] <= 'z'; i++ {
			}
			switch raw[start:i] {
			case "true":
				v = true
			case "false":
				v = false
			}
		default:
			return nil
		}
		if len(stack) == 0 {
			return v
		}
		top := &stack[len(stack)-1]
		if top.obj == nil {
			top.arr = append(top.arr, v)
			continue
		}
		if !top.hasKey {
			return nil // a value where a key belongs
		}
		if _, seen := top.obj[top.key]; !seen {
			top.obj[top.key] = v
		}
		top.hasKey = false
	}
	return nil // unterminated
}

// readString reads the JSON string literal starting at raw[i] (a '"') and returns the index
// after it and its value, or ok false if it is not terminated. A literal without escapes is
// returned as a substring of raw; one with escapes is decoded by gjson, in time linear in its
// length.
func readString(raw string, i int) (next int, s string, ok bool) {
	escaped := false
	for j := i + 1; j < len(raw); j++ {
		switch raw[j] {
		case '\\':
			escaped = true
			j++ // skip the escaped byte
		case '"':
			if !escaped {
				return j + 1, raw[i+1 : j], true
			}
			return j + 1, gjson.Parse(raw[i : j+1]).Str, true
		}
	}
	return len(raw), "", false
}

// env is the expr environment. Its only member is the record; record fields are not env
// members but calls that the patcher inserts, so any identifier can name a record field.
type env struct {
	Rec *record `expr:"__rec"`
}

// fieldFunc implements __field(__rec, path).
func fieldFunc(args ...any) (any, error) {
	path, ok := args[1].(string)
	if !ok {
		return nil, fmt.Errorf("field: the path must be a string, got %s", describe(args[1]))
	}
	rec, _ := args[0].(*record)
	if rec == nil {
		return nil, nil
	}
	return rec.get(path), nil
}

// fieldPatcher is the expr visitor that turns record references into gjson reads:
//
//	type                 -> __field(__rec, "type")
//	payment.status       -> __field(__rec, "payment.status")
//	items[0].name        -> __field(__rec, "items.0.name")
//	a["b.c"]             -> __field(__rec, "a.b\.c")
//	field("first name")  -> __field(__rec, "first name")
//
// Function callees, let variables, predicate pointers (#, .x) and $env are left alone. A
// member access that is not a constant key or non-negative index (items[i], items[-1]) is
// left to expr, applied to the value read so far.
//
// expr walks the tree depth first and visits a node after its children, so an identifier
// becomes a call before the member accesses around it are visited, and each member access
// extends the path of the call it applies to.
type fieldPatcher struct {
	// fields holds the source offsets of the identifiers that name record fields. Which
	// identifiers those are depends on let scopes, which a node-by-node visitor cannot see,
	// so they are found beforehand by recordIdentifiers on a parse of the same source.
	fields map[int]bool
	// paths holds the calls made from identifier chains, with their gjson path. Only those
	// calls are extended: field("items.#").x must not become the path "items.#.x".
	paths map[*ast.CallNode]string
}

func newFieldPatcher(src string) *fieldPatcher {
	return &fieldPatcher{fields: recordIdentifiers(src), paths: map[*ast.CallNode]string{}}
}

// Visit implements ast.Visitor.
func (p *fieldPatcher) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.IdentifierNode:
		if p.fields[n.Location().From] {
			path := gjson.Escape(n.Value)
			p.paths[patchField(node, path)] = path
		}
	case *ast.MemberNode:
		call, ok := n.Node.(*ast.CallNode)
		if !ok || n.Method {
			return
		}
		path, ok := p.paths[call]
		if !ok {
			return
		}
		switch prop := n.Property.(type) {
		case *ast.StringNode:
			path += "." + gjson.Escape(prop.Value)
		case *ast.IntegerNode:
			if prop.Value < 0 {
				return
			}
			path += "." + strconv.Itoa(prop.Value)
		default:
			return
		}
		delete(p.paths, call)
		p.paths[patchField(node, path)] = path
	case *ast.CallNode:
		// field(path) needs the record: make it __field(__rec, path). With any other number of
		// arguments it is left for the checker to report against field's own signature.
		if id, ok := n.Callee.(*ast.IdentifierNode); ok && id.Value == "field" && len(n.Arguments) == 1 {
			callee := &ast.IdentifierNode{Value: fieldFuncName}
			callee.SetLocation(id.Location())
			rec := &ast.IdentifierNode{Value: recName}
			rec.SetLocation(id.Location())
			n.Callee = callee
			n.Arguments = []ast.Node{rec, n.Arguments[0]}
		}
	}
}

// patchField replaces node with __field(__rec, path) and returns the new call.
func patchField(node *ast.Node, path string) *ast.CallNode {
	loc := (*node).Location()
	callee := &ast.IdentifierNode{Value: fieldFuncName}
	rec := &ast.IdentifierNode{Value: recName}
	arg := &ast.StringNode{Value: path}
	for _, n := range []ast.Node{callee, rec, arg} {
		n.SetLocation(loc)
	}
	call := &ast.CallNode{Callee: callee, Arguments: []ast.Node{rec, arg}}
	ast.Patch(node, call)
	return call
}

// recordIdentifiers parses src and returns the source offsets of the identifiers that name
// record fields. It returns nil when src does not parse; compiling it reports why.
func recordIdentifiers(src string) map[int]bool {
	tree, err := parser.Parse(src)
	if err != nil {
		return nil
	}
	found := map[int]bool{}
	var walk func(n ast.Node, lets []string)
	walk = func(n ast.Node, lets []string) {
		if n == nil {
			return
		}
		switch n := n.(type) {
		case *ast.IdentifierNode:
			if n.Value != "$env" && !slices.Contains(lets, n.Value) {
				found[n.Location().From] = true
			}
		case *ast.VariableDeclaratorNode:
			walk(n.Value, lets)
			walk(n.Expr, append(slices.Clip(lets), n.Name))
		case *ast.CallNode:
			if _, ok := n.Callee.(*ast.IdentifierNode); !ok {
				walk(n.Callee, lets)
			}
			for _, a := range n.Arguments {
				walk(a, lets)
			}
		case *ast.BuiltinNode:
			for _, a := range n.Arguments {
				walk(a, lets)
			}
		case *ast.UnaryNode:
			walk(n.Node, lets)
		case *ast.BinaryNode:
			walk(n.Left, lets)
			walk(n.Right, lets)
		case *ast.ChainNode:
			walk(n.Node, lets)
		case *ast.MemberNode:
			walk(n.Node, lets)
			walk(n.Property, lets)
		case *ast.SliceNode:
			walk(n.Node, lets)
			walk(n.From, lets)
			walk(n.To, lets)
		case *ast.PredicateNode:
			walk(n.Node, lets)
		case *ast.ConditionalNode:
			walk(n.Cond, lets)
			walk(n.Exp1, lets)
			walk(n.Exp2, lets)
		case *ast.SequenceNode:
			for _, c := range n.Nodes {
				walk(c, lets)
			}
		case *ast.ArrayNode:
			for _, c := range n.Nodes {
				walk(c, lets)
			}
		case *ast.MapNode:
			for _, c := range n.Pairs {
				walk(c, lets)
			}
		case *ast.PairNode:
			walk(n.Key, lets)
			walk(n.Value, lets)
		}
	}
	walk(tree.Node, nil)
	return found
}
