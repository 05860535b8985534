package vad

import (
	"math"
	"sort"
)

// hpCos, hpSin are cos and sin of 2*pi*hpCutHz/decimRate (= 2*pi/32), from the exact tables.
var hpCos, hpSin = func() (float64, float64) {
	c, s := unitCircle(decimRate / hpCutHz)
	return c[1], s[1]
}()

// Analysis is the VAD's view of one frame, for display and tuning (`hark vad`, health).
type Analysis struct {
	// LevelDBFS is the level the decision uses: the mean power in the analysis band
	// (250–4000 Hz) over this frame and the three before it, dB relative to full scale.
	LevelDBFS float64
	// FloorDBFS is the adaptive noise floor the level is compared against.
	FloorDBFS float64
	// ThresholdDBFS is the level a frame must exceed to start speech.
	ThresholdDBFS float64
	// Score is the classifier's probability (0..1) that this frame is speech, from the
	// frame's spectral and temporal features; -1 when the classifier is off or not warm.
	Score float64
	// Vetoed says the energy detector heard speech in this frame but the classifier's
	// score was below classifier_threshold, so the frame was not counted as speech.
	Vetoed bool
	// Speech is the VAD's decision for this frame (before pre-roll and hangover).
	Speech bool
	// Ended says the gate closed at this frame without running out its hangover: the
	// level has been back at the noise floor for a while after loud speech.
	Ended bool
	// Open says whether the gate is passing audio after this frame (including hangover).
	Open bool
}

// Analysis-band filter: the VAD looks at its own copy of the audio, decimated 2:1 by
// averaging sample pairs (a gentle low-pass, -3 dB at 4 kHz) and high-passed at 250 Hz
// (4th-order Butterworth, -56 dB at 50 Hz), which removes the rumble, hum and brown-noise
// energy that carries no speech and would otherwise dominate the level.
const (
	decimRate = 8000
	hpCutHz   = 250
	silentDB  = -120.0
	// smoothN frames of band power are averaged for the decision: speech is sustained over
	// syllables while machinery fluctuates frame to frame, so a mean over a few frames
	// separates them better than one frame does (on the evaluation set a 500 ms mean
	// raised the frame-level AUC against machine noise at 5 dB SNR from 0.83 to 0.95).
	// The delay this adds to an onset is covered by the pre-roll; at the end it lengthens
	// speech by up to smoothN-1 frames.
	smoothN = 4
	// confirmFrames mean levels above threshold in a row start speech; the pre-roll
	// covers them.
	confirmFrames = 2
	// strongDB above threshold starts speech on a single frame (loud, sudden onsets).
	strongDB = 6.0
	// warmupFrames is the history needed before the floor is trusted.
	warmupFrames = 5
	// floorQ is the percentile of the level history taken as the noise floor: it stays in
	// the noise while speech fills less than 90% of the floor window.
	floorQ = 0.10
	// spreadLoQ..spreadHiQ is the part of the quiet-frame history whose width measures how
	// much the noise itself fluctuates (P10-P2 is about 0.8 standard deviations of
	// Gaussian levels, and much more for lumpy machine noise).
	spreadLoQ = 0.02
	spreadHiQ = 0.10
	// spreadAlpha smooths that width over about 10 s: a percentile distance over a few
	// hundred frames is itself noisy, and the threshold should not twitch with it.
	spreadAlpha = 0.01
	// maxMargin caps the noise-driven part of the threshold.
	maxMargin = 10.0
	// maxMarginClassified caps it instead while the classifier is on: the classifier,
	// not a high energy margin, rejects fluctuating noise, so speech a few dB above
	// machinery still reaches it (on the train part of the evaluation set, cap 10 -> 4.5
	// raised industrial-noise recall at 5 dB SNR from 0.62 to 0.81 with the noise-only
	// sent fractions unchanged; docs/bench-vad.md).
	maxMarginClassified = 4.5
	// holdMinDB: once speech has started (or while the gate is open), frames count as
	// speech while their level stays above threshold-ReleaseDB, but never closer than
	// this to the floor, so steady noise cannot hold the gate open.
	holdMinDB = 1.5
	// frameLen8k is a 100 ms frame after 2:1 decimation.
	frameLen8k = 800
	// onsetScoreFrames: an onset needs the classifier's mean probability over this many
	// frames (the current one included) to reach classifier_threshold.
	onsetScoreFrames = 2
	// holdScoreFrames, holdScoreFactor: while speech lasts it continues only while the mean
	// probability over this many frames stays above holdScoreFactor*classifier_threshold,
	// so noise that follows speech cannot hold the gate open, but pauses between words do
	// not close it.
	holdScoreFrames = 10
	holdScoreFactor = 0.5
	// endFloorFrames, endFloorDB, endPeakDB: an utterance has ended, and the gate closes
	// without waiting for the rest of its hangover, once the level has stayed within
	// endFloorDB of the floor for endFloorFrames frames after speech that rose at least
	// endPeakDB above it. The hangover is there for what the level cannot show: quiet
	// word endings under the noise and pauses between words. After loud speech in steady
	// noise the floor is proof enough that the speaker stopped (the labelled tail of an
	// utterance lies up to 40 dB below its peak: at a high SNR most of it is seen); after
	// speech a few dB above the noise it is not, and the full hangover runs. The detector
	// keeps its hold rules for the hangover's length anyway (recent), so speech that
	// resumes reopens the gate, with its pre-roll, as easily as it would have held it
	// open. On the train part of the evaluation set, 4 frames and 12 dB brought the sent
	// fraction above the ideal detector on stationary mixtures from +0.13 to +0.03 at the
	// same recall (docs/bench-vad.md).
	endFloorFrames = 4
	endFloorDB     = holdMinDB
	endPeakDB      = 12.0
	// scoreAboveDB: frames whose level (instantaneous or mean) stands no more than this
	// above the floor are not scored: they are below every onset and hold threshold.
	scoreAboveDB = holdMinDB
)

