package config

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// MQTT bounds a topic name at 65535 bytes of UTF-8 (the length is a 16-bit field), with no
// NUL and no wildcard (+ #) in a name it publishes to; a name starting with $ is reserved for
// the broker ($SYS) and shared subscriptions ($share), and a broker silently drops or refuses
// what is published there, so a queue "delivers" messages that go nowhere.
const maxTopic = 65535

// topicSuffixReserve is what hark adds after "<topic_prefix>/<device_id>" (or after the
// discovery prefix): "/response/config/set", group and fleet topics, Home Assistant object
// ids. 256 bytes is several times the longest used today.
const topicSuffixReserve = 256

// MaxTopicPrefix is the longest topic_prefix (or discovery_prefix) accepted: with "/", the
// longest device_id (64) and the suffix reserve, every topic stays within MQTT's limit.
const MaxTopicPrefix = maxTopic - 1 - 64 - topicSuffixReserve

// checkTopicPrefix says what is wrong with a topic prefix, or "" if nothing.
func checkTopicPrefix(p string) string {
	switch {
	case p == "":
		return "must not be empty"
	case len(p) > MaxTopicPrefix:
		return fmt.Sprintf("is %d bytes; MQTT topics are at most 65535 bytes and hark adds up to %d after the prefix, so at most %d", len(p), maxTopic-MaxTopicPrefix, MaxTopicPrefix)
	case strings.HasPrefix(p, "$"):
		return "must not start with $ (topics starting with $ are reserved for the broker: $SYS, $share)"
	case strings.ContainsRune(p, 0):
		return "must not contain NUL (MQTT forbids U+0000 in topics)"
	case strings.ContainsAny(p, "+#"):
		return "must not contain the wildcards + or #"
	case !utf8.ValidString(p):
		return "must be valid UTF-8 (MQTT topics are UTF-8)"
	}
	return ""
}
