package live

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hark-audio/hark/audio"
	"github.com/hark-audio/hark/dgemu"
	"github.com/hark-audio/hark/internal/leaktest"
	"github.com/hark-audio/hark/transcript"
)

const testKey = "test-key-0123456789"

// gen produces frames with consecutive Seq and capture times, like capture does. skip
// advances the capture clock over audio the gate did not send.
type gen struct {
	seq uint64
	t0  time.Time
}

func newGen() *gen {
	return &gen{t0: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (g *gen) now() time.Time { return g.t0.Add(time.Duration(g.seq) * audio.FrameDuration) }

func (g *gen) skip(d time.Duration) { g.seq += uint64(d / audio.FrameDuration) }

// frames returns n frames of a loud tone (speech to the emulator) or of silence.
func (g *gen) frames(n int, tone bool) []audio.Frame {
	out := make([]audio.Frame, n)
	for i := range out {
		s := make([]int16, audio.FrameSamples)
		if tone {
			for j := range s {
				s[j] = int16(8000 * math.Sin(2*math.Pi*440*float64(j)/audio.SampleRate))
			}
		}
		out[i] = audio.Frame{Seq: g.seq, Time: g.now(), Samples: s}
		g.seq++
	}
	return out
}

// utter is pre silence frames, tone frames, post silence frames: one emulator utterance.
func (g *gen) utter(pre, tone, post int) []audio.Frame {
	f := g.frames(pre, false)
	f = append(f, g.frames(tone, true)...)
	return append(f, g.frames(post, false)...)
}

func feed(u *Uplink, frames []audio.Frame) {
	for _, f := range frames {
		u.Frame(f)
	}
}

// streamOpen starts a segment with frames and waits until the emulator has read them all;
// the segment stays open.
func (h *harness) streamOpen(frames []audio.Frame) {
	h.t.Helper()
	h.u.SegmentStart(frames[0].Time)
	feed(h.u, frames)
	h.waitSession("audio read", func(si dgemu.SessionInfo) bool { return !si.Closed && si.AudioMessages == len(frames) })
}

func feedSegment(u *Uplink, frames []audio.Frame) {
	u.SegmentStart(frames[0].Time)
	feed(u, frames)
	u.SegmentEnd(frames[len(frames)-1].End())
}

// rec records everything the uplink reports and lets a test wait for a condition.
type rec struct {
	mu       sync.Mutex
	changed  chan struct{}
	utts     []transcript.Utterance
	uttAt    []time.Time
	unconf   []Segment
	events   []Event
	states   []State
	interims []string
}

func newRec() *rec { return &rec{changed: make(chan struct{})} }

func (r *rec) touch(f func()) {
	r.mu.Lock()
	f()
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

func (r *rec) handler() Handler {
	return Handler{
		Utterance: func(u transcript.Utterance) {
			r.touch(func() { r.utts = append(r.utts, u); r.uttAt = append(r.uttAt, time.Now()) })
		},
		Interim:     func(text string, _, _ time.Time) { r.touch(func() { r.interims = append(r.interims, text) }) },
		Unconfirmed: func(s Segment) { r.touch(func() { r.unconf = append(r.unconf, s) }) },
		Event:       func(e Event) { r.touch(func() { r.events = append(r.events, e) }) },
		State:       func(s State) { r.touch(func() { r.states = append(r.states, s) }) },
	}
}

// wait blocks until cond (called with r.mu held) is true, or fails the test after 15 s.
func (r *rec) wait(t testing.TB, what string, cond func(r *rec) bool) {
	t.Helper()
	deadline := time.NewTimer(15 * time.Second)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		ok := cond(r)
		ch := r.changed
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			r.mu.Lock()
			defer r.mu.Unlock()
			t.Fatalf("timed out waiting for %s; utterances %q, states %v, events %v", what, r.texts(), r.stateNames(), r.eventTypes())
		}
	}
}

func (r *rec) texts() []string {
	var out []string
	for _, u := range r.utts {
		out = append(out, u.Text)
	}
	return out
}

func (r *rec) stateNames() []string {
	var out []string
	for _, s := range r.states {
		out = append(out, s.State)
	}
	return out
}

func (r *rec) eventTypes() []string {
	var out []string
	for _, e := range r.events {
		out = append(out, e.Type)
	}
	return out
}

// eventsOf returns the events of a type (evs: the same with r.mu held, in wait conditions).
func (r *rec) eventsOf(typ string) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.evs(typ)
}

