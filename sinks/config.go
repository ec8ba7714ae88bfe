package sinks

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Sink types accepted in Config.Type.
const (
	TypeSQLite = "sqlite"
	TypeHTTP   = "http"
	TypeFile   = "file"
)

// Defaults applied to zero Config fields.
const (
	DefaultSQLitePath  = "sinks.db"
	DefaultTimeout     = 10 * time.Second
	DefaultBatchSize   = 500
	DefaultMaxAttempts = 3
)

// updatedAtColumn is the column every sqlite sink table carries with the time of the last write.
const updatedAtColumn = "_updated_at"

// idColumn is the sqlite key column when no key field is configured: it holds Record.ID.
const idColumn = "_id"

// Config is one entry of the `sinks:` map in gateway.yaml. The config loader decodes it with
// yaml.v3 (durations as "10s") and reports unknown keys itself; Validate checks the values.
type Config struct {
	Type string `yaml:"type"` // sqlite | http | file

	// sqlite: Path is the database file, relative to the data dir, default "sinks.db".
	// file: Path is the NDJSON file, relative to the data dir, default "<name>.ndjson".
	Path string `yaml:"path"`

	// sqlite
	Table string `yaml:"table"` // default: the sink's name
	// Key is the mapped field used as the upsert key (the table's PRIMARY KEY, stored as TEXT).
	// Records whose key field is absent or null use Record.ID. Without Key, the key column is
	// "_id" and always holds Record.ID.
	Key string `yaml:"key"`

	// http
	URL         string            `yaml:"url"`
	Headers     map[string]string `yaml:"headers"`
	Timeout     time.Duration     `yaml:"timeout"`      // per request, default 10s
	BatchSize   int               `yaml:"batch_size"`   // records per POST, default 500
	MaxAttempts int               `yaml:"max_attempts"` // in-call attempts on 5xx/timeout/408/429, default 3
}

var typeNames = []string{TypeSQLite, TypeHTTP, TypeFile}

// identRe is what the sqlite sink accepts as a table, key or column name: quoting alone would
// make anything safe, but plain identifiers keep the table usable from any SQL tool.
var identRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

const identRule = "letters, digits and _, not starting with a digit"

// headerNameRe is RFC 9110's token.
var headerNameRe = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

// sinkSetHeaders are request headers the http sink sets itself.
var sinkSetHeaders = []string{"Content-Type", "Content-Length", "Idempotency-Key", "Host"}

// Validate checks c as the config of the sink called name and returns every problem found,
// joined, each naming the sink, the field and the value, e.g.
// `sink "x": type "kafka" is not one of sqlite, http, file`. Fields that do not belong to the
// type are errors too. Validate does not touch the file system or the network.
func (c Config) Validate(name string) error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("sink %q: "+format, append([]any{name}, args...)...))
	}
	if name == "" {
		bad("name must not be empty")
	}
	switch c.Type {
	case "":
		bad("type is required: one of %s", strings.Join(typeNames, ", "))
		return errors.Join(errs...)
	case TypeSQLite, TypeHTTP, TypeFile:
	default:
		bad("type %q is not one of %s", c.Type, strings.Join(typeNames, ", "))
		return errors.Join(errs...)
	}

	// Fields foreign to the type, in declaration order.
	foreign := []struct {
		field string
		set   bool
		value string
		types []string // types the field belongs to
	}{
		{"path", c.Path != "", fmt.Sprintf("%q", c.Path), []string{TypeSQLite, TypeFile}},
		{"table", c.Table != "", fmt.Sprintf("%q", c.Table), []string{TypeSQLite}},
		{"key", c.Key != "", fmt.Sprintf("%q", c.Key), []string{TypeSQLite}},
		{"url", c.URL != "", fmt.Sprintf("%q", redactURL(c.URL)), []string{TypeHTTP}},
		{"headers", len(c.Headers) > 0, "[" + strings.Join(sortedKeys(c.Headers), " ") + "]", []string{TypeHTTP}},
		{"timeout", c.Timeout != 0, c.Timeout.String(), []string{TypeHTTP}},
		{"batch_size", c.BatchSize != 0, fmt.Sprint(c.BatchSize), []string{TypeHTTP}},
		{"max_attempts", c.MaxAttempts != 0, fmt.Sprint(c.MaxAttempts), []string{TypeHTTP}},
	}
	for _, f := range foreign {
		if f.set && !slices.Contains(f.types, c.Type) {
			bad("%s %s does not apply to type %s", f.field, f.value, c.Type)
		}
	}

	switch c.Type {
	case TypeSQLite:
		if c.Path == ":memory:" || strings.HasPrefix(c.Path, "file:") {
			bad("path %q is not supported: give a file path", c.Path)
		}
		switch {
		case c.Table == "" && name != "" && !identRe.MatchString(name):
			bad("table %q (the sink name) is not a plain identifier (%s); set table", name, identRule)
		case c.Table != "" && !identRe.MatchString(c.Table):
			bad("table %q is not a plain identifier (%s)", c.Table, identRule)
		case strings.HasPrefix(strings.ToLower(c.table(name)), "sqlite_"):
			bad("table %q is reserved by SQLite (sqlite_ prefix)", c.table(name))
		}
		switch {
		case c.Key != "" && !identRe.MatchString(c.Key):
			bad("key %q is not a plain identifier (%s)", c.Key, identRule)
		case strings.EqualFold(c.Key, updatedAtColumn):
			bad("key %q is reserved for the time of the last write", c.Key)
		}
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

// table is the sqlite table name: Table, or the sink's name.
func (c Config) table(name string) string {
	if c.Table != "" {
		return c.Table
	}
	return name
}

// withDefaults returns c with zero fields of its type set to their defaults.
func (c Config) withDefaults(name string) Config {
	switch c.Type {
	case TypeSQLite:
		if c.Path == "" {
			c.Path = DefaultSQLitePath
		}
		c.Table = c.table(name)
	case TypeHTTP:
		if c.Timeout == 0 {
			c.Timeout = DefaultTimeout
		}
		if c.BatchSize == 0 {
			c.BatchSize = DefaultBatchSize
		}
		if c.MaxAttempts == 0 {
			c.MaxAttempts = DefaultMaxAttempts
		}
	case TypeFile:
		if c.Path == "" {
			c.Path = name + ".ndjson"
		}
	}
	return c
}

// redactURL shows u for messages without its password and query, which may hold credentials.
// (Sink errors can reach partners through tracking.) u may be invalid.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
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
