package vad

import (
	"bytes"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/hark-audio/hark/audio"
)

// frame8k returns 800 samples at 8 kHz (full scale 1) from gen(i).
func frame8k(gen func(i int) float64) []float64 {
	x := make([]float64, frameLen8k)
	for i := range x {
		x[i] = gen(i)
	}
	return x
}

func TestSpectrumPeaksAtTone(t *testing.T) {
	f := newFeatures()
	for _, hz := range []float64{300, 640, 1000, 2500, 3500} {
		x := frame8k(func(i int) float64 { return 0.3 * math.Sin(2*math.Pi*hz*float64(i)/decimRate) })
		f.spectrum(x[:fftN])
		best := 0
		for k := range f.pow {
			if f.pow[k] > f.pow[best] {
				best = k
			}
		}
		if want := int(math.Round(hz / (decimRate / fftN))); best < want-1 || best > want+1 {
			t.Errorf("%g Hz: peak at bin %d, want %d", hz, best, want)
		}
		// Parseval with the Hann window: the total is N/2 * sum(x^2 w^2) ~ fixed ratio.
		var e float64
		for k := 1; k < fftHalf; k++ {
			e += f.pow[k]
		}
		var ex float64
		for n := 0; n < fftN; n++ {
			v := x[n] * tables.win[n]
			ex += v * v
		}
		if r := (2 * e) / (fftN * ex); math.Abs(r-1) > 0.02 {
			t.Errorf("%g Hz: spectrum energy / signal energy = %g, want 1", hz, r)
		}
	}
}

func TestFeatureProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	white := func(int) float64 { return 0.01 * rng.NormFloat64() }
	// A harmonic comb at 125 Hz (a harmonic every 4 bins), like voiced speech.
	voiced := func(i int) float64 {
		var s float64
		for h := 2; h <= 16; h++ {
			s += 0.02 * math.Sin(2*math.Pi*125*float64(h)*float64(i)/decimRate)
		}
		return s
	}
	harm := func(gen func(int) float64) float64 {
		f := newFeatures()
		f.spectral(frame8k(gen))
		return f.v[fHarm]
	}
	if h := harm(voiced); h < 0.5 {
		t.Errorf("harmonicity of a 125 Hz comb %.2f, want >= 0.5", h)
	}
	if h := harm(white); h > 0.3 {
		t.Errorf("harmonicity of white noise %.2f, want <= 0.3", h)
	}

	// Impulsiveness: one loud 10 ms click in a quiet frame against steady noise.
	imp := func(sub [10]float64) float64 {
		f := newFeatures()
		f.temporal(&sub, 5)
		return f.v[fImpulse]
	}
	steady := [10]float64{1e-4, 1e-4, 1e-4, 1e-4, 1e-4, 1e-4, 1e-4, 1e-4, 1e-4, 1e-4}
	click := steady
	click[3] = 1e-1
	if a, b := imp(steady), imp(click); a > 0.01 || b < 8 {
		t.Errorf("impulsiveness steady %.2f dB, click %.2f dB", a, b)
	}

	// Syllable-rate modulation: 10 ms levels swinging at 4 Hz against steady ones.
	syl := func(mod bool) float64 {
		f := newFeatures()
		for fr := 0; fr < 30; fr++ {
			var sub [10]float64
			for k := range sub {
				db := -40.0
				if mod {
					db += 15 * math.Sin(2*math.Pi*4*float64(fr*10+k)/100)
				}
				sub[k] = math.Pow(10, db/10)
			}
			f.temporal(&sub, 5)
		}
		return f.v[fSyllable]
	}
	if a, b := syl(false), syl(true); a > 0.5 || b < 5 {
		t.Errorf("syllable modulation: steady %.2f dB, 4 Hz %.2f dB", a, b)
	}

	// Band SNR: a band that rises 20 dB over its own history reads about 20 dB.
	f := newFeatures()
	for fr := 0; fr < 50; fr++ {
		f.spectral(frame8k(white))
	}
	loud := func(i int) float64 { return white(i) + 0.2*math.Sin(2*math.Pi*1200*float64(i)/decimRate) }
	f.spectral(frame8k(loud))
	b := 4 // 1000-1400 Hz
	if s := f.v[fBandSNR+b]; s < 15 {
		t.Errorf("band SNR of a 1200 Hz tone 26 dB over white noise: %.1f dB", s)
	}
	if s := f.v[fBandSNR+0]; math.Abs(s) > 3 {
		t.Errorf("band SNR of an unchanged band: %.1f dB", s)
	}
}

