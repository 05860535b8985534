package vad

import "math"

// Per-frame features for the speech classifier, computed on the detector's own band-passed
// 8 kHz copy of the frame (800 samples per 100 ms). They describe what separates speech
// from noise that is merely loud: its spectral shape and how far each band stands above
// that band's own noise floor, how fast the spectrum changes, harmonic structure, how
// impulsive the frame is, and syllable-rate modulation over the last second.
//
// Everything here runs on every frame without allocating, and follows the rounding rules
// in dsp.go so that the same audio gives the same bits on every architecture.

const (
	fftN    = 256 // 32 ms at 8 kHz, 31.25 Hz per bin
	fftHalf = fftN / 2
	nSub    = 2 // spectra per frame, at subOff: every 50 ms
	nBands  = 8
	// bandFloorFrames is the history of each band's level whose bandFloorQ quantile is that
	// band's noise floor.
	bandFloorFrames = 100
	bandFloorQ      = 0.10
	// modSubs is the number of 10 ms level samples the modulation features look at (1 s).
	modSubs = 100
	subLen  = 80 // samples of one 10 ms level at 8 kHz
	// ctxFrames frames of band SNRs are averaged into context features.
	ctxFrames = 5
	// modFloorDB bounds the 10 ms levels from below, so digital silence between words
	// does not dominate the modulation features.
	modFloorDB = -90
	// harmonic lags in bins (31.25 Hz each): 3..8 bins is a harmonic spacing of 94-250 Hz.
	harmLagMin, harmLagMax = 3, 8
	harmLo, harmHi         = 8, 64 // 250-2000 Hz
	// pitch lags in samples at 8 kHz: 20..100 is 400..80 Hz.
	pitchLagMin, pitchLagMax = 20, 100
	pitchBins                = 64 // 2 kHz
)

// Feature vector layout.
const (
	fBandSNR  = 0             // nBands: band level minus that band's floor, dB
	fShape    = fBandSNR + 8  // nBands: band level minus the mean band level, dB
	fFlux     = fShape + 8    // mean |change| of band levels between consecutive spectra, dB
	fImpulse  = fFlux + 1     // loudest 10 ms minus the frame's mean level, dB
	fHarm     = fImpulse + 1  // spectral autocorrelation at a harmonic spacing, 0..1
	fModStd   = fHarm + 1     // standard deviation of the 10 ms levels over 1 s, dB
	fModDelta = fModStd + 1   // mean |change| between consecutive 10 ms levels over 1 s, dB
	fLevelSNR = fModDelta + 1 // the energy detector's level minus its floor, dB
	fSyllable = fLevelSNR + 1 // RMS of the 10 ms levels band-passed to 2-8 Hz over 1 s, dB
	fCtxSNR   = fSyllable + 1 // nBands: band SNR averaged over the last ctxFrames frames
	// Over the last second (histFrames frames): speech alternates voiced and unvoiced
	// sounds and moves its formants; a motor, a hum or a hiss keeps its character.
	fHarmMean  = fCtxSNR + 8    // mean harmonicity
	fHarmStd   = fHarmMean + 1  // its standard deviation
	fFluxMean  = fHarmStd + 1   // mean spectral flux
	fShapeMove = fFluxMean + 1  // mean |change| of the band shape against 300 ms earlier, dB
	fSNRStd    = fShapeMove + 1 // standard deviation of the mean band SNR, dB
	// Pitch: periodicity of the two 32 ms windows (0..1), and over the last second the
	// fraction of periodic windows, how often the pitch held still between consecutive
	// ones (a sung or played note does; speech glides), its spread and its mean movement.
	fVoice       = fSNRStd + 1
	fVoicedFrac  = fVoice + 1
	fPitchSteady = fVoicedFrac + 1
	fPitchStd    = fPitchSteady + 1
	fPitchMove   = fPitchStd + 1
	// Relative to the room: the deviation of each feature in relFeatures from its own
	// running mean over the scored frames of the last ten seconds or so. What is
	// ordinary here (a fan's shape, a motor's harmonics, rain's flux) reads near zero,
	// whatever the room; speech stands out against it. (Like the cepstral mean
	// normalisation of speech recognisers.)
	fRel        = fPitchMove + 1
	NumFeatures = fRel + len(relFeatures) // the classifier's input size
)

