package live

import (
	"math"
	"slices"
	"strings"
	"time"

	"github.com/hark-audio/hark/audio"
	"github.com/hark-audio/hark/transcript"
)

// The ledger is the uplink's bookkeeping and nothing else: no goroutines, no sockets, no
// clock (every method takes now). It decides, for every gate segment, exactly one outcome:
//
//   - published live: the whole segment was sent on one connection, from its first frame,
//     and that connection's finals for it were gathered into one utterance;
//   - spooled: the whole segment (every frame, from its first) goes to Handler.Unconfirmed.
//
// The rules, each with the reason for it:
//
//  1. A segment rides one connection from its first frame to its end. If that connection
//     ends before the segment is complete, the finals it gave for the segment are thrown
//     away and the segment waits for the next connection, which gets it again from its
//     first frame (replay). Never half live and half spooled: a cut inside a word garbles
//     both halves.
//  2. A segment waits for a connection at most MaxWait (from the moment it needed one), and
//     does not wait at all when the next attempt is known to come later than that (a long
//     backoff) or is only a probe (after a refusal: bad key, no credits). It is replayed
//     at most MaxReplays times.
//  3. When a connection opens, the waiting segments are assigned to it in capture order as
//     long as the audio to send (the backlog) stays within MaxBacklog; a segment that does
//     not fit is spooled. The service ingests at most about 1.25x real time, so 10 s of
//     backlog takes at least 8 s to be heard, and a segment still being spoken catches up
//     with real time only after four times its backlog. An open segment that is waiting
//     and outgrows MaxBacklog is spooled at once.
//  4. The stream clock of a connection counts only the frames handed to its writer, from 0.
//     Unsent silence does not advance it. A frame's stream position maps back to its own
//     capture time, so every returned time is mapped exactly, frame by frame.
//  5. Finals are credited by the stream time they cover (start+duration) and by their
//     words' times, never by counting Finalizes: a late answer to an earlier Finalize only
//     confirms what it covers. Words go to the segment their start time falls in; a word
//     whose start was already taken on the connection is a duplicate and is dropped.
//  6. A segment is complete, and published, when (a) the finals of its connection reach its
//     end (the service answers in order, so a final covering later audio also proves the
//     segment's tail got all the answer it will get), (b) Metadata arrived after our
//     CloseStream (the service has flushed everything), or (c) its Finalize has gone
//     unanswered for the grace period and then the connection proved alive: a pong (or
//     any message) received after the grace ran out. The service writes in order on one
//     socket, so whatever answer it had sent before that pong has arrived before it; a
//     pong between the Finalize and the end of the grace would prove nothing, since the
//     connection can die half-open right after it. When the grace runs out the
//     supervisor sends a ping (probe), so (c) costs one round trip more. The grace counts
//     from when the service can have heard the Finalize (behind any backlog, at 1.25x
//     real time) and is at least twice the slowest Finalize answer seen on the
//     connection. A quiet service (nothing for wordless audio, no answer to a Finalize
//     with nothing pending) is therefore healthy and costs a grace period of latency,
//     never a reconnect; a dead one is found by the liveness check and its segments are
//     replayed.
//  7. A final that brings words for a segment that was already completed by (c) is the one
//     window left: the service answered a Finalize with words after the grace. Those words
//     are published as their own utterance (never dropped, never repeated) and counted as
//     late words. Empty late answers, the common case, change nothing.
type ledger struct {
	cfg ledgerConfig

	segs []*segment // undecided segments, in capture order
	open *segment   // the segment the gate has open (also in segs), or nil
	conn *connLedger

	// noConnUntil is the earliest a connection can exist (a backoff or refusal); zero when
	// one is open or being opened. hopeless: until then, nothing waits for a connection
	// (a refusal: the retry is a probe, not a likely success).
	noConnUntil time.Time
	noConnWhy   string
	hopeless    bool

	lastEnd time.Time // when the last segment ended (the idle close counts from it)

	out    []output
	pool   [][]audio.Frame // frame buffers of finished segments, for reuse
	nextID uint64
	epochs uint64

	n ledgerCounts

	// settled holds the first-frame capture times of the segments completed live since the
	// last takeOutputs (published or answered with no words), for Handler.Settled.
	settled []time.Time
}

