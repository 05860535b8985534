package agent

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/hark-audio/hark/config"
	"github.com/hark-audio/hark/dgemu"
	"github.com/hark-audio/hark/internal/leaktest"
	"github.com/hark-audio/hark/mqttlink/brokertest"
)

// msg is one message seen by the test's subscriber.
type msg struct {
	topic    string
	payload  string
	retained bool
	qos      byte
}

// watcher is an independent MQTT client subscribed to everything under the device's base.
type watcher struct {
	t    *testing.T
	c    mqtt.Client
	ch   chan msg
	seen []msg // received but not yet consumed by await, in arrival order
}

func watch(t *testing.T, broker, filter string) *watcher {
	t.Helper()
	w := &watcher{t: t, ch: make(chan msg, 10000)}
	opts := mqtt.NewClientOptions().AddBroker(broker).SetClientID("watcher-" + filepath.Base(t.TempDir())).
		SetOrderMatters(true).SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
		w.ch <- msg{m.Topic(), string(m.Payload()), m.Retained(), m.Qos()}
	})
	w.c = mqtt.NewClient(opts)
	if tok := w.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("watcher connect: %v", tok.Error())
	}
	if tok := w.c.Subscribe(filter, 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("watcher subscribe: %v", tok.Error())
	}
	t.Cleanup(func() { w.c.Disconnect(100) })
	return w
}

// await returns (and consumes) the first message on topic for which ok is true, looking
// first at messages already received, since topics interleave in any order.
func (w *watcher) await(topic string, ok func(m msg) bool, timeout time.Duration) msg {
	w.t.Helper()
	match := func(m msg) bool { return m.topic == topic && (ok == nil || ok(m)) }
	for i, m := range w.seen {
		if match(m) {
			w.seen = append(w.seen[:i:i], w.seen[i+1:]...)
			return m
		}
	}
	deadline := time.After(timeout)
	for {
		select {
		case m := <-w.ch:
			if match(m) {
				return m
			}
			w.seen = append(w.seen, m)
		case <-deadline:
			w.t.Fatalf("no matching message on %s within %s", topic, timeout)
		}
	}
}

