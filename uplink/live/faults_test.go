package live

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hark-audio/hark/audio"
	"github.com/hark-audio/hark/dgemu"
)

func noEndpointing(c *Config) {
	c.Options = url0()
	c.Options.Set("endpointing", "false")
}

func frameSeqs(segs []Segment) []uint64 {
	var out []uint64
	for _, s := range segs {
		for i, f := range s.Frames {
			if i == 0 && !s.Start.Equal(f.Time) {
				panic("segment start is not its first frame's time")
			}
			out = append(out, f.Seq)
		}
	}
	return out
}

func seqRange(frames []audio.Frame) []uint64 {
	var out []uint64
	for _, f := range frames {
		out = append(out, f.Seq)
	}
	return out
}

func equalSeqs(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// An abrupt TCP drop in the middle of an utterance: the final already received is
// published, exactly the audio it does not cover goes to Unconfirmed, the segment goes on
// over a new connection, and nothing is published twice.
func TestTCPDropMidUtterance(t *testing.T) {
	h := newHarness(t, dgemu.Config{Utterances: fixture}, noEndpointing)
	// One segment: utterance 1 (0.3 s silence, 1 s tone, 0.7 s silence), then the start of
	// utterance 2 (0.5 s tone) when the connection drops.
	partA := append(h.g.utter(3, 10, 7), h.g.frames(5, true)...)
	h.u.SegmentStart(partA[0].Time)
	feed(h.u, partA)
	// The emulator sends utterance 1's final (not speech_final: endpointing is off) once
	// 0.5 s of silence followed it, covering [0, 1.8 s).
	h.waitSession("final sent and all audio read", func(si dgemu.SessionInfo) bool {
		return si.Finals == 1 && si.AudioMessages == len(partA)
	})
	if u, _ := h.r.snapshot(); len(u) != 0 {
		t.Fatalf("utterance published before its end: %q", u[0].Text)
	}
	h.srv.DropSessions()
	h.r.wait(t, "stream lost", func(r *rec) bool { return len(r.evs("stream_closed")) == 1 })
	utts, unconf := h.r.snapshot()
	if len(utts) != 1 || utts[0].Text != fixture[0] {
		t.Fatalf("received final not published at the drop: %q", h.r.texts())
	}
	// Frames 18.. (from 1.8 s) are not covered by the final.
	if got, want := frameSeqs(unconf), seqRange(partA[18:]); !equalSeqs(got, want) {
		t.Errorf("unconfirmed frames %v, want %v", got, want)
	}
	near(t, "unconfirmed start", unconf[0].Start, partA[18].Time, 0)

	// The segment goes on; its rest is streamed on a new connection.
	partB := append(h.g.frames(5, true), h.g.frames(7, false)...)
	feed(h.u, partB)
	h.u.SegmentEnd(partB[len(partB)-1].End())
	h.r.wait(t, "second utterance", func(r *rec) bool { return len(r.utts) == 2 })
	utts, unconf = h.r.snapshot()
	// The dropped session had taken fixture[1] for the cut utterance (it is in the spool).
	if utts[1].Text != fixture[2] {
		t.Errorf("second utterance %q, want %q", utts[1].Text, fixture[2])
	}
	near(t, "start on the new connection", utts[1].Start, partB[0].Time, 100*time.Millisecond)
	near(t, "end on the new connection", utts[1].End, partB[4].End(), 100*time.Millisecond)
	if len(frameSeqs(unconf)) != len(partA)-18 {
		t.Errorf("more audio unconfirmed after the reconnect: %d segments", len(unconf))
	}
	ss := h.srv.Sessions()
	if len(ss) != 2 || ss[1].AudioMessages != len(partB) {
		t.Errorf("sessions: %s", summarize(ss))
	}
	if n := h.u.Stats().Reconnects["dropped"]; n != 1 {
		t.Errorf("reconnects %v", h.u.Stats().Reconnects)
	}
}

// Server-side closes mid-stream: NET-0000 (no transcript in its window) and 1008 DATA-0000.
func TestServerCloseMidStream(t *testing.T) {
	for _, tc := range []struct {
		name, cause, event string
		code               int
		reason             string
	}{
		{"NET-0000", "net-0000", "", 1011, dgemu.ReasonNET0000},
		{"NET-0001", "net-0001", "", 1011, dgemu.ReasonNET0001},
		{"DATA-0000", "data-0000", "audio_rejected", 1008, dgemu.ReasonDATA0000},
		{"other", "close-1011", "", 1011, "something else"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, dgemu.Config{Utterances: fixture}, nil)
			partA := append(h.g.frames(3, false), h.g.frames(10, true)...)
			h.u.SegmentStart(partA[0].Time)
			feed(h.u, partA)
			h.waitSession("audio read", func(si dgemu.SessionInfo) bool { return si.AudioMessages == len(partA) })
			h.srv.CloseSessions(tc.code, tc.reason)
			h.r.wait(t, "stream closed", func(r *rec) bool { return len(r.evs("stream_closed")) == 1 })
			_, unconf := h.r.snapshot()
			if got := frameSeqs(unconf); !equalSeqs(got, seqRange(partA)) {
				t.Errorf("unconfirmed %v", got)
			}
			ev := h.r.eventsOf("stream_closed")[0]
			if ev.Attrs["cause"] != tc.cause || ev.Attrs["code"] != tc.code || ev.Attrs["reason"] != tc.reason || ev.Attrs["request_id"] == "" {
				t.Errorf("closed event %+v", ev.Attrs)
			}
			if tc.event != "" && len(h.r.eventsOf(tc.event)) != 1 {
				t.Errorf("no %s event", tc.event)
			}
			// Reconnect and carry on.
			partB := append(h.g.frames(5, true), h.g.frames(7, false)...)
			feed(h.u, partB)
			h.u.SegmentEnd(partB[len(partB)-1].End())
			h.r.wait(t, "utterance on the new stream", func(r *rec) bool { return len(r.utts) == 1 })
			utts, _ := h.r.snapshot()
			near(t, "start", utts[0].Start, partB[0].Time, 100*time.Millisecond)
			if n := h.u.Stats().Reconnects[tc.cause]; n != 1 {
				t.Errorf("reconnects %v", h.u.Stats().Reconnects)
			}
		})
	}
}

