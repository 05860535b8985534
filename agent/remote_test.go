package agent

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hark-audio/hark/audio"
	"github.com/hark-audio/hark/dgemu"
	"github.com/hark-audio/hark/internal/leaktest"
	"github.com/hark-audio/hark/internal/pulsetest"
	"github.com/hark-audio/hark/mqttlink/brokertest"
)

// TestRemoteChangeWhileWaitingForMicrophone: a Deepgram option changed over MQTT while hark
// waits for its microphone is answered as applied, and is applied: once the microphone (a
// PulseAudio source that appears later) is there, the first stream carries it. The uplink
// used to be built from the configuration read at start, so the change was silently lost.
func TestRemoteChangeWhileWaitingForMicrophone(t *testing.T) {
	leaktest.Check(t)
	pulse := pulsetest.New(t) // not started: no sound server yet
	dir := t.TempDir()
	clientConf := filepath.Join(dir, "client.conf")
	os.WriteFile(clientConf, []byte("autospawn = no\n"), 0o600)
	pulse.Setenv(t)
	t.Setenv("PULSE_CLIENTCONFIG", clientConf)
	broker := brokertest.Start(t)
	d := loadDemo(t)
	emu := dgemu.NewServer(dgemu.Config{Utterances: d.lines})
	defer emu.Close()
	h := newHarness(t, emu, "capture:\n  input: \"\"\n  backend: pulseaudio\n  device: vsink.monitor\nmqtt:\n  broker: "+broker.URL()+"\n")
	base := "hark/testdev"
	w := watch(t, broker.URL(), base+"/#")
	h.start()
	w.await(base+"/state", func(m msg) bool { return jsonField(m.payload, "pipeline") == "waiting_for_device" }, 30*time.Second)

	w.publish(base+"/request/config/set", `{"transaction":"w","config":{"deepgram":{"language":"de","keyterm":["hark"]}}}`)
	r := w.await(base+"/response/config/set", nil, 10*time.Second)
	if jsonField(r.payload, "status") != "ok" {
		t.Fatalf("config/set while waiting answered %s", r.payload)
	}

	pulse.Start() // the microphone appears
	w.await(base+"/state", func(m msg) bool { return jsonField(m.payload, "pipeline") == "running" }, 60*time.Second)
	wav := filepath.Join(dir, "sentence.wav")
	pcm := append(append(silence(1.5), d.pcm(d.spans[0].Start-0.3, d.spans[0].End+0.3)...), silence(2)...)
	os.WriteFile(wav, append(audio.WAVHeader(len(pcm)), pcm...), 0o600)
	pulse.Play(t, wav)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := emu.WaitSession(ctx, func(dgemu.SessionInfo) bool { return true })
	if err != nil {
		t.Fatalf("no stream opened after the microphone appeared: %v", err)
	}
	if got := s.Query.Get("language"); got != "de" || s.Query.Get("keyterm") != "hark" {
		t.Errorf("the first stream asked for language %q keyterm %q; the change made while waiting was lost (query %v)", got, s.Query.Get("keyterm"), s.Query)
	}
	h.cancel()
}
