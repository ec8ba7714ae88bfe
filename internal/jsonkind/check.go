package jsonkind

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
)

// SyntaxError says where data stops being JSON.
type SyntaxError struct {
	Offset int    // byte offset of the problem
	Reason string // what was found there, e.g. `unexpected "}"`
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("%s at byte %d", e.Reason, e.Offset)
}

// DepthError says that a value is nested deeper than the limit.
type DepthError struct {
	Offset int    // byte offset of the container that goes one level too deep
	Limit  int    // the limit that was exceeded
	Path   []Step // where that container is: one step per enclosing container, outermost first
}

func (e *DepthError) Error() string {
	return fmt.Sprintf("JSON nested deeper than the limit of %d levels at %s (byte %d)", e.Limit, FormatPath(e.Path, 8), e.Offset)
}

// Step is one step from a container to a value inside it: an object member (Key, as written
// between the quotes, escapes not decoded) or an array element (Index).
type Step struct {
	Key     string
	Index   int
	InArray bool
}

// FormatPath writes path as `payload[3].a.b`, showing at most max steps ("…" marks the cut).
// The empty path is "the top level".
func FormatPath(path []Step, max int) string {
	if len(path) == 0 {
		return "the top level"
	}
	var b strings.Builder
	for i, s := range path {
		if i == max {
			b.WriteString("…")
			break
		}
		switch {
		case s.InArray:
			b.WriteString("[" + strconv.Itoa(s.Index) + "]")
		case i > 0:
			b.WriteString("." + s.Key)
		default:
			b.WriteString(s.Key)
		}
	}
	return b.String()
}

// frame is an open container: what Check needs to know to go on, and the step into its
// current value.
type frame struct {
	array bool
	index int
	key   []byte // the current member's key (a slice of the input)
	start int    // where the container starts in the input
}

// A Value is a value that Walk found nested one or two levels deep, and where it is.
type Value struct {
	Start, End int  // the value is data[Start:End], white space excluded
	Outer      Step // the step from the top-level container (a member, or an element)
	Inner      Step // the step from the Outer value into this one, when Depth is 2
	Depth      int  // 1 inside the top-level container, 2 inside one of its values
}

// Check reports whether data is exactly one JSON value, surrounded by optional white space,
// with no container nested more than maxDepth deep (the top-level object or array is depth 1).
// It accepts the language gjson.ValidBytes accepts (RFC 8259; string bytes are not checked for
// UTF-8), in one pass and without recursion: it allocates nothing for valid input and its
// memory never grows with the input, so hostile input ("[[[[…") costs no more than any other.
// The error is a *SyntaxError or a *DepthError.
func Check(data []byte, maxDepth int) error { return Walk(data, maxDepth, nil) }

// Walk is Check that also calls visit (when not nil) with every value nested one or two levels
// deep, in the order the values end, as it reads them: a caller can take a document apart in the
// same pass that validates it. Member names in Steps are decoded (escapes undone). visit may be
// called before Walk finds an error further on.
func Walk(data []byte, maxDepth int, visit func(Value)) error {
	c := checker{data: data, max: maxDepth, visit: visit}
	return c.run()
}

type checker struct {
	data  []byte
	i     int
	max   int
	stack []frame
	buf   [16]frame // the first levels live here: no allocation for ordinary documents

	visit    func(Value)
	outerKey string // the decoded name of the top-level object's current member
}

// ended reports the value data[start:c.i] to visit when it is nested one or two levels deep
// (len(c.stack) containers hold it).
func (c *checker) ended(start int) {
	depth := len(c.stack)
	if c.visit == nil || depth == 0 || depth > 2 {
		return
	}
	v := Value{Start: start, End: c.i, Depth: depth, Outer: c.step(0)}
	if depth == 2 {
		v.Inner = c.step(1)
	}
	c.visit(v)
}

