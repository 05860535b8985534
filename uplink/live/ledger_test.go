package live

import (
	"slices"
	"testing"
	"time"

	"github.com/hark-audio/hark/audio"
)

// The ledger's rules, one table entry each (the rules are numbered in ledger.go). Each
// scenario drives the ledger as the supervisor, the writer and the service would, checks
// the invariants after every step (lharness.check), and then what it is about.
func TestLedgerRules(t *testing.T) {
	sec := func(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }
	type tc struct {
		name string
		cfg  func(*ledgerConfig)
		run  func(h *lharness)
	}
	// The one scenario whose outcome breaks "one transcript per segment" on purpose: the
	// documented window of rule 7. It checks its own outcome.
	const residual = "words after a grace completion: published on their own, counted"
	for _, c := range []tc{
		{"published once, whole, when the Finalize answer covers the end", nil, func(h *lharness) {
			h.connect()
			h.segment(20, 3, 4, 5, 12)
			h.send(-1)
			h.finalUpTo(10, false, true) // endpointing final mid-segment: not the end
			h.check()
			if len(h.outs) != 0 {
				h.t.Fatalf("published before the segment was answered to its end: %s", describeOuts(h.outs))
			}
			h.answerFinalize()
			h.check()
			if o := h.outcomes(1); len(o) != 1 || o[0].how != "final" || o[0].utt.Text != "w1 w2 w3 w4" {
				h.t.Fatalf("outcome %s", describeOuts(o))
			}
		}},
		{"times map to capture time across gated silence and frame gaps", nil, func(h *lharness) {
			h.connect()
			h.segment(5, 1)
			h.skip(sec(42))
			h.segment(5, 0, 4)
			h.skip(sec(0.3)) // a capture gap inside the next segment: frames dropped
			h.start()
			h.frame(true)
			h.skip(sec(0.7))
			h.frame(true)
			h.end()
			h.send(-1)
			h.finalUpTo(100, true, true)
			h.checkFinal() // check compares every word with its own frame's capture time
			if len(h.outs) != 3 {
				h.t.Fatalf("outputs %s", describeOuts(h.outs))
			}
		}},
		{"a late empty answer to an earlier Finalize does not confirm later audio", nil, func(h *lharness) {
			// The old uplink credited an answer to the oldest Finalize still pending: here
			// that would be the second one, confirming audio never transcribed.
			h.connect()
			h.segment(10, 2)
			h.finalUpTo(6, false, true) // the words; the tail [6,10) gets no answer
			h.advance(sec(1.6))
			h.heard() // the first segment completes by the grace
			if o := h.outcomes(1); len(o) != 1 || o[0].how != "grace" {
				h.t.Fatalf("first segment %s", describeOuts(o))
			}
			h.segment(10, 5) // the second segment and its Finalize
			// The answer to the first Finalize arrives now: late, empty, speech_final false.
			h.finalUpTo(10, true, false)
			h.check()
			if len(h.outcomes(2)) != 0 {
				h.t.Fatalf("the late answer completed the second segment: %s", describeOuts(h.outs))
			}
			h.answerFinalize()
			h.check()
			if o := h.outcomes(2); len(o) != 1 || o[0].utt.Text != "w2" {
				h.t.Fatalf("second segment %s", describeOuts(o))
			}
		}},
		{"quiet service: an unanswered Finalize completes after the grace, no reconnect", nil, func(h *lharness) {
			h.connect()
			h.segment(15, 2, 3)
			h.finalUpTo(8, false, true) // speech_final on the words; nothing for the tail
			h.advance(sec(0.1))
			h.heard() // a pong soon after the Finalize proves nothing about the grace
			h.advance(sec(1.3))
			if len(h.outs) != 0 || h.l.probe(h.now) {
				h.t.Fatalf("published or probed before the grace: %s", describeOuts(h.outs))
			}
			h.advance(sec(0.2))
			if len(h.outs) != 0 {
				h.t.Fatalf("published without a sign of life after the grace: %s", describeOuts(h.outs))
			}
			if !h.l.probe(h.now) || h.l.probe(h.now) {
				h.t.Fatal("the grace's end must ask for exactly one probe")
			}
			h.advance(sec(0.01))
			h.heard() // the probe's pong
			h.check()
			if o := h.outcomes(1); len(o) != 1 || o[0].how != "grace" || o[0].utt.Text != "w1 w2" {
				h.t.Fatalf("outcome %s", describeOuts(o))
			}
			if h.l.conn == nil || h.l.n.graceCompleted != 1 {
				h.t.Fatal("the connection was given up")
			}
		}},
		{"the grace waits for a sign of life after it ran out", nil, func(h *lharness) {
			h.connect()
			h.segment(10, 1)
			h.finalUpTo(5, false, true)
			h.advance(sec(30))
			if len(h.outs) != 0 {
				h.t.Fatalf("completed on a connection not heard from since the grace: %s", describeOuts(h.outs))
			}
			if d := h.l.deadline(h.now); !d.IsZero() {
				h.t.Fatalf("deadline %s while waiting for a pong (Run would spin)", d.Sub(h.now))
			}
			h.heard()
			h.check()
			if len(h.outcomes(1)) != 1 {
				h.t.Fatal("not completed by the pong after the grace")
			}
		}},
		{"the grace counts from when a replayed backlog can have been heard", nil, func(h *lharness) {
			h.rt = false
			h.segment(50, 10) // 5 s recorded while no connection
			h.connect()
			h.send(-1) // all at once: the service ingests it in 4 s at 1.25x
			h.advance(sec(0.01))
			h.heard()
			h.advance(sec(4 + 1.4))
			if len(h.outs) != 0 {
				h.t.Fatalf("completed before the backlog could be heard and answered: %s", describeOuts(h.outs))
			}
			h.answerFinalize()
			h.check()
			if len(h.outcomes(1)) != 1 {
				h.t.Fatal("not published")
			}
		}},
		{"the grace grows with the slowest Finalize answer", nil, func(h *lharness) {
			h.connect()
			h.segment(10, 1)
			h.send(-1)
			h.advance(sec(3))
			h.answerFinalize() // 3 s after the Finalize: the grace becomes 6 s
			h.segment(10, 1)
			h.send(-1)
			h.finalUpTo(15, false, true)
			h.advance(sec(5.6))
			h.heard()
			if len(h.outcomes(2)) != 0 {
				h.t.Fatalf("completed within twice the slowest answer: %s", describeOuts(h.outs))
			}
			h.advance(sec(0.5))
			h.heard()
			h.check()
			if len(h.outcomes(2)) != 1 {
				h.t.Fatal("not completed after the adapted grace")
			}
		}},
		{"a later final on the connection completes an unanswered segment", nil, func(h *lharness) {
			h.connect()
			h.segment(10, 1)
			h.send(-1)
			h.finalUpTo(5, false, true)
			h.segment(10, 2)
			h.send(-1)
			h.finalUpTo(20, true, false) // the service answers in order
			h.check()
			if len(h.outcomes(1)) != 1 || len(h.outcomes(2)) != 1 || h.l.n.graceCompleted != 0 {
				h.t.Fatalf("outputs %s", describeOuts(h.outs))
			}
		}},
		{"Metadata after our CloseStream completes; Metadata alone does not", nil, func(h *lharness) {
			e := h.connect()
			h.segment(10, 1, 2)
			h.send(-1)
			h.finalUpTo(5, false, false)
			h.l.metadata(e, h.now) // a close the service chose: no proof
			h.collect()
			if len(h.outs) != 0 {
				h.t.Fatalf("completed by Metadata without CloseStream: %s", describeOuts(h.outs))
			}
			h.l.closeStream(e)
			if k := h.send(-1); k != 1 {
				h.t.Fatalf("%d items after closeStream, want CloseStream", k)
			}
			h.l.metadata(e, h.now)
			h.collect()
			h.check()
			if o := h.outcomes(1); len(o) != 1 || o[0].how != "metadata" {
				h.t.Fatalf("outcome %s", describeOuts(o))
			}
		}},
		{"a drop mid-segment replays the whole segment on the next connection", nil, func(h *lharness) {
			h.connect()
			h.start()
			for i := range 12 {
				h.frame(i%3 == 0)
			}
			h.send(-1)
			h.finalUpTo(6, false, true) // words of the first half, from the dead connection
			h.drop()
			for i := range 5 {
				h.frame(i == 2)
			}
			h.advance(sec(0.5))
			h.connect()
			h.frame(true)
			h.end()
			h.send(-1)
			if got := len(h.svc.recv); got != 18 {
				h.t.Fatalf("new connection got %d frames, want the whole segment (18)", got)
			}
			h.answerFinalize()
			h.checkFinal()
			if o := h.outcomes(1); len(o) != 1 || o[0].replays != 1 || o[0].utt.RequestID != "req-2" {
				h.t.Fatalf("outcome %s", describeOuts(o))
			}
			if h.l.n.replays != 1 {
				h.t.Fatalf("replays %d", h.l.n.replays)
			}
		}},
		{"a drop while the Finalize is unanswered replays the ended segment", nil, func(h *lharness) {
			h.connect()
			h.segment(10, 1, 8)
			h.send(-1)
			h.finalUpTo(5, false, true)
			h.drop()
			h.advance(sec(1))
			h.connect()
			h.send(-1)
			h.answerFinalize()
			h.checkFinal()
			if o := h.outcomes(1); len(o) != 1 || o[0].utt.Text != "w1 w2" {
				h.t.Fatalf("outcome %s", describeOuts(o))
			}
		}},
		{"no connection within MaxWait: the whole segment is spooled", nil, func(h *lharness) {
			h.start()
			for range 20 {
				h.frame(true)
			}
			h.advance(sec(3.1)) // 5 s since the segment needed a connection
			if len(h.outs) != 0 {
				h.t.Fatal("spooled before the segment ended")
			}
			h.frame(false)
			h.end()
			h.checkFinal()
			if o := h.outcomes(1); len(o) != 1 || o[0].kind != outSpool || o[0].seg.Reason != "no connection" || len(o[0].seg.Frames) != 21 {
				h.t.Fatalf("outcome %s", describeOuts(o))
			}
			h.connect()
			if h.send(-1) != 0 {
				h.t.Fatal("a spooled segment was sent live")
			}
		}},
		{"a backlog too long to replay goes to the spool; what fits is replayed", nil, func(h *lharness) {
			h.rt = false
			h.segment(80, 1)
			h.segment(30, 1)
			h.segment(15, 1)
			h.connect()
			h.send(-1)
			h.answerFinalize()
			h.answerFinalize()
			h.checkFinal()
			if o := h.outcomes(1); len(o) != 1 || o[0].kind != outUtterance {
				h.t.Fatalf("first %s", describeOuts(o))
			}
			if o := h.outcomes(2); len(o) != 1 || o[0].kind != outSpool || o[0].seg.Reason != "backlog" {
				h.t.Fatalf("second (80+30 s > 10 s) %s", describeOuts(o))
			}
			if o := h.outcomes(3); len(o) != 1 || o[0].kind != outUtterance {
				h.t.Fatalf("third (80+15 fits) %s", describeOuts(o))
			}
		}},
		{"an open segment outgrowing MaxBacklog while waiting is spooled whole", nil, func(h *lharness) {
			h.rt = false
			h.start()
			for range 101 {
				h.frame(true)
			}
			h.connect()
			for range 5 {
				h.frame(true)
			}
			h.end()
			h.send(-1)
			h.checkFinal()
			if o := h.outcomes(1); len(o) != 1 || o[0].kind != outSpool || len(o[0].seg.Frames) != 106 {
				h.t.Fatalf("outcome %s", describeOuts(o))
			}
		}},
		{"a refusal spools what waits and what starts during it", nil, func(h *lharness) {
			h.start()
			h.frame(true)
			h.l.setNoConnUntil(h.now.Add(2*time.Minute), "refused", true, h.now)
			h.frame(true)
			h.end()
			h.segment(5, 2)
			h.checkFinal()
			for id := uint64(1); id <= 2; id++ {
				if o := h.outcomes(id); len(o) != 1 || o[0].kind != outSpool || o[0].seg.Reason != "refused" {
					h.t.Fatalf("segment %d: %s", id, describeOuts(o))
				}
			}
		}},
		{"a short backoff keeps the segment for the next connection", nil, func(h *lharness) {
			h.rt = false
			h.connect()
			h.segment(10, 1)
			h.send(4)
			h.drop()
			h.l.setNoConnUntil(h.now.Add(sec(0.5)), "backoff", false, h.now)
			h.advance(sec(0.5))
			h.connect()
			h.send(-1)
			h.answerFinalize()
			h.checkFinal()
			if o := h.outcomes(1); len(o) != 1 || o[0].kind != outUtterance {
				h.t.Fatalf("outcome %s", describeOuts(o))
			}
		}},
		{"after MaxReplays lost connections the segment is spooled", nil, func(h *lharness) {
			h.rt = false
			h.segment(10, 1)
			for range 3 {
				h.connect()
				h.send(-1)
				h.drop()
			}
			h.checkFinal()
			if o := h.outcomes(1); len(o) != 1 || o[0].kind != outSpool || o[0].seg.Reason != "replays" {
				h.t.Fatalf("outcome %s", describeOuts(o))
			}
		}},
		{"a duplicated answer does not repeat words", nil, func(h *lharness) {
			h.connect()
			h.segment(10, 1, 2)
			h.send(-1)
			h.finalUpTo(5, false, true)
			h.deliver(h.svc.last) // the same final again
			h.answerFinalize()
			h.deliver(h.svc.last) // the Finalize answered twice
			h.checkFinal()
			if o := h.outcomes(1); len(o) != 1 || o[0].utt.Text != "w1 w2" || h.l.n.duplicateWords != 2 {
				h.t.Fatalf("outcome %s, duplicates %d", describeOuts(o), h.l.n.duplicateWords)
			}
		}},
		{"a final spanning two segments gives each its own words", nil, func(h *lharness) {
			h.connect()
			h.segment(5, 1, 4)
			h.segment(5, 0, 2)
			h.send(-1)
			h.finalUpTo(10, true, true) // one final over both (the first Finalize unanswered)
			h.checkFinal()
			if a, b := h.outcomes(1), h.outcomes(2); len(a) != 1 || len(b) != 1 || a[0].utt.Text != "w1 w2" || b[0].utt.Text != "w3 w4" {
				h.t.Fatalf("outcomes %s", describeOuts(h.outs))
			}
		}},
		{"empty finals change nothing; a segment with no words publishes nothing", nil, func(h *lharness) {
			h.connect()
			h.segment(10)
			h.send(-1)
			for k := 2; k <= 10; k += 2 {
				h.finalUpTo(k, false, false) // periodic empty finals
			}
			h.checkFinal()
			if len(h.outs) != 0 || h.l.n.empty != 1 || len(h.l.segs) != 0 {
				h.t.Fatalf("outputs %s, empty %d", describeOuts(h.outs), h.l.n.empty)
			}
		}},
		{"words after a grace completion: published on their own, counted", nil, func(h *lharness) {
			h.connect()
			h.segment(10, 1, 7)
			h.send(-1)
			h.finalUpTo(5, false, true)
			h.advance(sec(2))
			h.heard()
			// The service answers the Finalize, with a word, after the grace: the one
			// window rule 7 of ledger.go documents.
			h.answerFinalize()
			if h.l.n.lateWords != 1 || h.l.n.lateSplits != 1 || len(h.outs) != 2 || h.outs[1].how != "late" {
				h.t.Fatalf("late words %d splits %d, outputs %s", h.l.n.lateWords, h.l.n.lateSplits, describeOuts(h.outs))
			}
			if h.published[1] != 1 || h.published[2] != 1 {
				h.t.Fatalf("published %v", h.published)
			}
		}},
		{"words after a grace completion with none before: its only transcript", nil, func(h *lharness) {
			h.connect()
			h.segment(10, 8)
			h.advance(sec(2))
			h.heard()
			h.answerFinalize()
			if h.l.n.lateWords != 1 || h.l.n.lateSplits != 0 || len(h.outs) != 1 || wordsOf(h.outs[0])[0] != 1 {
				h.t.Fatalf("outputs %s", describeOuts(h.outs))
			}
		}},
		{"input end: undecided segments are spooled whole, completed ones are not", nil, func(h *lharness) {
			h.connect()
			h.segment(10, 1)
			h.send(-1)
			h.answerFinalize()
			h.segment(10, 1)
			h.send(-1)
			h.start()
			h.frame(true)
			h.l.finish(h.now, "stopping")
			h.cur.ended = true
			h.collect()
			h.checkFinal()
			if a, b, c := h.outcomes(1), h.outcomes(2), h.outcomes(3); len(a) != 1 || a[0].kind != outUtterance ||
				len(b) != 1 || b[0].kind != outSpool || len(c) != 1 || c[0].kind != outSpool {
				h.t.Fatalf("outcomes %s", describeOuts(h.outs))
			}
		}},
		{"a segment longer than MaxSegment is split, each part whole", func(c *ledgerConfig) { c.MaxSegment = time.Second }, func(h *lharness) {
			h.connect()
			h.start()
			for i := range 25 {
				h.frame(i%4 == 0)
			}
			h.end()
			h.send(-1)
			h.finalUpTo(100, true, true)
			h.checkFinal()
			if len(h.outs) != 3 || h.l.n.splits != 2 {
				h.t.Fatalf("outputs %s", describeOuts(h.outs))
			}
		}},
		{"a replaced connection is ignored", nil, func(h *lharness) {
			old := h.connect()
			h.segment(10, 1)
			h.send(-1)
			h.drop()
			h.connect()
			if it := h.l.take(old, h.now); it.kind != itemNone {
				h.t.Fatal("the old writer got an item")
			}
			h.l.result(old, &results{IsFinal: true, Duration: 1, Words: []word{{Word: "w9", Start: 0.1, End: 0.2}}}, h.now)
			h.l.metadata(old, h.now)
			h.collect()
			if len(h.outs) != 0 {
				h.t.Fatalf("outputs from a replaced connection: %s", describeOuts(h.outs))
			}
		}},
		{"an empty frame is never queued", nil, func(h *lharness) {
			h.rt = false
			h.connect()
			h.start()
			h.l.frame(audio.Frame{Seq: 99, Time: lt0}, h.now)
			h.frame(true)
			h.end()
			if h.send(-1) != 2 || h.l.n.emptyFrames != 1 {
				h.t.Fatalf("sent %v, empty %d", h.svc.recv, h.l.n.emptyFrames)
			}
		}},
		{"a segment starting during a planned close waits for the next connection", nil, func(h *lharness) {
			h.rt = false
			e := h.connect()
			h.l.closeStream(e)
			h.segment(5, 1)
			if !h.l.needsConn() || h.send(-1) != 1 {
				h.t.Fatal("assigned to a closing connection")
			}
			h.l.metadata(e, h.now)
			h.l.lost(e, h.now)
			h.svc = nil
			h.connect()
			h.send(-1)
			h.answerFinalize()
			h.checkFinal()
			if len(h.outcomes(1)) != 1 {
				h.t.Fatalf("outputs %s", describeOuts(h.outs))
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := testLedgerConfig()
			if c.cfg != nil {
				c.cfg(&cfg)
			}
			h := newLH(t, cfg)
			h.residual = c.name == residual
			c.run(h)
			if c.name != residual {
				h.check()
			}
		})
	}
}

// The words of one final given to two segments keep the service's transcript only when
// the final lies in one segment.
func TestLedgerTranscriptText(t *testing.T) {
	h := newLH(t, testLedgerConfig())
	h.connect()
	h.segment(10, 2, 6)
	h.send(-1)
	h.deliver(&results{IsFinal: true, FromFinalize: true, Start: 0, Duration: 1, Transcript: "Hello, world.",
		Confidence: 0.8, Words: []word{{Word: "w1", Punctuated: "Hello,", Start: 0.22, End: 0.28}, {Word: "w2", Punctuated: "world.", Start: 0.62, End: 0.68}}})
	if len(h.outs) != 1 || h.outs[0].utt.Text != "Hello, world." || h.outs[0].utt.Confidence != 0.8 {
		t.Fatalf("outputs %s", describeOuts(h.outs))
	}
	u := h.outs[0].utt
	if !u.Start.Equal(lt0.Add(220*time.Millisecond)) || !u.End.Equal(lt0.Add(680*time.Millisecond)) {
		t.Errorf("utterance %s..%s", u.Start.Sub(lt0), u.End.Sub(lt0))
	}
	if !slices.Equal(wordsOf(h.outs[0]), []int{1, 2}) {
		t.Errorf("words %v", wordsOf(h.outs[0]))
	}
}

// The frame buffers of finished segments are reused: a stream of segments reaches a steady
// state with no allocation per frame.
func TestLedgerFrameAllocs(t *testing.T) {
	l := newLedger(testLedgerConfig())
	e := l.newEpoch()
	now := lt0
	l.connect(e, "r", now)
	f := audio.Frame{Samples: make([]int16, audio.FrameSamples)}
	seg := func(n int) {
		l.start(now)
		for range n {
			l.frame(f, now)
			l.take(e, now)
		}
		l.end(now)
		l.take(e, now)
		l.result(e, &results{IsFinal: true, FromFinalize: true, Start: 0, Duration: float64(l.conn.frames) * frameSec}, now)
		l.takeOutputs(nil)
	}
	seg(600) // grow the buffers once
	l.start(now)
	allocs := testing.AllocsPerRun(1000, func() {
		l.frame(f, now)
		l.take(e, now)
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per frame in the ledger", allocs)
	}
}
