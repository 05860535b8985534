package mqttlink

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// DefaultTopicPrefix is the topic prefix hark uses unless configured otherwise.
const DefaultTopicPrefix = "hark"

// InstanceID names one hark on a broker for the ids that must be unique there: the MQTT
// client id ("hark-" + InstanceID) and Home Assistant's node id, unique_ids and device
// identifiers ("hark_" + InstanceID). Two devices are distinct when their topic bases
// (<topic_prefix>/<device_id>) are, so the id is derived from both: the device id alone
// under the default prefix (the ids hark always had), else the prefix, the device id and a
// short hash of the two, so that kitchen under site1/ and kitchen under site2/ neither
// take each other's MQTT session over nor overwrite each other's Home Assistant entities.
//
// The result holds only letters, digits, '_' and '-', as Home Assistant requires.
func InstanceID(topicPrefix, deviceID string) string {
	dev := idToken(deviceID, true)
	if topicPrefix == DefaultTopicPrefix {
		return dev
	}
	sum := sha256.Sum256([]byte(topicPrefix + "/" + deviceID))
	prefix := idToken(topicPrefix, false)
	if len(prefix) > 32 {
		prefix = prefix[:32]
	}
	return prefix + "_" + dev + "_" + hex.EncodeToString(sum[:3])
}

// idToken keeps letters, digits and '-' (and '_' when underscore is true), replacing
// anything else with '-'.
func idToken(s string, underscore bool) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_' && underscore:
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	return b.String()
}

// Topic levels under <topic_prefix> that address more than one device: fleet requests go
// to <prefix>/fleet/request/<op>, group requests to <prefix>/group/<name>/request/<op>. A
// device with one of these ids would have its own topics mixed up with them.
const (
	FleetLevel = "fleet"
	GroupLevel = "group"
)

// ReservedID reports whether id may not be used as a device id (case-insensitively, as
// some brokers and tools fold topic case).
func ReservedID(id string) bool {
	return strings.EqualFold(id, FleetLevel) || strings.EqualFold(id, GroupLevel)
}