func (r *rec) evs(typ string) []Event {
	var out []Event
	for _, e := range r.events {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

func (r *rec) snapshot() (utts []transcript.Utterance, unconf []Segment) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]transcript.Utterance(nil), r.utts...), append([]Segment(nil), r.unconf...)
}

// testLogger logs at Debug into a buffer checked at the end of the test for the API key
// (and to stderr with LIVE_TEST_LOG=1).
func testLogger(t testing.TB) *slog.Logger {
	var w io.Writer = &logBuf{}
	lb := w.(*logBuf)
	if os.Getenv("LIVE_TEST_LOG") != "" {
		w = io.MultiWriter(lb, os.Stderr)
	}
	t.Cleanup(func() {
		lb.mu.Lock()
		defer lb.mu.Unlock()
		if bytes.Contains(lb.b.Bytes(), []byte(testKey)) {
			t.Errorf("the API key appears in the log")
		}
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
}

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// harness is an emulator, an uplink running against it and a recorder.
type harness struct {
	t   testing.TB
	srv *dgemu.Server
	u   *Uplink
	r   *rec
	g   *gen
	err chan error
	ctx context.Context
}

func baseConfig(t testing.TB, srv *dgemu.Server) Config {
	q := url0()
	return Config{
		URL: srv.URL(), APIKey: testKey, Options: q,
		// Liveness needs a pong within PongWait: generous on a loaded test machine.
		KeepAlive: time.Second, PingInterval: time.Second, PongWait: 10 * time.Second,
		ConnectTimeout: 3 * time.Second, BackoffMin: 100 * time.Millisecond, BackoffMax: time.Second,
		Logger: testLogger(t),
	}
}

func url0() url.Values {
	return url.Values{
		"model": {"nova-3"}, "language": {"en"}, "punctuate": {"true"}, "smart_format": {"true"},
		"interim_results": {"false"}, "endpointing": {"300"},
	}
}

func newHarness(t testing.TB, ecfg dgemu.Config, mod func(*Config)) *harness {
	t.Helper()
	base := runtime.NumGoroutine()
	if ecfg.APIKey == "" {
		ecfg.APIKey = testKey
	}
	srv := dgemu.NewServer(ecfg)
	cfg := baseConfig(t, srv)
	if mod != nil {
		mod(&cfg)
	}
	h := &harness{t: t, srv: srv, r: newRec(), g: newGen(), err: make(chan error, 1)}
	h.u = New(cfg, h.r.handler())
	ctx, cancel := context.WithCancel(context.Background())
	h.ctx = ctx
	go func() { h.err <- h.u.Run(ctx) }()
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer ccancel()
		if err := h.u.Close(cctx); err != nil {
			t.Errorf("Close: %v", err)
		}
		cancel()
		if err := <-h.err; err != nil && err != context.Canceled {
			t.Errorf("Run: %v", err)
		}
		for _, si := range srv.Sessions() {
			if si.EmptyBinary != 0 {
				t.Errorf("session %s got %d empty binary frames", si.RequestID, si.EmptyBinary)
			}
		}
		srv.Close()
		leaktest.Wait(t, base)
	})
	return h
}

// waitSession waits on the emulator for a session matching ok.
func (h *harness) waitSession(what string, ok func(dgemu.SessionInfo) bool) dgemu.SessionInfo {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	si, err := h.srv.WaitSession(ctx, ok)
	if err != nil {
		h.t.Fatalf("%s: %v (sessions: %+v)", what, err, summarize(h.srv.Sessions()))
	}
	return si
}

func summarize(ss []dgemu.SessionInfo) string {
	var b strings.Builder
	for _, s := range ss {
		fmt.Fprintf(&b, "[%s audio=%d ka=%d fin=%d cs=%d finals=%d close=%d/%d closed=%v] ", s.RequestID[:8],
			s.AudioMessages, s.KeepAlives, s.Finalizes, s.CloseStreams, s.Finals, s.CloseCode, s.ClientCloseCode, s.Closed)
	}
	return b.String()
}

// near fails unless a and b are within tol.
func near(t testing.TB, what string, got, want time.Time, tol time.Duration) {
	t.Helper()
	if d := got.Sub(want); d > tol || d < -tol {
		t.Errorf("%s = %s, want %s ±%s (off by %s)", what, got.Format(transcript.TimeLayout),
			want.Format(transcript.TimeLayout), tol, d)
	}
}

func numGoroutine() int { return runtime.NumGoroutine() }