type ledgerConfig struct {
	MaxBacklog time.Duration // rule 3
	MaxWait    time.Duration // rule 2
	MaxReplays int           // rule 2
	Grace      time.Duration // rule 6c, the floor
	GraceMax   time.Duration // rule 6c, the ceiling of the adaptive grace
	MaxSegment time.Duration // a segment is split (as the gate does) at this length
}

// ledgerCounts are the ledger's counters (reported in Stats).
type ledgerCounts struct {
	segments, published, empty, spooled, spooledFrames int64
	replays, replayedFrames, graceCompleted            int64
	lateFinals, lateWords, lateSplits                  int64
	duplicateWords, unplaced                           int64
	splits, emptyFrames                                int64
}

type segState uint8

const (
	segWaiting segState = iota // needs a connection
	segLive                    // on the current connection
	segSpool                   // decided: spooled whole when it ends
)

// segment is one gate segment. Its capture times are its frames' own.
type segment struct {
	id     uint64
	frames []audio.Frame
	ended  bool
	state  segState
	reason string // why it is spooled

	waitSince time.Time // segWaiting: since when
	replays   int       // connections it was sent on before the current one

	// segLive
	c        *connLedger
	k0       int64 // stream frame index of frames[0]; valid once taken > 0
	taken    int   // frames handed to the writer
	finTaken bool
	finAt    time.Time // when the Finalize was handed to the writer
	finBusy  time.Time // when the service can have heard the Finalize (ingestion estimate)
	words    []word    // stream seconds of c
	texts    []string
	confSum  float64
	confN    int
}

func (s *segment) streamEnd() float64 { return float64(s.k0+int64(len(s.frames))) * frameSec }

// allTaken reports whether the segment ended and every frame of it was handed to the
// writer (its Finalize is next, or went).
func (s *segment) allTaken() bool { return s.ended && s.taken == len(s.frames) }

// connLedger is what the ledger knows of one connection.
type connLedger struct {
	epoch uint64
	reqID string

	frames    int64              // the stream clock: frames handed to the writer
	runs      []*segment         // its live segments, stream order (incomplete ones only)
	done      []doneRun          // completed segments, for late finals (bounded)
	finalEnd  float64            // highest stream time a final reached
	busyUntil time.Time          // estimated time the service has ingested everything sent
	heardAt   time.Time          // last pong or message
	probedAt  time.Time          // last probe (ping) asked for by the grace rule
	slowest   time.Duration      // the slowest Finalize answer seen (rule 6c)
	seen      map[int64]struct{} // start times (µs) of the words taken, for duplicates

	closing    bool // no new segments; CloseStream after the last item
	closeTaken bool
	metadata   bool
}

// doneRun is where a completed segment sat on its connection.
type doneRun struct {
	k0        int64
	n         int
	first     time.Time
	id        uint64
	published bool
}

const (
	frameSec = 0.1 // audio.FrameDuration in seconds
	// coverTol absorbs rounding in the service's times: a final ending within half a
	// frame of a segment's end covers it (nothing shorter than a frame is ever sent).
	coverTol = 0.05
	// ingestPerFrame is how long the service takes to ingest one frame at its limit of
	// about 1.25x real time.
	ingestPerFrame = audio.FrameDuration * 4 / 5
	keepDone       = 32
)

// itemKind is what the writer sends next.
type itemKind uint8

const (
	itemNone itemKind = iota
	itemAudio
	itemFinalize
	itemCloseStream
)

type sendItem struct {
	kind  itemKind
	frame audio.Frame
}

