package live

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hark-audio/hark/audio"
	"github.com/hark-audio/hark/dgemu"
	"github.com/hark-audio/hark/internal/leaktest"
)

// Interims reach Handler.Interim with capture times; the segment's utterance comes once
// the segment has ended and been answered, whole (an UtteranceEnd inside it publishes
// nothing by itself).
func TestInterimsAndOneUtterancePerSegment(t *testing.T) {
	h := newHarness(t, dgemu.Config{Utterances: fixture}, func(c *Config) {
		c.Options = url0()
		c.Options.Set("interim_results", "true")
		c.Options.Set("utterance_end_ms", "1000")
		c.Options.Set("endpointing", "false")
		c.Interim = true
	})
	fr := h.g.utter(3, 25, 13)
	h.u.SegmentStart(fr[0].Time)
	feed(h.u, fr)
	h.waitSession("utterance end", func(si dgemu.SessionInfo) bool { return si.UtteranceEnds == 1 })
	if u, _ := h.r.snapshot(); len(u) != 0 {
		t.Fatalf("published before the segment ended: %q", u[0].Text)
	}
	h.u.SegmentEnd(fr[len(fr)-1].End())
	h.r.wait(t, "utterance", func(r *rec) bool { return len(r.utts) == 1 })
	utts, _ := h.r.snapshot()
	if utts[0].Text != fixture[0] {
		t.Errorf("%q", utts[0].Text)
	}
	near(t, "start", utts[0].Start, fr[3].Time, 100*time.Millisecond)
	h.r.mu.Lock()
	n := len(h.r.interims)
	h.r.mu.Unlock()
	if n == 0 {
		t.Error("no interims delivered")
	}
}

// SetOptions applies from the next stream on.
func TestSetOptionsNextStream(t *testing.T) {
	h := newHarness(t, dgemu.Config{Utterances: fixture}, func(c *Config) { c.IdleClose = time.Second })
	feedSegment(h.u, h.g.utter(3, 10, 7))
	h.waitSession("first stream", func(si dgemu.SessionInfo) bool { return si.AudioMessages > 0 })
	q := url0()
	q.Add("tag", "second")
	h.u.SetOptions(q)
	h.r.wait(t, "idle close", func(r *rec) bool { return len(r.evs("stream_closed")) == 1 })
	feedSegment(h.u, h.g.utter(3, 10, 7))
	h.r.wait(t, "two utterances", func(r *rec) bool { return len(r.utts) == 2 })
	ss := h.srv.Sessions()
	if len(ss) != 2 || ss[0].Query.Get("tag") != "" || ss[1].Query.Get("tag") != "second" || ss[1].Query.Get("encoding") != "linear16" {
		t.Errorf("queries %v / %v", ss[0].Query, ss[1].Query)
	}
}

// Run's context ends mid-segment: no graceful close, but the segment still goes to
// Unconfirmed whole and every goroutine ends.
func TestRunContextCancelled(t *testing.T) {
	base := numGoroutine()
	srv := dgemu.NewServer(dgemu.Config{Utterances: fixture, APIKey: testKey})
	defer srv.Close()
	r := newRec()
	u := New(baseConfig(t, srv), r.handler())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- u.Run(ctx) }()
	g := newGen()
	fr := g.utter(3, 10, 0)
	u.SegmentStart(fr[0].Time)
	feed(u, fr)
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	if _, err := srv.WaitSession(wctx, func(si dgemu.SessionInfo) bool { return si.AudioMessages == len(fr) }); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v", err)
	}
	_, unconf := r.snapshot()
	if got := frameSeqs(unconf); !equalSeqs(got, seqRange(fr)) {
		t.Errorf("unconfirmed %v", got)
	}
	if err := u.Close(context.Background()); err != nil {
		t.Errorf("Close after Run: %v", err)
	}
	srv.Close()
	leaktest.Wait(t, base)
}

