package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Source names of the layers, in the order they are applied.
const (
	SourceDefault = "default"
	SourceRemote  = "remote"
)

// RemoteFileName is the file under the state directory holding persisted remote changes.
const RemoteFileName = "remote-config.yaml"

// Options say where Load looks.
type Options struct {
	// File is the configuration file; "" means none (defaults and environment only).
	File string
	// Environ is the environment as KEY=VALUE pairs; nil means os.Environ().
	Environ []string
	// NoRemote skips the persisted remote layer (for `hark vad` and tests).
	NoRemote bool
}

// Loaded is an effective configuration with the provenance of each key.
type Loaded struct {
	Config Config
	// Sources maps each key that did not come from the defaults to its source:
	// "file PATH", "env HARK_...", or "remote".
	Sources map[string]string
	// Warnings are problems that did not stop loading (an unknown HARK_ variable, a
	// persisted remote change the file no longer allows).
	Warnings []string
	// File is the configuration file used, if any.
	File string

	base    Config // defaults + file + env, before the remote layer
	baseSrc map[string]string
	remote  map[string]*yaml.Node // persisted remote overrides by key
}

// Source returns where key's value came from.
func (l *Loaded) Source(key string) string {
	if s, ok := l.Sources[key]; ok {
		return s
	}
	return SourceDefault
}

// Load builds the effective configuration: defaults, then the file, then HARK_* environment
// variables, then persisted remote changes, and validates it. Any error names the key.
func Load(opts Options) (*Loaded, error) {
	env := opts.Environ
	if env == nil {
		env = os.Environ()
	}
	l := &Loaded{File: opts.File, Sources: map[string]string{}}
	c := Default()
	if opts.File != "" {
		b, err := os.ReadFile(opts.File)
		if err != nil {
			return nil, fmt.Errorf("read config: %w", err)
		}
		src := "file " + opts.File
		n, err := parseYAML(b, src)
		if err != nil {
			return nil, err
		}
		if err := decodeNode(&c, n, src, l.Sources); err != nil {
			return nil, err
		}
	}
	warn, err := applyEnv(&c, env, l.Sources)
	if err != nil {
		return nil, err
	}
	l.Warnings = append(l.Warnings, warn...)
	fillDerived(&c, env, l.Sources)
	l.base = c
	l.baseSrc = copyMap(l.Sources)
	if err := c.Validate(); err != nil {
		return nil, withSource(err, l)
	}
	l.Config = c
	if opts.NoRemote {
		return l, nil
	}
	overrides, err := readRemote(filepath.Join(c.StateDir, RemoteFileName))
	if err != nil {
		l.Warnings = append(l.Warnings, fmt.Sprintf("ignoring persisted remote configuration: %v", err))
		return l, nil
	}
	allowed := map[string]*yaml.Node{}
	for _, key := range sortedKeys(overrides) {
		if err := l.checkRemoteKey(key); err != nil {
			l.Warnings = append(l.Warnings, fmt.Sprintf("ignoring persisted remote value: %v", err))
			continue
		}
		allowed[key] = overrides[key]
	}
	// Apply the persisted changes together, as they were accepted: one at a time, a pair
	// that is valid only jointly (deepgram.model: nova-2 with deepgram.keywords) would fail
	// validation half-way and be dropped.
	if next, src, err := l.withOverrides(allowed); err == nil {
		l.Config, l.Sources, l.remote = next, src, allowed
		return l, nil
	}
	// Something no longer validates (the file changed under them): keep what still does.
	for _, key := range sortedKeys(allowed) {
		next, src, err := l.withOverrides(map[string]*yaml.Node{key: allowed[key]})
		if err != nil {
			l.Warnings = append(l.Warnings, fmt.Sprintf("ignoring persisted remote value: %v", err))
			continue
		}
		l.Config, l.Sources = next, src
		if l.remote == nil {
			l.remote = map[string]*yaml.Node{}
		}
		l.remote[key] = allowed[key]
	}
	return l, nil
}