type outKind uint8

const (
	outUtterance outKind = iota + 1
	outSpool
)

// output is a decision to deliver: an utterance to publish or a segment to spool.
type output struct {
	kind    outKind
	utt     transcript.Utterance
	seg     Segment
	id      uint64
	how     string // utterance: "final", "grace", "metadata", "late"
	replays int
}

func newLedger(cfg ledgerConfig) *ledger {
	if cfg.GraceMax < cfg.Grace {
		cfg.GraceMax = cfg.Grace
	}
	return &ledger{cfg: cfg}
}

func framesIn(d time.Duration) int { return int(d / audio.FrameDuration) }

// ---- input: the gate's segments ----

// start opens a segment (an open one is ended first).
func (l *ledger) start(now time.Time) {
	if l.open != nil {
		l.end(now)
	}
	l.nextID++
	l.n.segments++
	s := &segment{id: l.nextID, frames: l.buffer()}
	l.open = s
	l.segs = append(l.segs, s)
	if c := l.conn; c != nil && !c.closing {
		l.assign(c, s)
		return
	}
	l.wait(s, now)
}

// frame appends a frame to the open segment. It reports whether the writer of the current
// connection has something new to send.
func (l *ledger) frame(f audio.Frame, now time.Time) (wake bool) {
	if len(f.Samples) == 0 {
		l.n.emptyFrames++ // an empty binary message would end the stream
		return false
	}
	if l.open == nil {
		l.start(now)
	} else if len(l.open.frames) >= framesIn(l.cfg.MaxSegment) {
		// The gate bounds segments too (vad.max_segment_ms); this bound protects memory
		// when it is off. The split is the gate's: end here, go on in a new segment.
		l.n.splits++
		l.start(now)
	}
	s := l.open
	s.frames = append(s.frames, f)
	switch s.state {
	case segLive:
		return true
	case segWaiting:
		if len(s.frames) > framesIn(l.cfg.MaxBacklog) {
			l.spool(s, "backlog")
		}
	}
	return false
}

// end ends the open segment. It reports whether the writer has something new to send (the
// Finalize).
func (l *ledger) end(now time.Time) (wake bool) {
	s := l.open
	if s == nil {
		return false
	}
	l.open = nil
	s.ended = true
	l.lastEnd = now
	if len(s.frames) == 0 {
		l.drop(s)
		return false
	}
	switch s.state {
	case segLive:
		return true
	case segSpool:
		l.emitSpool(s)
	}
	return false
}

// ---- the connection ----

// connect makes epoch the current connection and assigns it the waiting segments (rule 3).
func (l *ledger) connect(epoch uint64, reqID string, now time.Time) {
	c := &connLedger{epoch: epoch, reqID: reqID, heardAt: now, seen: map[int64]struct{}{}}
	l.conn = c
	l.noConnUntil, l.noConnWhy, l.hopeless = time.Time{}, "", false
	backlog := 0
	for _, s := range slices.Clone(l.segs) {
		if s.state != segWaiting {
			continue
		}
		if backlog+len(s.frames) > framesIn(l.cfg.MaxBacklog) {
			l.spool(s, "backlog")
			continue
		}
		backlog += len(s.frames)
		l.assign(c, s)
	}
}

// newEpoch numbers a new connection.
func (l *ledger) newEpoch() uint64 {
	l.epochs++
	return l.epochs
}

func (l *ledger) assign(c *connLedger, s *segment) {
	s.state, s.c = segLive, c
	s.taken, s.finTaken, s.k0 = 0, false, 0
	s.words, s.texts, s.confSum, s.confN = nil, nil, 0, 0
	if s.replays > 0 {
		l.n.replays++
		l.n.replayedFrames += int64(len(s.frames))
	}
	c.runs = append(c.runs, s)
}

