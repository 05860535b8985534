package mqttlink

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/hark-audio/hark/mqttlink/brokertest"
	"github.com/hark-audio/hark/transcript"
)

const waitFor = 20 * time.Second // generous bound for anything a test waits on

// checkLeaks fails the test if paho or this package still has goroutines once the test and
// its cleanups are done. Register it first so that it runs last. Matching stacks (rather
// than counting goroutines) keeps it independent of anything else running in the process.
func checkLeaks(t *testing.T) {
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for {
			leaked := ourGoroutines()
			if len(leaked) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("%d goroutines leaked:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
				return
			}
			time.Sleep(20 * time.Millisecond) // pacing the re-check of goroutines that are exiting
		}
	})
}

func ourGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "checkLeaks") || strings.Contains(g, "ourGoroutines") {
			continue
		}
		if strings.Contains(g, "eclipse/paho.mqtt.golang") || strings.Contains(g, "hark/mqttlink.(*Client)") {
			out = append(out, g)
		}
	}
	return out
}

// logBuffer collects a client's log output (to check what is, and is not, logged).
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var deviceN atomic.Int64

// testOptions are Options with short intervals, a fresh device id and queue directory.
func testOptions(t *testing.T, broker string) Options {
	return Options{
		Broker: broker, TopicPrefix: "harktest", DeviceID: fmt.Sprintf("dev%d", deviceN.Add(1)),
		QueueDir: t.TempDir(), QueueMax: 1000, Version: "1.2.3-test", Handler: echoHandler,
		Logger:               testLogger(t),
		ConnectRetryInterval: 100 * time.Millisecond, MaxReconnectInterval: 500 * time.Millisecond,
		ConnectTimeout: 2 * time.Second, AckTimeout: 5 * time.Second,
	}
}

// testLogger logs at Debug into a buffer that is printed if the test fails (paho's callbacks
// may still log just after the test returned, when t.Log would panic).
func testLogger(t *testing.T) *slog.Logger {
	lb := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("client log:\n%s", lb.String())
		}
	})
	return testLoggerTo(lb)
}

func testLoggerTo(lb *logBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startClient makes and starts a client; it is closed when the test ends.
func startClient(t *testing.T, o Options) *Client {
	t.Helper()
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	c.Start(context.Background())
	t.Cleanup(func() { closeClient(t, c) })
	return c
}

func closeClient(t *testing.T, c *Client) {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := c.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// written waits until the queue writer has put every transcript handed over on disk.
func written(t *testing.T, c *Client) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for c.queue.pendingWrites() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d transcripts still not written after %v", c.queue.pendingWrites(), waitFor)
		}
		time.Sleep(5 * time.Millisecond) // polling a counter the writer has no signal for
	}
}

func awaitConn(t *testing.T, c *Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := c.AwaitConnection(ctx); err != nil {
		t.Fatalf("AwaitConnection: %v", err)
	}
}

// msg is a received message, copied out of paho.
type msg struct {
	topic    string
	payload  string
	qos      byte
	retained bool
}

// subscriber is a test client that records what it receives.
type subscriber struct {
	c       mqtt.Client
	ch      chan msg
	pending map[string][]msg // seen by nextOn while looking for another topic
}

type subOpts struct {
	clientID   string // fixed id and persistent session when set
	tls        *brokertest.TLSFiles
	user, pass string
}

func subscribe(t *testing.T, url string, filters map[string]byte, so subOpts) *subscriber {
	t.Helper()
	s := &subscriber{ch: make(chan msg, 10000)}
	o := mqtt.NewClientOptions().AddBroker(url).SetOrderMatters(true).SetConnectTimeout(5 * time.Second).
		SetAutoReconnect(true).SetMaxReconnectInterval(200 * time.Millisecond).SetConnectRetry(false).
		SetWriteTimeout(2 * time.Second)
	if so.clientID != "" {
		o.SetClientID(so.clientID).SetCleanSession(false)
	} else {
		o.SetClientID(fmt.Sprintf("sub-%d-%d", time.Now().UnixNano(), deviceN.Add(1)))
	}
	if so.tls != nil {
		o.SetTLSConfig(testTLS(t, *so.tls))
	}
	if so.user != "" {
		o.SetUsername(so.user).SetPassword(so.pass)
	}
	handler := func(_ mqtt.Client, m mqtt.Message) {
		s.ch <- msg{topic: m.Topic(), payload: string(m.Payload()), qos: m.Qos(), retained: m.Retained()}
	}
	// Re-subscribe on every connection: a broker restart may drop the session.
	o.SetOnConnectHandler(func(c mqtt.Client) { c.SubscribeMultiple(filters, handler) })
	o.SetDefaultPublishHandler(handler)
	s.c = mqtt.NewClient(o)
	tok := s.c.Connect()
	if !tok.WaitTimeout(waitFor) || tok.Error() != nil {
		t.Fatalf("subscriber connect: %v", tok.Error())
	}
	// The subscription made in OnConnect is asynchronous: make one here too and wait for it.
	st := s.c.SubscribeMultiple(filters, handler)
	if !st.WaitTimeout(waitFor) || st.Error() != nil {
		t.Fatalf("subscribe: %v", st.Error())
	}
	t.Cleanup(func() { s.c.Disconnect(250) })
	return s
}

