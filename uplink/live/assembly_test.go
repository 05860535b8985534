package live

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hark-audio/hark/dgemu"
	"github.com/hark-audio/hark/internal/leaktest"
)

// Interims reach Handler.Interim; an UtteranceEnd publishes the utterance while the
// segment is still open (no Finalize needed).
func TestInterimAndUtteranceEnd(t *testing.T) {
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
	h.r.wait(t, "utterance", func(r *rec) bool { return len(r.utts) == 1 })
	si := h.waitSession("utterance end", func(si dgemu.SessionInfo) bool { return si.UtteranceEnds == 1 })
	utts, _ := h.r.snapshot()
	if utts[0].Text != fixture[0] || si.SpeechFinals != 0 || h.u.Stats().Finalizes != 0 {
		t.Errorf("%q, speech finals %d, finalizes %d", utts[0].Text, si.SpeechFinals, h.u.Stats().Finalizes)
	}
	near(t, "start", utts[0].Start, fr[3].Time, 100*time.Millisecond)
	h.r.mu.Lock()
	n := len(h.r.interims)
	h.r.mu.Unlock()
	if n == 0 {
		t.Error("no interims delivered")
	}
	h.u.SegmentEnd(fr[len(fr)-1].End())
}

// The Finalize at a segment's end gets no answer (the final already covered all audio):
// the finals received are published after FinalizeTimeout.
func TestFinalizeTimeout(t *testing.T) {
	const ft = 600 * time.Millisecond
	h := newHarness(t, dgemu.Config{Utterances: fixture}, func(c *Config) {
		noEndpointing(c)
		c.FinalizeTimeout = ft
	})
	fr := h.g.utter(3, 10, 5)
	h.u.SegmentStart(fr[0].Time)
	feed(h.u, fr)
	h.waitSession("final", func(si dgemu.SessionInfo) bool { return si.Finals == 1 && si.AudioMessages == len(fr) })
	end := time.Now()
	h.u.SegmentEnd(fr[len(fr)-1].End())
	h.r.wait(t, "utterance", func(r *rec) bool { return len(r.utts) == 1 })
	h.r.mu.Lock()
	at := h.r.uttAt[0]
	h.r.mu.Unlock()
	if at.Sub(end) < ft {
		t.Errorf("published %s after the segment end, before the Finalize timeout", at.Sub(end))
	}
	si := h.waitSession("finalize", func(si dgemu.SessionInfo) bool { return si.Finalizes == 1 })
	if si.FromFinalize != 0 {
		t.Errorf("emulator answered the Finalize")
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

// Run's context ends mid-utterance: no graceful close, but the audio not covered by a final
// still goes to Unconfirmed and every goroutine ends.
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

// Close before Run: what was queued goes to Unconfirmed, Run returns at once.
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

// Close while the first stream is still connecting (a short file at start-up): the queued
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
// stop; the audio it did not confirm is handed off.
func TestCloseBounded(t *testing.T) {
	h := newHarness(t, dgemu.Config{Utterances: fixture}, func(c *Config) { c.PingInterval = time.Minute })
	fr := h.g.utter(3, 10, 0)
	h.u.SegmentStart(fr[0].Time)
	feed(h.u, fr)
	h.waitSession("audio", func(si dgemu.SessionInfo) bool { return si.AudioMessages == len(fr) })
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
