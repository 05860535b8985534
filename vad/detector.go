package vad

import (
	"math"
	"sort"
)

// Analysis is the VAD's view of one frame, for display and tuning (`hark vad`, health).
type Analysis struct {
	// LevelDBFS is the level the decision uses: the mean power in the analysis band
	// (250–4000 Hz) over this frame and the three before it, dB relative to full scale.
	LevelDBFS float64
	// FloorDBFS is the adaptive noise floor the level is compared against.
	FloorDBFS float64
	// ThresholdDBFS is the level a frame must exceed to start speech.
	ThresholdDBFS float64
	// Speech is the VAD's decision for this frame (before pre-roll and hangover).
	Speech bool
	// Open says whether the gate is passing audio after this frame (including hangover).
	Open bool
}

const (
	decimRate = 8000
	hpCutHz   = 250
	silentDB  = -120.0
	smoothN   = 4
	confirmFrames = 2
	strongDB = 6.0
	warmupFrames = 5
	floorQ = 0.10
	spreadLoQ = 0.02
	spreadHiQ = 0.10
	spreadAlpha = 0.01
	maxMargin = 10.0
	holdMinDB = 1.5
)

// experimental knobs
var (
	bandEdges = [][2]float64{{250, 700}, {700, 1400}, {1400, 2800}}
	bandFactor = 1.0 // multiplies NoiseFactor for sub-bands
	bandExtraDB = 0.0 // added to sub-band margins
)

const maxBands = 8

type biquad struct{ b0, b1, b2, a1, a2 float64 }

func highpass(fc, fs, q float64) biquad {
	w := 2 * math.Pi * fc / fs
	cw, sw := math.Cos(w), math.Sin(w)
	alpha := sw / (2 * q)
	a0 := 1 + alpha
	return biquad{
		b0: (1 + cw) / 2 / a0, b1: -(1 + cw) / a0, b2: (1 + cw) / 2 / a0,
		a1: -2 * cw / a0, a2: (1 - alpha) / a0,
	}
}

// bandpass is an RBJ band-pass section with 0 dB peak gain between lo and hi.
func bandpass(lo, hi, fs float64) biquad {
	fc := math.Sqrt(lo * hi)
	bw := math.Log2(hi / lo)
	w := 2 * math.Pi * fc / fs
	cw, sw := math.Cos(w), math.Sin(w)
	alpha := sw * math.Sinh(math.Ln2/2*bw*w/sw)
	a0 := 1 + alpha
	return biquad{b0: alpha / a0, b1: 0, b2: -alpha / a0, a1: -2 * cw / a0, a2: (1 - alpha) / a0}
}

// channel tracks one band's level, floor and spread.
type channel struct {
	all    history
	quiet  history
	pw     [smoothN]float64
	spread float64
	// per frame
	inst, l, floor, thr, hold float64
}

type detector struct {
	cfg Config
	hp1 biquad
	hp2 biquad
	z1, z2, z3, z4 float64

	nb    int
	bp    [maxBands]biquad
	bz    [maxBands][2]float64
	ch    [maxBands + 1]channel
	pwPos int

	above  int
	speech bool
}

func newDetector(cfg Config) *detector {
	d := &detector{
		hp1: highpass(hpCutHz, decimRate, 0.5412),
		hp2: highpass(hpCutHz, decimRate, 1.3066),
	}
	d.nb = len(bandEdges)
	for i, e := range bandEdges {
		d.bp[i] = bandpass(e[0], e[1], decimRate)
	}
	d.setConfig(cfg)
	return d
}

func (d *detector) setConfig(cfg Config) {
	d.cfg = cfg
	w := clampInt(cfg.FloorWindowMS/100, warmupFrames, maxFloorWindow/100)
	for i := 0; i <= d.nb; i++ {
		d.ch[i].all.resize(w)
		d.ch[i].quiet.resize(w)
	}
}

// power filters the frame and stores each channel's mean power in e.
func (d *detector) power(s []int16, e *[maxBands + 1]float64) {
	f, h := d.hp1, d.hp2
	z1, z2, z3, z4 := d.z1, d.z2, d.z3, d.z4
	*e = [maxBands + 1]float64{}
	if len(s)%2 == 1 {
		s = s[:len(s)-1]
	}
	nb := d.nb
	for i := 0; i+1 < len(s); i += 2 {
		x := float64(int32(s[i])+int32(s[i+1])) * 0.5
		y := f.b0*x + z1
		z1 = f.b1*x - f.a1*y + z2
		z2 = f.b2*x - f.a2*y
		v := h.b0*y + z3
		z3 = h.b1*y - h.a1*v + z4
		z4 = h.b2*y - h.a2*v
		e[0] += v * v
		for b := 0; b < nb; b++ {
			q := &d.bp[b]
			z := &d.bz[b]
			u := q.b0*v + z[0]
			z[0] = q.b1*v - q.a1*u + z[1]
			z[1] = q.b2*v - q.a2*u
			e[b+1] += u * u
		}
	}
	d.z1, d.z2, d.z3, d.z4 = z1, z2, z3, z4
	if len(s) == 0 {
		return
	}
	k := 1 / float64(len(s)/2) / (32768 * 32768)
	for i := range e {
		e[i] *= k
	}
}

