// Package config loads gateway.yaml: strict (unknown keys are errors with their line),
// ${ENV} references expanded, validated before anything starts.
package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/opengw/gateway/internal/yamlcheck"
	"github.com/opengw/gateway/sinks"
)

// Scopes a client may hold; each guards one API.
var Scopes = []string{"push", "events", "tracking", "integrations", "internal"}

// Config is the whole gateway configuration.
type Config struct {
	Server  Server `yaml:"server"`
	DataDir string `yaml:"data_dir"` // where SQLite files live; --data overrides; default ./data
	// Database selects the storage backend: empty for embedded SQLite in DataDir (one node), or
	// a postgres:// URL shared by several nodes. --database overrides.
	Database string   `yaml:"database"`
	Mappings string   `yaml:"mappings"` // folder of mapping files, relative to the config file
	Pipeline Pipeline `yaml:"pipeline"`
	Limits   Limits   `yaml:"limits"`
	// Retention bounds how long data is kept; older data is purged in small batches.
	Retention Retention               `yaml:"retention"`
	Auth      Auth                    `yaml:"auth"`
	Sinks     map[string]sinks.Config `yaml:"sinks"`
	Clients   []Client                `yaml:"clients"`
	Webhooks  Webhooks                `yaml:"webhooks"`

	// File is the path the configuration was read from.
	File string `yaml:"-"`
}

// Server configures the HTTP listener. The timeout defaults let a 10 MiB push through at about
// 35 kB/s while cutting connections that stall or idle.
type Server struct {
	Addr              string        `yaml:"addr"`                // default 127.0.0.1:8080; --addr overrides
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"` // for the request line and headers; default 10s
	ReadTimeout       time.Duration `yaml:"read_timeout"`        // for the whole request, body included; default 5m
	WriteTimeout      time.Duration `yaml:"write_timeout"`       // from the end of the headers to the end of the answer; default 6m
	IdleTimeout       time.Duration `yaml:"idle_timeout"`        // a kept-alive connection waiting for its next request; default 2m
	MaxHeaderBytes    int           `yaml:"max_header_bytes"`    // request line and headers; default 64 KiB
	TLS               TLS           `yaml:"tls"`
}

// TLS turns on HTTPS (with HTTP/2) when both files are set. Relative paths are resolved against
// the config file's folder. The files are re-read when they change, so certificates rotate
// without a restart.
type TLS struct {
	CertFile string `yaml:"cert_file"` // PEM certificate chain
	KeyFile  string `yaml:"key_file"`  // PEM private key
}

// DefaultMemoryLimitBytes is limits.memory_limit_bytes unless the file says otherwise. What
// the process holds besides (SQLite's page caches, the program itself) adds about 45 MB: at
// 120 MiB, 20 pushes of 10,000 records processed end to end peaked at 166 MB of RSS; at 96 MiB
// the gains in CPU and latency were the same (cmd/gateway-bench, alternating runs), at 80 MiB
// the 202s of four concurrent pushes slowed.
const DefaultMemoryLimitBytes = 96 << 20

// MinMemoryLimitBytes is the smallest limits.memory_limit_bytes accepted: below it the garbage
// collector would run all the time.
const MinMemoryLimitBytes = 32 << 20

// Limits bound what requests may cost the gateway.
type Limits struct {
	MaxDepth         int   `yaml:"max_depth"`          // JSON nesting anywhere in a body; default 64
	MaxInflightBytes int64 `yaml:"max_inflight_bytes"` // request bodies buffered at once, all requests together; default 256 MiB
	// MemoryLimitBytes is a soft limit on the memory the Go runtime manages (heap, stacks,
	// buffers; not SQLite's page caches): under it the garbage collector runs a quarter as
	// often as Go's default, at it as often as it must to stay there. Default
	// DefaultMemoryLimitBytes; -1 keeps Go's defaults. GOGC and GOMEMLIMIT in the environment
	// override it.
	MemoryLimitBytes int64 `yaml:"memory_limit_bytes"`
	// Failed authentications allowed per remote address: a bucket of auth_failure_burst refilled
	// at auth_failures_per_second; an empty bucket answers 429. Defaults 1/s and 20; -1 turns
	// the throttle off.
	AuthFailuresPerSecond float64 `yaml:"auth_failures_per_second"`
	AuthFailureBurst      int     `yaml:"auth_failure_burst"`
}