// withOverrides applies remote leaves onto the current config, checking policy and validity.
func (l *Loaded) withOverrides(vals map[string]*yaml.Node) (Config, map[string]string, error) {
	c := l.Config
	src := copyMap(l.Sources)
	for _, key := range sortedKeys(vals) {
		if err := l.checkRemoteKey(key); err != nil {
			return Config{}, nil, err
		}
		doc := nestNode(strings.Split(key, "."), vals[key])
		if err := decodeNode(&c, doc, SourceRemote, src); err != nil {
			return Config{}, nil, err
		}
	}
	if err := c.Validate(); err != nil {
		return Config{}, nil, err
	}
	return c, src, nil
}

func applyEnv(c *Config, env []string, set map[string]string) ([]string, error) {
	byName := map[string]leaf{}
	for _, l := range leaves() {
		byName[EnvName(l.path)] = l
	}
	var warnings []string
	for _, kv := range env {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, "HARK_") {
			continue
		}
		l, known := byName[name]
		if !known {
			if !envReserved[name] {
				warnings = append(warnings, fmt.Sprintf("environment variable %s is not a configuration key; ignored", name))
			}
			continue
		}
		var n yaml.Node
		// Values are YAML (numbers, booleans, durations, lists, quoted strings). One that is
		// not valid YAML on its own, or empty, is a plain string; so is any value of a
		// string key that YAML reads as null or as a collection: HARK_CAPTURE_BACKEND=null
		// and HARK_CAPTURE_INPUT=- mean the text, not null and a list.
		err := yaml.Unmarshal([]byte(val), &n)
		plain := err != nil || len(n.Content) == 0
		if !plain && l.typ.Kind() == reflect.String {
			plain = n.Content[0].Kind != yaml.ScalarNode || n.Content[0].Tag == "!!null"
		}
		if plain {
			n = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.ScalarNode, Tag: "!!str", Value: val}}}
		}
		doc := nestNode(strings.Split(l.path, "."), n.Content[0])
		if err := decodeNode(c, doc, "env "+name, set); err != nil {
			return nil, err
		}
	}
	return warnings, nil
}

// envReserved are HARK_ variables that are not configuration keys.
var envReserved = map[string]bool{"HARK_CONFIG": true, "HARK_MQTT_PASSWORD": true}

// EnvName is the environment variable for a key: deepgram.model → HARK_DEEPGRAM_MODEL.
func EnvName(key string) string { return "HARK_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_")) }

// fillDerived fills defaults that depend on the host and environment, recording their
// source as "derived (...)" so `hark config check` does not credit the file with them.
func fillDerived(c *Config, env []string, src map[string]string) {
	getenv := func(k string) string {
		for _, kv := range env {
			if n, v, ok := strings.Cut(kv, "="); ok && n == k {
				return v
			}
		}
		return ""
	}
	derive := func(key string, v *string, from string, f func() string) {
		if *v == "" {
			*v = f()
			src[key] = "derived (" + from + ")"
		}
	}
	derive("device_id", &c.DeviceID, "host name", func() string { h, _ := os.Hostname(); return sanitizeID(h) })
	derive("state_dir", &c.StateDir, "$STATE_DIRECTORY, $XDG_STATE_HOME or $HOME", func() string { return defaultStateDir(getenv) })
	derive("spool.dir", &c.Spool.Dir, "state_dir", func() string { return filepath.Join(c.StateDir, "spool") })
	derive("mqtt.client_id", &c.MQTT.ClientID, "device_id", func() string { return "hark-" + c.DeviceID })
	derive("deepgram.prerecorded_url", &c.Deepgram.PrerecordedURL, "deepgram.url", func() string { return PrerecordedURL(c.Deepgram.URL) })
}

