package agent

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hark-audio/hark/dgemu"
	"github.com/hark-audio/hark/internal/leaktest"
	"github.com/hark-audio/hark/mqttlink/brokertest"
)

// mqttDoc is docs/mqtt.md split into its sections ("### state (retained)" → "state").
type mqttDoc struct {
	text     string
	sections map[string]string
}

func readMQTTDoc(t *testing.T) mqttDoc {
	b, err := os.ReadFile(filepath.Join("..", "docs", "mqtt.md"))
	if err != nil {
		t.Fatal(err)
	}
	d := mqttDoc{text: string(b), sections: map[string]string{}}
	name := ""
	for _, l := range strings.Split(d.text, "\n") {
		if strings.HasPrefix(l, "#") {
			name = strings.Fields(strings.TrimLeft(l, "# ") + " x")[0]
			continue
		}
		d.sections[name] += l + "\n"
	}
	return d
}

// jsonBlock is the first ```json block of a section, parsed.
func (d mqttDoc) jsonBlock(t *testing.T, section string) map[string]any {
	t.Helper()
	s := d.sections[section]
	i := strings.Index(s, "```json\n")
	if i < 0 {
		t.Fatalf("docs/mqtt.md: section %q has no json example", section)
	}
	body := s[i+8:]
	body = body[:strings.Index(body, "```")]
	var v map[string]any
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("docs/mqtt.md: the %s example is not JSON: %v\n%s", section, err, body)
	}
	return v
}

// keyPaths lists the keys of a JSON object as dotted paths; list elements are looked at
// through their first element ("words[].word"). Maps under open are one key (their own
// keys are data, as the reconnect causes are).
func keyPaths(v any, prefix string, open []string) []string {
	var out []string
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			p := prefix + k
			out = append(out, p)
			if !slices.Contains(open, p) {
				out = append(out, keyPaths(e, p+".", open)...)
			}
		}
	case []any:
		if len(x) > 0 {
			out = append(out, keyPaths(x[0], strings.TrimSuffix(prefix, ".")+"[].", open)...)
		}
	}
	sort.Strings(out)
	return out
}

// sameKeys fails when a payload the device sent has a key the example lacks (undocumented)
// or the example has one the device never sends (optional lists the keys sent only at
// times, which the example may show).
func sameKeys(t *testing.T, what string, doc map[string]any, sent []map[string]any, optional, open []string) {
	t.Helper()
	docKeys := keyPaths(doc, "", open)
	seen := map[string]bool{}
	for _, s := range sent {
		for _, k := range keyPaths(s, "", open) {
			if !seen[k] && !slices.Contains(docKeys, k) {
				t.Errorf("docs/mqtt.md %s: the device sends %s, which the example does not show", what, k)
			}
			seen[k] = true
		}
	}
	for _, k := range docKeys {
		if !seen[k] && !slices.Contains(optional, k) {
			t.Errorf("docs/mqtt.md %s: the example shows %s, which the device did not send", what, k)
		}
	}
	if t.Failed() && len(sent) > 0 {
		b, _ := json.Marshal(sent[len(sent)-1])
		t.Logf("a real %s payload: %s", what, b)
	}
}

// consoleExample is a mosquitto_pub line of docs/mqtt.md with the responses shown under it.
type consoleExample struct {
	topic, payload string
	responses      []string // "<topic> <payload>"
}

var pubLine = regexp.MustCompile(`^\$ mosquitto_pub .*-t (\S+) -m (?:'([^']*)'|(\S+))$`)

func (d mqttDoc) consoleExamples() []consoleExample {
	var out []consoleExample
	open := false // after a mosquitto_pub line, in the same code block
	for _, l := range strings.Split(d.text, "\n") {
		if m := pubLine.FindStringSubmatch(l); m != nil {
			out = append(out, consoleExample{topic: m[1], payload: m[2] + m[3]})
			open = true
			continue
		}
		if strings.HasPrefix(l, "```") {
			open = false
		}
		if open && strings.HasPrefix(l, "hark/kitchen/response/") {
			out[len(out)-1].responses = append(out[len(out)-1].responses, l)
		}
	}
	return out
}