// wait marks s as needing a connection (rules 2 and 3).
func (l *ledger) wait(s *segment, now time.Time) {
	s.state, s.c, s.waitSince = segWaiting, nil, now
	switch {
	case s.replays > l.cfg.MaxReplays:
		l.spool(s, "replays")
	case len(s.frames) > framesIn(l.cfg.MaxBacklog):
		l.spool(s, "backlog")
	case l.noConnUntil.After(now) && (l.hopeless || l.noConnUntil.After(now.Add(l.cfg.MaxWait))):
		l.spool(s, l.noConnWhy)
	}
}

// take hands the writer of epoch its next item: the frames of its segments in order, each
// segment's Finalize after its last frame, and CloseStream after everything when closing.
func (l *ledger) take(epoch uint64, now time.Time) sendItem {
	c := l.conn
	if c == nil || c.epoch != epoch {
		return sendItem{}
	}
	for _, s := range c.runs {
		if s.taken < len(s.frames) {
			if s.taken == 0 {
				s.k0 = c.frames
			}
			f := s.frames[s.taken]
			s.taken++
			c.frames++
			c.busyUntil = maxTime(c.busyUntil, now).Add(ingestPerFrame)
			return sendItem{kind: itemAudio, frame: f}
		}
		if !s.ended {
			return sendItem{}
		}
		if !s.finTaken {
			s.finTaken, s.finAt, s.finBusy = true, now, maxTime(now, c.busyUntil)
			return sendItem{kind: itemFinalize}
		}
	}
	if c.closing && !c.closeTaken {
		c.closeTaken = true
		return sendItem{kind: itemCloseStream}
	}
	return sendItem{}
}

// closeStream starts a planned close of epoch: nothing new is assigned to it and
// CloseStream follows its last item.
func (l *ledger) closeStream(epoch uint64) {
	if c := l.conn; c != nil && c.epoch == epoch {
		c.closing = true
	}
}

// heard notes a sign of life from epoch (a pong or a message).
func (l *ledger) heard(epoch uint64, now time.Time) {
	if c := l.conn; c != nil && c.epoch == epoch {
		c.heardAt = now
	}
}

// result takes one Results message of epoch (rule 5).
func (l *ledger) result(epoch uint64, r *results, now time.Time) {
	c := l.conn
	if c == nil || c.epoch != epoch {
		return
	}
	c.heardAt = now
	if !r.IsFinal {
		return
	}
	end := r.Start + r.Duration
	l.placeWords(c, r)
	if end > c.finalEnd {
		c.finalEnd = end
	}
	for len(c.runs) > 0 {
		s := c.runs[0]
		if !s.allTaken() || c.finalEnd+coverTol < s.streamEnd() {
			break
		}
		if r.FromFinalize && s.finTaken && math.Abs(end-s.streamEnd()) <= coverTol {
			// The answer to this segment's Finalize: how slow answers are on this
			// connection sets the grace for the next ones.
			c.slowest = max(c.slowest, now.Sub(s.finBusy))
		}
		l.complete(c, s, "final")
	}
}