// step is the step from container c.stack[level] (0 or 1) into its current value, with the
// member name decoded (the top level's once per member: outerKey).
func (c *checker) step(level int) Step {
	switch f := c.stack[level]; {
	case f.array:
		return Step{Index: f.index, InArray: true}
	case level == 0:
		return Step{Key: c.outerKey}
	default:
		return Step{Key: decodeKey(f.key)}
	}
}

// decodeKey is a member name as written between its quotes, with its escapes undone.
func decodeKey(raw []byte) string {
	if !bytes.ContainsRune(raw, '\\') {
		return string(raw)
	}
	quoted := make([]byte, 0, len(raw)+2)
	quoted = append(append(append(quoted, '"'), raw...), '"')
	return gjson.ParseBytes(quoted).Str
}

func (c *checker) run() error {
	c.stack = c.buf[:0]
	c.skipSpace()
	for {
		// A value starts at c.i.
		if c.i >= len(c.data) {
			return c.syntax("unexpected end of input; a value was expected")
		}
		start := c.i
		switch ch := c.data[c.i]; ch {
		case '{', '[':
			if len(c.stack) >= c.max {
				return c.depth()
			}
			c.stack = append(c.stack, frame{array: ch == '[', start: start})
			c.i++
			c.skipSpace()
			if c.i < len(c.data) && (c.data[c.i] == '}' && ch == '{' || c.data[c.i] == ']' && ch == '[') {
				c.i++
				c.stack = c.stack[:len(c.stack)-1]
				c.ended(start)
				break // an empty container is a complete value
			}
			if ch == '{' {
				if err := c.member(); err != nil {
					return err
				}
			}
			continue
		case '"':
			if err := c.str(); err != nil {
				return err
			}
		case 't':
			if err := c.literal("true"); err != nil {
				return err
			}
		case 'f':
			if err := c.literal("false"); err != nil {
				return err
			}
		case 'n':
			if err := c.literal("null"); err != nil {
				return err
			}
		default:
			if ch == '-' || ch >= '0' && ch <= '9' {
				if err := c.number(); err != nil {
					return err
				}
				break
			}
			return c.syntax("unexpected " + c.found() + "; a value was expected")
		}
		if ch := c.data[start]; ch != '{' && ch != '[' {
			c.ended(start) // a scalar
		}
		// A value ended at c.i: close containers, or move on to the next element.
		for {
			c.skipSpace()
			if len(c.stack) == 0 {
				if c.i < len(c.data) {
					return c.syntax("unexpected " + c.found() + " after the end of the value")
				}
				return nil
			}
			top := &c.stack[len(c.stack)-1]
			if c.i >= len(c.data) {
				return c.syntax("unexpected end of input; , or " + closer(top.array) + " was expected")
			}
			switch ch := c.data[c.i]; {
			case ch == ',':
				c.i++
				c.skipSpace()
				if top.array {
					top.index++
				} else if err := c.member(); err != nil {
					return err
				}
			case top.array && ch == ']' || !top.array && ch == '}':
				c.i++
				c.stack = c.stack[:len(c.stack)-1]
				c.ended(top.start)
				continue
			default:
				return c.syntax("unexpected " + c.found() + "; , or " + closer(top.array) + " was expected")
			}
			break
		}
	}
}

// member reads `"key" :` at c.i into the top frame, leaving c.i at the member's value.
func (c *checker) member() error {
	if c.i >= len(c.data) || c.data[c.i] != '"' {
		return c.syntax("unexpected " + c.found() + "; a member name in double quotes was expected")
	}
	start := c.i + 1
	if err := c.str(); err != nil {
		return err
	}
	c.stack[len(c.stack)-1].key = c.data[start : c.i-1]
	if c.visit != nil && len(c.stack) == 1 {
		c.outerKey = decodeKey(c.data[start : c.i-1])
	}
	c.skipSpace()
	if c.i >= len(c.data) || c.data[c.i] != ':' {
		return c.syntax("unexpected " + c.found() + "; : was expected")
	}
	c.i++
	c.skipSpace()
	return nil
}

