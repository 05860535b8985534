package mqttlink

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hark-audio/hark/mqttlink/brokertest"
)

// TestTopicsQoSRetain publishes one of everything and checks topic, payload, QoS as
// delivered to a QoS 2 subscriber, and (with a fresh subscriber) what the broker retained.
func TestTopicsQoSRetain(t *testing.T) {
	checkLeaks(t)
	b := brokertest.Start(t)
	o := testOptions(t, b.URL())
	o.Discovery = true
	base := o.TopicPrefix + "/" + o.DeviceID
	s := subscribe(t, b.URL(), map[string]byte{base + "/#": 2}, subOpts{})
	c := startClient(t, o)
	awaitConn(t, c)

	if m := s.nextOn(t, base+"/availability"); m.payload != "online" || m.qos != 1 {
		t.Fatalf("availability %+v", m)
	}
	c.SetState(map[string]any{"pipeline": "running", "muted": false, "speech": true})
	if m := s.nextOn(t, base+"/state"); m.qos != 1 || !strings.Contains(m.payload, `"speech":true`) {
		t.Fatalf("state %+v", m)
	}
	c.SetConfig([]byte(`{"device_id":"x"}`))
	if m := s.nextOn(t, base+"/config"); m.qos != 1 || m.payload != `{"device_id":"x"}` {
		t.Fatalf("config %+v", m)
	}
	c.PublishHealth(map[string]any{"level_dbfs": -42.5})
	if m := s.nextOn(t, base+"/health"); m.qos != 1 || m.payload != `{"level_dbfs":-42.5}` {
		t.Fatalf("health %+v", m)
	}
	if err := c.PublishTranscript(utterance(7)); err != nil {
		t.Fatal(err)
	}
	m := s.nextOn(t, base+"/transcript")
	if m.qos != 1 || seqOf(t, m.payload) != 7 {
		t.Fatalf("transcript %+v", m)
	}
	var tj map[string]any
	json.Unmarshal([]byte(m.payload), &tj)
	for _, k := range []string{"text", "start", "end", "words", "confidence", "source", "request_id", "seq"} {
		if _, ok := tj[k]; !ok {
			t.Fatalf("transcript lacks %q: %s", k, m.payload)
		}
	}
	c.PublishInterim(map[string]any{"text": "utter"})
	if m := s.nextOn(t, base+"/transcript/interim"); m.qos != 0 || m.payload != `{"text":"utter"}` {
		t.Fatalf("interim %+v", m)
	}
	c.PublishEvent(map[string]any{"type": "speech_start", "at": "2026-11-21T06:00:00.000Z"})
	if m := s.nextOn(t, base+"/event"); m.qos != 1 || !strings.Contains(m.payload, "speech_start") {
		t.Fatalf("event %+v", m)
	}
	s.publish(t, base+"/request/echo", 1, false, `{"transaction":"tx-1","muted":true}`)
	m = s.nextOn(t, base+"/response/echo")
	if m.qos != 1 || m.retained {
		t.Fatalf("response %+v", m)
	}
	checkResponse(t, []byte(m.payload), "ok", "", `"tx-1"`)

	// What a newcomer sees: exactly the retained topics, with their latest values.
	ret := retainedSnapshot(t, b.URL(), base+"/#", subOpts{})
	want := map[string]string{
		base + "/availability": "online",
		base + "/state":        `{"muted":false,"pipeline":"running","speech":true}`,
		base + "/config":       `{"device_id":"x"}`,
		base + "/health":       `{"level_dbfs":-42.5}`,
	}
	for topic, payload := range want {
		if got, ok := ret[topic]; !ok || !got.retained || got.payload != payload {
			t.Errorf("retained %s = %+v, want %q", topic, got, payload)
		}
	}
	for topic := range ret {
		if _, ok := want[topic]; !ok {
			t.Errorf("%s is retained but should not be", topic)
		}
	}
	disc := retainedSnapshot(t, b.URL(), "homeassistant/#", subOpts{})
	if len(disc) != len(c.disc) {
		t.Errorf("retained discovery: %d topics, want %d", len(disc), len(c.disc))
	}
	st := c.Stats()
	if !st.Connected || st.Delivered != 1 || st.Connects != 1 || st.QueueEntries != 0 {
		t.Errorf("stats %+v", st)
	}

	// Close: availability goes offline (retained), and the client stops publishing.
	closeClient(t, c)
	if m := s.nextOn(t, base+"/availability"); m.payload != "offline" {
		t.Fatalf("after Close: availability %+v", m)
	}
	if got := retainedSnapshot(t, b.URL(), base+"/availability", subOpts{}); got[base+"/availability"].payload != "offline" {
		t.Fatalf("retained availability after Close: %+v", got)
	}
	if err := c.PublishTranscript(utterance(8)); err != ErrClosed {
		t.Fatalf("PublishTranscript after Close: %v", err)
	}
	closeClient(t, c) // idempotent
}