// 429 honours Retry-After, capped; the segment waits in the backlog and is streamed live.
func TestTooManyRequests(t *testing.T) {
	for _, tc := range []struct {
		name       string
		retryAfter string
		max        time.Duration
		want       time.Duration
	}{
		{"capped", "30", time.Second, time.Second},
		{"honoured", "1", time.Minute, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, dgemu.Config{Utterances: fixture}, func(c *Config) { c.RetryAfterMax = tc.max })
			h.srv.RefuseHandshakes(dgemu.Refusal{Status: http.StatusTooManyRequests, RetryAfter: tc.retryAfter})
			fr := h.g.utter(3, 10, 7)
			feedSegment(h.u, fr)
			h.r.wait(t, "utterance", func(r *rec) bool { return len(r.utts) == 1 })
			ref := h.r.eventsOf("stream_refused")
			op := h.r.eventsOf("stream_opened")
			if len(ref) != 1 || ref[0].Attrs["status"] != 429 || ref[0].Attrs["retry_in_s"] != tc.want.Seconds() {
				t.Fatalf("refused events %+v", ref)
			}
			if d := op[0].At.Sub(ref[0].At); d < tc.want {
				t.Errorf("retried after %s, want >= %s", d, tc.want)
			}
			_, unconf := h.r.snapshot()
			if len(unconf) != 0 {
				t.Errorf("segment spooled instead of waiting")
			}
			utts, _ := h.r.snapshot()
			near(t, "start", utts[0].Start, fr[3].Time, 100*time.Millisecond)
			if !h.r.hasState(StateBackoff) {
				t.Errorf("states %v", h.r.stateNames())
			}
		})
	}
}

func (r *rec) hasState(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.states {
		if s.State == name {
			return true
		}
	}
	return false
}