// relFeatures are the features also given relative to their running mean (fRel...).
var relFeatures = [...]int{fShape, fShape + 1, fShape + 2, fShape + 3, fShape + 4, fShape + 5, fShape + 6, fShape + 7,
	fFlux, fImpulse, fHarm, fModStd, fSyllable, fHarmMean, fFluxMean, fShapeMove, fVoice, fVoicedFrac}

// relAlpha is the running means' update per scored frame (a time constant of 100 scored
// frames, ten seconds of sound above the floor).
const relAlpha = 0.01

// histFrames is the span of the 1 s statistics; shapeLag frames back is the shape compared.
const (
	histFrames = 10
	shapeLag   = 3
)

type frameStats struct {
	harm, flux, snr float64
	shape           [nBands]float64
	voice, semi     [nSub]float64 // periodicity and pitch (semitones) of each window
}

// subOff are the starts of the nSub spectra within the 800-sample frame.
var subOff = [nSub]int{72, 472}

// bandEdge are the band limits in FFT bins (roughly third-octave pairs, 250-4000 Hz).
var bandEdge = [nBands + 1]int{8, 11, 16, 22, 32, 45, 64, 90, 128}

// fftTables are the window and twiddle factors, built once by unitCircle.
type fftTables struct {
	win    [fftN]float64
	wr, wi [fftHalf]float64 // e^{-2 pi i k / fftHalf}, k < fftHalf/2 used by the FFT
	rr, ri [fftHalf + 1]float64
	bitrev [fftHalf]int
	// wac is the window's circular autocorrelation normalised to wac[0] = 1, for lags up
	// to fftHalf: pitch divides it out.
	wac [fftHalf + 1]float64
}

var tables = func() *fftTables {
	t := &fftTables{}
	c, s := unitCircle(fftN)
	for n := 0; n < fftN; n++ {
		t.win[n] = 0.5 - float64(0.5*c[n]) // Hann
	}
	for k := 0; k < fftHalf; k++ {
		t.wr[k], t.wi[k] = c[2*k%fftN], -s[2*k%fftN]
	}
	for k := 0; k <= fftHalf; k++ {
		t.rr[k], t.ri[k] = c[k%fftN], -s[k%fftN]
	}
	bits := 0
	for 1<<bits < fftHalf {
		bits++
	}
	for i := range t.bitrev {
		r := 0
		for b := 0; b < bits; b++ {
			if i&(1<<b) != 0 {
				r |= 1 << (bits - 1 - b)
			}
		}
		t.bitrev[i] = r
	}
	var w0 float64
	for n := 0; n < fftN; n++ {
		w0 += float64(t.win[n] * t.win[n])
	}
	for l := 0; l <= fftHalf; l++ {
		var a float64
		for n := 0; n < fftN; n++ {
			a += float64(t.win[n] * t.win[(n+l)%fftN])
		}
		t.wac[l] = a / w0
	}
	return t
}()

// features holds the extractor's state between frames.
type features struct {
	re, im [fftHalf]float64
	xr, xi [fftHalf + 1]float64
	pow    [fftHalf + 1]float64
	mag    [harmHi + harmLagMax]float64

	bandFloor [nBands]history
	prevBand  [nBands]float64 // band levels (dB) of the previous spectrum
	havePrev  bool

	mod    [modSubs]float64 // 10 ms levels, dB, ring
	modPos int
	modN   int

	// The 10 ms levels through a 2-8 Hz band-pass (syllable rate: about 4 per second
	// in speech of any language), and the squares of its output over the last second.
	syl        biquad
	s1, s2     float64
	sylSq      [modSubs]float64
	sylSum     float64
	sylRecount int

	ctx    [ctxFrames][nBands]float64
	ctxPos int
	ctxN   int

	relMean [len(relFeatures)]float64
	relN    int

	// per-frame values of the last histFrames frames, for the 1 s statistics
	hist    [histFrames]frameStats
	histPos int
	histN   int

	v [NumFeatures]float64
}