// RateLimit is a client's allowance; an absent or zero rate means no limit.
type RateLimit struct {
	RequestsPerSecond float64 `yaml:"requests_per_second"` // authenticated requests, every endpoint
	Burst             int     `yaml:"burst"`               // requests above the rate for a moment; default the rate (at least 1)
	RecordsPerSecond  float64 `yaml:"records_per_second"`  // records pushed or sent; a burst of max(rate, 10,000) so any valid push fits
}

// Pipeline tunes record processing.
type Pipeline struct {
	FragmentSize     int           `yaml:"fragment_size"`     // records per fragment; default 1000
	DeliveryAttempts int           `yaml:"delivery_attempts"` // before a record ends Failed; default 10
	RetryBackoff     time.Duration `yaml:"retry_backoff"`     // first retry delay, doubled per attempt; default 1s
	MaxRetryBackoff  time.Duration `yaml:"max_retry_backoff"` // default 5m
	// MaxBacklog: queued fragments beyond which intake answers 503 with Retry-After; default
	// 100000, -1 for no limit.
	MaxBacklog int `yaml:"max_backlog"`
	// TrackAtIntake: requests of up to this many records have their messages recorded in the
	// intake transaction (findable by externalReference from the 202 on); bigger requests'
	// messages are recorded when split, soon after. Default 1000; raising it to 10000 makes
	// every record findable at once at the cost of slower acknowledgements of big pushes.
	TrackAtIntake int `yaml:"track_at_intake"`
}

// Retention bounds how long the gateway keeps what it accepted.
type Retention struct {
	// Payloads: raw records, kept for processing and replay; default 168h (7 days).
	Payloads time.Duration `yaml:"payloads"`
	// Tracking: tracked requests and their messages; default 2160h (90 days).
	Tracking time.Duration `yaml:"tracking"`
}

// Webhooks configures the integrations' outbound webhooks. Zero values take the defaults of
// package integrations (timeout 15s, key overlap 24h, schedule 5s 5m 30m 2h 5h 10h 10h).
type Webhooks struct {
	AllowPrivate bool            `yaml:"allow_private"` // allow private, loopback, link-local targets (local use only)
	KeyOverlap   time.Duration   `yaml:"key_overlap"`   // old keys keep signing this long after regenerateKeys
	Schedule     []time.Duration `yaml:"schedule"`      // waits between attempts; then the delivery fails
	Timeout      time.Duration   `yaml:"timeout"`       // one webhook request
}

// Auth configures issued tokens.
type Auth struct {
	JWT JWT `yaml:"jwt"`
}

// JWT configures the tokens /connect/token issues.
type JWT struct {
	Issuer   string        `yaml:"issuer"`
	Audience string        `yaml:"audience"`
	Key      string        `yaml:"key"` // HMAC key; empty: generated once and kept in the data dir
	TTL      time.Duration `yaml:"ttl"` // default 1h
}

// Client is a partner account.
type Client struct {
	ID           string    `yaml:"id"` // the feedId
	Name         string    `yaml:"name"`
	Secret       string    `yaml:"secret"`        // plain Basic secret
	SecretBcrypt string    `yaml:"secret_bcrypt"` // or its bcrypt hash
	Tokens       []string  `yaml:"tokens"`        // static Bearer tokens
	Formats      []string  `yaml:"formats"`
	Tenants      []string  `yaml:"tenants"` // "country/tenant" pairs the client may send events for
	Scopes       []string  `yaml:"scopes"`
	Hubs         []string  `yaml:"hubs"` // integration hubs the client owns
	RateLimit    RateLimit `yaml:"rate_limit"`

	line int
}

