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

var fixture = []string{"Hello there.", "How are you today?", "The quick brown fox jumps.", "Goodbye for now."}

// Three segments separated by long gated silences (not sent): one utterance per segment,
// in order, with the fixture's text, and times mapped back to the capture clock although
// the stream clock jumped over the silences.
func TestNormalRunAndTimeMapping(t *testing.T) {
	h := newHarness(t, dgemu.Config{Utterances: fixture}, nil)
	type seg struct{ toneStart, toneEnd time.Time }
	var segs []seg
	for i := 0; i < 3; i++ {
		fr := h.g.utter(3, 12+4*i, 7)
		segs = append(segs, seg{fr[3].Time, fr[3+12+4*i-1].End()})
		feedSegment(h.u, fr)
		h.g.skip(time.Duration(5+i*7) * time.Second)
	}
	h.r.wait(t, "3 utterances", func(r *rec) bool { return len(r.utts) == 3 })
	h.waitSession("all audio", func(si dgemu.SessionInfo) bool { return si.Finalizes == 3 })
	utts, unconf := h.r.snapshot()
	for i, u := range utts {
		if u.Text != fixture[i] {
			t.Errorf("utterance %d = %q, want %q", i, u.Text, fixture[i])
		}
		if u.Source != "live" || u.RequestID == "" {
			t.Errorf("utterance %d: source %q request id %q", i, u.Source, u.RequestID)
		}
		near(t, "start", u.Start, segs[i].toneStart, 100*time.Millisecond)
		near(t, "end", u.End, segs[i].toneEnd, 100*time.Millisecond)
		for j, w := range u.Words {
			if w.Start.Before(segs[i].toneStart.Add(-100*time.Millisecond)) || w.End.After(segs[i].toneEnd.Add(100*time.Millisecond)) || w.End.Before(w.Start) {
				t.Errorf("utterance %d word %d %q at %s-%s outside its speech", i, j, w.Word, w.Start, w.End)
			}
		}
	}
	if len(unconf) != 0 {
		t.Errorf("unconfirmed audio in a clean run: %d segments", len(unconf))
	}
	ss := h.srv.Sessions()
	if len(ss) != 1 {
		t.Fatalf("%d sessions, want 1 (stream stays open between segments)", len(ss))
	}
	if ss[0].AudioMessages != 3*(3+7)+12+16+20 || ss[0].Finalizes != 3 {
		t.Errorf("session got %d audio messages and %d Finalizes", ss[0].AudioMessages, ss[0].Finalizes)
	}
	if ss[0].AuthMethod != "token" {
		t.Errorf("auth method %q", ss[0].AuthMethod)
	}
	q := ss[0].Query
	if q.Get("encoding") != "linear16" || q.Get("sample_rate") != "16000" || q.Get("channels") != "1" || q.Get("model") != "nova-3" {
		t.Errorf("query %v", q)
	}

	// Graceful stop: CloseStream, Metadata, 1000.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.u.Close(ctx); err != nil {
		t.Fatal(err)
	}
	si := h.waitSession("closed", func(si dgemu.SessionInfo) bool { return si.Closed })
	if si.CloseStreams != 1 || !si.MetadataSent || si.CloseCode != 1000 {
		t.Errorf("close: %+v", summarize([]dgemu.SessionInfo{si}))
	}
	st := h.u.Stats()
	if st.Utterances != 3 || st.Segments != 3 || st.Connects != 1 || st.FramesSent != int64(ss[0].AudioMessages) ||
		len(st.Reconnects) != 0 || st.Replays != 0 || st.UnconfirmedSegments != 0 {
		t.Errorf("stats %+v", st)
	}
	if got := h.u.State().State; got != StateStopped {
		t.Errorf("state after Close = %s", got)
	}
}

