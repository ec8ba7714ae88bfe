package sinks

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Sink types accepted in Config.Type.
const (
	TypeSQLite   = "sqlite"
	TypePostgres = "postgres"
	TypeHTTP     = "http"
	TypeFile     = "file"
)

// Defaults applied to zero Config fields (see options for which type each applies to).
const (
	DefaultSQLitePath  = "sinks.db"
	DefaultTimeout     = 10 * time.Second
	DefaultBatchSize   = 500
	DefaultMaxAttempts = 3
)

// updatedAtColumn is the column every table sink carries with the time of the last write.
const updatedAtColumn = "_updated_at"

// idColumn is the table sinks' key column when no key field is configured: it holds Record.ID.
const idColumn = "_id"

// Config is one entry of the `sinks:` map in gateway.yaml. The config loader decodes it with
// yaml.v3 (durations as "10s"), expands ${ENV} references and reports unknown keys itself;
// Validate checks the values. Which key applies to which type, and its default, is declared once
// in options; docs/sinks.md documents each (a test keeps the three in step).
type Config struct {
	Type string `yaml:"type"` // sqlite | postgres | http | file

	// sqlite: Path is the database file, relative to the data dir, default "sinks.db".
	// file: Path is the NDJSON file, relative to the data dir, default "<name>.ndjson".
	Path string `yaml:"path"`

	// sqlite, postgres
	Table string `yaml:"table"` // default: the sink's name
	// Key is the mapped field used as the upsert key (with the client id, the table's primary
	// key; stored as text). Records whose key field is absent or null use Record.ID. Without
	// Key, the key column is "_id" and always holds Record.ID.
	Key string `yaml:"key"`

	// http: the endpoint. postgres: the database URL, default the gateway's own database.
	URL string `yaml:"url"`

	// http
	Headers     map[string]string `yaml:"headers"`
	Timeout     time.Duration     `yaml:"timeout"`      // per request, default 10s
	BatchSize   int               `yaml:"batch_size"`   // records per POST, default 500
	MaxAttempts int               `yaml:"max_attempts"` // in-call attempts on 5xx/timeout/408/429, default 3
}

var typeNames = []string{TypeSQLite, TypePostgres, TypeHTTP, TypeFile}

// option declares one key of Config: the types it applies to and, per type, its default. It is
// the single list of keys: Validate refuses a key set for a type it does not apply to,
// withDefaults fills the defaults, and the docs test checks docs/sinks.md against it (and that
// it names exactly Config's yaml keys).
type option struct {
	key   string
	types []string
	// defaults gives the key's default for a type, for the sink called name (a value of the
	// field's type). A type the key applies to without an entry has no default.
	defaults map[string]func(name string) any
}

var options = []option{
	{key: "type", types: typeNames},
	{key: "path", types: []string{TypeSQLite, TypeFile}, defaults: map[string]func(string) any{
		TypeSQLite: func(string) any { return DefaultSQLitePath },
		TypeFile:   func(name string) any { return name + ".ndjson" },
	}},
	{key: "table", types: []string{TypeSQLite, TypePostgres}, defaults: map[string]func(string) any{
		TypeSQLite:   func(name string) any { return name },
		TypePostgres: func(name string) any { return name },
	}},
	{key: "key", types: []string{TypeSQLite, TypePostgres}},
	// postgres's url defaults to the gateway's database, which Open is told (WithDatabase).
	{key: "url", types: []string{TypeHTTP, TypePostgres}},
	{key: "headers", types: []string{TypeHTTP}},
	{key: "timeout", types: []string{TypeHTTP}, defaults: map[string]func(string) any{
		TypeHTTP: func(string) any { return DefaultTimeout },
	}},
	{key: "batch_size", types: []string{TypeHTTP}, defaults: map[string]func(string) any{
		TypeHTTP: func(string) any { return DefaultBatchSize },
	}},
	{key: "max_attempts", types: []string{TypeHTTP}, defaults: map[string]func(string) any{
		TypeHTTP: func(string) any { return DefaultMaxAttempts },
	}},
}

