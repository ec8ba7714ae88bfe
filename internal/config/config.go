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

	"github.com/opengw/gateway/sinks"
)

// Scopes a client may hold; each guards one API.
var Scopes = []string{"push", "events", "tracking", "integrations", "internal"}

// Config is the whole gateway configuration.
type Config struct {
	Server   Server                  `yaml:"server"`
	DataDir  string                  `yaml:"data_dir"` // where SQLite files live; --data overrides; default ./data
	Mappings string                  `yaml:"mappings"` // folder of mapping files, relative to the config file
	Pipeline Pipeline                `yaml:"pipeline"`
	Auth     Auth                    `yaml:"auth"`
	Sinks    map[string]sinks.Config `yaml:"sinks"`
	Clients  []Client                `yaml:"clients"`
	Webhooks Webhooks                `yaml:"webhooks"`

	// File is the path the configuration was read from.
	File string `yaml:"-"`
}

// Server configures the HTTP listener.
type Server struct {
	Addr string `yaml:"addr"` // default 127.0.0.1:8080; --addr overrides
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
	ID           string   `yaml:"id"` // the feedId
	Name         string   `yaml:"name"`
	Secret       string   `yaml:"secret"`        // plain Basic secret
	SecretBcrypt string   `yaml:"secret_bcrypt"` // or its bcrypt hash
	Tokens       []string `yaml:"tokens"`        // static Bearer tokens
	Formats      []string `yaml:"formats"`
	Tenants      []string `yaml:"tenants"` // "country/tenant" pairs the client may send events for
	Scopes       []string `yaml:"scopes"`
	Hubs         []string `yaml:"hubs"` // integration hubs the client owns

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
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(root.Content) == 0 {
		return nil, fmt.Errorf("%s:1: the file is empty", path)
	}
	doc := root.Content[0]
	var problems []string
	report := func(line int, format string, args ...any) {
		problems = append(problems, fmt.Sprintf("%s:%d: %s", path, line, fmt.Sprintf(format, args...)))
	}
	for _, u := range UnknownKeys(doc, &Config{}) {
		report(u.Line, "unknown key %q (allowed: %s)", u.Key, strings.Join(u.Allowed, ", "))
	}
	for _, m := range ExpandEnv(doc, getenv) {
		report(m.Line, "environment variable %s is not set", m.Name)
	}
	cfg := &Config{File: path}
	if len(problems) == 0 {
		if err := doc.Decode(cfg); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		recordClientLines(doc, cfg)
		for _, p := range cfg.validate() {
			report(p.line, "%s", p.msg)
		}
	}
	if len(problems) > 0 {
		sort.SliceStable(problems, func(i, j int) bool { return problems[i] < problems[j] })
		return nil, errors.New(strings.Join(problems, "\n"))
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
	if c.DataDir == "" {
		c.DataDir = "./data"
	}
	if c.Mappings == "" {
		c.Mappings = "mappings"
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

type problem struct {
	line int
	msg  string
}

func (c *Config) validate() []problem {
	var ps []problem
	add := func(line int, format string, args ...any) {
		ps = append(ps, problem{line, fmt.Sprintf(format, args...)})
	}
	if c.Pipeline.FragmentSize < 0 || c.Pipeline.FragmentSize > 10000 {
		add(1, "pipeline.fragment_size %d is outside 1..10000", c.Pipeline.FragmentSize)
	}
	if c.Pipeline.DeliveryAttempts < 0 {
		add(1, "pipeline.delivery_attempts %d must be positive", c.Pipeline.DeliveryAttempts)
	}
	if c.Webhooks.Timeout < 0 || c.Webhooks.KeyOverlap < 0 {
		add(1, "webhooks.timeout and webhooks.key_overlap must not be negative")
	}
	for i, d := range c.Webhooks.Schedule {
		if d <= 0 {
			add(1, "webhooks.schedule[%d] is %s; every wait must be positive", i, d)
		}
	}
	for _, name := range c.SinkNames() {
		if err := c.Sinks[name].Validate(name); err != nil {
			add(1, "%v", err)
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