// publish sends a request. Everything received before it is forgotten: what answers the
// request can only arrive after it.
func (w *watcher) publish(topic, payload string) {
	w.t.Helper()
	w.seen = nil
	for len(w.ch) > 0 {
		<-w.ch
	}
	if tok := w.c.Publish(topic, 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		w.t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

func jsonField(s, field string) any {
	var m map[string]any
	if json.Unmarshal([]byte(s), &m) != nil {
		return nil
	}
	var v any = m
	for _, f := range strings.Split(field, ".") {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[f]
	}
	return v
}

// TestMQTTEndToEnd runs the agent against a real Mosquitto: the retained availability,
// state and config topics, transcripts at QoS 1, events, remote configuration (good and
// bad payloads, persisted), mute (nothing sent while muted) and offline at the end.
func TestMQTTEndToEnd(t *testing.T) {
	leaktest.Check(t) // first, so it runs after every other cleanup (broker, emulator, agent)
	broker := brokertest.Start(t)
	d := loadDemo(t)
	emu := dgemu.NewServer(dgemu.Config{Utterances: d.lines})
	defer emu.Close()
	h := newHarness(t, emu, "capture:\n  realtime: true\nmqtt:\n  broker: "+broker.URL()+"\n  health_interval: 1s\n"+
		"deepgram:\n  interim_results: true\n")
	base := "hark/testdev"
	w := watch(t, broker.URL(), base+"/#")
	h.start()

	w.await(base+"/availability", func(m msg) bool { return m.payload == "online" }, 20*time.Second)
	w.await(base+"/state", func(m msg) bool { return jsonField(m.payload, "pipeline") == "running" }, 20*time.Second)
	cfgMsg := w.await(base+"/config", nil, 20*time.Second)
	if strings.Contains(cfgMsg.payload, "test-key") {
		t.Fatal("the config topic carries the API key")
	}

	pos := 0.0
	h.feedSentence(d, 0, &pos, 2)
	tr := w.await(base+"/transcript", nil, 20*time.Second)
	if tr.qos != 1 || tr.retained || jsonField(tr.payload, "text") != d.lines[0] || jsonField(tr.payload, "source") != "live" {
		t.Fatalf("transcript qos %d retained %v payload %s", tr.qos, tr.retained, tr.payload)
	}
	for _, f := range []string{"start", "end", "words", "confidence", "request_id", "seq"} {
		if jsonField(tr.payload, f) == nil {
			t.Errorf("transcript lacks %q: %s", f, tr.payload)
		}
	}
	in := w.await(base+"/transcript/interim", nil, 20*time.Second)
	if in.qos != 0 || in.retained || jsonField(in.payload, "text") == nil {
		t.Errorf("interim qos %d retained %v payload %s", in.qos, in.retained, in.payload)
	}
	w.await(base+"/health", func(m msg) bool { return m.retained || jsonField(m.payload, "uptime_s") != nil }, 20*time.Second)

	// Remote configuration: each bad payload is answered with an error naming the problem,
	// with the transaction echoed, and changes nothing.
	bad := []struct{ payload, want string }{
		{`not json`, `expected {"config": {partial configuration}}, got "not json"`},
		{`{"transaction":"t1"}`, `missing "config"`},
		{`{"transaction":"t2","config":{"vad":{"bogus":1}}}`, "vad.bogus"},
		{`{"transaction":"t3","config":{"vad":{"threshold_db":"loud"}}}`, "vad.threshold_db"},
		{`{"transaction":"t4","config":{"vad":{"threshold_db":400}}}`, "vad.threshold_db"},
		{`{"transaction":"t5","config":{"deepgram":{"url":"ws://elsewhere/v1/listen"}}}`, "deepgram.url"},
		{`{"transaction":"t6","config":{"mqtt":{"broker":"tcp://elsewhere:1883"}}}`, "mqtt.broker"},
		{`{"transaction":"t7","config":{"remote":{"allow":["deepgram.url"]}}}`, "remote.allow"},
		{`{"transaction":"t8","config":{"deepgram":{"interim_results":false,"utterance_end_ms":1000}}}`, "interim_results"},
		{`{"transaction":"t9","config":[1,2]}`, "mapping"},
	}
	for _, c := range bad {
		w.publish(base+"/request/config/set", c.payload)
		r := w.await(base+"/response/config/set", nil, 10*time.Second)
		if e, _ := jsonField(r.payload, "error").(string); jsonField(r.payload, "status") != "error" || !strings.Contains(e, c.want) {
			t.Errorf("config/set %s: response %s, want an error mentioning %q", c.payload, r.payload, c.want)
		}
		if tx := jsonField(c.payload, "transaction"); tx != nil && jsonField(r.payload, "transaction") != tx {
			t.Errorf("config/set %s: transaction not echoed: %s", c.payload, r.payload)
		}
	}
	if _, err := os.Stat(filepath.Join(h.cfg.Config.StateDir, config.RemoteFileName)); !os.IsNotExist(err) {
		t.Errorf("a refused change was persisted (%v)", err)
	}

	w.publish(base+"/request/config/set", `{"transaction":{"id":42},"config":{"vad":{"threshold_db":12},"deepgram":{"language":"de"}}}`)
	r := w.await(base+"/response/config/set", nil, 10*time.Second)
	if jsonField(r.payload, "status") != "ok" || !strings.Contains(r.payload, `"transaction":{"id":42}`) || !strings.Contains(r.payload, "vad.threshold_db") {
		t.Fatalf("good config/set answered %s", r.payload)
	}
	w.await(base+"/config", func(m msg) bool { return jsonField(m.payload, "vad.threshold_db") == 12.0 }, 10*time.Second)
	persisted, err := os.ReadFile(filepath.Join(h.cfg.Config.StateDir, config.RemoteFileName))
	if err != nil || !strings.Contains(string(persisted), "threshold_db: 12") {
		t.Fatalf("remote change not persisted: %v %s", err, persisted)
	}
	w.publish(base+"/request/config/get", `{"transaction":"g"}`)
	r = w.await(base+"/response/config/get", nil, 10*time.Second)
	if jsonField(r.payload, "data.config.deepgram.language") != "de" || jsonField(r.payload, "data.sources") == nil {
		t.Errorf("config/get answered %s", r.payload)
	}

	// Mute: nothing reaches the service while muted, and the state says so.
	w.publish(base+"/request/mute", `{"transaction":"m1","muted":true}`)
	r = w.await(base+"/response/mute", nil, 10*time.Second)
	if jsonField(r.payload, "status") != "ok" {
		t.Fatalf("mute answered %s", r.payload)
	}
	w.await(base+"/state", func(m msg) bool { return jsonField(m.payload, "muted") == true }, 10*time.Second)
	heard := func() (s float64) {
		for _, si := range emu.Sessions() {
			s += si.AudioSeconds
		}
		return s
	}
	// The gate still runs while muted (speech events show capture is alive); wait for the
	// end of the muted sentence before reading what the service heard.
	h.feedSentence(d, 1, &pos, 2)
	w.await(base+"/event", func(m msg) bool { return jsonField(m.payload, "type") == "speech_end" }, 20*time.Second)
	heardMuted := heard()
	w.publish(base+"/request/mute", `{"muted":false}`)
	w.await(base+"/state", func(m msg) bool { return jsonField(m.payload, "muted") == false }, 10*time.Second)
	if b, _ := os.ReadFile(filepath.Join(h.cfg.Config.StateDir, "muted")); !strings.Contains(string(b), "false") {
		t.Errorf("mute state not persisted: %q", b)
	}
	h.feedSentence(d, 2, &pos, 2)
	tr = w.await(base+"/transcript", nil, 20*time.Second)
	if jsonField(tr.payload, "text") != d.lines[1] {
		// The emulator hands fixture lines out in order: the muted sentence must not have
		// consumed one.
		t.Errorf("after unmuting got %q, want the next fixture line %q", jsonField(tr.payload, "text"), d.lines[1])
	}
	if heardMuted > heard() {
		t.Errorf("audio heard went backwards")
	}
	h.endInput()
	w.await(base+"/availability", func(m msg) bool { return m.payload == "offline" }, 20*time.Second)

	// A fresh subscriber sees the retained offline and the final state.
	w2 := watch(t, broker.URL(), base+"/availability")
	m := w2.await(base+"/availability", nil, 10*time.Second)
	if m.payload != "offline" || !m.retained {
		t.Errorf("retained availability %q (retained %v), want offline", m.payload, m.retained)
	}
	w.c.Disconnect(100)
	w2.c.Disconnect(100)
	emu.Close()
}

// TestMQTTBrokerRestartLosesNothing: the broker goes away while hark keeps hearing speech.
// Capture and streaming carry on, the transcripts wait in the on-disk queue, and when the
// broker returns every one is delivered, in order.
func TestMQTTBrokerRestartLosesNothing(t *testing.T) {
	leaktest.Check(t)
	broker := brokertest.Start(t)
	d := loadDemo(t)
	emu := referenceEmulator(t)
	h := newHarness(t, emu, "capture:\n  realtime: true\nmqtt:\n  broker: "+broker.URL()+"\n")
	base := "hark/testdev"
	w := watch(t, broker.URL(), base+"/transcript")
	h.start()
	pos := 0.0
	h.feedSentence(d, 0, &pos, 2)
	if m := w.await(base+"/transcript", nil, 20*time.Second); jsonField(m.payload, "text") != d.lines[0] {
		t.Fatalf("first transcript %s", m.payload)
	}
	w.c.Disconnect(100)
	broker.Stop(t)
	// Two sentences while the broker is down: both must be transcribed (the live stream
	// does not depend on the broker) and queued.
	h.feedSentence(d, 1, &pos, 2)
	h.feedSentence(d, 2, &pos, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := emu.WaitSession(ctx, func(s dgemu.SessionInfo) bool { return s.SpeechFinals+s.FromFinalize >= 3 }); err != nil {
		t.Fatalf("the sentences spoken during the outage were not transcribed: %v", err)
	}
	broker.Restart(t)
	w = watch(t, broker.URL(), base+"/transcript")
	h.feedSentence(d, 3, &pos, 2)
	// Delivery is at least once: a transcript in flight at the outage may come twice, but
	// never out of order and never missing.
	var texts, dedup []string
	for len(dedup) < 3 {
		m := w.await(base+"/transcript", nil, 60*time.Second)
		s := jsonField(m.payload, "text").(string)
		texts = append(texts, s)
		if len(dedup) == 0 || dedup[len(dedup)-1] != s {
			dedup = append(dedup, s)
		}
	}
	if strings.Join(dedup, "|") != strings.Join(d.lines[1:4], "|") {
		t.Fatalf("after the restart got %q, want %q in order", texts, d.lines[1:4])
	}
	h.endInput()
}

// TestMQTTQueueSurvivesHarkRestart: hark stops while the broker is down with a transcript
// queued; the next hark on the same state directory delivers it when the broker is back.
func TestMQTTQueueSurvivesHarkRestart(t *testing.T) {
	leaktest.Check(t)
	broker := brokertest.Start(t)
	d := loadDemo(t)
	emu := dgemu.NewServer(dgemu.Config{Utterances: d.lines})
	defer emu.Close()
	h := newHarness(t, emu, "capture:\n  realtime: true\nmqtt:\n  broker: "+broker.URL()+"\n")
	h.start()
	broker.Stop(t)
	pos := 0.0
	h.feedSentence(d, 0, &pos, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := emu.WaitSession(ctx, func(s dgemu.SessionInfo) bool { return s.SpeechFinals+s.FromFinalize >= 1 }); err != nil {
		t.Fatal(err)
	}
	h.endInput() // stops with the transcript still queued: the broker is down

	broker.Restart(t)
	w := watch(t, broker.URL(), "hark/testdev/transcript")
	next, err := New(Options{Loaded: h.cfg, Stdout: io.Discard, Stdin: strings.NewReader(""),
		Logger: slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	if err := next.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	m := w.await("hark/testdev/transcript", nil, 20*time.Second)
	if jsonField(m.payload, "text") != d.lines[0] || jsonField(m.payload, "seq") == nil {
		t.Fatalf("after the restart got %s, want the queued %q", m.payload, d.lines[0])
	}
}

// TestMQTTPlainCommands: mute takes the plain payloads Home Assistant and Node-RED send
// (ON/OFF, true/false, 1/0) besides JSON, and every refusal reads as a sentence about the
// request, never as Go's decoding message.
func TestMQTTPlainCommands(t *testing.T) {
	leaktest.Check(t)
	broker := brokertest.Start(t)
	emu := dgemu.NewServer(dgemu.Config{})
	defer emu.Close()
	h := newHarness(t, emu, "mqtt:\n  broker: "+broker.URL()+"\n")
	base := "hark/testdev"
	w := watch(t, broker.URL(), base+"/#")
	h.start()
	w.await(base+"/state", func(m msg) bool { return jsonField(m.payload, "pipeline") == "running" }, 20*time.Second)
	for _, c := range []struct {
		payload string
		muted   bool
	}{
		{"ON", true}, {"OFF", false}, {"true", true}, {" false\n", false}, {"on", true}, {"0", false},
		{`{"muted": "ON"}`, true}, {`{"muted": false}`, false}, {`"ON"`, true}, {`{"transaction": 7, "muted": "off"}`, false},
	} {
		w.publish(base+"/request/mute", c.payload)
		r := w.await(base+"/response/mute", nil, 10*time.Second)
		if jsonField(r.payload, "status") != "ok" || jsonField(r.payload, "data.muted") != c.muted {
			t.Errorf("mute %q answered %s", c.payload, r.payload)
		}
		w.await(base+"/state", func(m msg) bool { return jsonField(m.payload, "muted") == c.muted }, 10*time.Second)
	}
	for _, c := range []struct{ op, payload, want string }{
		{"mute", `{"muted":"maybe"}`, `expected ON or OFF, true or false, or {"muted": true}, got "\"maybe\""`},
		{"mute", `{"muted":[1]}`, `expected ON or OFF`},
		{"mute", `{"muted":{"a":1}}`, `expected ON or OFF`},
		{"mute", `{}`, `missing "muted"`},
		{"mute", `toggle`, `expected ON or OFF, true or false, or {"muted": true}, got "toggle"`},
		{"config/set", `ON`, `expected {"config": {partial configuration}}, got "ON"`},
		{"config/set", `[1,2]`, `expected {"config": {partial configuration}}`},
		{"config/set", `{"config":"debug"}`, `expected a mapping of keys`},
		{"config/set", `{"config":{"vad":{"threshold_db":"loud"}}}`, `vad.threshold_db: expected a number, got "loud"`},
		{"config/set", `{"config":{"log":{"level":["debug"]}}}`, `log.level: expected a string, got a list`},
		{"config/set", `{"config":{"vad":{"preroll_ms":1.5}}}`, `vad.preroll_ms: expected an integer`},
	} {
		w.publish(base+"/request/"+c.op, c.payload)
		r := w.await(base+"/response/"+c.op, nil, 10*time.Second)
		e, _ := jsonField(r.payload, "error").(string)
		if jsonField(r.payload, "status") != "error" || !strings.Contains(e, c.want) {
			t.Errorf("%s %s answered %s, want an error containing %q", c.op, c.payload, r.payload, c.want)
		}
		if goInternals.MatchString(e) {
			t.Errorf("%s %s: the error exposes Go internals: %q", c.op, c.payload, e)
		}
	}
	h.endInput()
	// What was announced is recorded, so that a later configuration can clear it.
	if b, err := os.ReadFile(filepath.Join(h.cfg.Config.StateDir, "mqtt-announced.json")); err != nil || !strings.Contains(string(b), "homeassistant/switch/hark_testdev/mute/config") {
		t.Errorf("record of announced topics: %v %s", err, b)
	}
}

// TestMQTTMutedSpeechAndLevels: while muted, the state's speech stays false even when the
// gate hears speech (its events still show capture is alive); unmuted, it follows speech.
// The health message's level is the mean and peak of the frames since the last health
// message, absent for an interval without audio, with the noise floor kept.
func TestMQTTMutedSpeechAndLevels(t *testing.T) {
	leaktest.Check(t)
	broker := brokertest.Start(t)
	d := loadDemo(t)
	emu := dgemu.NewServer(dgemu.Config{Utterances: d.lines})
	defer emu.Close()
	h := newHarness(t, emu, "capture:\n  realtime: true\nmqtt:\n  broker: "+broker.URL()+"\n  health_interval: 1s\n")
	base := "hark/testdev"
	w := watch(t, broker.URL(), base+"/#")
	h.start()
	w.await(base+"/state", func(m msg) bool { return jsonField(m.payload, "pipeline") == "running" }, 20*time.Second)
	w.publish(base+"/request/mute", "ON")
	w.await(base+"/state", func(m msg) bool { return jsonField(m.payload, "muted") == true }, 10*time.Second)

	pos := 0.0
	h.feedSentence(d, 0, &pos, 2)
	// State changes are published before events (retained messages go first), so every
	// state the speech produced has arrived by the time speech_end has.
	w.await(base+"/event", func(m msg) bool { return jsonField(m.payload, "type") == "speech_start" }, 20*time.Second)
	w.await(base+"/event", func(m msg) bool { return jsonField(m.payload, "type") == "speech_end" }, 20*time.Second)
	for _, m := range w.seen {
		if m.topic == base+"/state" && jsonField(m.payload, "speech") == true {
			t.Errorf("muted, the state said speech: %s", m.payload)
		}
	}
	// The mean and the peak of a window with speech in it.
	hm := w.await(base+"/health", func(m msg) bool { return jsonField(m.payload, "level_peak_dbfs") != nil }, 20*time.Second)
	mean, _ := jsonField(hm.payload, "level_dbfs").(float64)
	peak, _ := jsonField(hm.payload, "level_peak_dbfs").(float64)
	if peak < mean || mean >= 0 || jsonField(hm.payload, "noise_floor_dbfs") == nil {
		t.Errorf("health levels: mean %v peak %v in %s", mean, peak, hm.payload)
	}
	// Nothing arrives on stdin now: a window without frames has no level, but the floor.
	after, _ := jsonField(hm.payload, "uptime_s").(float64)
	hm = w.await(base+"/health", func(m msg) bool {
		up, _ := jsonField(m.payload, "uptime_s").(float64)
		return up > after && jsonField(m.payload, "level_dbfs") == nil
	}, 20*time.Second)
	if jsonField(hm.payload, "noise_floor_dbfs") == nil || jsonField(hm.payload, "level_peak_dbfs") != nil {
		t.Errorf("health without audio: %s", hm.payload)
	}

	w.publish(base+"/request/mute", "OFF")
	w.await(base+"/state", func(m msg) bool { return jsonField(m.payload, "muted") == false }, 10*time.Second)
	h.feedSentence(d, 1, &pos, 2)
	w.await(base+"/state", func(m msg) bool { return jsonField(m.payload, "speech") == true }, 20*time.Second)
	h.endInput()
}

// TestLevelMeter: the mean is an average of power, the peak the loudest frame, and each
// window starts afresh while the floor is kept.
func TestLevelMeter(t *testing.T) {
	var m levelMeter
	if _, _, ok, _, floorOK := m.take(); ok || floorOK {
		t.Fatal("levels before any frame")
	}
	m.add(-20, -60)
	m.add(-40, -55)
	mean, peak, ok, floor, floorOK := m.take()
	if !ok || !floorOK || peak != -20 || floor != -55 || math.Abs(mean-10*math.Log10((0.01+0.0001)/2)) > 1e-9 {
		t.Fatalf("mean %v peak %v floor %v", mean, peak, floor)
	}
	if _, _, ok, floor, floorOK := m.take(); ok || !floorOK || floor != -55 {
		t.Fatalf("empty window: ok %v floor %v %v", ok, floor, floorOK)
	}
	m.add(-70, -50)
	if _, peak, _, _, _ := m.take(); peak != -70 {
		t.Fatalf("peak of a new window %v", peak)
	}
}
