// Package vad decides which captured audio is speech and gates it: only speech segments,
// with a little audio before each onset (pre-roll) and after each end (hangover), go on
// to the uplink, so silence costs neither bandwidth nor transcription.
//
// The detector is an energy VAD on its own band-limited copy of each 100 ms frame, judged
// against an adaptive noise floor (a low percentile of the recent levels) and the measured
// spread of the noise, with hysteresis and onset confirmation; a small trained classifier
// over spectral and temporal features of the same copy (features.go, classifier.go) can
// veto what the energy detector calls speech, which rejects loud non-stationary noise
// (machinery, clanks, crackle, music) that a level alone cannot tell from speech. The Gate passes the
// captured frames themselves, untouched: the same Samples slices, bit-exact.
//
// A Gate is not safe for concurrent use; the agent calls it from the one goroutine that
// owns the audio path. SetConfig must be called from that goroutine too.
package vad

import (
	"time"

	"github.com/hark-audio/hark/audio"
)

// EventKind says what an Event is.
type EventKind uint8

const (
	// SegmentStart opens a segment. Time is the capture time of its first frame (the
	// oldest pre-roll frame).
	SegmentStart EventKind = iota + 1
	// SegmentFrame carries one frame of the open segment, in capture order.
	SegmentFrame
	// SegmentEnd closes the segment. Time is the capture time just after its last frame.
	SegmentEnd
)

func (k EventKind) String() string {
	switch k {
	case SegmentStart:
		return "start"
	case SegmentFrame:
		return "frame"
	case SegmentEnd:
		return "end"
	}
	return "unknown"
}

// Event is one output of the gate. For a segment the order is always SegmentStart, then a
// SegmentFrame for each pre-roll frame and each live frame, then SegmentEnd.
type Event struct {
	Kind EventKind
	// Segment numbers segments from 1; all events of one segment carry the same number.
	Segment uint64
	// Frame is the captured frame (SegmentFrame only), passed through untouched.
	Frame audio.Frame
	// Time is the segment's start (SegmentStart) or end (SegmentEnd) in capture wall-clock
	// time; for SegmentFrame it equals Frame.Time.
	Time time.Time
}

// Gate runs the detector over frames and turns its decisions into segments. The zero value
// is not usable; call NewGate.
type Gate struct {
	det *detector
	cfg Config

	// Pre-roll ring of the frames seen while closed, oldest at ring[head].
	ring  [maxPreRollMS / 100]audio.Frame
	head  int
	count int

	open    bool
	seg     uint64
	hang    int // hangover frames left after the last speech frame
	segLen  int // frames emitted in the current segment
	lastEnd time.Time
	last    Analysis
}

// NewGate returns a gate with the given settings. cfg should have passed Validate; values
// outside the limits are clamped rather than trusted.
func NewGate(cfg Config) *Gate {
	g := &Gate{det: newDetector(cfg)}
	g.SetConfig(cfg)
	return g
}

// SetConfig applies new settings at once: thresholds take effect on the next frame, a
// shorter pre-roll drops the oldest buffered frames, a shorter hangover shortens the
// current one.
func (g *Gate) SetConfig(cfg Config) {
	cfg.PreRollMS = clamp(cfg.PreRollMS, 0, maxPreRollMS)
	cfg.HangoverMS = clamp(cfg.HangoverMS, 0, maxHangoverMS)
	cfg.FloorWindowMS = clamp(cfg.FloorWindowMS, 0, maxFloorWindow)
	if cfg.MaxSegmentMS < 0 {
		cfg.MaxSegmentMS = 0
	}
	g.cfg = cfg
	g.det.setConfig(cfg)
	for g.count > g.preRoll() {
		g.dropOldest()
	}
	if h := g.hangover(); g.hang > h {
		g.hang = h
	}
}

// SetWeights replaces the classifier's weights (nil restores the built-in ones), for
// evaluating other trainings (bench/vad -weights, eval/train). The daemon uses the
// built-in weights.
func (g *Gate) SetWeights(w *Weights) {
	if w == nil {
		w = &defaultWeights
	}
	g.det.cls.w = w
}

// Features returns the classifier's input for the last frame pushed: NumFeatures values,
// valid until the next Push, or nil if the classifier did not score that frame (it was
// at the noise floor, or the classifier is off). For training (bench/vad -train).
func (g *Gate) Features() []float64 {
	if !g.det.scored {
		return nil
	}
	return g.det.feat.v[:]
}

