package mqttlink

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// haKeys are the discovery options Home Assistant's MQTT integration accepts per platform,
// read from home-assistant/core (homeassistant/components/mqtt: config.py MQTT_BASE_SCHEMA,
// MQTT_RO_SCHEMA and MQTT_RW_SCHEMA; schemas.py MQTT_ENTITY_COMMON_SCHEMA, the availability,
// device and origin schemas; sensor.py, binary_sensor.py, switch.py and event.py). Home
// Assistant drops unknown options from discovery payloads (vol.REMOVE_EXTRA), so a typo
// would fail silently there: it fails here.
var (
	haCommon = []string{"availability", "availability_mode", "availability_template", "availability_topic",
		"payload_available", "payload_not_available", "device", "origin", "enabled_by_default", "entity_category",
		"entity_picture", "icon", "json_attributes_topic", "json_attributes_template", "object_id", "default_entity_id",
		"unique_id", "message_expiry_interval", "name", "qos", "encoding", "group"}
	haRO       = []string{"state_topic", "value_template"}
	haPlatform = map[string][]string{
		"sensor": append(append([]string{"device_class", "expire_after", "force_update", "last_reset_value_template",
			"options", "suggested_display_precision", "state_class", "unit_of_measurement"}, haRO...), haCommon...),
		"binary_sensor": append(append([]string{"device_class", "expire_after", "force_update", "off_delay",
			"payload_on", "payload_off"}, haRO...), haCommon...),
		"switch": append([]string{"command_topic", "optimistic", "retain", "state_topic", "value_template",
			"payload_on", "payload_off", "state_on", "state_off", "device_class"}, haCommon...),
		"event": append(append([]string{"device_class", "event_types"}, haRO...), haCommon...),
	}
	haRequired = map[string][]string{
		"sensor": {"state_topic"}, "binary_sensor": {"state_topic"}, "switch": {"command_topic"},
		"event": {"state_topic", "event_types"},
	}
	haDeviceKeys = []string{"identifiers", "connections", "manufacturer", "model", "model_id", "name", "hw_version",
		"serial_number", "sw_version", "via_device", "suggested_area", "configuration_url"}
	haOriginKeys = []string{"name", "sw_version", "support_url"}
	haNodeID     = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)
)

// TestDiscoverySchema checks every discovery payload against Home Assistant's schema.
func TestDiscoverySchema(t *testing.T) {
	for _, prefix := range []string{"hark", "site/1"} {
		msgs := discoveryMessages("homeassistant", prefix+"/kitchen", prefix, "kitchen", "1.0.0")
		uids := map[string]bool{}
		for _, m := range msgs {
			parts := strings.Split(m.topic, "/")
			if len(parts) != 5 || parts[0] != "homeassistant" || parts[4] != "config" || !haNodeID.MatchString(parts[2]) || !haNodeID.MatchString(parts[3]) {
				t.Errorf("discovery topic %q is not <prefix>/<component>/<node_id>/<object_id>/config", m.topic)
				continue
			}
			platform := parts[1]
			allowed, ok := haPlatform[platform]
			if !ok {
				t.Errorf("%s: platform %q not checked", m.topic, platform)
				continue
			}
			var cfg map[string]any
			if err := json.Unmarshal(m.payload, &cfg); err != nil {
				t.Fatalf("%s: %v", m.topic, err)
			}
			for k := range cfg {
				if !slices.Contains(allowed, k) {
					t.Errorf("%s: option %q is not in Home Assistant's %s schema", m.topic, k, platform)
				}
			}
			for _, k := range haRequired[platform] {
				if cfg[k] == nil {
					t.Errorf("%s: required option %q missing", m.topic, k)
				}
			}
			uid, _ := cfg["unique_id"].(string)
			if uid == "" || uids[uid] {
				t.Errorf("%s: unique_id %q missing or repeated", m.topic, uid)
			}
			uids[uid] = true
			if c, ok := cfg["entity_category"]; ok && c != "diagnostic" && c != "config" {
				t.Errorf("%s: entity_category %v", m.topic, c)
			}
			dev, _ := cfg["device"].(map[string]any)
			for k := range dev {
				if !slices.Contains(haDeviceKeys, k) {
					t.Errorf("%s: device option %q unknown", m.topic, k)
				}
			}
			if ids, _ := dev["identifiers"].([]any); len(ids) == 0 {
				t.Errorf("%s: device without identifiers", m.topic)
			}
			org, _ := cfg["origin"].(map[string]any)
			for k := range org {
				if !slices.Contains(haOriginKeys, k) {
					t.Errorf("%s: origin option %q unknown", m.topic, k)
				}
			}
			if u, err := url.Parse(org["support_url"].(string)); org["name"] != "hark" || err != nil || u.Scheme != "https" {
				t.Errorf("%s: origin %v", m.topic, org)
			}
			// A sensor's state is refused by Home Assistant beyond 255 characters: only short
			// values, or the transcript cut to TranscriptStateMax, are states.
			if platform == "sensor" && strings.Contains(m.topic, "/transcript/") && !strings.Contains(cfg["value_template"].(string), "[:250]") {
				t.Errorf("%s: transcript state not cut: %v", m.topic, cfg["value_template"])
			}
			if platform == "event" {
				types, _ := cfg["event_types"].([]any)
				if len(types) != 1 || types[0] != "transcript" || !strings.Contains(cfg["value_template"].(string), "'event_type': 'transcript'") {
					t.Errorf("%s: event types %v, template %v", m.topic, types, cfg["value_template"])
				}
			}
		}
		if len(uids) != len(msgs) {
			t.Errorf("prefix %s: %d unique ids for %d entities", prefix, len(uids), len(msgs))
		}
	}
}

// TestDiscoveryDocs: the Home Assistant examples in docs/mqtt.md are exactly what a device
// named kitchen (default prefixes, version 1.0.0) publishes, and the entity table lists
// every entity.
func TestDiscoveryDocs(t *testing.T) {
	b, err := os.ReadFile("../docs/mqtt.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	real := map[string]map[string]any{}
	for _, m := range discoveryMessages("homeassistant", "hark/kitchen", "hark", "kitchen", "1.0.0") {
		var cfg map[string]any
		json.Unmarshal(m.payload, &cfg)
		real[cfg["unique_id"].(string)] = cfg
		parts := strings.Split(m.topic, "/")
		if row := "`<dp>/" + parts[1] + "/<node>/" + parts[3] + "/config`"; !strings.Contains(doc, row) {
			t.Errorf("docs/mqtt.md: entity %s (%s) is not in the table", cfg["name"], row)
		}
	}
	checked := 0
	for _, block := range strings.Split(doc, "```json\n")[1:] {
		block = block[:strings.Index(block, "```")]
		if !strings.Contains(block, `"unique_id"`) {
			continue
		}
		var ex map[string]any
		if err := json.Unmarshal([]byte(block), &ex); err != nil {
			t.Errorf("docs/mqtt.md: a discovery example is not JSON: %v\n%s", err, block)
			continue
		}
		want, ok := real[fmt.Sprint(ex["unique_id"])]
		if !ok || !reflect.DeepEqual(ex, want) {
			got, _ := json.Marshal(want)
			t.Errorf("docs/mqtt.md: discovery example %v differs from the payload sent:\n%s", ex["unique_id"], got)
		}
		checked++
	}
	if checked < 3 {
		t.Errorf("only %d discovery examples found in docs/mqtt.md", checked)
	}
}