// placeWords gives each word of a final to the segment its start falls in.
func (l *ledger) placeWords(c *connLedger, r *results) {
	text := strings.TrimSpace(r.Transcript)
	if len(r.Words) == 0 {
		if text == "" {
			return
		}
		// A transcript without words (guarded against, not expected): it belongs where
		// the final starts.
		if s, _ := c.locate(r.Start); s != nil {
			s.texts = append(s.texts, text)
			s.confSum += r.Confidence
			s.confN++
		}
		return
	}
	type placed struct {
		s *segment
		w word
	}
	var got []placed
	var late []word
	lateRun := -1
	for _, w := range r.Words {
		key := int64(math.Round(w.Start * 1e6))
		if _, dup := c.seen[key]; dup {
			l.n.duplicateWords++
			continue
		}
		s, d := c.locate(w.Start)
		switch {
		case s != nil:
			c.seen[key] = struct{}{}
			s.words = append(s.words, w)
			got = append(got, placed{s, w})
		case d >= 0:
			c.seen[key] = struct{}{}
			late = append(late, w)
			lateRun = d
		default:
			l.n.unplaced++
		}
	}
	if len(got) > 0 && len(got) == len(r.Words) && got[0].s == got[len(got)-1].s && text != "" {
		// The whole final lies in one segment: its transcript is the segment's text
		// (smart formatting may make it differ from the words).
		s := got[0].s
		s.texts = append(s.texts, text)
		s.confSum += r.Confidence
		s.confN++
	} else {
		// The final spans segments (or repeats words): each segment gets its own words.
		for i := 0; i < len(got); {
			j := i
			var parts []string
			for ; j < len(got) && got[j].s == got[i].s; j++ {
				parts = append(parts, wordText(got[j].w))
			}
			s := got[i].s
			s.texts = append(s.texts, strings.Join(parts, " "))
			s.confSum += r.Confidence
			s.confN++
			i = j
		}
	}
	if len(late) > 0 {
		l.n.lateFinals++
		l.n.lateWords += int64(len(late))
		if c.done[lateRun].published {
			l.n.lateSplits++
		}
		l.emitLate(c, c.done[lateRun], late, r.Confidence)
	}
	if len(c.seen) > 4096 {
		// Forget words long confirmed: duplicates only come near the last finals.
		lim := int64(math.Round((c.finalEnd - 60) * 1e6))
		for k := range c.seen {
			if k < lim {
				delete(c.seen, k)
			}
		}
	}
}

func wordText(w word) string {
	if w.Punctuated != "" {
		return w.Punctuated
	}
	return w.Word
}

// locate finds where a stream time of c falls: a live segment (s), or a completed one
// (d, an index in c.done; -1 if none). Times past the audio sent so far belong to the last
// segment sent, and times before the first live segment with no completed one there to the
// first: the service rounds.
func (c *connLedger) locate(sec float64) (s *segment, d int) {
	k := int64(math.Floor(sec*10 + 1e-6))
	var last *segment
	for _, r := range c.runs {
		if r.taken == 0 {
			break
		}
		if k >= r.k0 && k < r.k0+int64(r.taken) {
			return r, -1
		}
		last = r
	}
	for i := len(c.done) - 1; i >= 0; i-- {
		if x := c.done[i]; k >= x.k0 && k < x.k0+int64(x.n) {
			return nil, i
		}
	}
	switch {
	case last != nil && k >= last.k0+int64(last.taken):
		return last, -1
	case len(c.runs) > 0 && c.runs[0].taken > 0 && k < c.runs[0].k0:
		return c.runs[0], -1
	case last == nil && len(c.done) > 0 && k >= c.done[len(c.done)-1].k0:
		return nil, len(c.done) - 1
	}
	return nil, -1
}

// metadata takes the Metadata message of epoch: after our CloseStream it means the
// service has answered everything it received (rule 6b).
func (l *ledger) metadata(epoch uint64, now time.Time) {
	c := l.conn
	if c == nil || c.epoch != epoch {
		return
	}
	c.heardAt = now
	c.metadata = true
	if !c.closeTaken {
		return // a close the service chose (idle, error): not proof of a flush
	}
	for len(c.runs) > 0 && c.runs[0].allTaken() {
		l.complete(c, c.runs[0], "metadata")
	}
}

// lost ends epoch (closed or dead). Its incomplete segments wait for the next connection
// (rule 1), unless they cannot be replayed.
func (l *ledger) lost(epoch uint64, now time.Time) {
	c := l.conn
	if c == nil || c.epoch != epoch {
		return
	}
	l.conn = nil
	for _, s := range c.runs {
		if s.taken > 0 {
			s.replays++
		}
		s.words, s.texts, s.confSum, s.confN = nil, nil, 0, 0
		l.wait(s, now)
	}
	c.runs = nil
}

