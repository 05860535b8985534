package dgemu

import (
	"errors"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hark-audio/hark/internal/leaktest"
)

func TestDropSessions(t *testing.T) {
	s := newTestServer(t, Config{})
	c := dial(t, s, liveQuery())
	c.sendAudio(tone(0.5), 3200)
	if _, err := s.WaitSession(ctxT(t), func(si SessionInfo) bool { return si.AudioBytes == 16000 }); err != nil {
		t.Fatal(err)
	}
	if n := s.DropSessions(); n != 1 {
		t.Fatalf("dropped %d", n)
	}
	ms, err := c.collect()
	if code, _ := closeCode(err); code != websocket.CloseAbnormalClosure || len(ms) != 0 {
		t.Fatalf("client saw %v after %v, want an abrupt end", err, ms)
	}
	si, _ := s.WaitSession(ctxT(t), func(si SessionInfo) bool { return si.Closed })
	if !si.Dropped || si.CloseCode != 0 || si.MetadataSent {
		t.Errorf("session %+v", si)
	}
}

func TestDropAfterAudio(t *testing.T) {
	s := newTestServer(t, Config{})
	s.DropAfterAudio(32000)
	c := dial(t, s, liveQuery())
	var werr error
	for i := 0; i < 100 && werr == nil; i++ {
		werr = c.conn.WriteMessage(websocket.BinaryMessage, tone(0.1))
	}
	_, err := c.collect()
	if code, _ := closeCode(err); code != 0 && code != websocket.CloseAbnormalClosure {
		t.Fatalf("client saw %v, want an abrupt end", err)
	}
	si, _ := s.WaitSession(ctxT(t), func(si SessionInfo) bool { return si.Closed })
	if !si.Dropped || si.AudioBytes != 32000 {
		t.Errorf("session %+v", si)
	}
	// One-shot: the next session is not dropped.
	c2 := dial(t, s, liveQuery())
	c2.sendAudio(tone(2), 3200)
	c2.sendText(`{"type":"CloseStream"}`)
	if _, err := c2.collect(); !websocket.IsCloseError(err, 1000) {
		t.Fatalf("second session: %v", err)
	}
}

func TestStopReading(t *testing.T) {
	s := newTestServer(t, Config{IdleTimeout: 300 * time.Millisecond})
	c := dial(t, s, liveQuery())
	c.sendAudio(tone(0.1), 3200)
	if _, err := s.WaitSession(ctxT(t), func(si SessionInfo) bool { return si.AudioBytes == 3200 }); err != nil {
		t.Fatal(err)
	}
	s.StopReading()
	// Write until the socket buffers are full and a write times out.
	chunk := silence(1) // 32 KB
	var werr error
	for i := 0; i < 10000 && werr == nil; i++ {
		c.conn.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
		werr = c.conn.WriteMessage(websocket.BinaryMessage, chunk)
	}
	var ne net.Error
	if !errors.As(werr, &ne) || !ne.Timeout() {
		t.Fatalf("writes never blocked: %v", werr)
	}
	got := s.Sessions()[0].AudioBytes
	// While not reading the idle timer is suspended: more than IdleTimeout passes.
	time.Sleep(500 * time.Millisecond) // paces: lets the idle window pass
	if si := s.Sessions()[0]; si.Closed || si.AudioBytes != got {
		t.Fatalf("session read or closed while stopped: %+v", si)
	}
	s.ResumeReading()
	// The server drains what was queued (the cut-off message then ends the stream).
	if _, err := s.WaitSession(ctxT(t), func(si SessionInfo) bool { return si.AudioBytes > got }); err != nil {
		t.Fatal(err)
	}
}

func TestFailNET0000(t *testing.T) {
	s := newTestServer(t, Config{})
	c := dial(t, s, liveQuery())
	c.sendAudio(tone(0.5), 3200)
	if _, err := s.WaitSession(ctxT(t), func(si SessionInfo) bool { return si.AudioBytes == 16000 }); err != nil {
		t.Fatal(err)
	}
	if n := s.FailNET0000(); n != 1 {
		t.Fatalf("closed %d", n)
	}
	ms, err := c.collect()
	code, reason := closeCode(err)
	if code != 1011 || reason != ReasonNET0000 || len(ms) != 1 || ms[0]["type"] != "Metadata" || ms[0]["duration"].(float64) != 0.5 {
		t.Fatalf("close %v, messages %v", err, ms)
	}
	si, _ := s.WaitSession(ctxT(t), func(si SessionInfo) bool { return si.Closed })
	if si.CloseCode != 1011 || si.ClientCloseCode != 1011 {
		t.Errorf("session %+v", si)
	}
}

func TestCloseSessionsCustom(t *testing.T) {
	s := newTestServer(t, Config{})
	c := dial(t, s, liveQuery())
	s.CloseSessions(1001, "going away")
	_, err := c.collect()
	if code, reason := closeCode(err); code != 1001 || reason != "going away" {
		t.Fatal(err)
	}
}

func TestHandshakeDelay(t *testing.T) {
	s := newTestServer(t, Config{})
	s.SetHandshakeDelay(2 * time.Second)
	d := websocket.Dialer{HandshakeTimeout: 200 * time.Millisecond}
	_, _, err := d.Dial(s.URL()+"?"+liveQuery().Encode(), http.Header{"Authorization": {"Token " + testKey}})
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("dial with a slow handshake: %v", err)
	}
	s.SetHandshakeDelay(0)
	c := dial(t, s, liveQuery())
	c.conn.Close()
}

