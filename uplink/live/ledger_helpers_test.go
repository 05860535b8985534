package live

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hark-audio/hark/audio"
)

// This file is the harness of the ledger's table and property tests: a clock, frames that
// carry the identity of the word spoken in them, and a model of the service that answers
// in stream order, as Deepgram does, with the quiet and late behaviours the ledger must
// survive.

var lt0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func testLedgerConfig() ledgerConfig {
	return ledgerConfig{MaxBacklog: 10 * time.Second, MaxWait: 5 * time.Second, MaxReplays: 2,
		Grace: 1500 * time.Millisecond, GraceMax: 10 * time.Second, MaxSegment: 2 * time.Minute}
}

// tword encodes a word id in a frame: sample 0 holds it (0 = no word). Word ids are
// unique across a test, so a word published twice is seen.
func tword(f audio.Frame) int { return int(f.Samples[0]) }

// truthSeg is what a test knows a segment holds.
type truthSeg struct {
	id     uint64
	frames []audio.Frame
	words  []int
	ended  bool
}

// svc is the model of one connection's service side: it hears what the writer sends and
// answers in order.
type svc struct {
	epoch    uint64
	recv     []int       // word id of each stream frame received (0 = none)
	heardAt  []time.Time // when the service has ingested each frame (at 1.25x real time)
	answered int         // stream frames covered by finals so far
	fins     []int       // stream positions of the Finalizes received, unanswered
	finAt    []time.Time
	last     *results  // the last final sent (for duplicates)
	late     []results // empty answers held back
	closed   bool      // CloseStream received
	dead     bool      // half-open: hears, never answers
}

// lharness drives a ledger as the supervisor and the connection's writer would.
type lharness struct {
	t    testing.TB
	l    *ledger
	now  time.Time
	seq  uint64 // capture frame counter
	word int
	svc  *svc
	segs []*truthSeg
	cur  *truthSeg
	outs []output
	// what the harness has seen published, by word id
	published map[int]int
	byID      map[uint64][]output

	// rt: each frame advances the wall clock by a frame (capture in real time) and the
	// writer takes what it can at once. Off, frames pile up at one instant and only
	// send moves them.
	rt bool
	// residual: the test makes the service answer after the grace (rule 7): the words of
	// a published segment are then knowingly incomplete.
	residual bool
}

func newLH(t testing.TB, cfg ledgerConfig) *lharness {
	return &lharness{t: t, l: newLedger(cfg), now: lt0, published: map[int]int{}, byID: map[uint64][]output{}, rt: true}
}

func (h *lharness) advance(d time.Duration) {
	h.now = h.now.Add(d)
	h.l.tick(h.now)
	h.collect()
}

// skip advances the capture clock over gated silence (not sent).
func (h *lharness) skip(d time.Duration) { h.seq += uint64(d / audio.FrameDuration) }

func (h *lharness) start() {
	if h.cur != nil {
		h.cur.ended = true // the ledger ends an open segment first
	}
	h.l.start(h.now)
	h.cur = &truthSeg{id: h.l.nextID}
	h.segs = append(h.segs, h.cur)
	h.collect()
}

// frame adds one frame, with a new word when withWord; the capture clock and the wall
// clock advance together by a frame.
func (h *lharness) frame(withWord bool) {
	s := make([]int16, audio.FrameSamples)
	w := 0
	if withWord {
		h.word++
		w = h.word
		s[0] = int16(w)
	}
	f := audio.Frame{Seq: h.seq, Time: lt0.Add(time.Duration(h.seq) * audio.FrameDuration), Samples: s}
	h.seq++
	if h.cur == nil || h.cur.ended || h.l.open == nil {
		h.cur = &truthSeg{id: h.l.nextID + 1}
		h.segs = append(h.segs, h.cur)
	}
	h.l.frame(f, h.now)
	if h.l.open != nil && h.l.open.id != h.cur.id {
		// The ledger split the segment (MaxSegment).
		h.cur.ended = true
		h.cur = &truthSeg{id: h.l.open.id}
		h.segs = append(h.segs, h.cur)
	}
	h.cur.frames = append(h.cur.frames, f)
	if w != 0 {
		h.cur.words = append(h.cur.words, w)
	}
	h.collect()
	if h.rt {
		h.send(-1)
		h.advance(audio.FrameDuration)
	}
}

func (h *lharness) end() {
	h.l.end(h.now)
	if h.cur != nil {
		h.cur.ended = true
	}
	h.collect()
	if h.rt {
		h.send(-1)
	}
}

