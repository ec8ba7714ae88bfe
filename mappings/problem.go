package mappings

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Problem is one thing wrong with a mapping file, at a place in it.
type Problem struct {
	File    string
	Line    int // 1-based; 0 when the problem concerns the whole file
	Col     int // 1-based; 0 when unknown
	Message string
}

// String formats the problem as "file:line:col: message", leaving out a line or column that
// is unknown (zero).
func (p Problem) String() string {
	switch {
	case p.Line == 0:
		return fmt.Sprintf("%s: %s", p.File, p.Message)
	case p.Col == 0:
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Message)
	default:
		return fmt.Sprintf("%s:%d:%d: %s", p.File, p.Line, p.Col, p.Message)
	}
}

// Problems is every problem found while loading mapping files. It is the error returned by
// Load and LoadFile; use errors.As to get at the individual problems.
type Problems []Problem

// Error lists all problems, one per line, sorted by file, line and column.
func (ps Problems) Error() string {
	sorted := slices.Clone(ps)
	sorted.sort()
	var b strings.Builder
	for i, p := range sorted {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(p.String())
	}
	return b.String()
}

func (ps Problems) sort() {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		return cmp.Or(
			cmp.Compare(a.File, b.File),
			cmp.Compare(a.Line, b.Line),
			cmp.Compare(a.Col, b.Col),
		)
	})
}

// err returns ps as an error, or a nil error (not a nil Problems) when there are none.
func (ps Problems) err() error {
	if len(ps) == 0 {
		return nil
	}
	ps.sort()
	return ps
}
