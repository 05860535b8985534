package vad

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/hark-audio/hark/audio"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// signal builds test audio: each generator appends samples at a given RMS level (dBFS).
type signal struct {
	s   []float64
	rng *rand.Rand
}

func newSignal(seed uint64) *signal { return &signal{rng: rand.New(rand.NewPCG(seed, 1))} }

func amp(dbfs float64) float64 { return 32768 * math.Pow(10, dbfs/20) }

// white appends Gaussian white noise.
func (g *signal) white(sec, dbfs float64) *signal {
	a := amp(dbfs)
	for i := 0; i < int(sec*audio.SampleRate); i++ {
		g.s = append(g.s, a*g.rng.NormFloat64())
	}
	return g
}

// pink appends approximately pink noise (Kellet's economy filter), scaled to dbfs.
func (g *signal) pink(sec, dbfs float64) *signal {
	n := int(sec * audio.SampleRate)
	buf := make([]float64, n)
	var b0, b1, b2, e float64
	for i := range buf {
		w := g.rng.NormFloat64()
		b0 = 0.99765*b0 + w*0.0990460
		b1 = 0.96300*b1 + w*0.2965164
		b2 = 0.57000*b2 + w*1.0526913
		buf[i] = b0 + b1 + b2 + w*0.1848
		e += buf[i] * buf[i]
	}
	k := amp(dbfs) / math.Sqrt(e/float64(n))
	for _, v := range buf {
		g.s = append(g.s, v*k)
	}
	return g
}

// tone appends a sine.
func (g *signal) tone(sec, hz, dbfs float64) *signal {
	a := amp(dbfs) * math.Sqrt2
	for i := 0; i < int(sec*audio.SampleRate); i++ {
		g.s = append(g.s, a*math.Sin(2*math.Pi*hz*float64(i)/audio.SampleRate))
	}
	return g
}

// speechLike appends noise band-limited around 500-2000 Hz and amplitude-modulated at a
// syllable rate (4 Hz, fully down between syllables), the rough envelope of speech.
func (g *signal) speechLike(sec, dbfs float64) *signal {
	n := int(sec * audio.SampleRate)
	buf := make([]float64, n)
	var lp1, lp2, e float64
	for i := range buf {
		w := g.rng.NormFloat64()
		lp1 += 0.5 * (w - lp1)    // low-pass ~2 kHz
		lp2 += 0.15 * (lp1 - lp2) // slower low-pass
		x := lp1 - lp2            // crude band-pass
		m := 0.5 - 0.5*math.Cos(2*math.Pi*4*float64(i)/audio.SampleRate)
		buf[i] = x * m
		e += buf[i] * buf[i]
	}
	k := amp(dbfs) / math.Sqrt(e/float64(n))
	for _, v := range buf {
		g.s = append(g.s, v*k)
	}
	return g
}

// add mixes another signal into this one from sample offset off.
func (g *signal) add(off int, o *signal) *signal {
	for i, v := range o.s {
		if off+i < len(g.s) {
			g.s[off+i] += v
		}
	}
	return g
}

// frames cuts the signal into captured frames (the last one zero-padded).
func (g *signal) frames() []audio.Frame {
	var out []audio.Frame
	for i := 0; i < len(g.s); i += audio.FrameSamples {
		s := make([]int16, audio.FrameSamples)
		for j := range s {
			if i+j < len(g.s) {
				s[j] = int16(max(-32768, min(32767, math.Round(g.s[i+j]))))
			}
		}
		seq := uint64(len(out))
		out = append(out, audio.Frame{Seq: seq, Time: t0.Add(time.Duration(seq) * audio.FrameDuration), Samples: s})
	}
	return out
}

// run pushes every frame through a gate and returns the events, the analyses and the
// per-frame sent flags.
func run(t testing.TB, cfg Config, fr []audio.Frame) ([]Event, []Analysis, []bool) {
	t.Helper()
	g := NewGate(cfg)
	var ev []Event
	var an []Analysis
	for _, f := range fr {
		ev = g.Push(f, ev)
		an = append(an, g.Last())
	}
	ev = g.Flush(ev)
	checkEvents(t, ev, fr)
	sent := make([]bool, len(fr))
	for _, e := range ev {
		if e.Kind == SegmentFrame {
			sent[e.Frame.Seq] = true
		}
	}
	return ev, an, sent
}