// Load reads, expands and validates the file at path. getenv resolves ${NAME} references
// (os.Getenv when nil). All problems found are returned together, each as "file:line: message".
func Load(path string, getenv func(string) string) (*Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, problemsError(path, yamlcheck.FromError(err))
	}
	if len(root.Content) == 0 {
		return nil, fmt.Errorf("%s:1: the file is empty", path)
	}
	doc := root.Content[0]
	problems := yamlcheck.Struct(doc, &Config{})
	for _, m := range ExpandEnv(doc, getenv) {
		problems = append(problems, yamlcheck.Problem{Line: m.Line, Message: fmt.Sprintf("environment variable %s is not set", m.Name)})
	}
	cfg := &Config{File: path}
	if len(problems) == 0 {
		if err := doc.Decode(cfg); err != nil {
			return nil, problemsError(path, yamlcheck.FromError(err))
		}
		recordClientLines(doc, cfg)
		for _, p := range cfg.validate() {
			line := p.line
			if line == 0 {
				n, _ := yamlcheck.Find(doc, p.key...)
				line = n.Line
			}
			problems = append(problems, yamlcheck.Problem{Line: line, Message: p.msg})
		}
	}
	if len(problems) > 0 {
		return nil, problemsError(path, problems)
	}
	cfg.applyDefaults()
	return cfg, nil
}

// MappingsDir is the mapping folder, resolved against the config file's folder.
func (c *Config) MappingsDir() string {
	if filepath.IsAbs(c.Mappings) {
		return c.Mappings
	}
	return filepath.Join(filepath.Dir(c.File), c.Mappings)
}

// TLSFiles returns the certificate and key files, resolved against the config file's folder;
// both are empty when TLS is off.
func (c *Config) TLSFiles() (certFile, keyFile string) {
	if c.Server.TLS.CertFile == "" {
		return "", ""
	}
	resolve := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(filepath.Dir(c.File), p)
	}
	return resolve(c.Server.TLS.CertFile), resolve(c.Server.TLS.KeyFile)
}

// SinkNames lists the configured sinks, sorted.
func (c *Config) SinkNames() []string {
	names := make([]string, 0, len(c.Sinks))
	for n := range c.Sinks {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (c *Config) applyDefaults() {
	if c.Server.Addr == "" {
		c.Server.Addr = "127.0.0.1:8080"
	}
	setDefault(&c.Server.ReadHeaderTimeout, 10*time.Second)
	setDefault(&c.Server.ReadTimeout, 5*time.Minute)
	setDefault(&c.Server.WriteTimeout, 6*time.Minute)
	setDefault(&c.Server.IdleTimeout, 2*time.Minute)
	setDefault(&c.Server.MaxHeaderBytes, 64<<10)
	setDefault(&c.Limits.MaxDepth, 64)
	setDefault(&c.Limits.MaxInflightBytes, 256<<20)
	setDefault(&c.Limits.MemoryLimitBytes, DefaultMemoryLimitBytes)
	setDefault(&c.Limits.AuthFailuresPerSecond, 1)
	setDefault(&c.Limits.AuthFailureBurst, 20)
	if c.DataDir == "" {
		c.DataDir = "./data"
	}
	if c.Mappings == "" {
		c.Mappings = "mappings"
	}
	if c.Retention.Payloads == 0 {
		c.Retention.Payloads = 7 * 24 * time.Hour
	}
	if c.Retention.Tracking == 0 {
		c.Retention.Tracking = 90 * 24 * time.Hour
	}
	if c.Pipeline.FragmentSize == 0 {
		c.Pipeline.FragmentSize = 1000
	}
	if c.Pipeline.DeliveryAttempts == 0 {
		c.Pipeline.DeliveryAttempts = 10
	}
	if c.Pipeline.RetryBackoff == 0 {
		c.Pipeline.RetryBackoff = time.Second
	}
	if c.Pipeline.MaxBacklog == 0 {
		c.Pipeline.MaxBacklog = 100000
	}
	if c.Pipeline.MaxRetryBackoff == 0 {
		c.Pipeline.MaxRetryBackoff = 5 * time.Minute
	}
	if c.Auth.JWT.TTL == 0 {
		c.Auth.JWT.TTL = time.Hour
	}
	if c.Auth.JWT.Issuer == "" {
		c.Auth.JWT.Issuer = "gateway"
	}
	if c.Auth.JWT.Audience == "" {
		c.Auth.JWT.Audience = "gateway"
	}
}

// setDefault sets *v to def when it is zero.
func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// problem is one invalid value: at line, or, when line is 0, at the key that path names in
// the file (or the deepest part of it that is there).
type problem struct {
	line int
	key  []string
	msg  string
}

// problemsError lists problems of the file at path one per line, as "file:line:col: message"
// (the column left out when unknown), sorted by place.
func problemsError(path string, ps []yamlcheck.Problem) error {
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].Line != ps[j].Line {
			return ps[i].Line < ps[j].Line
		}
		return ps[i].Col < ps[j].Col
	})
	lines := make([]string, len(ps))
	for i, p := range ps {
		switch {
		case p.Line == 0:
			lines[i] = fmt.Sprintf("%s: %s", path, p.Message)
		case p.Col == 0:
			lines[i] = fmt.Sprintf("%s:%d: %s", path, p.Line, p.Message)
		default:
			lines[i] = fmt.Sprintf("%s:%d:%d: %s", path, p.Line, p.Col, p.Message)
		}
	}
	return errors.New(strings.Join(lines, "\n"))
}

