package agent

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hark-audio/hark/dgemu"
	"github.com/hark-audio/hark/fleet"
	"github.com/hark-audio/hark/internal/leaktest"
	"github.com/hark-audio/hark/mqttlink"
	"github.com/hark-audio/hark/test/aedes"
)

// TestClusteredBrokerFailover runs hark on a real clustered broker: two Aedes nodes sharing
// sessions, retained messages and the message flow through Redis, both in mqtt.broker.
// hark is on the first node and a controller on the second sees its transcripts. The first
// node is killed while the second is paused (so nothing can be delivered): the sentences
// spoken meanwhile are transcribed and queued on disk. When the second node answers, hark
// moves there, its queued transcripts arrive in order, and the controller on the
// surviving node sees it online (retained too) with health naming the node it is on.
func TestClusteredBrokerFailover(t *testing.T) {
	leaktest.Check(t)
	cluster := aedes.Start(t, 2)
	first, second := cluster.Nodes[0], cluster.Nodes[1]
	d := loadDemo(t)
	emu := referenceEmulator(t)
	h := newHarness(t, emu, "capture:\n  realtime: true\nmqtt:\n  broker: "+first.URL()+","+second.URL()+"\n  health_interval: 1s\n")
	base := "hark/testdev"
	w := watch(t, second.URL(), base+"/#")
	h.start()
	pos := 0.0
	h.feedSentence(d, 0, &pos, 2)
	if m := w.await(base+"/transcript", nil, 30*time.Second); jsonField(m.payload, "text") != d.lines[0] {
		t.Fatalf("first transcript, seen on the other node: %s", m.payload)
	}
	w.await(base+"/health", func(m msg) bool { return jsonField(m.payload, "mqtt.broker") == first.URL() }, 30*time.Second)

	second.Pause()
	first.Kill(t)
	h.feedSentence(d, 1, &pos, 2)
	h.feedSentence(d, 2, &pos, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := emu.WaitSession(ctx, func(s dgemu.SessionInfo) bool { return s.SpeechFinals+s.FromFinalize >= 3 }); err != nil {
		t.Fatalf("the sentences spoken while no node answered were not transcribed: %v", err)
	}
	st := h.agent.pub.(mqttPublisher).Stats().(mqttlink.Stats)
	if st.QueueEntries < 2 || st.Connected {
		t.Fatalf("with no node answering: connected %v, %d transcripts queued, want 2 queued", st.Connected, st.QueueEntries)
	}
	second.Resume()

	var dedup []string
	for len(dedup) < 2 {
		m := w.await(base+"/transcript", nil, 60*time.Second)
		s, _ := jsonField(m.payload, "text").(string)
		if len(dedup) == 0 || dedup[len(dedup)-1] != s {
			dedup = append(dedup, s)
		}
	}
	if strings.Join(dedup, "|") != strings.Join(d.lines[1:3], "|") {
		t.Fatalf("queued transcripts after the failover: %q, want %q in order", dedup, d.lines[1:3])
	}
	w.await(base+"/availability", func(m msg) bool { return m.payload == "online" }, 30*time.Second)
	w.await(base+"/health", func(m msg) bool { return jsonField(m.payload, "mqtt.broker") == second.URL() }, 30*time.Second)
	// A controller connecting now to the surviving node gets the retained availability.
	fresh := watch(t, second.URL(), base+"/availability")
	if m := fresh.await(base+"/availability", nil, 30*time.Second); m.payload != "online" || !m.retained {
		t.Fatalf("retained availability on the surviving node: %q (retained %v)", m.payload, m.retained)
	}
	// The operator's tool, given both nodes, skips the dead one and sees the device there.
	conn, err := fleet.Connect(context.Background(), fleet.Options{Broker: first.URL() + "," + second.URL(), TopicPrefix: "hark", Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	devs, err := conn.List(context.Background())
	conn.Close()
	if err != nil || len(devs) != 1 || !devs[0].Online() || devs[0].Broker != second.URL() || conn.Broker() != second.URL() {
		t.Fatalf("fleet ls on the cluster (connected to %s): %+v, %v", conn.Broker(), devs, err)
	}
	h.feedSentence(d, 3, &pos, 2)
	if m := w.await(base+"/transcript", func(m msg) bool { return jsonField(m.payload, "text") != d.lines[2] }, 60*time.Second); jsonField(m.payload, "text") != d.lines[3] {
		t.Fatalf("live transcript after the failover: %s", m.payload)
	}
	h.endInput()
}