// checkEvents asserts the event grammar: Start, Frame+, End per segment, numbered from 1,
// frames in capture order without duplicates, never empty, bit-exact (the very slices that
// were pushed), and start/end times matching the first/last frame.
func checkEvents(t testing.TB, ev []Event, in []audio.Frame) {
	t.Helper()
	var seg uint64
	open := false
	var first, last *audio.Frame
	lastSeq := int64(-1)
	for i, e := range ev {
		switch e.Kind {
		case SegmentStart:
			if open {
				t.Fatalf("event %d: start inside segment %d", i, seg)
			}
			if e.Segment != seg+1 {
				t.Fatalf("event %d: segment %d after %d", i, e.Segment, seg)
			}
			seg, open, first = e.Segment, true, nil
			if i+1 >= len(ev) || ev[i+1].Kind != SegmentFrame {
				t.Fatalf("event %d: start not followed by a frame", i)
			}
			if !e.Time.Equal(ev[i+1].Frame.Time) {
				t.Fatalf("segment %d start time %v, first frame at %v", seg, e.Time, ev[i+1].Frame.Time)
			}
		case SegmentFrame:
			if !open || e.Segment != seg {
				t.Fatalf("event %d: frame outside its segment", i)
			}
			f := e.Frame
			if len(f.Samples) != audio.FrameSamples {
				t.Fatalf("event %d: frame of %d samples", i, len(f.Samples))
			}
			if int64(f.Seq) <= lastSeq {
				t.Fatalf("event %d: frame %d after %d", i, f.Seq, lastSeq)
			}
			lastSeq = int64(f.Seq)
			orig := in[f.Seq]
			if &f.Samples[0] != &orig.Samples[0] || !f.Time.Equal(orig.Time) || !e.Time.Equal(orig.Time) {
				t.Fatalf("event %d: frame %d is not the captured frame passed through", i, f.Seq)
			}
			if first == nil {
				first = &ev[i].Frame
			}
			last = &ev[i].Frame
		case SegmentEnd:
			if !open || e.Segment != seg || last == nil {
				t.Fatalf("event %d: end without an open segment", i)
			}
			if !e.Time.Equal(last.End()) {
				t.Fatalf("segment %d end time %v, last frame ends %v", seg, e.Time, last.End())
			}
			open, last = false, nil
		default:
			t.Fatalf("event %d: kind %d", i, e.Kind)
		}
	}
	if open {
		t.Fatalf("segment %d left open after Flush", seg)
	}
	_ = first
}

// dilate is the reference gate: a frame is sent when a speech frame lies at most
// pre frames after it or post frames before it.
func dilate(sp []bool, pre, post int) []bool {
	out := make([]bool, len(sp))
	for i, s := range sp {
		if s {
			for j := max(0, i-pre); j <= i+post && j < len(sp); j++ {
				out[j] = true
			}
		}
	}
	return out
}

func silentFrames(n int) []audio.Frame {
	fr := make([]audio.Frame, n)
	for i := range fr {
		fr[i] = audio.Frame{Seq: uint64(i), Time: t0.Add(time.Duration(i) * audio.FrameDuration), Samples: make([]int16, audio.FrameSamples)}
	}
	return fr
}

// TestGateTimingMatchesReference drives the gate's state machine with random decision
// sequences and compares what it sends with the reference dilation, for several pre-roll
// and hangover settings, including zero.
func TestGateTimingMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for _, tc := range []struct{ pre, post int }{{5, 7}, {0, 0}, {0, 3}, {3, 0}, {1, 1}, {30, 50}} {
		for trial := 0; trial < 50; trial++ {
			n := 200
			fr := silentFrames(n)
			sp := make([]bool, n)
			p := rng.Float64() * 0.3
			for i := range sp {
				sp[i] = rng.Float64() < p
			}
			cfg := DefaultConfig()
			cfg.PreRollMS, cfg.HangoverMS, cfg.MaxSegmentMS = tc.pre*100, tc.post*100, 0
			g := NewGate(cfg)
			var ev []Event
			for i, f := range fr {
				ev = g.step(f, sp[i], false, ev)
			}
			ev = g.Flush(ev)
			checkEvents(t, ev, fr)
			got := make([]bool, n)
			for _, e := range ev {
				if e.Kind == SegmentFrame {
					got[e.Frame.Seq] = true
				}
			}
			want := dilate(sp, tc.pre, tc.post)
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("pre %d post %d trial %d: frame %d sent=%v, want %v", tc.pre, tc.post, trial, i, got[i], want[i])
				}
			}
		}
	}
}

