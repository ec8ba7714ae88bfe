package sinks

import (
	"fmt"
	"strings"

	"github.com/tidwall/gjson"
)

// tableShape is what the table sinks (sqlite, postgres) share: how a record becomes a row of
// (ClientField, key column, one column per mapped field, updatedAtColumn), with the primary key
// (ClientField, key column).
type tableShape struct {
	table string
	key   string // key column: Config.Key or idColumn
	// keyIsField reports whether key names a mapped field (Config.Key) rather than idColumn.
	keyIsField bool
}

func newTableShape(table, key string) tableShape {
	if key == "" {
		return tableShape{table: table, key: idColumn}
	}
	return tableShape{table: table, key: key, keyIsField: true}
}

// row is a parsed record.
type row struct {
	id     string // Record.ID, for messages
	client string
	key    string
	fields []string // field names as in the record, key field excluded, in record order
	vals   []gjson.Result
}

// parse turns a record into a row, rejecting (permanently) what no retry can fix: see
// SQLiteSink. maxName, if positive, bounds field names in bytes.
func (t tableShape) parse(r Record, maxName int) (row, error) {
	doc, err := parseObject(r)
	if err != nil {
		return row{}, err
	}
	out := row{id: r.ID, client: r.ClientID, key: r.ID}
	seen := map[string]string{} // lower-case name → name as in the record
	index := map[string]int{}   // lower-case name → position in out.fields
	keyLower := strings.ToLower(t.key)
	var bad error
	doc.ForEach(func(k, v gjson.Result) bool {
		name := k.String()
		lower := strings.ToLower(name)
		switch prev, dup := seen[lower]; {
		case !identRe.MatchString(name):
			bad = fmt.Errorf("record %s: field %q is not a plain identifier (%s)", r.ID, name, identRule)
		case maxName > 0 && len(name) > maxName:
			bad = fmt.Errorf("record %s: field %q is longer than %d bytes", r.ID, name, maxName)
		case lower == updatedAtColumn || (!t.keyIsField && lower == idColumn):
			bad = fmt.Errorf("record %s: field %q is reserved for a column of the sink", r.ID, name)
		case dup && prev != name:
			// Column names are matched regardless of case: both would land in one column.
			bad = fmt.Errorf("record %s: fields %q and %q differ only in case", r.ID, prev, name)
		case t.keyIsField && lower == keyLower:
			switch v.Type {
			case gjson.Null:
				out.key = r.ID // fall back to Record.ID
			case gjson.String:
				out.key = v.String()
			case gjson.Number, gjson.True, gjson.False:
				out.key = v.Raw
			default:
				bad = fmt.Errorf("record %s: key field %q holds an object or array, want a string or number", r.ID, name)
			}
		case dup:
			out.vals[index[lower]] = v // a repeated key: the last one wins, as with encoding/json
		default:
			index[lower] = len(out.fields)
			out.fields = append(out.fields, name)
			out.vals = append(out.vals, v)
		}
		seen[lower] = name
		return bad == nil
	})
	if bad != nil {
		return row{}, Permanent(bad)
	}
	if out.key == "" && r.ID == "" {
		return row{}, Permanent(fmt.Errorf("record without id: no %s value to key it by", t.key))
	}
	return out, nil
}

// checkPrimaryKey reports whether an existing table, whose primary key columns are pk, can be
// upserted into by (ClientField, key).
func (t tableShape) checkPrimaryKey(pk []string) error {
	if len(pk) == 2 && strings.EqualFold(pk[0], ClientField) && strings.EqualFold(pk[1], t.key) {
		return nil
	}
	if len(pk) == 0 {
		return fmt.Errorf("table %s exists without a primary key; the sink upserts by (%s, %s) and needs it as the primary key",
			t.table, ClientField, t.key)
	}
	return fmt.Errorf("table %s exists with primary key (%s); the sink upserts by (%s, %s) and needs that as the primary key",
		t.table, strings.Join(pk, ", "), ClientField, t.key)
}

// columnList is an ordered set of column names, unique regardless of case.
type columnList struct {
	names []string
	seen  map[string]bool
}

func (l *columnList) add(name string) {
	if l.seen == nil {
		l.seen = map[string]bool{}
	}
	if lower := strings.ToLower(name); !l.seen[lower] {
		l.seen[lower] = true
		l.names = append(l.names, name)
	}
}

// quoteIdent quotes an SQL identifier. Names are checked to be plain identifiers before they get
// here; quoting still keeps keywords such as "order" usable as column names.
func quoteIdent(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}