// Silence while connected: KeepAlives keep the stream alive past the service's idle
// timeout, so no NET-0001 close.
func TestKeepAliveDuringSilence(t *testing.T) {
	h := newHarness(t, dgemu.Config{Utterances: fixture, IdleTimeout: 2500 * time.Millisecond}, nil)
	feedSegment(h.u, h.g.utter(3, 10, 7))
	h.r.wait(t, "utterance", func(r *rec) bool { return len(r.utts) == 1 })
	si := h.waitSession("5 KeepAlives", func(si dgemu.SessionInfo) bool { return si.KeepAlives >= 5 || si.Closed })
	if si.Closed || si.CloseCode != 0 {
		t.Fatalf("stream closed during silence: %s", summarize([]dgemu.SessionInfo{si}))
	}
	if n := h.u.Stats().KeepAlives; n < 5 {
		t.Errorf("stats count %d keepalives", n)
	}
	// Still usable.
	h.g.skip(10 * time.Second)
	feedSegment(h.u, h.g.utter(3, 10, 7))
	h.r.wait(t, "second utterance", func(r *rec) bool { return len(r.utts) == 2 })
	if n := len(h.srv.Sessions()); n != 1 {
		t.Errorf("%d sessions", n)
	}
}

// After IdleClose without speech the stream is closed gracefully and reopened at the next
// onset; times on the new stream (whose clock restarts at 0) map correctly.
func TestIdleCloseAndReopen(t *testing.T) {
	h := newHarness(t, dgemu.Config{Utterances: fixture}, func(c *Config) { c.IdleClose = 1500 * time.Millisecond })
	feedSegment(h.u, h.g.utter(3, 10, 7))
	h.r.wait(t, "utterance", func(r *rec) bool { return len(r.utts) == 1 })
	h.r.wait(t, "idle close", func(r *rec) bool { return len(r.evs("stream_closed")) == 1 })
	si := h.waitSession("closed", func(si dgemu.SessionInfo) bool { return si.Closed })
	if si.CloseStreams != 1 || si.CloseCode != 1000 {
		t.Errorf("idle close: %s", summarize([]dgemu.SessionInfo{si}))
	}
	if st := h.u.State().State; st != StateIdle {
		t.Errorf("state after idle close = %s", st)
	}
	h.g.skip(30 * time.Second)
	fr := h.g.utter(3, 14, 7)
	feedSegment(h.u, fr)
	h.r.wait(t, "second utterance", func(r *rec) bool { return len(r.utts) == 2 })
	utts, unconf := h.r.snapshot()
	if utts[1].Text != fixture[1] || len(unconf) != 0 {
		t.Errorf("got %q, %d unconfirmed", utts[1].Text, len(unconf))
	}
	near(t, "start after reopen", utts[1].Start, fr[3].Time, 100*time.Millisecond)
	near(t, "end after reopen", utts[1].End, fr[16].End(), 100*time.Millisecond)
	if n := len(h.srv.Sessions()); n != 2 {
		t.Errorf("%d sessions, want 2", n)
	}
	st := h.u.Stats()
	if st.IdleCloses != 1 || len(st.Reconnects) != 0 {
		t.Errorf("stats %+v", st)
	}
}