// setNoConnUntil says no connection can exist before t (why: "backoff", "refused"...).
// Segments that would wait past MaxWait go to the spool now (rule 2); with hopeless (a
// refusal) every segment does, until t.
func (l *ledger) setNoConnUntil(t time.Time, why string, hopeless bool, now time.Time) {
	l.noConnUntil, l.noConnWhy, l.hopeless = t, why, hopeless
	l.spoolWaiting(func(s *segment) bool { return hopeless || t.After(s.waitSince.Add(l.cfg.MaxWait)) }, why)
}

// spoolWaiting spools the waiting segments for which give returns true.
func (l *ledger) spoolWaiting(give func(*segment) bool, why string) {
	var gone []*segment
	for _, s := range l.segs {
		if s.state == segWaiting && give(s) {
			gone = append(gone, s)
		}
	}
	for _, s := range gone {
		l.spool(s, why)
	}
}

// withhold sends the segments whose audio has not all gone out to the spool whole (a
// mute): what was handed to the uplink before the mute is never sent after it. Segments
// already sent in full keep waiting for their finals: that audio is with the service.
// It returns how many segments it withheld.
func (l *ledger) withhold(why string) int {
	var gone []*segment
	for _, s := range l.segs {
		if s.state == segWaiting || s.state == segLive && (s.taken < len(s.frames) || !s.ended) {
			gone = append(gone, s)
		}
	}
	for _, s := range gone {
		l.spool(s, why)
	}
	return len(gone)
}

// tick applies what is due at now: grace completions and expired waits.
func (l *ledger) tick(now time.Time) {
	if c := l.conn; c != nil {
		for len(c.runs) > 0 {
			s := c.runs[0]
			if !s.allTaken() || !s.finTaken {
				break
			}
			due := l.graceDue(c, s)
			if now.Before(due) || c.heardAt.Before(due) {
				break
			}
			l.n.graceCompleted++
			l.complete(c, s, "grace")
		}
	}
	l.spoolWaiting(func(s *segment) bool { return !now.Before(s.waitSince.Add(l.cfg.MaxWait)) }, "no connection")
}

func (l *ledger) graceDue(c *connLedger, s *segment) time.Time {
	g := min(max(l.cfg.Grace, 2*c.slowest), l.cfg.GraceMax)
	return s.finBusy.Add(g)
}

// probe reports whether the grace of the connection's first segment has run out with no
// sign of life since: the supervisor should ping now (once) so that a pong completes it.
func (l *ledger) probe(now time.Time) bool {
	c := l.conn
	if c == nil || len(c.runs) == 0 {
		return false
	}
	s := c.runs[0]
	if !s.allTaken() || !s.finTaken {
		return false
	}
	due := l.graceDue(c, s)
	if now.Before(due) || !c.heardAt.Before(due) || !c.probedAt.Before(due) {
		return false
	}
	c.probedAt = now
	return true
}

// deadline is the next time tick (or probe) has something to do (zero: nothing). A grace
// that has run out waits for a sign of life, which comes as an event, not a deadline.
func (l *ledger) deadline(now time.Time) time.Time {
	var d time.Time
	at := func(t time.Time) {
		if d.IsZero() || t.Before(d) {
			d = t
		}
	}
	if c := l.conn; c != nil && len(c.runs) > 0 {
		if s := c.runs[0]; s.allTaken() && s.finTaken {
			if due := l.graceDue(c, s); due.After(now) {
				at(due)
			}
		}
	}
	for _, s := range l.segs {
		if s.state == segWaiting {
			at(s.waitSince.Add(l.cfg.MaxWait))
		}
	}
	return d
}

// finish ends the input: every undecided segment goes to the spool whole.
func (l *ledger) finish(now time.Time, why string) {
	if l.open != nil {
		l.end(now)
	}
	for _, s := range slices.Clone(l.segs) {
		l.spool(s, why)
	}
	if c := l.conn; c != nil {
		c.runs = nil
	}
}