// TestMQTTDocsMatchPayloads runs a device named kitchen against a real broker and checks
// docs/mqtt.md against what it publishes: the keys of the state, transcript, event and
// health examples, the pipeline states the code can set, and each request of the console
// examples, sent as written, answered exactly as shown.
func TestMQTTDocsMatchPayloads(t *testing.T) {
	leaktest.Check(t)
	doc := readMQTTDoc(t)
	broker := brokertest.Start(t)
	d := loadDemo(t)
	emu := dgemu.NewServer(dgemu.Config{Utterances: d.lines})
	defer emu.Close()
	h := newHarness(t, emu, "device_id: kitchen\ncapture:\n  realtime: true\nmqtt:\n  broker: "+broker.URL()+"\n  health_interval: 1s\n")
	base := "hark/kitchen"
	w := watch(t, broker.URL(), base+"/#")
	h.start()
	w.await(base+"/state", func(m msg) bool { return jsonField(m.payload, "pipeline") == "running" }, 20*time.Second)
	pos := 0.0
	h.feedSentence(d, 0, &pos, 2)
	tr := w.await(base+"/transcript", nil, 20*time.Second)
	health := w.await(base+"/health", func(m msg) bool { return jsonField(m.payload, "level_peak_dbfs") != nil }, 20*time.Second)
	var states, events, transcripts, healths []map[string]any
	collect := func(m msg) {
		var v map[string]any
		json.Unmarshal([]byte(m.payload), &v)
		switch m.topic {
		case base + "/state":
			states = append(states, v)
		case base + "/event":
			events = append(events, v)
		case base + "/transcript":
			transcripts = append(transcripts, v)
		case base + "/health":
			healths = append(healths, v)
		}
	}
	collect(tr)
	collect(health)
	for _, m := range w.seen {
		collect(m)
	}

	sameKeys(t, "state", doc.jsonBlock(t, "state"), states,
		[]string{"capture.last_error", "uplink.last_error", "uplink.request_id"}, nil)
	sameKeys(t, "transcript", doc.jsonBlock(t, "transcript"), transcripts, nil, nil)
	if ev := doc.jsonBlock(t, "event"); ev["type"] == nil || ev["at"] == nil || len(events) == 0 {
		t.Errorf("docs/mqtt.md event example %v, %d events seen", ev, len(events))
	}
	// Health: every key the device sends is documented; nested stats of other parts are
	// checked only as far as the example shows them.
	docHealth := doc.jsonBlock(t, "health")
	sameKeys(t, "health", docHealth, healths[len(healths)-1:],
		[]string{"level_dbfs", "level_peak_dbfs", "noise_floor_dbfs", "mqtt.last_error", "last_transcript_at", "mqtt.broker"},
		[]string{"capture", "uplink", "spool", "uploader"})

	// Every pipeline state the code sets is listed next to the state example.
	src, _ := filepath.Glob("*.go")
	for _, f := range src {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, _ := os.ReadFile(f)
		for _, m := range regexp.MustCompile(`Pipeline = "([a-z_]+)"`).FindAllStringSubmatch(string(b), -1) {
			if !strings.Contains(doc.sections["state"], "`"+m[1]+"`") {
				t.Errorf("docs/mqtt.md state: pipeline %q (set in %s) is not documented", m[1], f)
			}
		}
	}
	if c := w.await(base+"/config", nil, 10*time.Second); strings.Contains(c.payload, "null") {
		t.Errorf("<base>/config shows null: %s", c.payload)
	}

	// The console examples, as written.
	examples := doc.consoleExamples()
	if len(examples) < 4 {
		t.Fatalf("only %d console examples found in docs/mqtt.md", len(examples))
	}
	for _, ex := range examples {
		w.publish(ex.topic, ex.payload)
		for _, want := range ex.responses {
			topic, body, _ := strings.Cut(want, " ")
			got := w.await(topic, nil, 10*time.Second)
			var a, b any
			if json.Unmarshal([]byte(body), &a) != nil || json.Unmarshal([]byte(got.payload), &b) != nil || !reflect.DeepEqual(a, b) {
				t.Errorf("docs/mqtt.md: mosquitto_pub -t %s -m %q is shown answered\n  %s\nbut the device answered\n  %s", ex.topic, ex.payload, body, got.payload)
			}
		}
	}
	h.endInput()
}
