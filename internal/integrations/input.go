package integrations

import (
	"bytes"
	"encoding/json"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

// Input is a create or update request body (seed 003), parsed and checked for shape. Absent
// fields are nil (update keeps the stored value); Config is the whole new configuration.
type Input struct {
	Channel        Channel // "" when absent
	Name           *string
	Status         *Status
	Config         *Config
	RegenerateKeys bool
}

// IntegrationTypes are the values a Direct integration's integrationType may take.
var IntegrationTypes = []string{"Agent", "Bot", "Customer"}

// Limits of an integration's values.
const (
	maxNameLength   = 200
	maxFilters      = 100
	maxFilterLength = 200
	maxStartBytes   = 64 << 10
)

// MaxMessagesPerWebhook is the most messages one message:* webhook carries, and the default of
// Config.MessagesPerWebhook.
const MaxMessagesPerWebhook = 1000

// readOnlyFields may appear in a body (a partner sending back what GET returned) and are
// ignored: the gateway sets them.
var readOnlyFields = []string{"integrationId", "hubId", "integrationTypeId"}

// ParseInput reads a create body (channel "": channelId, name and configuration are required)
// or an update body of an integration of channel (everything optional; a configuration replaces
// the old one whole, so it must hold every value its channel requires). Field names match
// case-insensitively (the seed writes both "echo" and "Echo"). Every problem is reported, each
// naming its field, in one *ValidationError.
func ParseInput(body []byte, channel Channel) (Input, error) {
	var ps problems
	creating := channel == ""
	fields, ok := objectFields(body, "body", &ps)
	if !ok {
		return Input{}, ps.err()
	}
	var in Input
	allowed := append([]string{"channelId", "name", "statusId", "configuration"}, readOnlyFields...)
	for _, f := range fields.unknown(allowed) {
		ps.add(f, "unknown field (allowed: %s)", strings.Join(allowed[:4], ", "))
	}

	if raw, ok := fields.get("channelId"); ok {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			ps.add("channelId", "must be a string, one of %s", channelList())
		} else if c, ok := parseChannel(s); !ok {
			ps.add("channelId", "%q is not supported; the supported channels are %s", s, channelList())
		} else if !creating && c != channel {
			ps.add("channelId", "cannot change from %s to %s; delete the integration and create a new one", channel, c)
		} else {
			in.Channel = c
		}
	} else if creating {
		ps.add("channelId", "is required, one of %s", channelList())
	}

	if raw, ok := fields.get("name"); ok {
		var s string
		switch {
		case json.Unmarshal(raw, &s) != nil:
			ps.add("name", "must be a string")
		case strings.TrimSpace(s) == "":
			ps.add("name", "must not be empty")
		case len(s) > maxNameLength:
			ps.add("name", "is %d characters; the limit is %d", len(s), maxNameLength)
		default:
			in.Name = &s
		}
	} else if creating {
		ps.add("name", "is required")
	}

	if raw, ok := fields.get("statusId"); ok {
		var n int
		if json.Unmarshal(raw, &n) != nil || !Status(n).Valid() {
			ps.add("statusId", "%s is not a status; use %d (Active) or %d (Paused)", raw, Active, Paused)
		} else {
			st := Status(n)
			in.Status = &st
		}
	}

	target := channel
	if creating {
		target = in.Channel
	}
	if raw, ok := fields.get("configuration"); ok {
		if target != "" {
			cfg, regenerate := parseConfig(target, raw, &ps)
			in.Config, in.RegenerateKeys = &cfg, regenerate
		}
	} else if creating {
		ps.add("configuration", "is required")
	}
	return in, ps.err()
}