// sylBP is an RBJ band-pass at 4 Hz, Q 0.7, for a 100 Hz sequence (literal coefficients:
// the same bits everywhere).
var sylBP = biquad{b0: 0.1508409125942482, b1: 0, b2: -0.1508409125942482, a1: -1.6449623863611331, a2: 0.6983181748115036}

func newFeatures() *features {
	f := &features{syl: sylBP}
	for b := range f.bandFloor {
		f.bandFloor[b].resize(bandFloorFrames)
	}
	return f
}

// spectrum computes the power spectrum of x[0:fftN] (Hann-windowed) into f.pow.
func (f *features) spectrum(x []float64) {
	f.rfft(x, &tables.win)
	for k := 0; k <= fftHalf; k++ {
		f.pow[k] = float64(f.xr[k]*f.xr[k]) + float64(f.xi[k]*f.xi[k])
	}
}

// rfft computes X[k], k = 0..fftHalf, of the real signal x[0:fftN] times win (nil: no
// window) into f.xr, f.xi, through a complex FFT of half the length (even samples real,
// odd imaginary).
func (f *features) rfft(x []float64, win *[fftN]float64) {
	t := tables
	for n := 0; n < fftHalf; n++ {
		j := t.bitrev[n]
		if win != nil {
			f.re[j] = float64(x[2*n] * win[2*n])
			f.im[j] = float64(x[2*n+1] * win[2*n+1])
		} else {
			f.re[j], f.im[j] = x[2*n], x[2*n+1]
		}
	}
	re, im := &f.re, &f.im
	// The first two stages have twiddles 1 and -i only: additions suffice (the same
	// results as the general butterfly, whose products by 0 and 1 are exact).
	for a := 0; a < fftHalf; a += 4 {
		r0, i0 := re[a]+re[a+1], im[a]+im[a+1]
		r1, i1 := re[a]-re[a+1], im[a]-im[a+1]
		r2, i2 := re[a+2]+re[a+3], im[a+2]+im[a+3]
		r3, i3 := re[a+2]-re[a+3], im[a+2]-im[a+3]
		re[a], im[a] = r0+r2, i0+i2
		re[a+2], im[a+2] = r0-r2, i0-i2
		// (r3 + i i3) * -i = i3 - i r3
		re[a+1], im[a+1] = r1+i3, i1-r3
		re[a+3], im[a+3] = r1-i3, i1+r3
	}
	for size := 8; size <= fftHalf; size *= 2 {
		half, step := size/2, fftHalf/size
		for start := 0; start < fftHalf; start += size {
			for k := 0; k < half; k++ {
				wr, wi := t.wr[k*step], t.wi[k*step]
				a, b := start+k, start+k+half
				tr := float64(wr*re[b]) - float64(wi*im[b])
				ti := float64(wr*im[b]) + float64(wi*re[b])
				re[b], im[b] = re[a]-tr, im[a]-ti
				re[a], im[a] = re[a]+tr, im[a]+ti
			}
		}
	}
	// Split the half-length transform Z into the real signal's X[k], k = 0..fftHalf:
	// X[k] = (Z[k] + conj Z[N/2-k])/2 - i/2 e^{-2 pi i k/N} (Z[k] - conj Z[N/2-k]).
	for k := 0; k <= fftHalf; k++ {
		zr, zi := re[k%fftHalf], im[k%fftHalf]
		cr, ci := re[(fftHalf-k)%fftHalf], -im[(fftHalf-k)%fftHalf]
		er, ei := (zr+cr)*0.5, (zi+ci)*0.5
		or, oi := (zr-cr)*0.5, (zi-ci)*0.5
		// -i * W * o, W = rr + i ri
		wr, wi := t.rr[k], t.ri[k]
		pr := float64(wr*or) - float64(wi*oi)
		pi := float64(wr*oi) + float64(wi*or)
		f.xr[k], f.xi[k] = er+pi, ei-pr
	}
}