// Close in the middle of an utterance: the segment is ended, CloseStream flushes it and
// the final transcript still arrives before Close returns.
func TestCloseMidUtterance(t *testing.T) {
	h := newHarness(t, dgemu.Config{Utterances: fixture}, nil)
	fr := h.g.utter(3, 15, 0)
	h.streamOpen(fr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.u.Close(ctx); err != nil {
		t.Fatal(err)
	}
	utts, unconf := h.r.snapshot()
	if len(utts) != 1 || utts[0].Text != fixture[0] {
		t.Fatalf("utterances %q", h.r.texts())
	}
	near(t, "end", utts[0].End, fr[17].End(), 100*time.Millisecond)
	if len(unconf) != 0 {
		t.Errorf("%d unconfirmed segments", len(unconf))
	}
	si := h.srv.Sessions()[0]
	if si.CloseStreams != 1 {
		t.Errorf("CloseStream not sent: %s", summarize([]dgemu.SessionInfo{si}))
	}
	// Audio after Close is refused, not queued.
	h.u.Frame(fr[0])
	if h.u.Stats().InputDropped != 1 {
		t.Errorf("frame after Close not counted as dropped")
	}
}

// An empty frame from capture never becomes an (end-of-stream) empty binary message.
func TestNeverEmptyFrame(t *testing.T) {
	h := newHarness(t, dgemu.Config{Utterances: fixture}, nil)
	fr := h.g.utter(3, 10, 7)
	h.u.SegmentStart(fr[0].Time)
	for i, f := range fr {
		h.u.Frame(f)
		if i == 5 {
			h.u.Frame(audio.Frame{Seq: 999, Time: f.Time})
		}
	}
	h.u.SegmentEnd(fr[len(fr)-1].End())
	h.r.wait(t, "utterance", func(r *rec) bool { return len(r.utts) == 1 })
	si := h.waitSession("all audio", func(si dgemu.SessionInfo) bool { return si.Finalizes == 1 })
	if si.EmptyBinary != 0 || si.AudioMessages != len(fr) {
		t.Errorf("session: %d empty, %d audio", si.EmptyBinary, si.AudioMessages)
	}
	if n := h.u.Stats().EmptyFramesSkipped; n != 1 {
		t.Errorf("empty frames skipped = %d", n)
	}
}

func refusedCases() []struct {
	name   string
	status int
} {
	return []struct {
		name   string
		status int
	}{{"401", http.StatusUnauthorized}, {"403", http.StatusForbidden}, {"402", http.StatusPaymentRequired}, {"400", http.StatusBadRequest}}
}

// Configuration/account refusals: state "refused" with the service's message, the segment
// goes to Unconfirmed whole (the retry is a probe: nothing waits for it), no retry before
// RefusedRetry, then recovery.
func TestRefusedHandshake(t *testing.T) {
	for _, tc := range refusedCases() {
		t.Run(tc.name, func(t *testing.T) {
			const retry = 1500 * time.Millisecond
			h := newHarness(t, dgemu.Config{Utterances: fixture}, func(c *Config) { c.RefusedRetry = retry })
			h.srv.RefuseHandshakes(dgemu.Refusal{Status: tc.status, Message: "nope " + tc.name})
			fr := h.g.utter(3, 10, 7)
			feedSegment(h.u, fr)
			h.r.wait(t, "refused state", func(r *rec) bool {
				n := len(r.states)
				return n > 0 && r.states[n-1].State == StateRefused
			})
			h.r.wait(t, "whole segment unconfirmed", func(r *rec) bool { return len(r.unconf) == 1 })
			st := h.u.State()
			if !strings.Contains(st.LastError, "nope "+tc.name) || st.RequestID == "" || st.RetryAt.IsZero() {
				t.Errorf("state %+v", st)
			}
			if strings.Contains(st.LastError, testKey) {
				t.Error("key in state")
			}
			_, unconf := h.r.snapshot()
			if len(unconf[0].Frames) != len(fr) || !unconf[0].Start.Equal(fr[0].Time) || unconf[0].Reason != "refused" {
				t.Errorf("unconfirmed %d frames from %s (%s)", len(unconf[0].Frames), unconf[0].Start, unconf[0].Reason)
			}
			ev := h.r.eventsOf("stream_refused")
			if len(ev) != 1 || ev[0].Attrs["status"] != tc.status {
				t.Errorf("events %+v", ev)
			}
			refusedAt := ev[0].At
			// A segment during the refusal window is not streamed and causes no attempt.
			h.g.skip(time.Second)
			fr2 := h.g.utter(3, 10, 7)
			feedSegment(h.u, fr2)
			h.r.wait(t, "second segment unconfirmed", func(r *rec) bool { return len(r.unconf) == 2 })
			if n := h.u.Stats().ConnectFailures; n != 1 {
				t.Errorf("%d connection attempts during the refusal window", n)
			}
			// After the window the next onset connects.
			// The window is the behaviour under test: let it pass.
			<-time.After(time.Until(refusedAt.Add(retry)))
			h.g.skip(time.Second)
			feedSegment(h.u, h.g.utter(3, 10, 7))
			h.r.wait(t, "utterance after recovery", func(r *rec) bool { return len(r.utts) == 1 })
			op := h.r.eventsOf("stream_opened")
			if len(op) != 1 || op[0].At.Sub(refusedAt) < retry {
				t.Errorf("reconnected %s after the refusal, want >= %s", op[0].At.Sub(refusedAt), retry)
			}
			if st := h.u.State(); st.State != StateConnected {
				t.Errorf("state after recovery %+v", st)
			}
		})
	}
}