// Close before Run: what was given goes to Unconfirmed, Run returns at once.
func TestCloseBeforeRun(t *testing.T) {
	r := newRec()
	u := New(Config{URL: "ws://127.0.0.1:1/v1/listen", APIKey: testKey}, r.handler())
	fr := newGen().utter(2, 5, 2)
	feedSegment(u, fr)
	if err := u.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := u.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if u.State().State != StateStopped {
		t.Errorf("state %s", u.State().State)
	}
	if _, unconf := r.snapshot(); !equalSeqs(frameSeqs(unconf), seqRange(fr)) {
		t.Errorf("unconfirmed %v", frameSeqs(unconf))
	}
}

// Close while the first stream is still connecting (a short file at start-up): the
// segment is streamed once connected and its transcript arrives before Close returns.
func TestCloseWhileConnecting(t *testing.T) {
	h := newHarness(t, dgemu.Config{Utterances: fixture}, nil)
	h.srv.SetHandshakeDelay(500 * time.Millisecond)
	fr := h.g.utter(3, 10, 3)
	feedSegment(h.u, fr)
	h.r.wait(t, "connecting", func(r *rec) bool { return len(r.states) > 0 && r.states[0].State == StateConnecting })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.u.Close(ctx); err != nil {
		t.Fatal(err)
	}
	utts, unconf := h.r.snapshot()
	if len(utts) != 1 || utts[0].Text != fixture[0] || len(unconf) != 0 {
		t.Fatalf("utterances %d, unconfirmed %d", len(utts), len(unconf))
	}
	near(t, "start", utts[0].Start, fr[3].Time, 100*time.Millisecond)
}