// pitch returns the periodicity of the last spectrum's window: the largest normalised
// autocorrelation at a lag of pitchLagMin..pitchLagMax samples (a pitch of 80-400 Hz),
// and that lag (with parabolic interpolation, in samples). The autocorrelation is the
// transform of the power spectrum (circular over the 32 ms window), divided by the
// window's own, so a steady periodic signal reads close to 1 whatever its pitch.
func (f *features) pitch() (strength, lag float64) {
	// Only 0-2 kHz: the strongest harmonics, and a smoother autocorrelation, so that a
	// period between two whole lags still peaks near its value.
	var p [fftN]float64
	p[0] = f.pow[0]
	for k := 1; k < pitchBins; k++ {
		p[k], p[fftN-k] = f.pow[k], f.pow[k]
	}
	f.rfft(p[:], nil)
	r0 := f.xr[0]
	if !(r0 > 0) {
		return 0, 0
	}
	var r [pitchLagMax + 2]float64
	best := -1.0
	for l := pitchLagMin - 1; l <= pitchLagMax+1; l++ {
		r[l] = f.xr[l] / float64(r0*tables.wac[l])
		if l >= pitchLagMin && l <= pitchLagMax && r[l] > best {
			best = r[l]
		}
	}
	// A period's multiples correlate as well as the period: take the shortest lag whose
	// peak comes close to the best (an octave error otherwise halves the pitch).
	at := pitchLagMin
	for l := pitchLagMin; l <= pitchLagMax; l++ {
		if r[l] >= float64(0.9*best) && r[l] >= r[l-1] && r[l] >= r[l+1] {
			at = l
			break
		}
	}
	best = r[at]
	lag = float64(at)
	if at > pitchLagMin && at < pitchLagMax {
		a, c := r[at-1], r[at+1]
		if d := a - float64(2*best) + c; d < 0 {
			lag += float64(0.5*(a-c)) / d
		}
	}
	return max(best, 0), lag
}

// harmonicity is the largest normalised autocorrelation of the magnitude spectrum over
// 250-2000 Hz at a lag of harmLagMin..harmLagMax bins: voiced speech has harmonics at its
// pitch spacing; noise has none, and a steady hum has them at one fixed spacing too.
func (f *features) harmonicity() float64 {
	var mean float64
	for k := harmLo; k < harmHi+harmLagMax; k++ {
		m := math.Sqrt(f.pow[k])
		f.mag[k] = m
		mean += m
	}
	mean /= float64(harmHi + harmLagMax - harmLo)
	var e float64
	for k := harmLo; k < harmHi+harmLagMax; k++ {
		f.mag[k] -= mean
		e += float64(f.mag[k] * f.mag[k])
	}
	if e <= 0 {
		return 0
	}
	best := 0.0
	for lag := harmLagMin; lag <= harmLagMax; lag++ {
		var r float64
		for k := harmLo; k < harmHi; k++ {
			r += float64(f.mag[k] * f.mag[k+lag])
		}
		if r > best {
			best = r
		}
	}
	return best / e
}