// segment is start, n frames (words in the frames listed in words), end.
func (h *lharness) segment(n int, words ...int) {
	h.start()
	for i := range n {
		h.frame(slices.Contains(words, i))
	}
	h.end()
}

func (h *lharness) connect() uint64 {
	e := h.l.newEpoch()
	h.l.connect(e, fmt.Sprintf("req-%d", e), h.now)
	h.svc = &svc{epoch: e}
	h.collect()
	return e
}

// send lets the writer take up to n items (n < 0: all), feeding the service model.
func (h *lharness) send(n int) int {
	if h.svc == nil {
		return 0
	}
	k := 0
	for n < 0 || k < n {
		it := h.l.take(h.svc.epoch, h.now)
		if it.kind == itemNone {
			break
		}
		k++
		switch it.kind {
		case itemAudio:
			h.svc.recv = append(h.svc.recv, tword(it.frame))
			at := h.now
			if n := len(h.svc.heardAt); n > 0 {
				at = maxTime(at, h.svc.heardAt[n-1])
			}
			h.svc.heardAt = append(h.svc.heardAt, at.Add(ingestPerFrame))
		case itemFinalize:
			h.svc.fins = append(h.svc.fins, len(h.svc.recv))
			h.svc.finAt = append(h.svc.finAt, h.now)
		case itemCloseStream:
			h.svc.closed = true
		}
	}
	h.collect()
	return k
}

// finalUpTo makes the service send a final covering its unanswered audio up to stream
// frame upTo, with the words heard there.
func (h *lharness) finalUpTo(upTo int, fromFinalize, speechFinal bool) {
	s := h.svc
	upTo = min(upTo, len(s.recv))
	if upTo < s.answered {
		upTo = s.answered
	}
	r := &results{Start: float64(s.answered) * frameSec, Duration: float64(upTo-s.answered) * frameSec,
		IsFinal: true, SpeechFinal: speechFinal, FromFinalize: fromFinalize}
	var texts []string
	for k := s.answered; k < upTo; k++ {
		if w := s.recv[k]; w != 0 {
			name := fmt.Sprintf("w%d", w)
			r.Words = append(r.Words, word{Word: name, Punctuated: name, Start: float64(k)*frameSec + 0.02,
				End: float64(k)*frameSec + 0.08, Confidence: 0.9})
			texts = append(texts, name)
		}
	}
	r.Transcript = strings.Join(texts, " ")
	r.Confidence = 0.9
	s.answered = upTo
	for len(s.fins) > 0 && s.fins[0] <= upTo {
		s.fins, s.finAt = s.fins[1:], s.finAt[1:]
	}
	h.deliver(r)
}

func (h *lharness) deliver(r *results) {
	cp := *r
	h.svc.last = &cp
	h.l.result(h.svc.epoch, r, h.now)
	h.l.tick(h.now)
	h.collect()
}

// answerFinalize answers the oldest pending Finalize.
func (h *lharness) answerFinalize() bool {
	s := h.svc
	if len(s.fins) == 0 {
		return false
	}
	h.finalUpTo(s.fins[0], true, false)
	return true
}

func (h *lharness) heard() {
	h.l.heard(h.svc.epoch, h.now)
	h.l.tick(h.now)
	h.collect()
}

// closeGracefully is a planned close: CloseStream after everything, the service flushes,
// Metadata, then the connection ends.
func (h *lharness) closeGracefully() {
	h.l.closeStream(h.svc.epoch)
	h.send(-1)
	h.finalUpTo(len(h.svc.recv), false, false)
	h.l.metadata(h.svc.epoch, h.now)
	h.l.lost(h.svc.epoch, h.now)
	h.svc = nil
	h.collect()
}

func (h *lharness) drop() {
	if h.svc == nil {
		return
	}
	h.l.lost(h.svc.epoch, h.now)
	h.svc = nil
	h.collect()
}

func (h *lharness) collect() {
	for _, o := range h.l.takeOutputs(nil) {
		h.outs = append(h.outs, o)
		h.byID[o.id] = append(h.byID[o.id], o)
		if o.kind == outUtterance {
			for _, w := range o.utt.Words {
				var id int
				fmt.Sscanf(w.Word, "w%d", &id)
				h.published[id]++
			}
		}
		if o.how != "late" && !h.residual {
			h.validate(o)
		}
	}
}

func (h *lharness) seg(id uint64) *truthSeg {
	for _, s := range h.segs {
		if s.id == id {
			return s
		}
	}
	return nil
}

// outcomes returns the outputs about segment id.
func (h *lharness) outcomes(id uint64) []output { return h.byID[id] }