// Close bounded by its context: a service that never answers CloseStream does not hold the
// stop; the segment it did not answer goes to Unconfirmed whole.
func TestCloseBounded(t *testing.T) {
	h := newHarness(t, dgemu.Config{Utterances: fixture}, nil)
	fr := h.g.utter(3, 10, 0)
	h.streamOpen(fr)
	h.srv.StopReading()
	defer h.srv.ResumeReading()
	// The emulator's reader may be waiting in a read already: it reads at most this frame,
	// then stops, so the Finalize and CloseStream behind it are never read.
	last := h.g.frames(1, false)
	feed(h.u, last)
	fr = append(fr, last...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	t0 := time.Now()
	if err := h.u.Close(ctx); err != nil {
		t.Fatalf("Close: %v after %s", err, time.Since(t0))
	}
	_, unconf := h.r.snapshot()
	if got := frameSeqs(unconf); !equalSeqs(got, seqRange(fr)) {
		t.Errorf("unconfirmed %v", got)
	}
	if n := h.u.Stats().Reconnects["close-timeout"]; n != 1 {
		t.Errorf("reconnects %v", h.u.Stats().Reconnects)
	}
}

// A file read faster than real time (Blocking): Frame waits for the connection instead of
// piling audio up, and every segment is streamed live through an emulator that takes audio
// at 1.25x real time.
func TestBlockingFastInput(t *testing.T) {
	h := newHarness(t, dgemu.Config{RealtimeLimit: 1.25}, func(c *Config) {
		c.Blocking = true
		c.BlockAfter = 500 * time.Millisecond
	})
	var all []audio.Frame
	for range 6 {
		fr := h.g.utter(2, 10, 5)
		all = append(all, fr...)
		feedSegment(h.u, fr)
		h.g.skip(time.Second)
	}
	h.r.wait(t, "6 utterances", func(r *rec) bool { return len(r.utts) == 6 })
	if st := h.u.Stats(); st.InputDropped != 0 || st.UnconfirmedSegments != 0 || st.FramesSent != int64(len(all)) {
		t.Errorf("stats %+v", st)
	}
}

// sink is a websocket server that reads and discards everything without allocating per
// frame, so an allocation count over a loopback connection measures the client alone.
func sink(t testing.TB) (url string, frames *atomic.Int64) {
	frames = &atomic.Int64{}
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		nc := ws.NetConn()
		buf := make([]byte, 64<<10)
		need := int64(0)
		for {
			n, err := nc.Read(buf)
			if err != nil {
				return
			}
			// Count whole audio frames: 8 bytes of header (126-length form) + 3200.
			need += int64(n)
			frames.Store(need / (8 + audio.FrameBytes))
		}
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http"), frames
}

// sinkUplink runs an uplink against a sink, with a segment open and the connection up
// (one frame sent). It is stopped when the test ends.
func sinkUplink(tb testing.TB, cfg Config) (u *Uplink, frames *atomic.Int64, f audio.Frame) {
	target, frames := sink(tb)
	cfg.URL, cfg.APIKey, cfg.Options, cfg.Logger = target, testKey, url0(), testLogger(tb)
	u = New(cfg, Handler{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- u.Run(ctx) }()
	tb.Cleanup(func() { cancel(); <-done })
	f = audio.Frame{Time: time.Now(), Samples: make([]int16, audio.FrameSamples)}
	u.SegmentStart(f.Time)
	u.Frame(f)
	for frames.Load() < 1 {
		runtime.Gosched()
	}
	return u, frames, f
}

// The uplink's path for one frame — Frame on the gate's goroutine, the ledger, the
// writer's take, framing, masking and the socket write — allocates nothing.
func TestFrameToSocketAllocs(t *testing.T) {
	u, frames, f := sinkUplink(t, Config{PingInterval: time.Hour, KeepAlive: 5 * time.Second, MaxSegment: time.Hour})
	sent := int64(1)
	push := func() {
		f.Seq++
		f.Time = f.Time.Add(audio.FrameDuration)
		u.Frame(f)
		sent++
		for i := 0; frames.Load() < sent; i++ {
			// Yield until the sink has it: a channel or a sleep would be allocations or
			// timers of the test's own.
			runtime.Gosched()
			if i%100000 == 99999 {
				if st := u.State(); st.State != StateConnected {
					t.Fatalf("uplink %+v", st)
				}
			}
		}
	}
	push()           // connected
	for range 1100 { // the segment's buffer grown (to 2048 frames)
		f.Seq++
		u.Frame(f)
		sent++
	}
	push()
	if allocs := testing.AllocsPerRun(300, push); allocs != 0 {
		t.Errorf("%.2f allocations per frame from Frame to the socket", allocs)
	}
	// AllocsPerRun rounds down: count every allocation of another 100 frames too, those
	// made by the uplink's own code. The process-wide count (MemStats.Mallocs) also takes in
	// what the runtime and the test's sink allocate, which on a loaded machine is not 0
	// (ci-fresh: 7 for 100 frames); a profile of every allocation tells whose each one is.
	defer func(rate int) { runtime.MemProfileRate = rate }(runtime.MemProfileRate)
	runtime.MemProfileRate = 1
	before := uplinkAllocs()
	for range 100 {
		push()
	}
	after := uplinkAllocs()
	var n int64
	for stack, c := range after {
		if d := c - before[stack]; d > 0 {
			n += d
			t.Errorf("%d allocations by the uplink:\n%s", d, stack)
		}
	}
	if n != 0 {
		t.Errorf("%d allocations for 100 frames", n)
	}
}

// uplinkAllocs returns the allocations so far (a memory profile's cumulative counts) by
// stack, for the stacks that pass through this package's own (non-test) code.
func uplinkAllocs() map[string]int64 {
	runtime.GC() // a profile's records are published at the end of a GC cycle
	runtime.GC()
	var recs []runtime.MemProfileRecord
	for n := 256; ; n *= 2 {
		recs = make([]runtime.MemProfileRecord, n)
		if got, ok := runtime.MemProfile(recs, true); ok {
			recs = recs[:got]
			break
		}
	}
	out := map[string]int64{}
	for _, r := range recs {
		var b strings.Builder
		ours := false
		frames := runtime.CallersFrames(r.Stack())
		for {
			f, more := frames.Next()
			if strings.Contains(f.Function, "/uplink/live.") && !strings.HasSuffix(f.File, "_test.go") {
				ours = true
			}
			fmt.Fprintf(&b, "  %s (%s:%d)\n", f.Function, filepath.Base(f.File), f.Line)
			if !more {
				break
			}
		}
		if ours {
			out[b.String()] += r.AllocObjects
		}
	}
	return out
}
