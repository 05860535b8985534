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

// An abrupt TCP drop in the middle of a segment: the final the dead connection had sent
// for it is thrown away, the whole segment is replayed on a new connection, from its first
// frame, and comes out as one utterance from that connection, once. Nothing is spooled.
func TestTCPDropMidSegmentReplaysWhole(t *testing.T) {
	h := newHarness(t, dgemu.Config{Utterances: fixture}, noEndpointing)
	// One segment: utterance 1 (0.3 s silence, 1 s tone, 0.7 s silence), then the start of
	// utterance 2 (0.5 s tone) when the connection drops.
	partA := append(h.g.utter(3, 10, 7), h.g.frames(5, true)...)
	h.u.SegmentStart(partA[0].Time)
	feed(h.u, partA)
	// The emulator sends utterance 1's final (endpointing off: not speech_final) once 0.5 s
	// of silence followed it.
	h.waitSession("final sent and all audio read", func(si dgemu.SessionInfo) bool {
		return si.Finals == 1 && si.AudioMessages == len(partA)
	})
	h.srv.DropSessions()
	h.r.wait(t, "stream lost", func(r *rec) bool { return len(r.evs("stream_closed")) == 1 })
	partB := append(h.g.frames(5, true), h.g.frames(7, false)...)
	feed(h.u, partB)
	h.u.SegmentEnd(partB[len(partB)-1].End())
	h.r.wait(t, "the utterance", func(r *rec) bool { return len(r.utts) == 1 })
	utts, unconf := h.r.snapshot()
	ss := h.srv.Sessions()
	if len(ss) != 2 || ss[1].AudioMessages != len(partA)+len(partB) {
		t.Fatalf("sessions %s: want the whole segment (%d frames) on the second", summarize(ss), len(partA)+len(partB))
	}
	// The first session's final (fixture[0]) is discarded; the second connection
	// transcribes the whole segment (the emulator's server-wide cursor had given fixture[1]
	// to the utterance cut by the drop, so the replay gets the next two lines).
	if want := fixture[2] + " " + fixture[3]; utts[0].Text != want || utts[0].RequestID != ss[1].RequestID {
		t.Errorf("utterance %q from %s, want %q from the second connection", utts[0].Text, utts[0].RequestID, want)
	}
	near(t, "start", utts[0].Start, partA[3].Time, 100*time.Millisecond)
	near(t, "end", utts[0].End, partB[4].End(), 100*time.Millisecond)
	if len(unconf) != 0 {
		t.Errorf("%d segments spooled", len(unconf))
	}
	st := h.u.Stats()
	if st.Reconnects["dropped"] != 1 || st.Replays != 1 || st.Utterances != 1 {
		t.Errorf("stats %+v", st)
	}
	// Nothing more comes: the utterance was published once.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.u.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(h.r.texts()); n != 1 {
		t.Errorf("%d utterances after Close", n)
	}
}

// Server-side closes in the middle of a segment (NET-0000, NET-0001, DATA-0000, other): the
// cause is classified and counted, and the segment is replayed whole on a new connection.
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
			h.streamOpen(partA)
			h.srv.CloseSessions(tc.code, tc.reason)
			h.r.wait(t, "stream closed", func(r *rec) bool { return len(r.evs("stream_closed")) == 1 })
			ev := h.r.eventsOf("stream_closed")[0]
			if ev.Attrs["cause"] != tc.cause || ev.Attrs["code"] != tc.code || ev.Attrs["reason"] != tc.reason || ev.Attrs["request_id"] == "" {
				t.Errorf("closed event %+v", ev.Attrs)
			}
			if tc.event != "" && len(h.r.eventsOf(tc.event)) != 1 {
				t.Errorf("no %s event", tc.event)
			}
			// The service closed with a close frame: it is alive, so it gets one back.
			if si := h.waitSession("the first session over", func(si dgemu.SessionInfo) bool { return si.Closed }); si.ClientCloseCode != 1000 {
				t.Errorf("client close code %d, want a close frame (1000) in reply", si.ClientCloseCode)
			}
			partB := append(h.g.frames(5, true), h.g.frames(7, false)...)
			feed(h.u, partB)
			h.u.SegmentEnd(partB[len(partB)-1].End())
			h.r.wait(t, "utterance on the new stream", func(r *rec) bool { return len(r.utts) == 1 })
			utts, unconf := h.r.snapshot()
			near(t, "start", utts[0].Start, partA[3].Time, 100*time.Millisecond)
			if len(unconf) != 0 {
				t.Errorf("%d segments spooled", len(unconf))
			}
			if si := h.srv.Sessions()[1]; si.AudioMessages != len(partA)+len(partB) {
				t.Errorf("second session got %d frames, want the whole segment", si.AudioMessages)
			}
			if n := h.u.Stats().Reconnects[tc.cause]; n != 1 {
				t.Errorf("reconnects %v", h.u.Stats().Reconnects)
			}
		})
	}
}