func wordsOf(o output) []int {
	var ids []int
	for _, w := range o.utt.Words {
		var id int
		fmt.Sscanf(w.Word, "w%d", &id)
		ids = append(ids, id)
	}
	return ids
}

func seqsOf(fs []audio.Frame) []uint64 {
	out := make([]uint64, len(fs))
	for i, f := range fs {
		out[i] = f.Seq
	}
	return out
}

// validate checks one output when it is made: the segment ended, and
//   - published: its words are exactly the words spoken in it, in order, each at the
//     capture time of its own frame, and its span overlaps no other utterance's;
//   - spooled: it carries every frame of the segment, from its first.
func (h *lharness) validate(o output) {
	h.t.Helper()
	s := h.seg(o.id)
	if s == nil || !s.ended {
		h.t.Fatalf("segment %d decided (%s) before it ended", o.id, describeOuts([]output{o}))
	}
	switch o.kind {
	case outUtterance:
		ids := wordsOf(o)
		if !slices.Equal(ids, s.words) {
			h.t.Fatalf("segment %d published words %v (by %s), spoken %v", s.id, ids, o.how, s.words)
		}
		for i, w := range o.utt.Words {
			f := frameOfWord(s, ids[i])
			if !w.Start.Equal(f.Time.Add(20*time.Millisecond)) || !w.End.Equal(f.Time.Add(80*time.Millisecond)) {
				h.t.Fatalf("segment %d word %s at %s..%s, spoken at %s", s.id, w.Word,
					w.Start.Sub(lt0), w.End.Sub(lt0), f.Time.Sub(lt0))
			}
		}
		for _, p := range h.outs {
			if p.kind == outUtterance && p.id != o.id && p.utt.Start.Before(o.utt.End) && o.utt.Start.Before(p.utt.End) {
				h.t.Fatalf("utterances of segments %d and %d overlap", p.id, o.id)
			}
		}
	case outSpool:
		if !slices.Equal(seqsOf(o.seg.Frames), seqsOf(s.frames)) || !o.seg.Start.Equal(s.frames[0].Time) {
			h.t.Fatalf("segment %d spooled frames %v, has %v", s.id, seqsOf(o.seg.Frames), seqsOf(s.frames))
		}
	}
}

// check verifies what holds at every step: a segment has at most one outcome, no word is
// published twice, and after tick no deadline is already due (Run would spin).
func (h *lharness) check() {
	h.t.Helper()
	for id, n := range h.published {
		if n > 1 {
			h.t.Fatalf("word w%d published %d times", id, n)
		}
	}
	for id, os := range h.byID {
		if len(os) > 1 {
			h.t.Fatalf("segment %d has %d outcomes: %v", id, len(os), describeOuts(os))
		}
	}
	if d := h.l.deadline(h.now); !d.IsZero() && !d.After(h.now) {
		h.l.tick(h.now)
		if d2 := h.l.deadline(h.now); !d2.IsZero() && !d2.After(h.now) {
			h.t.Fatalf("deadline %s is due at %s after tick", d2.Sub(lt0), h.now.Sub(lt0))
		}
		h.collect()
	}
}

// checkFinal verifies that nothing was lost: every segment that ended has an outcome; a
// segment with words was published (with them all) or spooled.
func (h *lharness) checkFinal() {
	h.t.Helper()
	h.check()
	for _, s := range h.segs {
		os := h.outcomes(s.id)
		if len(s.frames) == 0 {
			continue
		}
		if len(os) == 0 && len(s.words) > 0 {
			h.t.Fatalf("segment %d with words %v has no outcome (lost)", s.id, s.words)
		}
		if len(os) == 0 && h.l.hasSeg(s.id) {
			h.t.Fatalf("segment %d is still undecided after finish", s.id)
		}
	}
	if h.l.n.lateWords != 0 {
		h.t.Fatalf("%d late words with a service that answers within the grace", h.l.n.lateWords)
	}
}

func (l *ledger) hasSeg(id uint64) bool {
	return slices.ContainsFunc(l.segs, func(s *segment) bool { return s.id == id })
}

func frameOfWord(s *truthSeg, id int) audio.Frame {
	for _, f := range s.frames {
		if tword(f) == id {
			return f
		}
	}
	return audio.Frame{}
}

func describeOuts(os []output) string {
	var b strings.Builder
	for _, o := range os {
		switch o.kind {
		case outUtterance:
			fmt.Fprintf(&b, "[utterance %q by %s] ", o.utt.Text, o.how)
		case outSpool:
			fmt.Fprintf(&b, "[spool %d frames: %s] ", len(o.seg.Frames), o.seg.Reason)
		}
	}
	return b.String()
}