func TestGateMaxSegmentSplitsWithoutLoss(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxSegmentMS = 1000
	cfg.PreRollMS, cfg.HangoverMS = 500, 700 // the counts below assume these
	fr := silentFrames(100)
	g := NewGate(cfg)
	var ev []Event
	for i, f := range fr {
		ev = g.step(f, i >= 20 && i < 60, false, ev)
	}
	ev = g.Flush(ev)
	checkEvents(t, ev, fr)
	var frames, starts int
	segLen := map[uint64]int{}
	for _, e := range ev {
		switch e.Kind {
		case SegmentFrame:
			frames++
			segLen[e.Segment]++
		case SegmentStart:
			starts++
		}
	}
	// Frames 15..66 are sent (5 pre-roll, 7 hangover): 52 frames in segments of <= 10.
	if frames != 52 {
		t.Fatalf("sent %d frames, want 52", frames)
	}
	if starts != 6 {
		t.Fatalf("%d segments, want 6 (52 frames split at 10)", starts)
	}
	for s, n := range segLen {
		if n > 10 {
			t.Fatalf("segment %d has %d frames, limit 10", s, n)
		}
	}
}

func TestGateIgnoresEmptyFrames(t *testing.T) {
	g := NewGate(DefaultConfig())
	ev := g.Push(audio.Frame{Seq: 1, Time: t0}, nil)
	if len(ev) != 0 {
		t.Fatalf("empty frame produced %d events", len(ev))
	}
}

// scenario is a synthetic input and what the VAD must make of it.
type scenario struct {
	name string
	sig  func() *signal
	// onset and offset (seconds) of the part that must be detected; onset < 0 means
	// nothing may be detected after the first second.
	onset, offset float64
}

func scenarios() []scenario {
	return []scenario{
		{"digital silence", func() *signal { return newSignal(1).white(10, -200) }, -1, 0},
		{"white noise", func() *signal { return newSignal(2).white(10, -50) }, -1, 0},
		{"pink noise", func() *signal { return newSignal(3).pink(10, -40) }, -1, 0},
		{"steady tone", func() *signal { return newSignal(4).tone(10, 440, -30) }, -1, 0},
		{"hum burst below the band", func() *signal {
			return newSignal(5).white(10, -70).add(5*16000, newSignal(6).tone(2, 50, -30))
		}, -1, 0},
		{"tone burst in noise", func() *signal {
			return newSignal(7).pink(10, -50).add(4*16000, newSignal(8).tone(2, 1000, -35))
		}, 4, 6},
		{"speech-like burst at 10 dB SNR in pink noise", func() *signal {
			return newSignal(9).pink(12, -45).add(5*16000, newSignal(10).speechLike(3, -35))
		}, 5, 8},
		{"speech-like burst at 5 dB SNR in pink noise", func() *signal {
			return newSignal(11).pink(12, -40).add(5*16000, newSignal(12).speechLike(3, -35))
		}, 5, 8},
		{"speech-like burst in silence", func() *signal {
			return newSignal(13).white(8, -80).add(3*16000, newSignal(14).speechLike(2, -30))
		}, 3, 5},
	}
}

// energyConfig is the defaults with the classifier off: the synthetic signals of these
// tests (tones, band-limited noise bursts) test the energy detector's timing; they are not
// speech, and the classifier rightly vetoes some of them (TestClassifierOnlyVetoes and
// TestBuiltinWeightsKeepSpeech test it).
func energyConfig() Config {
	c := DefaultConfig()
	c.ClassifierThreshold = 0
	return c
}