// 429 honours Retry-After, capped; the segment waits (shorter than MaxWait) and is
// streamed live.
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
			utts, unconf := h.r.snapshot()
			if len(unconf) != 0 {
				t.Errorf("segment spooled instead of waiting")
			}
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

// Nothing listening: the next attempt is later than MaxWait, so the segment goes to the
// spool whole at once, and so does one spoken during the backoff, without an attempt.
func TestNetworkDown(t *testing.T) {
	srv := dgemu.NewServer(dgemu.Config{})
	addr := srv.URL()
	srv.Close()
	r := newRec()
	cfg := Config{URL: addr, APIKey: testKey, Options: url0(), BackoffMin: 10 * time.Second, BackoffMax: 20 * time.Second,
		MaxWait: 2 * time.Second, Logger: testLogger(t)}
	u := New(cfg, r.handler())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- u.Run(ctx) }()
	g := newGen()
	fr := g.utter(3, 10, 7)
	feedSegment(u, fr)
	r.wait(t, "segment spooled after the failed connect", func(r *rec) bool { return len(r.unconf) == 1 })
	if _, unconf := r.snapshot(); !equalSeqs(frameSeqs(unconf), seqRange(fr)) || unconf[0].Reason != "backoff" {
		t.Errorf("unconfirmed %d frames, %q", len(unconf[0].Frames), unconf[0].Reason)
	}
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

// A peer that stops answering pings (half-open TCP) is found by the pong deadline and
// replaced; a segment in flight on it is replayed whole on the next connection.
func TestHalfOpen(t *testing.T) {
	h := newHarness(t, dgemu.Config{Utterances: fixture}, func(c *Config) {
		c.PingInterval = 200 * time.Millisecond
		c.PongWait = 600 * time.Millisecond
	})
	feedSegment(h.u, h.g.utter(3, 10, 7))
	h.r.wait(t, "utterance", func(r *rec) bool { return len(r.utts) == 1 })
	h.waitSession("finalize answered", func(si dgemu.SessionInfo) bool { return si.FromFinalize == 1 })
	h.srv.StopReading()
	fr := h.g.utter(3, 10, 7)
	feedSegment(h.u, fr)
	h.r.wait(t, "stream dropped", func(r *rec) bool { return len(r.evs("stream_closed")) == 1 })
	h.srv.ResumeReading()
	if n := h.u.Stats().Reconnects["half-open"]; n != 1 {
		t.Errorf("reconnects %v, closed %+v", h.u.Stats().Reconnects, h.r.eventsOf("stream_closed")[0].Attrs)
	}
	h.r.wait(t, "the second segment, replayed", func(r *rec) bool { return len(r.utts) == 2 })
	utts, unconf := h.r.snapshot()
	if len(unconf) != 0 || utts[1].RequestID != h.srv.Sessions()[1].RequestID {
		t.Errorf("%d spooled; second utterance from %s", len(unconf), utts[1].RequestID)
	}
	near(t, "start", utts[1].Start, fr[3].Time, 100*time.Millisecond)
}