// TestBrokerDownAtBoot: everything returns at once while the broker is down; when it comes
// up, state (latest only), events and transcripts arrive, in order.
func TestBrokerDownAtBoot(t *testing.T) {
	checkLeaks(t)
	b := brokertest.Start(t)
	o := testOptions(t, b.URL())
	base := o.TopicPrefix + "/" + o.DeviceID
	s := persistentSub(t, b, map[string]byte{base + "/transcript": 1, base + "/event": 1})
	b.Stop(t)
	c := startClient(t, o)

	for i := 1; i <= 5; i++ {
		c.SetState(map[string]int{"n": i})
		c.PublishEvent(map[string]int{"event": i})
		c.PublishInterim(map[string]int{"interim": i})
		if err := c.PublishTranscript(utterance(uint64(i))); err != nil {
			t.Fatal(err)
		}
		c.PublishHealth(map[string]int{"h": i})
	}
	if st := c.Stats(); st.Connected || st.QueueEntries != 5 || st.InterimDropped != 5 || st.Outbox != 5 {
		t.Fatalf("stats while down: %+v", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	if err := c.AwaitConnection(ctx); err == nil {
		t.Fatal("AwaitConnection succeeded with the broker down")
	}
	cancel()

	b.Restart(t)
	awaitConn(t, c)
	collectSeqs(t, s, base+"/transcript", 1, seqRange(1, 5))
	for i := 1; i <= 5; i++ {
		if m := s.nextOn(t, base+"/event"); m.payload != fmt.Sprintf(`{"event":%d}`, i) {
			t.Fatalf("event %d: %+v", i, m)
		}
	}
	ret := retainedSnapshot(t, b.URL(), base+"/#", subOpts{})
	if ret[base+"/state"].payload != `{"n":5}` || ret[base+"/health"].payload != `{"h":5}` {
		t.Fatalf("retained after boot: %+v", ret)
	}
}

// TestBrokerRestartMidRun restarts the broker while transcripts flow, then crashes it
// (SIGKILL) and publishes while it is down: none is lost, order is kept, and the state is
// re-published to the restarted broker.
func TestBrokerRestartMidRun(t *testing.T) {
	checkLeaks(t)
	b := brokertest.Start(t)
	o := testOptions(t, b.URL())
	base := o.TopicPrefix + "/" + o.DeviceID
	// A persistent session on a persistent broker: the subscriber misses nothing across a
	// graceful restart, so anything missing was lost by the client.
	s := subscribe(t, b.URL(), map[string]byte{base + "/transcript": 1}, subOpts{clientID: "restart-sub-" + o.DeviceID})
	c := startClient(t, o)
	awaitConn(t, c)
	c.SetState(map[string]string{"pipeline": "running"})

	for i := uint64(1); i <= 20; i++ {
		if err := c.PublishTranscript(utterance(i)); err != nil {
			t.Fatal(err)
		}
		if i == 10 {
			b.Restart(t) // graceful, with transcripts in flight
		}
		time.Sleep(5 * time.Millisecond) // pacing: transcripts arrive over time in real life
	}
	collectSeqs(t, s, base+"/transcript", 1, seqRange(1, 20))

	// A crash: the broker comes back with the session saved at the graceful restart (so it
	// may replay older messages to the subscriber, which collectSeqs ignores) and without
	// anything in flight.
	b.Kill(t)
	for i := uint64(21); i <= 25; i++ {
		if err := c.PublishTranscript(utterance(i)); err != nil {
			t.Fatal(err)
		}
	}
	b.Restart(t)
	for i := uint64(26); i <= 30; i++ {
		if err := c.PublishTranscript(utterance(i)); err != nil {
			t.Fatal(err)
		}
	}
	collectSeqs(t, s, base+"/transcript", 21, seqRange(21, 30))
	ret := retainedSnapshot(t, b.URL(), base+"/#", subOpts{})
	if ret[base+"/state"].payload != `{"pipeline":"running"}` || ret[base+"/availability"].payload != "online" {
		t.Fatalf("retained after restarts: %+v", ret)
	}
	closeClient(t, c) // flushes: the last PUBACK may still be on its way
	st := c.Stats()
	if st.Delivered < 30 || st.Reconnects < 2 || st.QueueDropped != 0 || st.QueueEntries != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestRetainedResentAfterBrokerLosesThem: a broker without persistence forgets retained
// messages when it restarts; the client publishes online, state, config, health and
// discovery again on the new connection.
func TestRetainedResentAfterBrokerLosesThem(t *testing.T) {
	checkLeaks(t)
	b := brokertest.StartConfig(t, brokertest.Config{NoPersistence: true})
	o := testOptions(t, b.URL())
	o.Discovery = true
	base := o.TopicPrefix + "/" + o.DeviceID
	c := startClient(t, o)
	awaitConn(t, c)
	c.SetState(map[string]int{"state": 1})
	c.SetConfig([]byte(`{"config":1}`))
	c.PublishHealth(map[string]int{"health": 1})
	s := subscribe(t, b.URL(), map[string]byte{base + "/#": 1}, subOpts{})
	for _, topic := range []string{"/state", "/config", "/health"} {
		s.nextOn(t, base+topic)
	}

	b.Restart(t)
	if got := retainedSnapshot(t, b.URL(), base+"/#", subOpts{}); len(got) != 0 {
		// Only possible if the client was quicker than this snapshot; then it proves nothing.
		t.Logf("retained right after restart: %d topics", len(got))
	}
	// Whether the client re-publishes before or after this subscription, each message
	// arrives (retained or live) only if it was published again.
	s2 := subscribe(t, b.URL(), map[string]byte{base + "/#": 1, "homeassistant/#": 1}, subOpts{})
	want := map[string]string{
		base + "/availability": "online", base + "/state": `{"state":1}`,
		base + "/config": `{"config":1}`, base + "/health": `{"health":1}`,
	}
	for topic, payload := range want {
		if m := s2.nextOn(t, topic); m.payload != payload {
			t.Fatalf("%s after broker restart: %+v", topic, m)
		}
	}
	for _, d := range c.disc {
		s2.nextOn(t, d.topic)
	}
}

// TestHarkRestartQueued: transcripts queued while the broker is down survive Close and a new
// process (New on the same QueueDir) delivers them in order.
func TestHarkRestartQueued(t *testing.T) {
	checkLeaks(t)
	b := brokertest.Start(t)
	o := testOptions(t, b.URL())
	base := o.TopicPrefix + "/" + o.DeviceID
	s := persistentSub(t, b, map[string]byte{base + "/transcript": 1})
	b.Stop(t)

	c1 := startClient(t, o)
	for i := uint64(1); i <= 8; i++ {
		if err := c1.PublishTranscript(utterance(i)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	start := time.Now()
	if err := c1.Close(ctx); err != nil {
		t.Fatalf("Close with the broker down: %v", err)
	}
	cancel()
	t.Logf("Close with the broker down took %v", time.Since(start))
	ents, _ := os.ReadDir(o.QueueDir)
	if len(ents) != 8 {
		t.Fatalf("%d files in the queue after Close, want 8", len(ents))
	}

	b.Restart(t)
	c2 := startClient(t, o)
	if err := c2.PublishTranscript(utterance(9)); err != nil {
		t.Fatal(err)
	}
	collectSeqs(t, s, base+"/transcript", 1, seqRange(1, 9))
}

// TestQueueBoundDropsOldest: with QueueMax 3 and the broker down, the oldest transcripts
// are dropped and counted; the newest three arrive.
func TestQueueBoundDropsOldest(t *testing.T) {
	checkLeaks(t)
	b := brokertest.Start(t)
	o := testOptions(t, b.URL())
	o.QueueMax = 3
	lb := &logBuffer{}
	o.Logger = testLoggerTo(lb)
	base := o.TopicPrefix + "/" + o.DeviceID
	s := persistentSub(t, b, map[string]byte{base + "/transcript": 1})
	b.Stop(t)
	c := startClient(t, o)
	for i := uint64(1); i <= 7; i++ {
		if err := c.PublishTranscript(utterance(i)); err != nil {
			t.Fatal(err)
		}
	}
	written(t, c)
	if st := c.Stats(); st.QueueDropped != 4 || st.QueueEntries != 3 {
		t.Fatalf("stats %+v", st)
	}
	if n := strings.Count(lb.String(), "transcript queue full"); n != 1 {
		t.Fatalf("queue-full warning logged %d times, want once:\n%s", n, lb.String())
	}
	b.Restart(t)
	collectSeqs(t, s, base+"/transcript", 1, seqRange(5, 7))
}

// TestOutboxBound: events beyond the bound are dropped oldest first while offline.
func TestOutboxBound(t *testing.T) {
	checkLeaks(t)
	b := brokertest.Start(t)
	o := testOptions(t, b.URL())
	base := o.TopicPrefix + "/" + o.DeviceID
	s := persistentSub(t, b, map[string]byte{base + "/event": 1})
	b.Stop(t)
	c := startClient(t, o)
	for i := 1; i <= outboxMax+5; i++ {
		c.PublishEvent(map[string]int{"i": i})
	}
	if st := c.Stats(); st.OutboxDropped != 5 || st.Outbox != outboxMax {
		t.Fatalf("stats %+v", st)
	}
	b.Restart(t)
	for i := 6; i <= outboxMax+5; i++ {
		if m := s.nextOn(t, base+"/event"); m.payload != fmt.Sprintf(`{"i":%d}`, i) {
			t.Fatalf("event %d: %+v", i, m)
		}
	}
}

func TestNewRejects(t *testing.T) {
	good := Options{Broker: "tcp://127.0.0.1:1", TopicPrefix: "h", DeviceID: "d", QueueDir: t.TempDir()}
	for name, mut := range map[string]func(*Options){
		"no broker":       func(o *Options) { o.Broker = "" },
		"credentials":     func(o *Options) { o.Broker = "tcp://u:p@host:1883" },
		"no host":         func(o *Options) { o.Broker = "localhost" },
		"wildcard prefix": func(o *Options) { o.TopicPrefix = "a/+" },
		"slash device":    func(o *Options) { o.DeviceID = "a/b" },
		"no queue":        func(o *Options) { o.QueueDir = "" },
		"tls on tcp":      func(o *Options) { o.CAFile = "/etc/hostname" },
		"missing CA":      func(o *Options) { o.Broker = "ssl://h:8883"; o.CAFile = "/nonexistent" },
		"cert no key":     func(o *Options) { o.Broker = "ssl://h:8883"; o.CertFile = "/etc/hostname" },
		"CA not PEM":      func(o *Options) { o.Broker = "ssl://h:8883"; o.CAFile = "/etc/hostname" },
	} {
		o := good
		o.QueueDir = t.TempDir()
		mut(&o)
		c, err := New(o)
		if err == nil {
			c.Close(context.Background())
			t.Errorf("%s: New accepted %+v", name, o)
		} else if strings.Contains(err.Error(), "u:p@") {
			t.Errorf("%s: error shows credentials: %v", name, err)
		}
	}
	c, err := New(good)
	if err != nil {
		t.Fatal(err)
	}
	if c.o.ClientID != "hark-"+InstanceID("h", "d") || c.Base() != "h/d" {
		t.Fatalf("defaults: client id %q base %q", c.o.ClientID, c.Base())
	}
	if err := c.Close(context.Background()); err != nil { // never started
		t.Fatal(err)
	}
}

// TestStalledBroker: a "broker" that accepts TCP connections and never answers. Nothing
// blocks; Close returns once paho's connection attempt times out, leaving no goroutine.
func TestStalledBroker(t *testing.T) {
	checkLeaks(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	accepted := make(chan struct{}, 100)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			accepted <- struct{}{}
		}
	}()
	defer func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	o := testOptions(t, "tcp://"+l.Addr().String())
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	c.Start(context.Background())
	<-accepted // paho is now waiting for a CONNACK that never comes
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.PublishTranscript(utterance(1))
		c.PublishEvent(map[string]int{"e": 1})
		c.PublishInterim(map[string]int{"i": 1})
		c.SetState(map[string]int{"s": 1})
		c.SetConfig([]byte(`{}`))
		c.PublishHealth(map[string]int{"h": 1})
		c.Stats()
	}()
	select {
	case <-done:
	case <-time.After(waitFor):
		t.Fatal("a publishing method blocked on a stalled broker")
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	start := time.Now()
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("Close took %v (connect timeout %v)", time.Since(start), o.ConnectTimeout)
	if st := c.Stats(); st.QueueEntries != 1 || st.Connected {
		t.Fatalf("stats %+v", st)
	}
}

func BenchmarkPublishTranscript(b *testing.B) {
	c, err := New(Options{Broker: "tcp://127.0.0.1:1", TopicPrefix: "h", DeviceID: "d", QueueDir: b.TempDir(), QueueMax: b.N + 1})
	if err != nil {
		b.Fatal(err)
	}
	u := utterance(1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := c.PublishTranscript(u); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	c.Close(context.Background())
}

// BenchmarkDelivery measures PublishTranscript to PUBACK through a local mosquitto, one
// message in flight at a time (the sender's discipline).
func BenchmarkDelivery(b *testing.B) {
	br := brokertest.Start(b)
	c, err := New(Options{Broker: br.URL(), TopicPrefix: "h", DeviceID: "d", QueueDir: b.TempDir(), QueueMax: b.N + 1})
	if err != nil {
		b.Fatal(err)
	}
	c.Start(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := c.AwaitConnection(ctx); err != nil {
		b.Fatal(err)
	}
	u := utterance(1)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := c.PublishTranscript(u); err != nil {
			b.Fatal(err)
		}
	}
	if err := c.Close(ctx); err != nil { // flushes: waits for the last PUBACK
		b.Fatal(err)
	}
	b.StopTimer()
	if st := c.Stats(); st.Delivered != uint64(b.N) {
		b.Fatalf("delivered %d of %d", st.Delivered, b.N)
	}
}

// TestConcurrentPublishers: the agent's goroutines publish at once; every transcript
// arrives and each producer's transcripts keep their order.
func TestConcurrentPublishers(t *testing.T) {
	checkLeaks(t)
	b := brokertest.Start(t)
	o := testOptions(t, b.URL())
	base := o.TopicPrefix + "/" + o.DeviceID
	s := subscribe(t, b.URL(), map[string]byte{base + "/transcript": 1}, subOpts{})
	c := startClient(t, o)
	awaitConn(t, c)
	const producers, each = 4, 25
	var wg sync.WaitGroup
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 1; i <= each; i++ {
				if err := c.PublishTranscript(utterance(uint64(p*1000 + i))); err != nil {
					t.Error(err)
				}
				c.SetState(map[string]int{"p": p, "i": i})
				c.PublishEvent(map[string]int{"p": p, "i": i})
				c.Stats()
			}
		}()
	}
	wg.Wait()
	last := map[uint64]uint64{}
	for n := 0; n < producers*each; n++ {
		seq := seqOf(t, s.nextOn(t, base+"/transcript").payload)
		p, i := seq/1000, seq%1000
		if i != last[p]+1 {
			t.Fatalf("producer %d: transcript %d after %d", p, i, last[p])
		}
		last[p] = i
	}
}