// detector is the frame-level VAD: level in the analysis band, adaptive floor and spread,
// hysteresis and onset confirmation. It owns no frames; it only reads samples.
type detector struct {
	cfg Config
	hp1 biquad
	hp2 biquad
	// filter state (transposed direct form II)
	z1, z2, z3, z4 float64

	// all holds the levels of every recent frame: its low percentile is the floor, and it
	// follows a changed noise level even while the detector thinks it hears speech.
	all history
	// quiet holds only frames judged not speech: the spread of its low tail measures how
	// much the noise itself fluctuates without speech widening it.
	quiet history

	// pw holds the band power of the last smoothN frames: the decision looks at their mean.
	pw    [smoothN]float64
	pwPos int

	// spread is the noise's spread (P10-P2 of the quiet history, dB), smoothed over time.
	spread float64

	// The classifier's input: the band-passed frame at 8 kHz (full scale 1), its ten
	// 10 ms mean powers, and the feature extractor; probs holds the last probabilities.
	x      [frameLen8k]float64
	sub    [10]float64
	feat   *features
	cls    classifier
	probs  [holdScoreFrames]float64
	pPos   int
	pN     int
	scored bool // the classifier scored this frame (its spectral features are current)

	above  int  // consecutive frames above threshold
	speech bool // current decision (hysteresis state)

	// After speech the detector keeps its hold rules for a hangover's length (recent
	// frames left), whether or not the gate is still open; peak is the loudest frame of
	// that utterance above the floor and atFloor counts the frames since the level fell
	// back to the floor. ended says the utterance is over: see endFloorFrames.
	recent  int
	peak    float64
	atFloor int
	ended   bool
}

func newDetector(cfg Config) *detector {
	d := &detector{
		hp1:  highpass(hpCos, hpSin, 0.5412),
		hp2:  highpass(hpCos, hpSin, 1.3066),
		feat: newFeatures(),
		cls:  classifier{w: &defaultWeights},
	}
	d.setConfig(cfg)
	return d
}

// setConfig applies new settings at once. A shorter floor window keeps the newest history.
func (d *detector) setConfig(cfg Config) {
	d.cfg = cfg
	w := clamp(cfg.FloorWindowMS/100, warmupFrames, maxFloorWindow/100)
	d.all.resize(w)
	d.quiet.resize(w)
}

