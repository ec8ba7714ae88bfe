// Package mappings loads the per-format mapping files of the gateway and applies them to
// records: which are valid, which sinks each goes to and with which fields.
//
// A mapping file is YAML, one file per format:
//
//	format: activity
//	id: id                # gjson path of the record id (externalReference, upsert key)
//	type: type            # gjson path of the message type shown in tracking, or {const: NAME}
//	                      # (default: the format); a record without that field is invalid
//	timezone: Europe/Copenhagen # where offset-less times are (default UTC)
//	required: [id, type]  # gjson paths that must be present and not null
//	schema:               # JSON Schema (inline, or a file path relative to this file)
//	  properties: {amount: {type: number, minimum: 0}}
//	validate:             # every rule is evaluated; each failing rule reports its message
//	  - rule: type in ["call", "quote"]
//	    message: type must be call or quote
//	routes_mode: first    # first (default): the first route whose `when` holds takes the
//	                      # record; all: every route whose `when` holds does
//	routes:               # no `when` = always
//	  - name: calls
//	    when: type == "call"
//	    sink: activities
//	    fields:           # ordered; each value is an expression
//	      activity_id: id
//	      occurred_at: utc(timestamp)
//	tests:                # run by RunTests, `gateway check` and `go test`
//	  - name: a call is mapped
//	    input: {"id": "a1", "type": "call", "timestamp": "2020-05-18T21:15:00-05:00"}
//	    expect: {activities: {activity_id: a1, occurred_at: "2020-05-19T02:15:00Z"}}
//	  - name: unknown type is invalid
//	    input: {"id": "a2", "type": "visit"}
//	    invalid: type must be call or quote
//
// Rules, conditions and field values are expr-lang expressions
// (https://expr-lang.org/docs/language-definition), compiled once at load time. An
// identifier in an expression is a field of the record: `type`, `payment.status` and
// `items[0].name` are read from the raw JSON with gjson, so a record is never decoded as a
// whole. A key that is not an identifier is read with field("gjson path"). JSON values become
// string, float64, bool, nil (absent or null), map[string]any and []any. Because a YAML scalar
// is the expression's source, a string constant needs expr quotes inside YAML quotes:
// `source: '"web"'`.
//
// Besides expr's builtins (len, sum, map, filter, split, ...), expressions can call the
// functions listed by Functions: utc, epoch and is_date (with optional layouts such as
// "dd/MM/yyyy HH:mm", offset-less times in the mapping's timezone), seconds, number and
// is_number (with an optional decimal mark; ambiguous strings such as "1.299" are refused,
// never guessed), boolean, is_email, blank, present, coalesce, field, and lower, upper and
// trim, which replace expr's own to report a null as an error that names it. Layouts and
// decimal marks given as constants are checked at load time.
//
// A record is applied in five steps, and the first step that fails makes the record invalid:
// required paths (and the type field), the JSON Schema (every violation is reported, as
// "schema: <JSON pointer>: <rule>"), validate rules (all of them are evaluated), routes (the
// first match, or with routes_mode all every match, each to a different sink), fields (all of
// them, of every route taken). Every problem is reported as a message that
// names the rule or field and the offending value. A condition (`rule`, `when`) that is null
// does not hold; one that is neither bool nor null is an error. A rule without `message`
// reports "rule failed: <rule>".
//
// A test passes when its input goes to exactly the sinks under `expect` (one in routes_mode
// first), each with exactly the fields listed there (numbers compare as JSON numbers), or,
// for `invalid`, when the message is exactly one of the record's errors. Mapping.DryRun
// shows what every route taking a record would send, as `gateway map` and
// POST /push?dry_run=true print it.
//
// Schemas are JSON Schema draft 2020-12 by default, compiled at load time with
// github.com/santhosh-tekuri/jsonschema/v6; `format` is asserted, and $ref may name local
// files only.
//
// Loading reports every problem of every file at once as Problems, each with its
// file:line:col, so a mapping author can fix a file in one pass. A Watcher reloads a folder
// while the gateway runs, handing on valid sets and refusing (and logging) broken ones.
//
// The reference for mapping authors is docs/mappings.md; TestDocs* keep it in step with the
// keys and functions of this package and run every example it shows.
package mappings