// parseConfig reads the configuration of channel, reporting problems under "configuration.".
func parseConfig(channel Channel, raw json.RawMessage, ps *problems) (cfg Config, regenerate bool) {
	fields, ok := objectFields(raw, "configuration", ps)
	if !ok {
		return Config{}, false
	}
	allowed := []string{"webhookUrl", "events", "regenerateKeys", "messagesPerWebhook", "publicSigningKey", "privateSigningKey"}
	if channel == Direct {
		allowed = append(allowed, "integrationType", "echo", "start")
	}
	for _, f := range fields.unknown(allowed) {
		ps.add("configuration."+f, "unknown field for channel %s (allowed: %s)", channel, strings.Join(allowed, ", "))
	}
	field := func(name string) string { return "configuration." + name }

	if raw, ok := fields.get("webhookUrl"); ok {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			ps.add(field("webhookUrl"), "must be a string")
		}
		cfg.WebhookURL = strings.TrimSpace(s)
	}
	if cfg.WebhookURL == "" && channel == System {
		ps.add(field("webhookUrl"), "is required for channel System")
	}

	if raw, ok := fields.get("events"); ok {
		if json.Unmarshal(raw, &cfg.Events) != nil {
			ps.add(field("events"), "must be a list of event filters (names, \"*\" or \"prefix:*\")")
		} else {
			checkFilters(cfg.Events, field("events"), ps)
		}
	} else if channel == System {
		ps.add(field("events"), "is required for channel System: a list of event filters (names, \"*\" or \"prefix:*\")")
	}

	if raw, ok := fields.get("regenerateKeys"); ok && json.Unmarshal(raw, &regenerate) != nil {
		ps.add(field("regenerateKeys"), "must be true or false")
	}
	if raw, ok := fields.get("messagesPerWebhook"); ok {
		if json.Unmarshal(raw, &cfg.MessagesPerWebhook) != nil || cfg.MessagesPerWebhook < 1 || cfg.MessagesPerWebhook > MaxMessagesPerWebhook {
			ps.add(field("messagesPerWebhook"), "%s is not a whole number from 1 to %d", raw, MaxMessagesPerWebhook)
		}
	}

	if channel != Direct {
		return cfg, regenerate
	}
	if raw, ok := fields.get("integrationType"); ok {
		var s string
		_ = json.Unmarshal(raw, &s)
		i := slices.IndexFunc(IntegrationTypes, func(t string) bool { return strings.EqualFold(t, s) })
		if i < 0 {
			ps.add(field("integrationType"), "%s is not supported; use one of %s", raw, strings.Join(IntegrationTypes, ", "))
		} else {
			cfg.IntegrationType = IntegrationTypes[i]
		}
	} else {
		ps.add(field("integrationType"), "is required for channel Direct, one of %s", strings.Join(IntegrationTypes, ", "))
	}
	if raw, ok := fields.get("echo"); ok && json.Unmarshal(raw, &cfg.Echo) != nil {
		ps.add(field("echo"), "must be true or false")
	}
	if raw, ok := fields.get("start"); ok {
		var items []json.RawMessage
		switch {
		case json.Unmarshal(raw, &items) != nil:
			ps.add(field("start"), "must be a list of messages")
		case len(raw) > maxStartBytes:
			ps.add(field("start"), "is %d bytes; the limit is %d", len(raw), maxStartBytes)
		default:
			var compact bytes.Buffer
			_ = json.Compact(&compact, raw)
			cfg.Start = compact.Bytes()
		}
	}
	return cfg, regenerate
}

// checkFilters reports each malformed event filter of fs.
func checkFilters(fs []string, field string, ps *problems) {
	if len(fs) == 0 {
		ps.add(field, "must name at least one event filter (names, \"*\" or \"prefix:*\")")
	}
	if len(fs) > maxFilters {
		ps.add(field, "has %d filters; the limit is %d", len(fs), maxFilters)
		return
	}
	for i, f := range fs {
		at := field + "[" + strconv.Itoa(i) + "]"
		switch {
		case f == "":
			ps.add(at, "must not be empty")
		case len(f) > maxFilterLength:
			ps.add(at, "is %d characters; the limit is %d", len(f), maxFilterLength)
		case strings.IndexFunc(f, unicode.IsSpace) >= 0:
			ps.add(at, "%q contains white space", f)
		case f != "*" && strings.Contains(strings.TrimSuffix(f, ":*"), "*"):
			ps.add(at, "%q: \"*\" may only stand alone or end a prefix as \"prefix:*\"", f)
		}
	}
}

func parseChannel(s string) (Channel, bool) {
	for _, c := range Channels {
		if strings.EqualFold(string(c), s) {
			return c, true
		}
	}
	return "", false
}

func channelList() string {
	names := make([]string, len(Channels))
	for i, c := range Channels {
		names[i] = string(c)
	}
	return strings.Join(names, ", ")
}

// jsonFields are an object's members by lower-cased name; null members count as absent.
type jsonFields map[string]jsonField

type jsonField struct {
	name  string // as written
	value json.RawMessage
}

// objectFields reads raw as a JSON object, reporting under field when it is not one or when
// two members differ only in case.
func objectFields(raw []byte, field string, ps *problems) (jsonFields, bool) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		ps.add(field, "must be a JSON object")
		return nil, false
	}
	out := make(jsonFields, len(m))
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		v := m[k]
		lk := strings.ToLower(k)
		if prev, dup := out[lk]; dup {
			ps.add(field, "has both %q and %q; give it once", prev.name, k)
			continue
		}
		if string(bytes.TrimSpace(v)) == "null" {
			continue
		}
		out[lk] = jsonField{name: k, value: v}
	}
	return out, true
}

func (f jsonFields) get(name string) (json.RawMessage, bool) {
	v, ok := f[strings.ToLower(name)]
	return v.value, ok
}

// unknown returns the names (as written, sorted) of members not in allowed.
func (f jsonFields) unknown(allowed []string) []string {
	var out []string
	for lk, v := range f {
		if !slices.ContainsFunc(allowed, func(a string) bool { return strings.ToLower(a) == lk }) {
			out = append(out, v.name)
		}
	}
	sort.Strings(out)
	return out
}