// 503 and a network failure are transient: quick retries with backoff, then the segment
// is streamed.
func TestTransientFailures(t *testing.T) {
	h := newHarness(t, dgemu.Config{Utterances: fixture}, nil)
	h.srv.RefuseHandshakes(dgemu.Refusal{Status: 503}, dgemu.Refusal{Status: 503})
	fr := h.g.utter(3, 10, 7)
	feedSegment(h.u, fr)
	h.r.wait(t, "utterance", func(r *rec) bool { return len(r.utts) == 1 })
	if n := len(h.r.eventsOf("stream_refused")); n != 2 {
		t.Errorf("%d refusals", n)
	}
	_, unconf := h.r.snapshot()
	if len(unconf) != 0 {
		t.Errorf("segment spooled")
	}
	if !h.r.hasState(StateBackoff) || h.r.hasState(StateRefused) {
		t.Errorf("states %v", h.r.stateNames())
	}
	h.r.mu.Lock()
	var sawErr bool
	for _, s := range h.r.states {
		sawErr = sawErr || strings.Contains(s.LastError, "503")
	}
	h.r.mu.Unlock()
	if !sawErr {
		t.Error("503 not visible in state")
	}
}

// Nothing listening: network errors back off; a long backoff sends speech to the spool.
func TestNetworkDown(t *testing.T) {
	srv := dgemu.NewServer(dgemu.Config{})
	addr := srv.URL()
	srv.Close()
	r := newRec()
	cfg := Config{URL: addr, APIKey: testKey, Options: url0(), BackoffMin: 10 * time.Second, BackoffMax: 20 * time.Second,
		MaxBacklog: 2 * time.Second, Logger: testLogger(t)}
	u := New(cfg, r.handler())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- u.Run(ctx) }()
	g := newGen()
	fr := g.utter(3, 10, 7)
	feedSegment(u, fr)
	r.wait(t, "segment spooled after the failed connect", func(r *rec) bool { return len(r.unconf) == 1 })
	if _, unconf := r.snapshot(); len(unconf[0].Frames) != len(fr) || unconf[0].Reason != "backoff" {
		t.Errorf("unconfirmed %d frames, %q", len(unconf[0].Frames), unconf[0].Reason)
	}
	// During the backoff a new segment is spooled whole at its end without an attempt.
	g.skip(time.Second)
	fr2 := g.utter(3, 10, 7)
	feedSegment(u, fr2)
	r.wait(t, "second segment spooled", func(r *rec) bool { return len(r.unconf) == 2 })
	if n := u.Stats().ConnectFailures; n != 1 {
		t.Errorf("%d attempts", n)
	}
	cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer ccancel()
	if err := u.Close(cctx); err != nil {
		t.Fatal(err)
	}
	<-done
}

// A connection whose peer stops answering pings (half-open TCP) is replaced.
func TestHalfOpen(t *testing.T) {
	h := newHarness(t, dgemu.Config{Utterances: fixture}, func(c *Config) { c.PingInterval = 200 * time.Millisecond })
	feedSegment(h.u, h.g.utter(3, 10, 7))
	h.r.wait(t, "utterance", func(r *rec) bool { return len(r.utts) == 1 })
	h.waitSession("finalize answered", func(si dgemu.SessionInfo) bool { return si.FromFinalize == 1 })
	h.srv.StopReading()
	defer h.srv.ResumeReading()
	h.r.wait(t, "stream dropped", func(r *rec) bool { return len(r.evs("stream_closed")) == 1 })
	if n := h.u.Stats().Reconnects["half-open"]; n != 1 {
		t.Errorf("reconnects %v, closed %+v", h.u.Stats().Reconnects, h.r.eventsOf("stream_closed")[0].Attrs)
	}
	_, unconf := h.r.snapshot()
	if len(unconf) != 0 {
		t.Errorf("confirmed audio handed off: %d", len(unconf))
	}
}