// spectral fills the spectral features of f.v for one frame from its 800 band-passed
// samples at 8 kHz (scaled to full scale 1). It is the expensive part (two FFTs), so
// the detector calls it only for frames the classifier may be asked about (frames above
// the floor, or while speech lasts); the band floors and the 1 s statistics are therefore
// statistics of those frames.
func (f *features) spectral(x []float64) {
	var band [nSub][nBands]float64
	var harm float64
	st := &f.hist[f.histPos]
	for j := 0; j < nSub; j++ {
		f.spectrum(x[subOff[j] : subOff[j]+fftN])
		if j == 0 { // one spectrum only: it costs as much as an FFT
			harm = f.harmonicity()
		}
		st.voice[j], st.semi[j] = f.pitchOf()
		for b := 0; b < nBands; b++ {
			var e float64
			for k := bandEdge[b]; k < bandEdge[b+1]; k++ {
				e += f.pow[k]
			}
			// mean power per bin, relative to a full-scale sine's bin power
			band[j][b] = e / float64(bandEdge[b+1]-bandEdge[b])
		}
	}
	v := &f.v
	v[fHarm] = harm
	v[fVoice] = (st.voice[0] + st.voice[1]) * 0.5

	// Band levels (dB) of each spectrum, and the flux between consecutive ones.
	var flux float64
	var nflux int
	var lvl [nBands]float64
	for j := 0; j < nSub; j++ {
		for b := 0; b < nBands; b++ {
			l := dbDet(band[j][b] * (1.0 / (fftN * fftN)))
			if j > 0 || f.havePrev {
				flux += math.Abs(l - f.prevBand[b])
				nflux++
			}
			f.prevBand[b] = l
		}
	}
	f.havePrev = true
	if nflux > 0 {
		v[fFlux] = flux / float64(nflux)
	}
	var mean float64
	for b := 0; b < nBands; b++ {
		var p float64
		for j := 0; j < nSub; j++ {
			p += band[j][b]
		}
		lvl[b] = dbDet(p * (1.0 / (nSub * fftN * fftN)))
		mean += lvl[b]
	}
	mean /= nBands
	for b := 0; b < nBands; b++ {
		h := &f.bandFloor[b]
		fl := h.quantile(bandFloorQ, lvl[b])
		v[fBandSNR+b] = clamp(lvl[b]-fl, -10, 60)
		v[fShape+b] = lvl[b] - mean
		h.push(lvl[b])
	}

	// Context: band SNRs averaged over the last ctxFrames frames (this one included).
	for b := 0; b < nBands; b++ {
		f.ctx[f.ctxPos][b] = v[fBandSNR+b]
	}
	f.ctxPos = (f.ctxPos + 1) % ctxFrames
	if f.ctxN < ctxFrames {
		f.ctxN++
	}
	for b := 0; b < nBands; b++ {
		var s float64
		for i := 0; i < f.ctxN; i++ {
			s += f.ctx[i][b]
		}
		v[fCtxSNR+b] = s / float64(f.ctxN)
	}

	f.secondStats()
}

// temporal fills the features that come from the frame's ten 10 ms mean powers (sub) and
// the energy detector's level above its floor; they are cheap and kept up to date on
// every frame.
func (f *features) temporal(sub *[10]float64, levelSNR float64) {
	v := &f.v
	// Impulsiveness and modulation from the 10 ms levels.
	var pmax, psum float64
	for i, p := range sub {
		psum += p
		if p > pmax {
			pmax = p
		}
		l := max(dbDet(sub[i]), modFloorDB)
		f.mod[f.modPos] = l
		// band-pass the level sequence; keep the last second of squared output
		y := float64(f.syl.b0*l) + f.s1
		f.s1 = float64(f.syl.b1*l) - float64(f.syl.a1*y) + f.s2
		f.s2 = float64(f.syl.b2*l) - float64(f.syl.a2*y)
		f.sylSum += float64(y*y) - f.sylSq[f.modPos]
		f.sylSq[f.modPos] = float64(y * y)
		f.modPos = (f.modPos + 1) % modSubs
		if f.modN < modSubs {
			f.modN++
		}
	}
	if psum > 0 {
		v[fImpulse] = dbDet(pmax) - dbDet(psum/10)
	} else {
		v[fImpulse] = 0
	}
	var m, d float64
	prev := f.mod[(f.modPos-f.modN+modSubs)%modSubs]
	for i := 0; i < f.modN; i++ {
		l := f.mod[(f.modPos-f.modN+i+modSubs)%modSubs]
		m += l
		d += math.Abs(l - prev)
		prev = l
	}
	m /= float64(f.modN)
	var s2 float64
	for i := 0; i < f.modN; i++ {
		dl := f.mod[i] - m
		s2 += float64(dl * dl)
	}
	v[fModStd] = math.Sqrt(s2 / float64(f.modN))
	if f.modN > 1 {
		v[fModDelta] = d / float64(f.modN-1)
	}
	v[fLevelSNR] = clamp(levelSNR, -10, 60)
	// The running sum drifts by rounding; recount it every 100 frames.
	if f.sylRecount++; f.sylRecount >= 100 {
		f.sylRecount = 0
		f.sylSum = 0
		for _, q := range f.sylSq {
			f.sylSum += q
		}
	}
	v[fSyllable] = math.Sqrt(max(f.sylSum, 0) / modSubs)
}