// power filters the frame into the analysis band and returns its mean power relative to
// full scale (1.0 = a full-scale square wave).
func (d *detector) power(s []int16) float64 {
	f, h := d.hp1, d.hp2
	z1, z2, z3, z4 := d.z1, d.z2, d.z3, d.z4
	var e float64
	if len(s)%2 == 1 { // odd-length frames (never from capture) are tolerated
		s = s[:len(s)-1]
	}
	// Products are rounded explicitly (float64(...)) so no architecture fuses them into
	// FMA instructions: the bits must not depend on the machine (dsp.go). The classifier
	// gets the band-passed samples and ten 10 ms powers (a standard 100 ms frame; shorter
	// frames leave zeros, longer ones are only measured).
	n := len(s) / 2
	d.sub = [10]float64{}
	for j := 0; j < n; j++ {
		x := float64(int32(s[2*j])+int32(s[2*j+1])) * 0.5
		y := float64(f.b0*x) + z1
		z1 = float64(f.b1*x) - float64(f.a1*y) + z2
		z2 = float64(f.b2*x) - float64(f.a2*y)
		v := float64(h.b0*y) + z3
		z3 = float64(h.b1*y) - float64(h.a1*v) + z4
		z4 = float64(h.b2*y) - float64(h.a2*v)
		vv := float64(v * v)
		e += vv
		if j < frameLen8k {
			d.x[j] = v * (1.0 / 32768)
			d.sub[j/80] += vv
		}
	}
	d.z1, d.z2, d.z3, d.z4 = z1, z2, z3, z4
	for k := range d.sub {
		d.sub[k] *= 1.0 / (80 * 32768 * 32768)
	}
	for j := n; j < frameLen8k; j++ {
		d.x[j] = 0
	}
	if len(s) == 0 {
		return 0
	}
	return e / float64(len(s)/2) / (32768 * 32768)
}

func toDB(p float64) float64 { return dbDet(p) }

// history is a window of levels kept both in arrival order (a ring) and sorted, so a
// percentile costs one insertion and one removal per frame and no allocation.
type history struct {
	ring   [maxFloorWindow / 100]float64
	sorted []float64
	pos, n int
	w      int
}

func (h *history) push(l float64) {
	if h.sorted == nil {
		h.sorted = make([]float64, 0, len(h.ring))
	}
	if h.n == h.w {
		old := h.ring[h.pos]
		i := sort.SearchFloat64s(h.sorted, old)
		h.sorted = append(h.sorted[:i], h.sorted[i+1:]...)
	} else {
		h.n++
	}
	h.ring[h.pos] = l
	h.pos = (h.pos + 1) % h.w
	i := sort.SearchFloat64s(h.sorted, l)
	h.sorted = append(h.sorted, 0)
	copy(h.sorted[i+1:], h.sorted[i:])
	h.sorted[i] = l
}

// resize changes the window, keeping the newest values.
func (h *history) resize(w int) {
	if w == h.w {
		return
	}
	keep := min(h.n, w)
	var tmp [maxFloorWindow / 100]float64
	for i := 0; i < keep; i++ {
		tmp[i] = h.ring[((h.pos-keep+i)%h.w+h.w)%h.w] // keep > 0 implies h.w > 0
	}
	copy(h.ring[:], tmp[:keep])
	h.w, h.n, h.pos = w, keep, keep%w
	if h.sorted == nil {
		h.sorted = make([]float64, 0, len(h.ring))
	}
	h.sorted = append(h.sorted[:0], tmp[:keep]...)
	sort.Float64s(h.sorted)
}

// quantile returns the q-quantile of the window (def when empty).
func (h *history) quantile(q, def float64) float64 {
	if len(h.sorted) == 0 {
		return def
	}
	return h.sorted[int(float64(q*float64(len(h.sorted)-1))+0.5)]
}