// ---- queries ----

// needsConn reports whether a segment waits for a connection.
func (l *ledger) needsConn() bool {
	for _, s := range l.segs {
		if s.state == segWaiting {
			return true
		}
	}
	return false
}

// quiet reports whether nothing is open or unconfirmed on the current connection (an idle
// close loses nothing then, and costs no replay).
func (l *ledger) quiet() bool {
	return l.open == nil && (l.conn == nil || len(l.conn.runs) == 0)
}

// unsent is the audio (in frames) appended but not yet handed to a writer.
func (l *ledger) unsent() int {
	n := 0
	for _, s := range l.segs {
		switch s.state {
		case segWaiting:
			n += len(s.frames)
		case segLive:
			n += len(s.frames) - s.taken
		}
	}
	return n
}

// toWall maps a stream time of epoch to capture time (for interims), zero if unknown.
func (l *ledger) toWall(epoch uint64, sec float64, isEnd bool) time.Time {
	c := l.conn
	if c == nil || c.epoch != epoch {
		return time.Time{}
	}
	s, d := c.locate(sec)
	switch {
	case s != nil:
		return s.wall(sec, isEnd)
	case d >= 0:
		return c.done[d].wall(sec)
	}
	return time.Time{}
}

// wall maps stream seconds on the segment's connection to capture time, through the frame
// the time falls in. An end time exactly on a frame boundary belongs to the frame before.
func (s *segment) wall(sec float64, isEnd bool) time.Time {
	n := int64(len(s.frames))
	if s.taken > 0 {
		n = int64(s.taken)
	}
	off := time.Duration(math.Round(clampSec(sec)*1e6))*time.Microsecond - time.Duration(s.k0)*audio.FrameDuration
	i := int64(off / audio.FrameDuration)
	rem := off - time.Duration(i)*audio.FrameDuration
	if off < 0 {
		return s.frames[0].Time.Add(off)
	}
	if isEnd && rem == 0 && i > 0 {
		i--
		rem = audio.FrameDuration
	}
	if i >= n {
		return s.frames[n-1].Time.Add(off - time.Duration(n-1)*audio.FrameDuration)
	}
	return s.frames[i].Time.Add(rem)
}

func (d doneRun) wall(sec float64) time.Time {
	off := time.Duration(math.Round(clampSec(sec)*1e6))*time.Microsecond - time.Duration(d.k0)*audio.FrameDuration
	return d.first.Add(off)
}

// ---- outcomes ----

// complete publishes s, which its connection has fully answered.
func (l *ledger) complete(c *connLedger, s *segment, how string) {
	c.runs = slices.DeleteFunc(c.runs, func(x *segment) bool { return x == s })
	u := s.utterance(c.reqID)
	c.done = append(c.done, doneRun{k0: s.k0, n: len(s.frames), first: s.frames[0].Time, id: s.id, published: u.Text != ""})
	if len(c.done) > keepDone {
		c.done = slices.Delete(c.done, 0, len(c.done)-keepDone)
	}
	l.remove(s)
	l.settled = append(l.settled, s.frames[0].Time)
	if u.Text == "" {
		l.n.empty++
	} else {
		l.n.published++
		l.out = append(l.out, output{kind: outUtterance, utt: u, id: s.id, how: how, replays: s.replays})
	}
	l.recycle(s)
}

