package config

import (
	"fmt"
	"github.com/hark-audio/hark/internal/fsx"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// SensitiveKeys could redirect audio or credentials, widen what may be changed remotely, or
// throw away data already heard (the retention bounds: lowered remotely, a broker outage
// then drops queued transcripts and spooled speech); a remote change to one is refused
// unless the local file lists it in remote.allow.
var SensitiveKeys = []string{
	"capture.input", "capture.device", "deepgram.url", "deepgram.prerecorded_url", "deepgram.api_key_file",
	"deepgram.token_file", "deepgram.extra",
	"mqtt.broker", "mqtt.username", "mqtt.password_file", "mqtt.ca_file", "mqtt.cert_file", "mqtt.key_file",
	"mqtt.client_id", "mqtt.topic_prefix", "device_id", "state_dir", "spool.dir",
	"mqtt.queue_max", "spool.max_age", "spool.max_bytes",
}

// localOnly keys can never be changed remotely, whatever the file says.
var localOnly = []string{"remote.enabled", "remote.allow"}

func isSensitive(key string) bool { return slices.Contains(SensitiveKeys, key) }

func (l *Loaded) checkRemoteKey(key string) error {
	if slices.Contains(localOnly, key) {
		return &Error{Key: key, Msg: "can only be set in the local configuration file"}
	}
	if isSensitive(key) && !slices.Contains(l.base.Remote.Allow, key) {
		return &Error{Key: key, Msg: "cannot be changed remotely (the local file does not list it in remote.allow)"}
	}
	return nil
}

// ApplyRemote validates a partial configuration (YAML or JSON) received remotely, merges it
// onto the current one and returns the result with the keys whose values changed. The
// receiver is not modified; persist the result with SaveRemote and adopt it.
func (l *Loaded) ApplyRemote(partial []byte) (*Loaded, []string, error) {
	if !l.base.Remote.Enabled {
		return nil, nil, &Error{Key: "remote.enabled", Msg: "remote configuration is disabled by the local file"}
	}
	n, err := parseYAML(partial, "")
	if err != nil {
		return nil, nil, err
	}
	return l.ApplyRemoteNode(n)
}

// ApplyRemoteNode is ApplyRemote for an already parsed tree.
func (l *Loaded) ApplyRemoteNode(n *yaml.Node) (*Loaded, []string, error) {
	flat, err := flatten(n)
	if err != nil {
		return nil, nil, err
	}
	if len(flat) == 0 {
		return nil, nil, &Error{Msg: "no configuration keys given"}
	}
	next := &Loaded{File: l.File, Config: l.Config, Sources: copyMap(l.Sources), Warnings: nil,
		base: l.base, baseSrc: l.baseSrc, remote: map[string]*yaml.Node{}}
	for k, v := range l.remote {
		next.remote[k] = v
	}
	for _, key := range sortedKeys(flat) {
		if err := l.checkRemoteKey(key); err != nil {
			return nil, nil, err
		}
		if err := decodeNode(&next.Config, nestNode(strings.Split(key, "."), flat[key]), SourceRemote, next.Sources); err != nil {
			return nil, nil, err
		}
		next.remote[key] = flat[key]
	}
	if err := next.Config.Validate(); err != nil {
		return nil, nil, err
	}
	return next, Changed(l.Config, next.Config), nil
}

// Changed lists the keys whose values differ between a and b.
func Changed(a, b Config) []string {
	var out []string
	for _, lf := range leaves() {
		if !sameValue(leafValue(&a, lf), leafValue(&b, lf)) {
			out = append(out, lf.path)
		}
	}
	return out
}

// sameValue is reflect.DeepEqual except that a nil and an empty list or map are the same
// setting (a remote "keyterm: []" over the default must not count as a change).
func sameValue(a, b reflect.Value) bool {
	if (a.Kind() == reflect.Slice || a.Kind() == reflect.Map) && a.Len() == 0 && b.Len() == 0 {
		return true
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}

// SaveRemote persists the remote overrides atomically (temporary file, fsync, rename,
// directory fsync) under the state directory, so they are re-applied at boot.
func (l *Loaded) SaveRemote() error {
	tree := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	for _, key := range sortedKeys(l.remote) {
		mergeInto(tree, strings.Split(key, "."), l.remote[key])
	}
	b, err := yaml.Marshal(tree)
	if err != nil {
		return fmt.Errorf("encode remote configuration: %w", err)
	}
	b = append([]byte("# Written by hark: configuration changes received over MQTT. Applied after the\n# file and environment at every start. Delete this file to drop them.\n"), b...)
	return fsx.WriteFile(filepath.Join(l.Config.StateDir, RemoteFileName), b, 0o600)
}

// RemoteKeys lists the keys set by persisted remote changes.
func (l *Loaded) RemoteKeys() []string { return sortedKeys(l.remote) }

func mergeInto(tree *yaml.Node, path []string, val *yaml.Node) {
	for i := 0; i+1 < len(tree.Content); i += 2 {
		if tree.Content[i].Value == path[0] {
			if len(path) == 1 {
				tree.Content[i+1] = val
			} else {
				mergeInto(tree.Content[i+1], path[1:], val)
			}
			return
		}
	}
	if len(path) == 1 {
		tree.Content = append(tree.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: path[0]}, val)
		return
	}
	sub := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	tree.Content = append(tree.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: path[0]}, sub)
	mergeInto(sub, path[1:], val)
}