// analyze decides one frame; open says whether the gate is open, in which case the lower
// hold threshold applies, as it does while speech lasts. The floor and spread are measured
// on the history before this frame, so an onset is judged against the noise before it.
//
// The energy detector proposes, the classifier disposes: a frame counts as speech only
// when its level says so (onset or hold, as before) and, with the classifier on, the
// classifier's recent scores agree (onsetScoreFrames for an onset, a longer and more
// lenient holdScoreFrames while speech lasts). The classifier never turns a quiet frame
// into speech, so the energy gate's behaviour on onsets, short words, quiet speakers and
// stationary floors is kept wherever the classifier agrees.
func (d *detector) analyze(s []int16, open bool) Analysis {
	p := d.power(s)
	inst := toDB(p)
	d.pw[d.pwPos] = p
	d.pwPos = (d.pwPos + 1) % smoothN
	var sum float64
	for _, v := range d.pw {
		sum += v
	}
	l := toDB(sum / smoothN)
	floor := d.all.quantile(floorQ, silentDB)
	spread := d.quiet.quantile(spreadHiQ, 0) - d.quiet.quantile(spreadLoQ, 0)
	if d.quiet.n >= warmupFrames {
		if d.spread == 0 {
			d.spread = spread
		}
		d.spread += float64(spreadAlpha * (spread - d.spread))
	}
	margin := d.cfg.ThresholdDB
	if m := float64(d.cfg.NoiseFactor * d.spread); m > margin {
		margin = m
	}
	switch {
	case d.cfg.ClassifierThreshold > 0:
		margin = min(margin, max(maxMarginClassified, d.cfg.ThresholdDB))
	case margin > maxMargin && maxMargin > d.cfg.ThresholdDB:
		margin = maxMargin
	}
	thr := floor + margin
	if thr < d.cfg.MinLevelDBFS {
		thr = d.cfg.MinLevelDBFS
	}
	ready := d.all.n >= warmupFrames

	// The classifier scores every frame that stands above the floor (its verdict is ready
	// when the energy detector asks); frames at the floor can neither start nor continue
	// speech (the hold level is at least holdMinDB above the floor), so they skip the
	// spectral work and count as score 0. Silence and steady noise thus cost little more
	// than the energy detector alone. Which frames are scored depends only on the audio,
	// never on the classifier's own verdicts, so training sees the features run time sees.
	score := -1.0
	d.scored = false
	if d.cfg.ClassifierThreshold > 0 {
		d.feat.temporal(&d.sub, l-floor)
		p := -1.0
		if l > floor+scoreAboveDB || inst > floor+scoreAboveDB || !ready {
			d.feat.spectral(d.x[:])
			d.feat.relative()
			p = sigmoid(d.cls.logit(&d.feat.v))
			score, d.scored = p, true
		}
		d.probs[d.pPos] = p
		d.pPos = (d.pPos + 1) % holdScoreFrames
		d.pN = min(d.pN+1, holdScoreFrames)
	}
	veto := false
	if !ready {
		floor, thr = l, l+margin
	}
	switch {
	case !ready:
		d.above, d.speech = 0, false
	case d.speech || open || d.recent > 0:
		hold := math.Max(thr-d.cfg.ReleaseDB, floor+holdMinDB)
		energy := l > hold && l > d.cfg.MinLevelDBFS
		d.speech = energy
		if energy && score >= 0 && d.recentScore(holdScoreFrames) < float64(d.cfg.ClassifierThreshold*holdScoreFactor) {
			d.speech, veto = false, true
		}
	case l > thr || inst > thr+strongDB:
		d.above++
		energy := d.above >= confirmFrames || inst > thr+strongDB
		d.speech = energy
		if energy && score >= 0 && d.recentScore(onsetScoreFrames) < d.cfg.ClassifierThreshold {
			d.speech, veto = false, true
		}
	default:
		d.above = 0
	}
	if !d.speech && l <= thr {
		d.above = 0
	}
	if d.speech {
		if d.recent == 0 {
			d.peak = inst - floor
		}
		d.peak = max(d.peak, inst-floor)
		d.recent = d.cfg.HangoverMS / 100
	} else if d.recent > 0 {
		d.recent--
	}
	if inst < floor+endFloorDB {
		d.atFloor++
	} else {
		d.atFloor = 0
	}
	d.ended = !d.speech && d.recent > 0 && d.peak >= endPeakDB && d.atFloor >= endFloorFrames
	d.all.push(inst)
	if !d.speech {
		d.quiet.push(inst)
	}
	return Analysis{LevelDBFS: l, FloorDBFS: floor, ThresholdDBFS: thr, Score: score, Vetoed: veto, Speech: d.speech, Ended: d.ended}
}

// recentScore is the mean classifier probability over the scored frames among the last
// n (0 if none was scored).
func (d *detector) recentScore(n int) float64 {
	n = min(n, d.pN)
	var s float64
	var k int
	for i := 1; i <= n; i++ {
		if p := d.probs[(d.pPos-i+holdScoreFrames)%holdScoreFrames]; p >= 0 {
			s += p
			k++
		}
	}
	if k == 0 {
		return 0
	}
	return s / float64(k)
}