// A service that sends nothing for silence and leaves Finalize unanswered is healthy:
// long silences and unanswered Finalizes cost no reconnect, every segment is published
// once and whole (after the grace and a probe), all on one connection.
func TestQuietServiceIsHealthy(t *testing.T) {
	h := newHarness(t, dgemu.Config{Utterances: fixture, Quiet: dgemu.Modes["quiet"]}, func(c *Config) {
		c.FinalizeGrace = 300 * time.Millisecond
	})
	var ended []time.Time
	for i := range 3 {
		feedSegment(h.u, h.g.utter(3, 10+2*i, 10)) // a hangover longer than the endpointing
		ended = append(ended, time.Now())
		h.r.wait(t, "utterance", func(r *rec) bool { return len(r.utts) == i+1 })
		h.g.skip(20 * time.Second)
	}
	si := h.waitSession("3 Finalizes", func(si dgemu.SessionInfo) bool { return si.Finalizes == 3 })
	if si.FromFinalize != 0 {
		t.Fatalf("the emulator answered %d Finalizes: not the quiet service", si.FromFinalize)
	}
	h.r.mu.Lock()
	for i, at := range h.r.uttAt {
		if d := at.Sub(ended[i]); d < 300*time.Millisecond {
			t.Errorf("utterance %d published %s after its end, before the grace", i, d)
		}
	}
	h.r.mu.Unlock()
	utts, unconf := h.r.snapshot()
	for i, u := range utts {
		if u.Text != fixture[i] {
			t.Errorf("utterance %d %q, want %q", i, u.Text, fixture[i])
		}
	}
	st := h.u.Stats()
	if len(h.srv.Sessions()) != 1 || len(st.Reconnects) != 0 || len(unconf) != 0 || st.GraceCompleted != 3 {
		t.Errorf("sessions %d, stats %+v, spooled %d", len(h.srv.Sessions()), st, len(unconf))
	}
}

// The service stops reading: the writer's write deadline finds the dead connection; every
// frame ends up exactly once, on a later connection or in a spooled segment.
func TestServiceStopsReading(t *testing.T) {
	h := newHarness(t, dgemu.Config{Utterances: fixture}, func(c *Config) {
		c.WriteTimeout = 500 * time.Millisecond
		c.PongWait = time.Minute // the write deadline must find it
	})
	fr := h.g.frames(1, false)
	h.u.SegmentStart(fr[0].Time)
	h.u.Frame(fr[0])
	h.waitSession("connected", func(si dgemu.SessionInfo) bool { return si.AudioMessages == 1 })
	h.srv.StopReading()
	// Enough audio to fill the kernel's socket buffers (silence frames share one buffer).
	zero := make([]int16, audio.FrameSamples)
	total := 1
	for ; total < 20000; total++ {
		h.u.Frame(audio.Frame{Seq: h.g.seq, Time: h.g.now(), Samples: zero})
		h.g.seq++
	}
	h.r.wait(t, "write timeout", func(r *rec) bool { return len(r.evs("stream_closed")) >= 1 })
	h.u.SegmentEnd(h.g.now())
	h.srv.ResumeReading()
	if ev := h.r.eventsOf("stream_closed")[0]; ev.Attrs["cause"] != "write-timeout" {
		t.Fatalf("closed: %+v", ev.Attrs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
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
	if len(seen)+later != total {
		t.Errorf("%d spooled + %d streamed later != %d frames", len(seen), later, total)
	}
}

// A slow handshake: frames wait while connecting (the pre-roll covers it) and are sent in
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

// Connecting takes longer than MaxWait: the segment goes to the spool whole, and is not
// sent on the connection that opens later.
func TestConnectSlowerThanMaxWait(t *testing.T) {
	h := newHarness(t, dgemu.Config{Utterances: fixture}, func(c *Config) { c.MaxWait = 300 * time.Millisecond })
	h.srv.SetHandshakeDelay(time.Second)
	fr := h.g.utter(3, 15, 7)
	feedSegment(h.u, fr)
	h.r.wait(t, "spooled", func(r *rec) bool { return len(r.unconf) == 1 })
	if _, unconf := h.r.snapshot(); !equalSeqs(frameSeqs(unconf), seqRange(fr)) || unconf[0].Reason != "no connection" {
		t.Errorf("unconfirmed %v (%s)", frameSeqs(unconf), unconf[0].Reason)
	}
	h.r.wait(t, "the connection", func(r *rec) bool { return len(r.evs("stream_opened")) == 1 })
	h.srv.SetHandshakeDelay(0)
	fr2 := h.g.utter(3, 10, 7)
	feedSegment(h.u, fr2)
	h.r.wait(t, "the next segment, live", func(r *rec) bool { return len(r.utts) == 1 })
	if n := h.srv.Sessions()[0].AudioMessages; n != len(fr2) {
		t.Errorf("the connection got %d frames, want only the second segment's %d", n, len(fr2))
	}
}