// str reads a string whose opening quote is at c.i.
func (c *checker) str() error {
	c.i++
	for c.i < len(c.data) {
		// Plain characters (most of a body) are skipped in a tight loop over locals.
		data, i := c.data, c.i
		for i < len(data) && plain[data[i]] {
			i++
		}
		c.i = i
		if i == len(data) {
			break
		}
		ch := data[i]
		switch {
		case ch == '"':
			c.i++
			return nil
		case ch == '\\':
			c.i++
			if c.i >= len(c.data) {
				return c.syntax("unexpected end of input in a string")
			}
			switch c.data[c.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				c.i++
			case 'u':
				for range 4 {
					c.i++
					if c.i >= len(c.data) || !isHex(c.data[c.i]) {
						return c.syntax(`invalid \u escape in a string`)
					}
				}
				c.i++
			default:
				return c.syntax("invalid escape \\" + c.found() + " in a string")
			}
		case ch < ' ':
			return c.syntax("control character " + c.found() + " in a string")
		default:
			c.i++
		}
	}
	return c.syntax("unexpected end of input in a string")
}

// plain marks the bytes a string may hold as they are: not '"', '\\' or a control character.
var plain = func() (t [256]bool) {
	for b := ' '; b < 256; b++ {
		t[b] = b != '"' && b != '\\'
	}
	return t
}()

// number reads -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? at c.i.
func (c *checker) number() error {
	if c.data[c.i] == '-' {
		c.i++
	}
	switch {
	case c.i < len(c.data) && c.data[c.i] == '0':
		c.i++
	case c.digits() == 0:
		return c.syntax("unexpected " + c.found() + " in a number")
	}
	if c.i < len(c.data) && c.data[c.i] == '.' {
		c.i++
		if c.digits() == 0 {
			return c.syntax("unexpected " + c.found() + " in a number; a digit was expected")
		}
	}
	if c.i < len(c.data) && (c.data[c.i] == 'e' || c.data[c.i] == 'E') {
		c.i++
		if c.i < len(c.data) && (c.data[c.i] == '+' || c.data[c.i] == '-') {
			c.i++
		}
		if c.digits() == 0 {
			return c.syntax("unexpected " + c.found() + " in a number; a digit was expected")
		}
	}
	return nil
}

func (c *checker) digits() int {
	start := c.i
	for c.i < len(c.data) && c.data[c.i] >= '0' && c.data[c.i] <= '9' {
		c.i++
	}
	return c.i - start
}

func (c *checker) literal(word string) error {
	if len(c.data)-c.i < len(word) || string(c.data[c.i:c.i+len(word)]) != word {
		return c.syntax("unexpected " + c.found() + "; a value was expected")
	}
	c.i += len(word)
	return nil
}

func (c *checker) skipSpace() {
	for c.i < len(c.data) {
		switch c.data[c.i] {
		case ' ', '\t', '\n', '\r':
			c.i++
		default:
			return
		}
	}
}

func (c *checker) syntax(reason string) error {
	return &SyntaxError{Offset: c.i, Reason: reason}
}

func (c *checker) depth() error {
	path := make([]Step, len(c.stack))
	for i, f := range c.stack {
		path[i] = Step{Key: string(f.key), Index: f.index, InArray: f.array}
	}
	return &DepthError{Offset: c.i, Limit: c.max, Path: path}
}

// found names the byte at c.i for a message.
func (c *checker) found() string {
	if c.i >= len(c.data) {
		return "end of input"
	}
	ch := c.data[c.i]
	if ch < ' ' || ch >= 0x7f {
		return fmt.Sprintf("byte 0x%02x", ch)
	}
	return strconv.Quote(string(ch))
}

func closer(array bool) string {
	if array {
		return "]"
	}
	return "}"
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}
