package config

import (
	"errors"
	"strings"
	"testing"
)

// Issue 12 item 6: settings that throw data away (retention bounds) are sensitive keys:
// refused over MQTT unless the local file lists them in remote.allow, like the URL.
func TestRetentionKeysAreSensitive(t *testing.T) {
	l, err := loadState(t, "device_id: pi\n", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, payload := range []string{`{"mqtt": {"queue_max": 1}}`, `{"spool": {"max_age": "1m"}}`,
		`{"spool": {"max_bytes": 65536}}`} {
		_, _, err := l.ApplyRemote([]byte(payload))
		var ce *Error
		if !errors.As(err, &ce) || !strings.Contains(ce.Msg, "remote.allow") {
			t.Errorf("%s: accepted or wrong error: %v", payload, err)
		}
	}
	// The file may allow them, and then they apply.
	allowed, err := loadState(t, "remote:\n  allow: [mqtt.queue_max, spool.max_age, spool.max_bytes]\n", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := allowed.ApplyRemote([]byte(`{"mqtt": {"queue_max": 5}, "spool": {"max_age": "2h"}}`)); err != nil {
		t.Fatalf("allowed retention change refused: %v", err)
	}
}

// Issue 12 item 10: topic_prefix and discovery_prefix are bounded by what MQTT allows,
// with errors that say why.
func TestTopicLimits(t *testing.T) {
	cases := []struct{ name, body, key, says string }{
		{"prefix too long", "mqtt:\n  topic_prefix: " + strings.Repeat("a", 65600) + "\n", "mqtt.topic_prefix", "65535"},
		{"prefix dollar", "mqtt:\n  topic_prefix: $SYS/hark\n", "mqtt.topic_prefix", "$"},
		{"prefix NUL", "mqtt:\n  topic_prefix: \"ha\\0rk\"\n", "mqtt.topic_prefix", "NUL"},
		{"prefix plus", "mqtt:\n  topic_prefix: ha+rk\n", "mqtt.topic_prefix", "+"},
		{"discovery dollar", "mqtt:\n  discovery_prefix: $share\n", "mqtt.discovery_prefix", "$"},
		{"discovery too long", "mqtt:\n  discovery_prefix: " + strings.Repeat("d", 65600) + "\n", "mqtt.discovery_prefix", "65535"},
		{"discovery NUL", "mqtt:\n  discovery_prefix: \"a\\0\"\n", "mqtt.discovery_prefix", "NUL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadString(t, tc.body)
			var ce *Error
			if !errors.As(err, &ce) || ce.Key != tc.key || !strings.Contains(ce.Msg, tc.says) {
				t.Fatalf("got %v, want an error on %s saying %q", err, tc.key, tc.says)
			}
		})
	}
	// The longest prefix allowed still fits every topic hark uses.
	ok := strings.Repeat("p", MaxTopicPrefix)
	if _, err := loadString(t, "mqtt:\n  topic_prefix: "+ok+"\n"); err != nil {
		t.Fatalf("longest allowed prefix refused: %v", err)
	}
	if _, err := loadString(t, "mqtt:\n  topic_prefix: "+ok+"p\n"); err == nil {
		t.Fatal("prefix one byte over the bound accepted")
	}
}