func (s *segment) utterance(reqID string) transcript.Utterance {
	u := transcript.Utterance{Source: transcript.SourceLive, RequestID: reqID, Text: strings.Join(s.texts, " ")}
	if s.confN > 0 {
		u.Confidence = s.confSum / float64(s.confN)
	}
	for _, w := range s.words {
		u.Words = append(u.Words, transcript.Word{
			Word: w.Word, Punctuated: w.Punctuated, Confidence: w.Confidence, Speaker: w.Speaker,
			Start: s.wall(w.Start, false), End: s.wall(w.End, true),
		})
	}
	if n := len(u.Words); n > 0 {
		u.Start, u.End = u.Words[0].Start, u.Words[n-1].End
	} else if len(s.frames) > 0 {
		u.Start, u.End = s.frames[0].Time, s.frames[len(s.frames)-1].End()
	}
	return u
}

// emitLate publishes words that arrived for a segment already completed by grace (rule 7).
func (l *ledger) emitLate(c *connLedger, d doneRun, ws []word, conf float64) {
	u := transcript.Utterance{Source: transcript.SourceLive, RequestID: c.reqID, Confidence: conf}
	parts := make([]string, 0, len(ws))
	for _, w := range ws {
		parts = append(parts, wordText(w))
		u.Words = append(u.Words, transcript.Word{Word: w.Word, Punctuated: w.Punctuated,
			Confidence: w.Confidence, Speaker: w.Speaker, Start: d.wall(w.Start), End: d.wall(w.End)})
	}
	u.Text = strings.Join(parts, " ")
	u.Start, u.End = u.Words[0].Start, u.Words[len(u.Words)-1].End
	l.out = append(l.out, output{kind: outUtterance, utt: u, id: d.id, how: "late"})
}

// spool decides that s goes to the spool whole; it is handed over when it has ended.
func (l *ledger) spool(s *segment, why string) {
	if s.c != nil {
		s.c.runs = slices.DeleteFunc(s.c.runs, func(x *segment) bool { return x == s })
		s.c = nil
	}
	s.state, s.reason = segSpool, why
	s.words, s.texts = nil, nil
	if s.ended {
		l.emitSpool(s)
	}
}

func (l *ledger) emitSpool(s *segment) {
	l.remove(s)
	if len(s.frames) == 0 {
		return
	}
	l.n.spooled++
	l.n.spooledFrames += int64(len(s.frames))
	// The frames go to the handler with the segment: its buffer is not reused.
	l.out = append(l.out, output{kind: outSpool, id: s.id, replays: s.replays,
		seg: Segment{Start: s.frames[0].Time, Frames: s.frames, Reason: s.reason}})
	s.frames = nil
}

// drop forgets a segment that never had a frame.
func (l *ledger) drop(s *segment) {
	if s.c != nil {
		s.c.runs = slices.DeleteFunc(s.c.runs, func(x *segment) bool { return x == s })
	}
	l.remove(s)
	l.n.segments--
	l.recycle(s)
}

func (l *ledger) remove(s *segment) {
	l.segs = slices.DeleteFunc(l.segs, func(x *segment) bool { return x == s })
	if l.open == s {
		l.open = nil
	}
}

// takeSettled returns the segments completed live since the last call (see settled).
func (l *ledger) takeSettled(dst []time.Time) []time.Time {
	dst = append(dst, l.settled...)
	l.settled = l.settled[:0]
	return dst
}

// takeOutputs returns the decisions made since the last call, in order.
func (l *ledger) takeOutputs(dst []output) []output {
	dst = append(dst, l.out...)
	clear(l.out)
	l.out = l.out[:0]
	return dst
}

// buffer returns an empty frame buffer, reused when possible: the per-frame path does not
// allocate once buffers have grown to the usual segment length.
func (l *ledger) buffer() []audio.Frame {
	if n := len(l.pool); n > 0 {
		b := l.pool[n-1]
		l.pool = l.pool[:n-1]
		return b
	}
	return make([]audio.Frame, 0, 128)
}

func (l *ledger) recycle(s *segment) {
	if s.frames == nil {
		return
	}
	clear(s.frames) // let the samples go
	if len(l.pool) < 4 {
		l.pool = append(l.pool, s.frames[:0])
	}
	s.frames = nil
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