// Audio sent and nothing at all back for ResultTimeout: the connection is dead.
func TestResultTimeout(t *testing.T) {
	h := newHarness(t, dgemu.Config{Utterances: fixture}, func(c *Config) {
		c.PingInterval = time.Minute
		c.ResultTimeout = time.Second
	})
	fr := h.g.frames(3, true)
	h.u.SegmentStart(fr[0].Time)
	h.u.Frame(fr[0])
	h.waitSession("connected", func(si dgemu.SessionInfo) bool { return si.AudioMessages == 1 })
	h.srv.StopReading()
	defer h.srv.ResumeReading()
	feed(h.u, fr[1:])
	h.r.wait(t, "stream dropped", func(r *rec) bool { return len(r.evs("stream_closed")) == 1 })
	if n := h.u.Stats().Reconnects["result-timeout"]; n != 1 {
		t.Errorf("reconnects %v", h.u.Stats().Reconnects)
	}
	_, unconf := h.r.snapshot()
	if got := frameSeqs(unconf); !equalSeqs(got, seqRange(fr)) {
		t.Errorf("unconfirmed %v", got)
	}
}

// The service stops reading: the writer blocks, its queue overflows, the connection is
// treated as dead, and every frame ends up either on a later stream or in Unconfirmed,
// exactly once.
func TestWriteQueueOverflow(t *testing.T) {
	h := newHarness(t, dgemu.Config{Utterances: fixture}, func(c *Config) {
		c.WriteQueue = 5
		c.InputQueue = 10000
		c.WriteTimeout = time.Minute
	})
	fr := h.g.frames(1, false)
	h.u.SegmentStart(fr[0].Time)
	h.u.Frame(fr[0])
	h.waitSession("connected", func(si dgemu.SessionInfo) bool { return si.AudioMessages == 1 })
	h.srv.StopReading()
	more := h.g.frames(4000, false)
	feed(h.u, more)
	h.r.wait(t, "overflow", func(r *rec) bool { return len(r.evs("stream_closed")) >= 1 })
	h.u.SegmentEnd(more[len(more)-1].End())
	h.srv.ResumeReading()
	ev := h.r.eventsOf("stream_closed")[0]
	if ev.Attrs["cause"] != "queue-overflow" {
		t.Fatalf("closed: %+v", ev.Attrs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.u.Close(ctx); err != nil {
		t.Fatal(err)
	}
	_, unconf := h.r.snapshot()
	seen := map[uint64]bool{}
	for _, s := range frameSeqs(unconf) {
		if seen[s] {
			t.Fatalf("frame %d handed off twice", s)
		}
		seen[s] = true
	}
	later := 0
	for _, si := range h.srv.Sessions()[1:] {
		later += si.AudioMessages
	}
	if len(seen)+later != 4001 {
		t.Errorf("%d unconfirmed + %d streamed later != 4001 frames", len(seen), later)
	}
}

// A slow handshake: frames queue while connecting (the pre-roll covers it) and are sent in
// order once connected; times still map exactly.
func TestSlowHandshakeBacklog(t *testing.T) {
	h := newHarness(t, dgemu.Config{Utterances: fixture}, nil)
	h.srv.SetHandshakeDelay(700 * time.Millisecond)
	fr := h.g.utter(3, 10, 7)
	feedSegment(h.u, fr)
	h.r.wait(t, "utterance", func(r *rec) bool { return len(r.utts) == 1 })
	utts, unconf := h.r.snapshot()
	if utts[0].Text != fixture[0] || len(unconf) != 0 {
		t.Errorf("%q, %d unconfirmed", utts[0].Text, len(unconf))
	}
	near(t, "start", utts[0].Start, fr[3].Time, 100*time.Millisecond)
}

// Connecting takes longer than MaxBacklog allows: the segment goes to Unconfirmed whole.
func TestBacklogOverflow(t *testing.T) {
	h := newHarness(t, dgemu.Config{Utterances: fixture}, func(c *Config) { c.MaxBacklog = time.Second })
	h.srv.SetHandshakeDelay(time.Second)
	fr := h.g.utter(3, 15, 7)
	feedSegment(h.u, fr)
	h.r.wait(t, "spooled", func(r *rec) bool { return len(r.unconf) == 1 })
	if _, unconf := h.r.snapshot(); !equalSeqs(frameSeqs(unconf), seqRange(fr)) {
		got := frameSeqs(unconf)
		t.Errorf("unconfirmed %v", got)
	}
}
