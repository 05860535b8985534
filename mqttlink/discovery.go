package mqttlink

import (
	"encoding/json"
	"fmt"
)

// Home Assistant MQTT discovery: one retained config message per entity, all with the same
// device block, so HA groups them under one device. Per-component topics (rather than the
// newer single device topic) work with every HA release that has MQTT discovery.

type discoveryMsg struct {
	topic   string
	payload []byte
}

// SupportURL is where Home Assistant's device page links for help (origin.support_url).
const SupportURL = "https://github.com/hark-audio/hark"

// TranscriptStateMax is how many characters of the last transcript the HA sensor shows as its
// state (HA rejects states longer than 255 characters); the full text is an attribute.
const TranscriptStateMax = 250

func discoveryMessages(prefix, base, topicPrefix, deviceID, version string) []discoveryMsg {
	node := "hark_" + InstanceID(topicPrefix, deviceID)
	name := "hark " + deviceID
	if topicPrefix != DefaultTopicPrefix {
		name += " (" + topicPrefix + ")"
	}
	device := map[string]any{
		"identifiers":  []string{node},
		"name":         name,
		"manufacturer": "hark",
		"model":        "hark speech-to-text",
	}
	origin := map[string]any{"name": "hark", "support_url": SupportURL}
	if version != "" {
		device["sw_version"] = version
		origin["sw_version"] = version
	}
	avail := func(m map[string]any) map[string]any {
		m["availability_topic"] = base + "/availability"
		m["payload_available"] = "online"
		m["payload_not_available"] = "offline"
		m["device"] = device
		m["origin"] = origin
		m["qos"] = 1
		return m
	}
	entities := []struct {
		component, object string
		cfg               map[string]any
	}{
		{"switch", "mute", map[string]any{
			"name":           "Mute",
			"icon":           "mdi:microphone-off",
			"command_topic":  base + "/request/mute",
			"payload_on":     "ON",
			"payload_off":    "OFF",
			"state_topic":    base + "/state",
			"value_template": "{{ 'ON' if value_json.muted else 'OFF' }}",
			"state_on":       "ON",
			"state_off":      "OFF",
			"retain":         false,
		}},
		{"binary_sensor", "speech", map[string]any{
			"name":           "Speech",
			"device_class":   "sound",
			"state_topic":    base + "/state",
			"value_template": "{{ 'ON' if value_json.speech else 'OFF' }}",
			"payload_on":     "ON",
			"payload_off":    "OFF",
		}},
		// The level sensors follow the health message: the mean level (power average) and the
		// loudest 100 ms frame over the health interval, not one frame's sample.
		{"sensor", "level", map[string]any{
			"name":                        "Audio level",
			"icon":                        "mdi:waveform",
			"state_topic":                 base + "/health",
			"value_template":              "{{ value_json.level_dbfs if value_json.level_dbfs is defined else 'None' }}",
			"unit_of_measurement":         "dBFS",
			"state_class":                 "measurement",
			"suggested_display_precision": 1,
		}},
		{"sensor", "level_peak", map[string]any{
			"name":                        "Audio peak",
			"icon":                        "mdi:waveform",
			"state_topic":                 base + "/health",
			"value_template":              "{{ value_json.level_peak_dbfs if value_json.level_peak_dbfs is defined else 'None' }}",
			"unit_of_measurement":         "dBFS",
			"state_class":                 "measurement",
			"suggested_display_precision": 1,
		}},
		{"sensor", "noise_floor", map[string]any{
			"name":                        "Noise floor",
			"icon":                        "mdi:waveform",
			"state_topic":                 base + "/health",
			"value_template":              "{{ value_json.noise_floor_dbfs if value_json.noise_floor_dbfs is defined else 'None' }}",
			"unit_of_measurement":         "dBFS",
			"state_class":                 "measurement",
			"suggested_display_precision": 1,
			"entity_category":             "diagnostic",
		}},
		{"sensor", "transcript", map[string]any{
			"name":        "Last transcript",
			"icon":        "mdi:text-to-speech",
			"state_topic": base + "/transcript",
			// HA refuses states over 255 characters: the state is the text cut to 250, the whole
			// text and its times are attributes (words are left out to keep the recorder small).
			"value_template":        fmt.Sprintf("{{ value_json.text[:%d] }}", TranscriptStateMax),
			"json_attributes_topic": base + "/transcript",
			"json_attributes_template": "{{ {'text': value_json.text, 'start': value_json.start, 'end': value_json.end, " +
				"'confidence': value_json.confidence, 'source': value_json.source, 'seq': value_json.seq} | tojson }}",
		}},
		// Speech that arrives is an event, not a state: automations trigger on it, and the
		// whole text is an event attribute (no 255-character limit there).
		{"event", "utterance", map[string]any{
			"name":        "Transcript",
			"icon":        "mdi:account-voice",
			"state_topic": base + "/transcript",
			"event_types": []string{"transcript"},
			"value_template": "{{ {'event_type': 'transcript', 'text': value_json.text, 'start': value_json.start, " +
				"'end': value_json.end, 'confidence': value_json.confidence, 'source': value_json.source, " +
				"'seq': value_json.seq} | tojson }}",
		}},
		{"sensor", "pipeline", map[string]any{
			"name":            "Pipeline",
			"icon":            "mdi:state-machine",
			"state_topic":     base + "/state",
			"value_template":  "{{ value_json.pipeline }}",
			"entity_category": "diagnostic",
		}},
		{"sensor", "uplink", map[string]any{
			"name":                  "Uplink",
			"icon":                  "mdi:cloud-upload",
			"state_topic":           base + "/state",
			"value_template":        "{{ value_json.uplink.state }}",
			"json_attributes_topic": base + "/state",
			"json_attributes_template": "{{ {'last_error': value_json.uplink.last_error | default(''), " +
				"'spool_entries': value_json.spool.entries | default(0)} | tojson }}",
			"entity_category": "diagnostic",
		}},
	}
	msgs := make([]discoveryMsg, 0, len(entities))
	for _, e := range entities {
		cfg := avail(e.cfg)
		cfg["unique_id"] = node + "_" + e.object
		b, err := json.Marshal(cfg)
		if err != nil {
			panic(err) // static maps of strings, numbers and bools always marshal
		}
		msgs = append(msgs, discoveryMsg{topic: prefix + "/" + e.component + "/" + node + "/" + e.object + "/config", payload: b})
	}
	return msgs
}