func TestRealtimeLimit(t *testing.T) {
	s := newTestServer(t, Config{RealtimeLimit: 4})
	c := dial(t, s, liveQuery())
	start := time.Now()
	c.sendAudio(silence(8), 16000)
	c.sendText(`{"type":"CloseStream"}`)
	ms, err := c.collect()
	if !websocket.IsCloseError(err, 1000) {
		t.Fatal(err)
	}
	// 8 s of audio at 4x after a 1 s burst cannot be accepted in less than 1 s.
	if el := time.Since(start); el < time.Second {
		t.Errorf("8 s of audio accepted in %v at a 4x limit", el)
	}
	if md := ofType(ms, "Metadata"); md[0]["duration"].(float64) != 8 {
		t.Errorf("duration %v", md[0]["duration"])
	}
}

func TestCloseWithOpenSessions(t *testing.T) {
	before := runtime.NumGoroutine()
	s := NewServer(Config{APIKey: testKey})
	c1, err := tryDial(s, liveQuery(), http.Header{"Authorization": {"Token " + testKey}})
	if err != nil {
		t.Fatal(err)
	}
	c2, err := tryDial(s, liveQuery(), http.Header{"Authorization": {"Token " + testKey}})
	if err != nil {
		t.Fatal(err)
	}
	c1.conn.WriteMessage(websocket.BinaryMessage, tone(0.1))
	if _, err := s.WaitSession(ctxT(t), func(si SessionInfo) bool { return si.AudioBytes > 0 }); err != nil {
		t.Fatal(err)
	}
	s.StopReading()
	s.SetHandshakeDelay(time.Hour)
	slow := make(chan error, 1)
	go func() {
		_, err := tryDial(s, liveQuery(), http.Header{"Authorization": {"Token " + testKey}})
		slow <- err
	}()
	s.Close()
	<-c1.done
	<-c2.done
	c1.conn.Close()
	c2.conn.Close()
	if err := <-slow; err == nil {
		t.Error("delayed handshake succeeded after Close")
	}
	for _, si := range s.Sessions() {
		if !si.Closed {
			t.Errorf("session not closed: %+v", si)
		}
	}
	http.DefaultClient.CloseIdleConnections()
	leaktest.Wait(t, before)
}

func TestNoLeakAfterTraffic(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		s := NewServer(Config{APIKey: testKey, Utterances: []string{"a"}, IdleTimeout: 200 * time.Millisecond})
		defer s.Close()
		c, err := tryDial(s, liveQuery("interim_results", "true"), http.Header{"Authorization": {"Token " + testKey}})
		if err != nil {
			t.Fatal(err)
		}
		c.conn.WriteMessage(websocket.BinaryMessage, tone(1))
		<-c.done // idle timeout
		c.conn.Close()
		if !strings.Contains(c.err.Error(), "net0001") {
			t.Errorf("close %v", c.err)
		}
	}()
	leaktest.Wait(t, before)
}

// TestResultsDelay: with service latency, a client that closes right after CloseStream (as
// the Go SDK's Stop does) loses the last results and Metadata; one that reads until the
// close frame gets them all, in order.
func TestResultsDelay(t *testing.T) {
	s := newTestServer(t, Config{Utterances: []string{"late"}, ResultsDelay: 300 * time.Millisecond})
	c := dial(t, s, liveQuery())
	start := time.Now()
	c.sendAudio(concat(tone(1), silence(0.2)), 3200) // the utterance is still open
	c.sendText(`{"type":"CloseStream"}`)
	m := c.next("Results")
	if el := time.Since(start); el < 300*time.Millisecond {
		t.Errorf("first result after %v, delay is 300 ms", el)
	}
	if transcriptOf(m) != "late" {
		t.Errorf("final %v", m)
	}
	ms, err := c.collect()
	if !websocket.IsCloseError(err, 1000) || len(ms) != 1 || ms[0]["type"] != "Metadata" {
		t.Fatalf("%v %v", err, ms)
	}

	// The SDK's way: CloseStream, 100 ms, close.
	c2 := dial(t, s, liveQuery())
	c2.sendAudio(concat(tone(1), silence(0.2)), 3200)
	c2.sendText(`{"type":"CloseStream"}`)
	time.Sleep(100 * time.Millisecond) // paces like the SDK's Stop
	c2.conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""))
	ms, _ = c2.collect()
	if len(ms) != 0 {
		t.Errorf("a client closing early still got %v", ms)
	}
}

func TestMaxStreams(t *testing.T) {
	s := newTestServer(t, Config{MaxStreams: 2})
	dial(t, s, liveQuery())
	c2 := dial(t, s, liveQuery())
	c, err := tryDial(s, liveQuery(), http.Header{"Authorization": {"Token " + testKey}})
	if err == nil || c.resp.StatusCode != 429 {
		t.Fatalf("third stream: %v", err)
	}
	c2.conn.Close()
	if _, err := s.WaitSession(ctxT(t), func(si SessionInfo) bool { return si.Closed }); err != nil {
		t.Fatal(err)
	}
	dial(t, s, liveQuery()).conn.Close()
}

func TestPingDoesNotResetIdle(t *testing.T) {
	s := newTestServer(t, Config{IdleTimeout: 400 * time.Millisecond})
	c := dial(t, s, liveQuery())
	stop := make(chan struct{})
	pinged := make(chan struct{})
	go func() {
		defer close(pinged)
		tk := time.NewTicker(100 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				if c.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(time.Second)) != nil {
					return
				}
			}
		}
	}()
	_, err := c.collect()
	close(stop)
	<-pinged
	if code, reason := closeCode(err); code != 1011 || !strings.Contains(reason, "net0001") {
		t.Fatalf("pings kept the stream open or it closed otherwise: %v", err)
	}
}