// The classifier only ever vetoes: with weights that always say speech, every decision
// equals the energy detector's (classifier off); with weights that never do, nothing is
// speech. Frames at the floor are not scored.
func TestClassifierOnlyVetoes(t *testing.T) {
	sig := newSignal(11).pink(20, -50)
	for s := 2; s < 20; s += 5 {
		sig.add(s*16000, newSignal(uint64(30+s)).speechLike(1.5, -35))
	}
	fr := sig.frames()
	run := func(threshold float64, b2 float64) (speech []bool, scored int) {
		cfg := DefaultConfig()
		cfg.ClassifierThreshold = threshold
		g := NewGate(cfg)
		w := testWeights()
		for i := range w.W2 {
			w.W2[i] = 0
		}
		w.B2 = b2
		g.SetWeights(w)
		var ev []Event
		for _, f := range fr {
			ev = g.Push(f, ev[:0])
			a := g.Last()
			speech = append(speech, a.Speech)
			if a.Score >= 0 {
				scored++
				if g.Features() == nil {
					t.Fatal("scored frame without features")
				}
			} else if g.Features() != nil {
				t.Fatal("features for a frame that was not scored")
			}
			if a.Vetoed && a.Speech {
				t.Fatal("a frame both vetoed and speech")
			}
		}
		return speech, scored
	}
	energy, scoredOff := run(0, 0)
	always, scored := run(0.5, 20)
	never, _ := run(0.5, -20)
	if scoredOff != 0 {
		t.Fatalf("classifier off, yet %d frames scored", scoredOff)
	}
	if scored == 0 || scored == len(fr) {
		t.Fatalf("%d of %d frames scored: want only those above the floor", scored, len(fr))
	}
	n := 0
	for i := range fr {
		if energy[i] != always[i] {
			t.Fatalf("frame %d: energy says %v, with an always-speech classifier %v", i, energy[i], always[i])
		}
		if never[i] {
			t.Fatalf("frame %d is speech although the classifier never says so", i)
		}
		if energy[i] {
			n++
		}
	}
	if n == 0 {
		t.Fatal("the energy detector found no speech: the test proves nothing")
	}
}

// The built-in weights keep recorded speech: the demo's four spoken sentences over quiet
// pink noise are sent wherever the energy detector alone hears speech, and are not
// vetoed.
func TestBuiltinWeightsKeepSpeech(t *testing.T) {
	data, err := os.ReadFile("../testdata/demo/sample.wav")
	if err != nil {
		t.Fatal(err)
	}
	r, err := audio.NewWAVReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	pcm, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	speech := audio.DecodePCM(nil, pcm)
	sig := newSignal(21).pink(float64(len(speech))/audio.SampleRate+2, -60)
	for i, v := range speech {
		sig.s[audio.SampleRate+i] += float64(v)
	}
	fr := sig.frames()
	_, energy, _ := run(t, energyConfig(), fr)
	_, an, sent := run(t, DefaultConfig(), fr)
	n, kept := 0, 0
	for i := range fr {
		if an[i].Vetoed {
			t.Errorf("frame %d vetoed (score %.2f)", i, an[i].Score)
		}
		if energy[i].Speech {
			n++
			if sent[i] {
				kept++
			}
		}
	}
	if n < 50 || kept != n {
		t.Fatalf("the classifier's gate sent %d of the %d frames the energy detector calls speech", kept, n)
	}
}

// TestPitch: a harmonic comb (its fundamental removed, as the analysis band's high-pass
// does) reads as strongly periodic at its period, at any pitch in range; white noise does
// not.
func TestPitch(t *testing.T) {
	f := newFeatures()
	for _, hz := range []float64{90, 125, 180, 250, 380} {
		x := frame8k(func(i int) float64 {
			var s float64
			for h := 2; float64(h)*hz < 3800; h++ {
				s += 0.02 * math.Sin(2*math.Pi*hz*float64(h)*float64(i)/decimRate+float64(h))
			}
			return s
		})
		f.spectrum(x[:fftN])
		st, lag := f.pitch()
		if want := decimRate / hz; st < 0.8 || math.Abs(lag-want) > 0.02*want {
			t.Errorf("%g Hz comb: strength %.2f at lag %.2f, want >= 0.8 at %.2f", hz, st, lag, want)
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	var sum float64
	for k := 0; k < 20; k++ {
		f.spectrum(frame8k(func(int) float64 { return 0.01 * rng.NormFloat64() })[:fftN])
		st, _ := f.pitch()
		sum += st
	}
	if sum/20 > 0.3 {
		t.Errorf("white noise: mean periodicity %.2f, want <= 0.3", sum/20)
	}
}