// Config returns the settings in use.
func (g *Gate) Config() Config { return g.cfg }

// Last returns the analysis of the last frame pushed.
func (g *Gate) Last() Analysis { return g.last }

// Open reports whether a segment is open.
func (g *Gate) Open() bool { return g.open }

func (g *Gate) preRoll() int  { return g.cfg.PreRollMS / 100 }
func (g *Gate) hangover() int { return g.cfg.HangoverMS / 100 }

// Push analyses one captured frame and appends the resulting events to out. It does not
// allocate when out has room (a capacity of preroll+3 events is always enough). A frame
// with no samples is ignored: the gate never passes an empty frame on.
func (g *Gate) Push(f audio.Frame, out []Event) []Event {
	if len(f.Samples) == 0 {
		return out
	}
	a := g.det.analyze(f.Samples, g.open)
	hang := g.hang
	out = g.step(f, a.Speech, a.Ended, out)
	// Ended is shown where it cut a hangover short, not on every quiet frame after.
	a.Ended = a.Ended && hang > 1 && !g.open
	a.Open = g.open
	g.last = a
	return out
}

// step advances the gate by one frame whose speech decision is known; ended (the detector
// judged the utterance over) ends a hangover early. Kept apart from the detector so the
// gate's timing can be checked against any decision sequence.
func (g *Gate) step(f audio.Frame, speech, ended bool, out []Event) []Event {
	if !g.open {
		if !speech {
			g.remember(f)
			return out
		}
		g.seg++
		g.open, g.segLen = true, 0
		start := f.Time
		if g.count > 0 {
			start = g.ring[g.head].Time
		}
		out = append(out, Event{Kind: SegmentStart, Segment: g.seg, Time: start})
		for g.count > 0 {
			out = g.emit(out, g.ring[g.head])
			g.dropOldest()
		}
		g.hang = g.hangover()
		return g.emit(out, f)
	}
	if max := g.cfg.MaxSegmentMS / 100; max > 0 && g.segLen >= max {
		// Split: close this segment and carry on in a new one, losing nothing.
		out = append(out, Event{Kind: SegmentEnd, Segment: g.seg, Time: g.lastEnd})
		g.seg++
		g.segLen = 0
		out = append(out, Event{Kind: SegmentStart, Segment: g.seg, Time: f.Time})
	}
	if speech {
		g.hang = g.hangover()
		return g.emit(out, f)
	}
	if g.hang == 0 { // only with a zero hangover: this frame is already past the end
		g.open = false
		out = append(out, Event{Kind: SegmentEnd, Segment: g.seg, Time: g.lastEnd})
		g.remember(f)
		return out
	}
	g.hang--
	if ended { // the utterance is over: this frame is the segment's last
		g.hang = 0
	}
	out = g.emit(out, f)
	if g.hang == 0 {
		g.open = false
		out = append(out, Event{Kind: SegmentEnd, Segment: g.seg, Time: g.lastEnd})
	}
	return out
}

// Flush ends the input: an open segment is closed with SegmentEnd. Buffered pre-roll
// frames that never led to speech are discarded.
func (g *Gate) Flush(out []Event) []Event {
	if g.open {
		g.open = false
		g.hang = 0
		out = append(out, Event{Kind: SegmentEnd, Segment: g.seg, Time: g.lastEnd})
	}
	for g.count > 0 {
		g.dropOldest()
	}
	g.last.Open = false
	return out
}

func (g *Gate) emit(out []Event, f audio.Frame) []Event {
	g.segLen++
	g.lastEnd = f.End()
	return append(out, Event{Kind: SegmentFrame, Segment: g.seg, Frame: f, Time: f.Time})
}

// remember keeps a frame seen while closed as possible pre-roll.
func (g *Gate) remember(f audio.Frame) {
	n := g.preRoll()
	if n == 0 {
		return
	}
	if g.count == n {
		g.dropOldest()
	}
	g.ring[(g.head+g.count)%len(g.ring)] = f
	g.count++
}

func (g *Gate) dropOldest() {
	g.ring[g.head] = audio.Frame{} // let the samples be collected
	g.head = (g.head + 1) % len(g.ring)
	g.count--
}

func clamp[T int | float64](v, lo, hi T) T { return max(lo, min(hi, v)) }