func defaultStateDir(getenv func(string) string) string {
	if d := getenv("STATE_DIRECTORY"); d != "" {
		// systemd may pass several, colon-separated; the first is ours.
		return strings.Split(d, ":")[0]
	}
	if d := getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "hark")
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".local", "state", "hark")
	}
	return filepath.Join(os.TempDir(), "hark-state")
}

// PrerecordedURL derives the pre-recorded endpoint from the live one: same host and path,
// wss→https and ws→http.
func PrerecordedURL(live string) string {
	switch {
	case strings.HasPrefix(live, "wss://"):
		return "https://" + strings.TrimPrefix(live, "wss://")
	case strings.HasPrefix(live, "ws://"):
		return "http://" + strings.TrimPrefix(live, "ws://")
	}
	return live
}

func sanitizeID(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			b.WriteRune(r)
		} else if r == '.' {
			break // host.domain → host
		} else {
			b.WriteRune('-')
		}
	}
	if b.Len() == 0 {
		return "hark"
	}
	return b.String()
}

// nestNode wraps val in mappings along path: a.b, v → {a: {b: v}}.
func nestNode(path []string, val *yaml.Node) *yaml.Node {
	n := val
	for i := len(path) - 1; i >= 0; i-- {
		n = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Content: []*yaml.Node{
			{Kind: yaml.ScalarNode, Tag: "!!str", Value: path[i]}, n}}
	}
	return n
}

// flatten lists the leaves present in a partial configuration tree as key → value node,
// rejecting unknown keys and non-mappings where sections are expected.
func flatten(n *yaml.Node) (map[string]*yaml.Node, error) {
	out := map[string]*yaml.Node{}
	if n == nil || n.Kind == 0 {
		return out, nil // empty document
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return out, nil
		}
		n = n.Content[0]
	}
	var walk func(t reflect.Type, n *yaml.Node, prefix string) error
	walk = func(t reflect.Type, n *yaml.Node, prefix string) error {
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" && prefix != "" {
			return nil
		}
		if n.Kind != yaml.MappingNode {
			return &Error{Key: strings.TrimSuffix(prefix, "."), Msg: "expected a mapping of keys"}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			fi := fieldByName(t, k.Value)
			if fi < 0 {
				return &Error{Key: prefix + k.Value, Msg: "unknown key"}
			}
			ft := t.Field(fi).Type
			if isSection(ft) {
				if err := walk(ft, v, prefix+k.Value+"."); err != nil {
					return err
				}
				continue
			}
			budget := maxLeafNodes
			pv := plainNode(v, &budget)
			if pv == nil {
				return &Error{Key: prefix + k.Value, Msg: "value is too large or nests aliases too deeply"}
			}
			out[prefix+k.Value] = pv
		}
		return nil
	}
	return out, walk(reflect.TypeOf(Config{}), n, "")
}

// maxLeafNodes bounds the nodes one leaf value may expand to once aliases are resolved, so
// an alias bomb in a remote payload cannot exhaust memory.
const maxLeafNodes = 10000

// plainNode copies n with aliases resolved and anchors dropped: leaves are persisted and
// re-parsed one by one, so an alias whose anchor sat under another key would not parse at
// the next start. It returns nil when the copy would exceed *budget nodes.
func plainNode(n *yaml.Node, budget *int) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n == nil {
		return nil
	}
	if *budget--; *budget < 0 {
		return nil
	}
	c := *n
	c.Anchor = ""
	c.Content = nil
	for _, ch := range n.Content {
		pc := plainNode(ch, budget)
		if pc == nil {
			return nil
		}
		c.Content = append(c.Content, pc)
	}
	return &c
}

func readRemote(path string) (map[string]*yaml.Node, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	n, err := parseYAML(b, path)
	if err != nil {
		return nil, err
	}
	return flatten(n)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func withSource(err error, l *Loaded) error {
	var e *Error
	if errors.As(err, &e) && e.Source == "" && e.Key != "" {
		if s, ok := l.Sources[e.Key]; ok {
			e.Source = s
		}
	}
	return err
}