func toDB(p float64) float64 {
	if p <= 1e-12 {
		return silentDB
	}
	return 10 * math.Log10(p)
}

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

func (h *history) resize(w int) {
	if w == h.w {
		return
	}
	keep := min(h.n, w)
	var tmp [maxFloorWindow / 100]float64
	for i := 0; i < keep; i++ {
		tmp[i] = h.ring[((h.pos-keep+i)%h.w+h.w)%h.w]
	}
	copy(h.ring[:], tmp[:keep])
	h.w, h.n, h.pos = w, keep, keep%w
	if h.sorted == nil {
		h.sorted = make([]float64, 0, len(h.ring))
	}
	h.sorted = append(h.sorted[:0], tmp[:keep]...)
	sort.Float64s(h.sorted)
}

func (h *history) quantile(q, def float64) float64 {
	if len(h.sorted) == 0 {
		return def
	}
	return h.sorted[int(q*float64(len(h.sorted)-1)+0.5)]
}

func (d *detector) analyze(s []int16, open bool) Analysis {
	var e [maxBands + 1]float64
	d.power(s, &e)
	ready := d.ch[0].all.n >= warmupFrames
	best := math.Inf(-1)     // largest l - thr over channels
	bestInst := math.Inf(-1) // largest inst - thr
	bestHold := math.Inf(-1) // largest l - hold
	for c := 0; c <= d.nb; c++ {
		ch := &d.ch[c]
		ch.inst = toDB(e[c])
		ch.pw[d.pwPos] = e[c]
		var sum float64
		for _, v := range ch.pw {
			sum += v
		}
		ch.l = toDB(sum / smoothN)
		ch.floor = ch.all.quantile(floorQ, silentDB)
		spread := ch.quiet.quantile(spreadHiQ, 0) - ch.quiet.quantile(spreadLoQ, 0)
		if spreadAll {
			spread = ch.all.quantile(spreadHiQ, 0) - ch.all.quantile(spreadLoQ, 0)
		}
		if ch.quiet.n >= warmupFrames {
			if ch.spread == 0 {
				ch.spread = spread
			}
			ch.spread += spreadAlpha * (spread - ch.spread)
		}
		nf := d.cfg.NoiseFactor
		extra := 0.0
		if c > 0 {
			nf *= bandFactor
			extra = bandExtraDB
		}
		margin := d.cfg.ThresholdDB
		if m := nf * ch.spread; m > margin {
			margin = m
		}
		if margin > maxMargin && maxMargin > d.cfg.ThresholdDB {
			margin = maxMargin
		}
		margin += extra
		ch.thr = ch.floor + margin
		if c == 0 && ch.thr < d.cfg.MinLevelDBFS {
			ch.thr = d.cfg.MinLevelDBFS
		}
		ch.hold = math.Max(ch.thr-d.cfg.ReleaseDB, ch.floor+holdMinDB)
		if c == 0 || d.ch[0].l > d.cfg.MinLevelDBFS {
			best = math.Max(best, ch.l-ch.thr)
			bestInst = math.Max(bestInst, ch.inst-ch.thr)
			if c == 0 || !holdFull {
				bestHold = math.Max(bestHold, ch.l-ch.hold)
			}
		}
	}
	d.pwPos = (d.pwPos + 1) % smoothN
	c0 := &d.ch[0]
	l, floor, thr := c0.l, c0.floor, c0.l-best
	if !ready {
		floor, thr = l, l+d.cfg.ThresholdDB
	}
	switch {
	case !ready:
		d.above, d.speech = 0, false
	case d.speech || open:
		d.speech = bestHold > 0 && l > d.cfg.MinLevelDBFS
	case best > 0 || bestInst > strongDB:
		d.above++
		d.speech = d.above >= confirmFrames || bestInst > strongDB
	default:
		d.above = 0
	}
	if !d.speech && best <= 0 {
		d.above = 0
	}
	for c := 0; c <= d.nb; c++ {
		ch := &d.ch[c]
		ch.all.push(ch.inst)
		if !d.speech {
			ch.quiet.push(ch.inst)
		}
	}
	return Analysis{LevelDBFS: l, FloorDBFS: floor, ThresholdDBFS: thr, Speech: d.speech}
}
