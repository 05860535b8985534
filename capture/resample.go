package capture

import (
	"math"
)

// Resampler parameters. 16 zero crossings each side with a Kaiser window (beta 8.6) give
// about 80 dB stop-band attenuation; the cutoff sits at 92% of the lower Nyquist
// frequency so speech up to ~7.3 kHz passes flat at 16 kHz while everything that would
// alias is in the stop band before 8 kHz + a little (the transition band is narrow).
const (
	rsZeroCrossings = 16
	rsKaiserBeta    = 8.6
	rsCutoff        = 0.92
	maxPhases       = 512
)

// resampler converts a mono float stream from one rate to another with a windowed-sinc
// polyphase filter. The ratio out/in is reduced to up/down; output sample n sits at input
// time n*down/up, and the filter is centred there, so the conversion adds no delay: frame
// times computed from sample counts stay true. When downsampling, the sinc's cutoff is the
// output Nyquist frequency (scaled by rsCutoff), which is the anti-aliasing low-pass.
type resampler struct {
	up, down int
	half     int         // taps each side of the centre, in input samples
	phases   [][]float32 // phases[p][j]: weight of input (i - half + 1 + j) for phase p
	buf      []float32   // input history; buf[0] is input index base
	base     int64       // absolute input index of buf[0]
	n        int64       // next output index
	flushed  bool
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func newResampler(inRate, outRate int) *resampler {
	g := gcd(inRate, outRate)
	r := &resampler{up: outRate / g, down: inRate / g}
	// fc: cutoff in cycles per input sample.
	scale := 1.0
	if outRate < inRate {
		scale = float64(outRate) / float64(inRate)
	}
	fc := 0.5 * scale * rsCutoff
	r.half = int(math.Ceil(rsZeroCrossings / scale))
	taps := 2 * r.half
	// One filter phase per distinct output position when that is few (every common rate:
	// 44.1 kHz needs 160); for odd rates (a 44101 Hz file needs 16000) the positions are
	// rounded to 1/maxPhases of an input sample, which keeps the table small and the
	// timing error below a millisample.
	np := min(r.up, maxPhases)
	r.phases = make([][]float32, np)
	i0 := bessI0(rsKaiserBeta)
	for p := 0; p < np; p++ {
		frac := float64(p) / float64(np)
		h := make([]float64, taps)
		sum := 0.0
		for j := 0; j < taps; j++ {
			// Input index i-half+1+j relative to the output time i+frac.
			t := float64(j-r.half+1) - frac
			x := t / float64(r.half)
			w := 0.0
			if x > -1 && x < 1 {
				w = bessI0(rsKaiserBeta*math.Sqrt(1-x*x)) / i0
			}
			h[j] = 2 * fc * sinc(2*fc*t) * w
			sum += h[j]
		}
		// Normalise each phase to unity DC gain so no phase-dependent ripple appears.
		ph := make([]float32, taps)
		for j := range h {
			ph[j] = float32(h[j] / sum)
		}
		r.phases[p] = ph
	}
	// Virtual zeros before the first sample, so output 0 is centred on input 0.
	r.buf = make([]float32, r.half-1, 4096)
	r.base = -int64(r.half - 1)
	return r
}

func sinc(x float64) float64 {
	if x == 0 {
		return 1
	}
	return math.Sin(math.Pi*x) / (math.Pi * x)
}

// bessI0 is the zeroth-order modified Bessel function of the first kind (series form).
func bessI0(x float64) float64 {
	sum, term := 1.0, 1.0
	for k := 1; k < 50; k++ {
		term *= (x / (2 * float64(k))) * (x / (2 * float64(k)))
		sum += term
		if term < sum*1e-12 {
			break
		}
	}
	return sum
}

// process appends in (mono samples at the input rate) and appends every output sample
// that can now be computed to out.
func (r *resampler) process(out, in []float32) []float32 {
	r.buf = append(r.buf, in...)
	return r.drain(out)
}

// flush pads the input with zeros so the tail of the stream is computed, and returns the
// remaining output: in total ceil(inputs*up/down) samples.
func (r *resampler) flush(out []float32, inputs int64) []float32 {
	if r.flushed {
		return out
	}
	r.flushed = true
	r.buf = append(r.buf, make([]float32, r.half+1)...)
	total := (inputs*int64(r.up) + int64(r.down) - 1) / int64(r.down)
	out = r.drain(out)
	if r.n > total {
		out = out[:len(out)-int(r.n-total)]
	}
	return out
}

func (r *resampler) drain(out []float32) []float32 {
	end := r.base + int64(len(r.buf)) // one past the last input index held
	for {
		t := r.n * int64(r.down)
		i := t / int64(r.up)
		p := int(t % int64(r.up))
		if np := len(r.phases); np != r.up {
			p = int((int64(p)*int64(np) + int64(r.up)/2) / int64(r.up))
			if p == np {
				p = 0
				i++
			}
		}
		first := i - int64(r.half) + 1
		if i+int64(r.half) >= end {
			break
		}
		h := r.phases[p]
		x := r.buf[first-r.base : first-r.base+int64(len(h))]
		var acc float32
		for j, c := range h {
			acc += c * x[j]
		}
		out = append(out, acc)
		r.n++
	}
	// Drop history no future output needs.
	t := r.n * int64(r.down)
	keepFrom := t/int64(r.up) - int64(r.half) + 1
	if drop := keepFrom - r.base; drop > 0 && drop > int64(len(r.buf))/2 {
		n := copy(r.buf, r.buf[drop:])
		r.buf = r.buf[:n]
		r.base = keepFrom
	}
	return out
}