// configFields maps each yaml key of Config to its field index.
var configFields = func() map[string]int {
	t := reflect.TypeOf(Config{})
	m := map[string]int{}
	for i := range t.NumField() {
		if k, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); k != "" && k != "-" {
			m[k] = i
		}
	}
	return m
}()

// field is the value of o's field in c, settable when c is.
func (o option) field(c reflect.Value) reflect.Value { return c.Field(configFields[o.key]) }

// show renders o's value in c for a message; url is shown without password or query.
func (o option) show(c *Config) string {
	switch v := o.field(reflect.ValueOf(c).Elem()).Interface().(type) {
	case string:
		if o.key == "url" {
			v = redactURL(v)
		}
		return fmt.Sprintf("%q", v)
	case map[string]string:
		return "[" + strings.Join(sortedKeys(v), " ") + "]"
	default:
		return fmt.Sprint(v)
	}
}

// identRe is what the table sinks accept as a table, key or column name: quoting alone would
// make anything safe, but plain identifiers keep the table usable from any SQL tool.
var identRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

const identRule = "letters, digits and _, not starting with a digit"

// maxPostgresIdent is PostgreSQL's identifier length limit (NAMEDATALEN-1 bytes); longer names
// would be truncated, silently merging two of them.
const maxPostgresIdent = 63

// headerNameRe is RFC 9110's token.
var headerNameRe = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

// ClientHeader is the request header in which the http sink names the client whose records a
// request carries.
const ClientHeader = "X-Gateway-Client"

// sinkSetHeaders are request headers the http sink sets itself.
var sinkSetHeaders = []string{"Content-Type", "Content-Length", "Idempotency-Key", ClientHeader, "Host"}

// Validate checks c as the config of the sink called name and returns every problem found,
// joined, each naming the sink, the field and the value, e.g.
// `sink "x": type "kafka" is not one of sqlite, postgres, http, file`. Fields that do not belong
// to the type are errors too. Validate does not touch the file system or the network.
func (c Config) Validate(name string) error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("sink %q: "+format, append([]any{name}, args...)...))
	}
	if name == "" {
		bad("name must not be empty")
	}
	switch {
	case c.Type == "":
		bad("type is required: one of %s", strings.Join(typeNames, ", "))
		return errors.Join(errs...)
	case !slices.Contains(typeNames, c.Type):
		bad("type %q is not one of %s", c.Type, strings.Join(typeNames, ", "))
		return errors.Join(errs...)
	}

	cv := reflect.ValueOf(c)
	for _, o := range options {
		if !o.field(cv).IsZero() && !slices.Contains(o.types, c.Type) {
			bad("%s %s does not apply to type %s", o.key, o.show(&c), c.Type)
		}
	}

	switch c.Type {
	case TypeSQLite:
		if c.Path == ":memory:" || strings.HasPrefix(c.Path, "file:") {
			bad("path %q is not supported: give a file path", c.Path)
		}
		c.validateTable(name, "SQLite", "sqlite_", bad)
	case TypePostgres:
		if c.URL != "" {
			if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
				bad("url %q is not a postgres:// or postgresql:// URL", redactURL(c.URL))
			}
		}
		c.validateTable(name, "PostgreSQL", "pg_", bad)
	case TypeHTTP:
		if c.URL == "" {
			bad("url is required for type http")
		} else if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("url %q is not an absolute http or https URL", redactURL(c.URL))
		}
		for _, h := range sortedKeys(c.Headers) {
			switch {
			case !headerNameRe.MatchString(h):
				bad("headers: %q is not a valid header name", h)
			case containsFold(sinkSetHeaders, h):
				bad("headers: %q is set by the sink and cannot be configured", h)
			case strings.ContainsAny(c.Headers[h], "\r\n\x00"):
				bad("headers: value of %q contains a line break or NUL", h)
			}
		}
		switch {
		case c.Timeout < 0:
			bad("timeout %s must be positive (omit it for the default %s)", c.Timeout, DefaultTimeout)
		case c.Timeout > 0 && c.Timeout < time.Millisecond:
			bad("timeout %s is below 1ms; give a unit, e.g. 10s", c.Timeout)
		}
		if c.BatchSize < 0 {
			bad("batch_size %d must be positive (omit it for the default %d)", c.BatchSize, DefaultBatchSize)
		}
		if c.MaxAttempts < 0 {
			bad("max_attempts %d must be positive (omit it for the default %d)", c.MaxAttempts, DefaultMaxAttempts)
		}
	case TypeFile:
		// Any path will do; whether it can be opened is Open's business.
	}
	return errors.Join(errs...)
}