// persistentSub subscribes with a persistent session, so that the (persistent) broker
// queues messages for it while it is away, across a graceful Stop and Restart: subscribe
// before stopping the broker, and nothing published after the restart can be missed, however
// the reconnections race.
func persistentSub(t *testing.T, b *brokertest.Broker, filters map[string]byte) *subscriber {
	return subscribe(t, b.URL(), filters, subOpts{clientID: fmt.Sprintf("psub-%d", deviceN.Add(1))})
}

func (s *subscriber) next(t *testing.T) msg {
	t.Helper()
	select {
	case m := <-s.ch:
		return m
	case <-time.After(waitFor):
		t.Fatalf("no message within %v", waitFor)
		return msg{}
	}
}

// nextOn returns the next message on topic; messages on other topics are kept for later
// nextOn calls.
func (s *subscriber) nextOn(t *testing.T, topic string) msg {
	t.Helper()
	if q := s.pending[topic]; len(q) > 0 {
		s.pending[topic] = q[1:]
		return q[0]
	}
	for {
		m := s.next(t)
		if m.topic == topic {
			return m
		}
		if s.pending == nil {
			s.pending = map[string][]msg{}
		}
		s.pending[m.topic] = append(s.pending[m.topic], m)
	}
}

// publish sends a message from the test (as another fleet member would).
func (s *subscriber) publish(t *testing.T, topic string, qos byte, retained bool, payload string) {
	t.Helper()
	tok := s.c.Publish(topic, qos, retained, payload)
	if !tok.WaitTimeout(waitFor) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// retainedSnapshot subscribes afresh to filter and returns the retained messages the broker
// holds: a marker published after subscribing arrives after all of them.
func retainedSnapshot(t *testing.T, url, filter string, so subOpts) map[string]msg {
	t.Helper()
	marker := fmt.Sprintf("harktest-marker/%d", deviceN.Add(1))
	s := subscribe(t, url, map[string]byte{filter: 2, marker: 2}, so)
	s.publish(t, marker, 1, false, "end")
	got := map[string]msg{}
	for {
		m := s.next(t)
		if m.topic == marker {
			s.c.Disconnect(250)
			return got
		}
		got[m.topic] = m
	}
}

func utterance(seq uint64) transcript.Utterance {
	start := time.Date(2026, 11, 21, 6, 0, 0, 0, time.UTC).Add(time.Duration(seq) * time.Second)
	return transcript.Utterance{
		Text: fmt.Sprintf("utterance number %d", seq), Start: start, End: start.Add(800 * time.Millisecond),
		Words:      []transcript.Word{{Word: "utterance", Start: start, End: start.Add(400 * time.Millisecond), Confidence: 0.9}},
		Confidence: 0.9, Source: transcript.SourceLive, RequestID: "req", Seq: seq, DeviceID: "dev",
	}
}

func seqOf(t *testing.T, payload string) uint64 {
	t.Helper()
	var u transcript.Utterance
	if err := u.UnmarshalJSON([]byte(payload)); err != nil {
		t.Fatalf("transcript payload %q: %v", payload, err)
	}
	return u.Seq
}

// collectSeqs reads transcripts until every seq in want arrived at least once, and checks
// that they arrived in order (the message in flight at a reconnection may repeat, nothing
// goes back further). Seqs below from (a broker's replay of an old session) are ignored.
func collectSeqs(t *testing.T, s *subscriber, topic string, from uint64, want []uint64) {
	t.Helper()
	seen := map[uint64]bool{}
	last := from
	var order []uint64
	for len(seen) < len(want) {
		m := s.nextOn(t, topic)
		seq := seqOf(t, m.payload)
		if seq < from {
			continue
		}
		order = append(order, seq)
		if seq < last {
			t.Fatalf("out of order: %d after %d (arrivals %v)", seq, last, order)
		}
		last = seq
		seen[seq] = true
	}
	for _, w := range want {
		if !seen[w] {
			t.Fatalf("transcript %d never arrived (arrivals %v)", w, order)
		}
	}
	if len(seen) != len(want) {
		t.Fatalf("unexpected transcripts: arrivals %v, want %v", order, want)
	}
	t.Logf("arrivals: %d messages for %d transcripts", len(order), len(want))
}

func seqRange(from, to uint64) []uint64 {
	var s []uint64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}