func TestDetectorScenarios(t *testing.T) {
	cfg := energyConfig()
	pre, hang := cfg.PreRollMS/100, cfg.HangoverMS/100
	for _, sc := range scenarios() {
		t.Run(sc.name, func(t *testing.T) {
			fr := sc.sig().frames()
			_, an, sent := run(t, cfg, fr)
			firstSpeech, lastSpeech := -1, -1
			for i, a := range an {
				if i < 10 {
					continue
				}
				if a.Speech {
					if firstSpeech < 0 {
						firstSpeech = i
					}
					lastSpeech = i
				}
				if a.Speech && !sent[i] {
					t.Fatalf("frame %d is speech but not sent", i)
				}
			}
			if sc.onset < 0 {
				if firstSpeech >= 0 {
					t.Fatalf("speech detected at frame %d (level %.1f floor %.1f thr %.1f)", firstSpeech,
						an[firstSpeech].LevelDBFS, an[firstSpeech].FloorDBFS, an[firstSpeech].ThresholdDBFS)
				}
				return
			}
			on, off := int(sc.onset*10), int(sc.offset*10)
			if firstSpeech < 0 {
				t.Fatal("nothing detected")
			}
			// Detected within 3 frames of the onset, never before it.
			if firstSpeech < on || firstSpeech > on+3 {
				t.Fatalf("first speech at frame %d, onset at %d", firstSpeech, on)
			}
			// Pre-roll: the first sent frame precedes the detected onset by exactly PreRoll,
			// so it also precedes the true onset.
			firstSent := -1
			for i, s := range sent {
				if s {
					firstSent = i
					break
				}
			}
			if firstSent != firstSpeech-pre {
				t.Fatalf("first sent frame %d, want detected onset %d - pre-roll %d", firstSent, firstSpeech, pre)
			}
			// The 400 ms mean level lengthens speech by up to smoothN-1 frames.
			if lastSpeech < off-3 || lastSpeech > off+smoothN-1 {
				t.Fatalf("last speech at frame %d, offset at %d", lastSpeech, off)
			}
			// Hangover: sent through lastSpeech+hang, or up to the frame that ended it early
			// (the level back at the floor for endFloorFrames after loud speech; the 400 ms
			// mean level keeps speech going for up to smoothN-1 of them), then nothing.
			end := lastSpeech + hang
			for i := lastSpeech + 1; i < lastSpeech+hang && i < len(an); i++ {
				if an[i].Ended {
					end = i
					break
				}
			}
			if end < lastSpeech+endFloorFrames-(smoothN-1) {
				t.Fatalf("hangover ended at frame %d, %d after the last speech", end, end-lastSpeech)
			}
			for i := lastSpeech; i < len(sent); i++ {
				if want := i <= end; sent[i] != want {
					t.Fatalf("frame %d sent=%v, want %v (last speech %d, end %d)", i, sent[i], want, lastSpeech, end)
				}
			}
		})
	}
}

// TestHangoverEndsAtTheFloor: after loud speech in steady noise the gate closes once the
// level has been back at the floor for endFloorFrames, not a whole hangover later; after
// speech only a few dB above the noise (its quiet ending may be under the noise) the
// whole hangover runs. Either way a word that follows within the hangover is detected as
// if the gate had stayed open, and sent with its pre-roll.
func TestHangoverEndsAtTheFloor(t *testing.T) {
	cfg := energyConfig()
	hang := cfg.HangoverMS / 100
	for _, tc := range []struct {
		name    string
		burstDB float64 // burst level; the noise is at -50 dBFS
		early   bool
	}{{"loud", -25, true}, {"near the noise", -44, false}} {
		t.Run(tc.name, func(t *testing.T) {
			sig := newSignal(21).white(14, -50).add(5*16000, newSignal(22).speechLike(1.5, tc.burstDB)).
				add(105*1600, newSignal(23).speechLike(0.6, tc.burstDB)) // a second word 10.5 s in
			_, an, sent := run(t, cfg, sig.frames())
			last := -1
			for i := 0; i < 100; i++ {
				if an[i].Speech {
					last = i
				}
			}
			if last < 0 {
				t.Fatal("first burst not detected")
			}
			end := last
			for end+1 < len(sent) && sent[end+1] {
				end++
			}
			switch {
			case tc.early && end > last+endFloorFrames:
				t.Fatalf("loud burst: last speech %d, segment ends %d; want at most %d frames later", last, end, endFloorFrames)
			case !tc.early && end != last+hang:
				t.Fatalf("quiet burst: last speech %d, segment ends %d; want the whole hangover (%d)", last, end, hang)
			}
			// The second word is detected and sent with its pre-roll.
			first := -1
			for i := 100; i < len(an); i++ {
				if an[i].Speech {
					first = i
					break
				}
			}
			if first < 0 || !sent[first-cfg.PreRollMS/100] {
				t.Fatalf("second word: first speech frame %d, not sent with its pre-roll", first)
			}
		})
	}
}

// A step up in the noise level opens the gate, but the floor follows within the floor
// window and the gate closes again; after a step down, speech is detected again.
func TestDetectorNoiseSteps(t *testing.T) {
	cfg := energyConfig()
	sig := newSignal(20).pink(10, -60).pink(40, -40).pink(10, -60)
	sig.add(55*16000, newSignal(21).speechLike(2, -50))
	fr := sig.frames()
	_, an, sent := run(t, cfg, fr)
	window := cfg.FloorWindowMS / 100
	// After the step up at frame 100, the gate is closed again within window frames.
	for i := 100 + window + 10; i < 500; i++ {
		if an[i].Speech {
			t.Fatalf("frame %d still speech %d frames after the step up (floor %.1f, level %.1f)", i, i-100, an[i].FloorDBFS, an[i].LevelDBFS)
		}
	}
	if got := an[499].FloorDBFS; math.Abs(got-an[499].LevelDBFS) > 3 {
		t.Fatalf("floor %.1f did not follow the noise at %.1f", got, an[499].LevelDBFS)
	}
	// After the step down at frame 500, the floor drops quickly and the burst at 55 s
	// (10 dB above the new noise) is found.
	found := false
	for i := 550; i < 575; i++ {
		found = found || (an[i].Speech && sent[i])
	}
	if !found {
		t.Fatalf("speech after the step down not detected; floor %.1f at 55 s", an[550].FloorDBFS)
	}
}