// validateTable checks the table and key of a table sink. reservedPrefix starts the names of the
// tables of the database called db.
func (c Config) validateTable(name, db, reservedPrefix string, bad func(string, ...any)) {
	table := c.table(name)
	switch {
	case c.Table == "" && name != "" && !identRe.MatchString(name):
		bad("table %q (the sink name) is not a plain identifier (%s); set table", name, identRule)
	case c.Table != "" && !identRe.MatchString(c.Table):
		bad("table %q is not a plain identifier (%s)", c.Table, identRule)
	case strings.HasPrefix(strings.ToLower(table), reservedPrefix):
		bad("table %q is reserved by %s (%s prefix)", table, db, reservedPrefix)
	case c.Type == TypePostgres && len(table) > maxPostgresIdent:
		bad("table %q is longer than PostgreSQL's %d-byte identifier limit", table, maxPostgresIdent)
	}
	switch {
	case c.Key != "" && !identRe.MatchString(c.Key):
		bad("key %q is not a plain identifier (%s)", c.Key, identRule)
	case strings.EqualFold(c.Key, updatedAtColumn):
		bad("key %q is reserved for the time of the last write", c.Key)
	case strings.EqualFold(c.Key, ClientField):
		bad("key %q is reserved for the client id", c.Key)
	case c.Type == TypePostgres && len(c.Key) > maxPostgresIdent:
		bad("key %q is longer than PostgreSQL's %d-byte identifier limit", c.Key, maxPostgresIdent)
	}
}

// table is the table sinks' table name: Table, or the sink's name.
func (c Config) table(name string) string {
	if c.Table != "" {
		return c.Table
	}
	return name
}

// withDefaults returns c with zero fields of its type set to their defaults (options).
func (c Config) withDefaults(name string) Config {
	cv := reflect.ValueOf(&c).Elem()
	for _, o := range options {
		if def, ok := o.defaults[c.Type]; ok && o.field(cv).IsZero() {
			o.field(cv).Set(reflect.ValueOf(def(name)))
		}
	}
	return c
}

// redactURL shows u for messages without its password and query, which may hold credentials.
// (Sink errors can reach partners through tracking.) u may be invalid: then everything between
// "://" and the last "@" is masked, and everything from "?" on dropped.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		if i := strings.Index(u, "://"); i >= 0 {
			if j := strings.LastIndex(u, "@"); j > i {
				u = u[:i+3] + "xxxxx" + u[j:]
			}
		}
		if i := strings.IndexByte(u, '?'); i >= 0 {
			u = u[:i] + "?..."
		}
		return u
	}
	q := p.RawQuery != ""
	p.RawQuery, p.ForceQuery, p.Fragment, p.RawFragment = "", false, "", ""
	if q {
		return p.Redacted() + "?..."
	}
	return p.Redacted()
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }

func containsFold(list []string, s string) bool {
	return slices.ContainsFunc(list, func(v string) bool { return strings.EqualFold(v, s) })
}