func (c *Config) validate() []problem {
	var ps []problem
	add := func(line int, format string, args ...any) {
		ps = append(ps, problem{line: line, msg: fmt.Sprintf(format, args...)})
	}
	addAt := func(key []string, format string, args ...any) {
		ps = append(ps, problem{key: key, msg: fmt.Sprintf(format, args...)})
	}
	if c.Pipeline.FragmentSize < 0 || c.Pipeline.FragmentSize > 10000 {
		addAt([]string{"pipeline", "fragment_size"}, "pipeline.fragment_size %d is outside 1..10000", c.Pipeline.FragmentSize)
	}
	if c.Pipeline.DeliveryAttempts < 0 {
		addAt([]string{"pipeline", "delivery_attempts"}, "pipeline.delivery_attempts %d must be positive", c.Pipeline.DeliveryAttempts)
	}
	// nonNegative reports each of section's durations that is negative, at its own key.
	type namedDuration struct {
		name string
		d    time.Duration
	}
	nonNegative := func(section string, ds ...namedDuration) {
		for _, t := range ds {
			if t.d < 0 {
				addAt([]string{section, t.name}, "%s.%s %s must not be negative", section, t.name, t.d)
			}
		}
	}
	nonNegative("server", namedDuration{"read_header_timeout", c.Server.ReadHeaderTimeout}, namedDuration{"read_timeout", c.Server.ReadTimeout},
		namedDuration{"write_timeout", c.Server.WriteTimeout}, namedDuration{"idle_timeout", c.Server.IdleTimeout})
	if c.Server.MaxHeaderBytes < 0 {
		addAt([]string{"server", "max_header_bytes"}, "server.max_header_bytes %d must not be negative", c.Server.MaxHeaderBytes)
	}
	if (c.Server.TLS.CertFile == "") != (c.Server.TLS.KeyFile == "") {
		addAt([]string{"server", "tls"}, "server.tls: give both cert_file and key_file, or neither (cert_file %q, key_file %q)", c.Server.TLS.CertFile, c.Server.TLS.KeyFile)
	}
	// The envelope itself nests three deep; encoding/json, which some sinks use, stops at 10,000.
	if d := c.Limits.MaxDepth; d != 0 && (d < 3 || d > 10000) {
		addAt([]string{"limits", "max_depth"}, "limits.max_depth %d is outside 3..10000", d)
	}
	if c.Limits.MaxInflightBytes < 0 {
		addAt([]string{"limits", "max_inflight_bytes"}, "limits.max_inflight_bytes %d must not be negative", c.Limits.MaxInflightBytes)
	} else if n := c.Limits.MaxInflightBytes; n != 0 && n < 10<<20 {
		addAt([]string{"limits", "max_inflight_bytes"}, "limits.max_inflight_bytes %d is below one 10 MiB push (%d)", n, 10<<20)
	}
	if n := c.Limits.MemoryLimitBytes; n < -1 {
		addAt([]string{"limits", "memory_limit_bytes"}, "limits.memory_limit_bytes %d must be -1 (Go's defaults), 0 (the default) or at least %d (32 MiB)", n, MinMemoryLimitBytes)
	} else if n > 0 && n < MinMemoryLimitBytes {
		addAt([]string{"limits", "memory_limit_bytes"}, "limits.memory_limit_bytes %d is below the minimum %d (32 MiB); -1 keeps Go's defaults", n, MinMemoryLimitBytes)
	}
	if r := c.Limits.AuthFailuresPerSecond; r < 0 && r != -1 {
		addAt([]string{"limits", "auth_failures_per_second"}, "limits.auth_failures_per_second %v must be positive, or -1 for no throttle", r)
	}
	if c.Limits.AuthFailureBurst < 0 {
		addAt([]string{"limits", "auth_failure_burst"}, "limits.auth_failure_burst %d must not be negative", c.Limits.AuthFailureBurst)
	}
	nonNegative("webhooks", namedDuration{"timeout", c.Webhooks.Timeout}, namedDuration{"key_overlap", c.Webhooks.KeyOverlap})
	for i, d := range c.Webhooks.Schedule {
		if d <= 0 {
			addAt([]string{"webhooks", "schedule"}, "webhooks.schedule[%d] is %s; every wait must be positive", i, d)
		}
	}
	for _, name := range c.SinkNames() {
		for _, err := range unjoin(c.Sinks[name].Validate(name)) {
			addAt([]string{"sinks", name, sinkKey(err.Error(), name)}, "%v", err)
		}
	}
	ids := map[string]bool{}
	tokens := map[string]string{}
	hubs := map[string]string{}
	for i, cl := range c.Clients {
		where := fmt.Sprintf("clients[%d]", i)
		if cl.ID == "" {
			add(cl.line, "%s: id is required", where)
		} else if ids[cl.ID] {
			add(cl.line, "%s: duplicate client id %q", where, cl.ID)
		}
		ids[cl.ID] = true
		if cl.Secret != "" && cl.SecretBcrypt != "" {
			add(cl.line, "client %q: give secret or secret_bcrypt, not both", cl.ID)
		}
		if cl.SecretBcrypt != "" && !strings.HasPrefix(cl.SecretBcrypt, "$2") {
			add(cl.line, "client %q: secret_bcrypt is not a bcrypt hash (it starts with $2a$, $2b$ or $2y$)", cl.ID)
		}
		for _, s := range cl.Scopes {
			if !slices.Contains(Scopes, s) {
				add(cl.line, "client %q: unknown scope %q (allowed: %s)", cl.ID, s, strings.Join(Scopes, ", "))
			}
		}
		for _, t := range cl.Tokens {
			if owner, dup := tokens[t]; dup {
				add(cl.line, "client %q: a static token is also given to client %q", cl.ID, owner)
			}
			tokens[t] = cl.ID
		}
		rl := cl.RateLimit
		switch {
		case rl.RequestsPerSecond < 0 || rl.RecordsPerSecond < 0 || rl.Burst < 0:
			add(cl.line, "client %q: rate_limit values must not be negative (requests_per_second %v, burst %d, records_per_second %v)",
				cl.ID, rl.RequestsPerSecond, rl.Burst, rl.RecordsPerSecond)
		case rl.Burst > 0 && rl.RequestsPerSecond == 0:
			add(cl.line, "client %q: rate_limit.burst %d needs requests_per_second", cl.ID, rl.Burst)
		}
		for _, h := range cl.Hubs {
			if owner, dup := hubs[h]; dup && owner != cl.ID {
				add(cl.line, "client %q: hub %q is also owned by client %q (a hub has one owner)", cl.ID, h, owner)
			}
			hubs[h] = cl.ID
		}
		for _, t := range cl.Tenants {
			if parts := strings.Split(t, "/"); len(parts) != 2 || parts[0] == "" || parts[1] == "" {
				add(cl.line, "client %q: tenant %q is not country/tenant", cl.ID, t)
			}
		}
	}
	return ps
}

// unjoin returns the errors that errors.Join combined into err; err alone if it is not a join;
// none for nil.
func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// sinkKey returns the key a sinks.Config.Validate message is about: the word after the
// `sink "name": ` prefix ("url" in `sink "x": url is required for type http`). A word that
// is not a key of the sink makes Load report the sink's own line.
func sinkKey(msg, name string) string {
	msg = strings.TrimPrefix(msg, fmt.Sprintf("sink %q: ", name))
	word, _, _ := strings.Cut(msg, " ")
	return strings.TrimSuffix(word, ":")
}

// recordClientLines remembers where each client was declared, for validation messages.
func recordClientLines(doc *yaml.Node, cfg *Config) {
	for i := 0; i+1 < len(doc.Content); i += 2 {
		if doc.Content[i].Value != "clients" || doc.Content[i+1].Kind != yaml.SequenceNode {
			continue
		}
		for j, item := range doc.Content[i+1].Content {
			if j < len(cfg.Clients) {
				cfg.Clients[j].line = item.Line
			}
		}
	}
}