func TestSetConfigLive(t *testing.T) {
	sig := newSignal(30).pink(20, -50)
	for s := 3; s < 20; s += 3 {
		sig.add(s*16000, newSignal(uint64(s)).speechLike(1, -40))
	}
	fr := sig.frames()
	g := NewGate(DefaultConfig())
	var ev []Event
	speechBefore, speechAfter := 0, 0
	for i, f := range fr {
		if i == 100 {
			c := DefaultConfig()
			c.ThresholdDB = 30 // far above the 10 dB bursts
			c.ReleaseDB = 1
			c.PreRollMS = 200
			g.SetConfig(c)
			if g.Config().ThresholdDB != 30 {
				t.Fatal("config not applied")
			}
		}
		ev = g.Push(f, ev[:0])
		if g.Last().Speech {
			if i < 100 {
				speechBefore++
			} else {
				speechAfter++
			}
		}
		for _, e := range ev {
			if e.Kind == SegmentStart && i > 100 {
				t.Fatalf("segment started at frame %d after raising the threshold", i)
			}
		}
	}
	if speechBefore == 0 {
		t.Fatal("no speech before the change")
	}
	if speechAfter > 10 { // at most the end of a segment open at the change
		t.Fatalf("%d speech frames after raising the threshold", speechAfter)
	}
}

func TestSetConfigShrinksPreRoll(t *testing.T) {
	cfg := DefaultConfig()
	fr := silentFrames(20)
	g := NewGate(cfg)
	for _, f := range fr[:10] {
		g.step(f, false, false, nil)
	}
	cfg.PreRollMS = 200
	g.SetConfig(cfg)
	ev := g.step(fr[10], true, false, nil)
	// start, 2 pre-roll frames (8, 9), the onset frame 10
	if len(ev) != 4 || ev[1].Frame.Seq != 8 || ev[3].Frame.Seq != 10 {
		t.Fatalf("events after shrinking pre-roll: %+v", ev)
	}
	cfg.HangoverMS = 100
	g.SetConfig(cfg)
	ev = g.step(fr[11], false, false, nil)
	if len(ev) != 2 || ev[1].Kind != SegmentEnd {
		t.Fatalf("hangover of 1 frame: %+v", ev)
	}
}

func TestPushAllocs(t *testing.T) {
	sig := newSignal(40).pink(30, -50)
	for s := 2; s < 30; s += 4 {
		sig.add(s*16000, newSignal(uint64(100+s)).speechLike(1.5, -35))
	}
	fr := sig.frames()
	g := NewGate(DefaultConfig())
	ev := make([]Event, 0, 64)
	// Warm up so the level history is full size.
	for _, f := range fr {
		g.Push(f, ev[:0])
	}
	i := 0
	allocs := testing.AllocsPerRun(len(fr), func() {
		ev = g.Push(fr[i%len(fr)], ev[:0])
		i++
	})
	if allocs != 0 {
		t.Fatalf("Push allocates %.2f times per frame", allocs)
	}
}

// BenchmarkGatePush: the default gate (classifier on) and the energy detector alone, on
// pink noise with speech-like bursts 1.5 s in every 4 s (dense: the classifier scores
// about half the frames; at the floor it scores none).
func BenchmarkGatePush(b *testing.B) {
	sig := newSignal(50).pink(60, -50)
	for s := 2; s < 60; s += 4 {
		sig.add(s*16000, newSignal(uint64(200+s)).speechLike(1.5, -35))
	}
	fr := sig.frames()
	for _, bc := range []struct {
		name string
		cfg  Config
	}{{"classifier", DefaultConfig()}, {"energy", energyConfig()}} {
		b.Run(bc.name, func(b *testing.B) {
			g := NewGate(bc.cfg)
			ev := make([]Event, 0, 64)
			b.ReportAllocs()
			b.SetBytes(audio.FrameBytes)
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				ev = g.Push(fr[i%len(fr)], ev[:0])
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000*10, "µs/audio-s")
		})
	}
}