// pitchOf is pitch() as periodicity and pitch in semitones above 8000/128 Hz.
func (f *features) pitchOf() (voice, semi float64) {
	v, lag := f.pitch()
	if lag <= 0 {
		return 0, 0
	}
	return v, float64(12*lnDet(fftHalf/lag)) / ln2
}

// secondStats records this frame's values and computes the 1 s statistics.
func (f *features) secondStats() {
	v := &f.v
	st := &f.hist[f.histPos]
	st.harm, st.flux = v[fHarm], v[fFlux]
	var snr float64
	for b := 0; b < nBands; b++ {
		snr += v[fBandSNR+b]
		st.shape[b] = v[fShape+b]
	}
	st.snr = snr / nBands
	f.histPos = (f.histPos + 1) % histFrames
	f.histN = min(f.histN+1, histFrames)
	n := float64(f.histN)
	var hm, fm, sm float64
	for i := 0; i < f.histN; i++ {
		hm += f.hist[i].harm
		fm += f.hist[i].flux
		sm += f.hist[i].snr
	}
	hm, fm, sm = hm/n, fm/n, sm/n
	var hv, sv float64
	for i := 0; i < f.histN; i++ {
		dh, ds := f.hist[i].harm-hm, f.hist[i].snr-sm
		hv += float64(dh * dh)
		sv += float64(ds * ds)
	}
	v[fHarmMean], v[fHarmStd], v[fFluxMean], v[fSNRStd] = hm, math.Sqrt(hv/n), fm, math.Sqrt(sv/n)
	f.pitchStats()
	v[fShapeMove] = 0
	if f.histN > shapeLag {
		old := &f.hist[(f.histPos-1-shapeLag+2*histFrames)%histFrames]
		var d float64
		for b := 0; b < nBands; b++ {
			d += math.Abs(st.shape[b] - old.shape[b])
		}
		v[fShapeMove] = d / nBands
	}
}

// pitchStats fills the pitch features over the last second (the hist ring, oldest first).
func (f *features) pitchStats() {
	const voicedAt = 0.6
	var nv, pairs, steady int
	var sum, sum2, move float64
	prevVoiced, prev := false, 0.0
	for i := 0; i < f.histN; i++ {
		h := &f.hist[(f.histPos-f.histN+i+2*histFrames)%histFrames]
		for j := 0; j < nSub; j++ {
			voiced := h.voice[j] >= voicedAt
			if voiced {
				nv++
				sum += h.semi[j]
				sum2 += float64(h.semi[j] * h.semi[j])
				if prevVoiced {
					d := math.Abs(h.semi[j] - prev)
					pairs++
					if d < 0.3 {
						steady++
					}
					move += min(d, 3)
				}
			}
			prevVoiced, prev = voiced, h.semi[j]
		}
	}
	v := &f.v
	v[fVoicedFrac] = float64(nv) / float64(nSub*f.histN)
	v[fPitchSteady], v[fPitchMove], v[fPitchStd] = 0, 0, 0
	if pairs > 0 {
		v[fPitchSteady] = float64(steady) / float64(pairs)
		v[fPitchMove] = move / float64(pairs)
	}
	if nv > 1 {
		m := sum / float64(nv)
		v[fPitchStd] = math.Sqrt(max(sum2/float64(nv)-float64(m*m), 0))
	}
}

// relative fills the deviations from the running means, then updates the means. Called
// once per scored frame, after spectral and temporal.
func (f *features) relative() {
	v := &f.v
	for i, j := range relFeatures {
		if f.relN == 0 {
			f.relMean[i] = v[j]
		}
		v[fRel+i] = v[j] - f.relMean[i]
		f.relMean[i] += float64(relAlpha * (v[j] - f.relMean[i]))
	}
	f.relN++
}
