package vad

import "math"

// Arithmetic that gives the same bits on every architecture.
//
// The gate's decisions decide what is sent (and billed), and `make cross-check` requires
// `hark vad --csv` to be byte-identical on amd64, arm64 and armhf. Two things break that
// with ordinary float code: the Go compiler may fuse x*y+z into one FMA instruction on
// arm64 (one rounding instead of two), and math.Log, math.Exp, math.Sin and math.Cos
// have assembly or FMA-fused implementations on some architectures. So the VAD's own
// arithmetic follows two rules:
//
//   - every product that feeds an addition or subtraction is wrapped in float64(...),
//     which the Go specification says rounds and so prevents fusion;
//   - logarithms, exponentials and trigonometric tables come from the functions below,
//     built only from +, -, *, /, math.Sqrt (exactly rounded by IEEE 754) and
//     math.Frexp/math.Ldexp (exact bit manipulation).
//
// TestDeterministicGolden pins a hash of the features and scores of a fixed signal; the
// arm builds pass it under qemu (docs/bench-vad.md) and `make cross-check` compares the
// whole CSV.

const (
	ln2      = 0.693147180559945309417232121458176568
	sqrtHalf = 0.707106781186547524400844362104849039
	// dbPerLn converts a natural logarithm of power to dB: 10/ln(10).
	dbPerLn = 4.34294481903251827651128918916605082
)

// lnDet is the natural logarithm of x > 0 (and -Inf for x <= 0), accurate to about
// 1e-15 relative, computed identically everywhere.
func lnDet(x float64) float64 {
	if !(x > 0) {
		return math.Inf(-1)
	}
	if math.IsInf(x, 1) {
		return x
	}
	m, e := math.Frexp(x) // x = m * 2^e, m in [0.5, 1)
	if m < sqrtHalf {
		m *= 2 // exact
		e--
	}
	// m in [sqrt(0.5), sqrt(2)): ln(m) = 2 atanh(t), t = (m-1)/(m+1), |t| < 0.1716.
	t := (m - 1) / (m + 1)
	t2 := float64(t * t)
	p := 1.0 / 19
	p = float64(p*t2) + 1.0/17
	p = float64(p*t2) + 1.0/15
	p = float64(p*t2) + 1.0/13
	p = float64(p*t2) + 1.0/11
	p = float64(p*t2) + 1.0/9
	p = float64(p*t2) + 1.0/7
	p = float64(p*t2) + 1.0/5
	p = float64(p*t2) + 1.0/3
	p = float64(p*t2) + 1
	return float64(2*float64(t*p)) + float64(float64(e)*ln2)
}

// dbDet is 10*log10(p) for a power ratio, with silentDB for (near) silence.
func dbDet(p float64) float64 {
	if p <= 1e-12 {
		return silentDB
	}
	return float64(lnDet(p) * dbPerLn)
}

// expDet is e^x, accurate to about 1e-15 relative, computed identically everywhere.
// It saturates: 0 below -700, +Inf above 700.
func expDet(x float64) float64 {
	switch {
	case x != x:
		return x
	case x < -700:
		return 0
	case x > 700:
		return math.Inf(1)
	}
	// x = k ln2 + r with |r| <= ln2/2, e^x = 2^k e^r.
	// Cody-Waite: ln2 in two parts, so r is exact enough even for large k.
	const ln2Hi, ln2Lo = 6.93147180369123816490e-01, 1.90821492927058770002e-10
	k := math.Floor(x/ln2 + 0.5)
	r := (x - float64(k*ln2Hi)) - float64(k*ln2Lo)
	// Taylor series of e^r to r^14/14!: |r| <= 0.347, error < 1e-17.
	p := 1.0 / 87178291200
	for _, c := range [...]float64{1.0 / 6227020800, 1.0 / 479001600, 1.0 / 39916800, 1.0 / 3628800,
		1.0 / 362880, 1.0 / 40320, 1.0 / 5040, 1.0 / 720, 1.0 / 120, 1.0 / 24, 1.0 / 6, 0.5, 1, 1} {
		p = float64(p*r) + c
	}
	return math.Ldexp(p, int(k))
}

// sigmoid is the logistic function 1/(1+e^-z).
func sigmoid(z float64) float64 { return 1 / (1 + expDet(-z)) }

// unitCircle returns cos and sin of 2*pi*k/n for k in [0, n), n a power of two >= 4,
// from half-angle formulas and exact symmetries only (no math.Sin/math.Cos), so the
// tables are identical on every architecture.
func unitCircle(n int) (cos, sin []float64) {
	cos, sin = make([]float64, n), make([]float64, n)
	// cos and sin of 2*pi/n: halve pi/2 until the angle is 2*pi/n.
	c, s := 0.0, 1.0 // pi/2
	for a := 4; a < n; a *= 2 {
		// cos(t/2) = sqrt((1+cos t)/2), sin(t/2) = sin t / (2 cos(t/2))
		c2 := math.Sqrt((1 + c) / 2)
		s = s / (2 * c2)
		c = c2
	}
	// The first octant by rotation; the rest by symmetry (exact).
	q := n / 4
	cos[0], sin[0] = 1, 0
	for k := 1; k <= n/8; k++ {
		pc, ps := cos[k-1], sin[k-1]
		cos[k] = float64(pc*c) - float64(ps*s)
		sin[k] = float64(ps*c) + float64(pc*s)
	}
	if n >= 8 {
		cos[n/8], sin[n/8] = sqrtHalf, sqrtHalf
	}
	for k := n/8 + 1; k <= q; k++ { // cos(pi/2 - t) = sin t
		cos[k], sin[k] = sin[q-k], cos[q-k]
	}
	for k := q + 1; k < n; k++ {
		switch {
		case k <= 2*q: // t = pi/2 + u
			cos[k], sin[k] = -sin[k-q], cos[k-q]
		default: // t = pi + u
			cos[k], sin[k] = -cos[k-2*q], -sin[k-2*q]
		}
	}
	return cos, sin
}

// biquad is one second-order section, transposed direct form II.
type biquad struct{ b0, b1, b2, a1, a2 float64 }

// highpass is one RBJ high-pass section at cutoff 2*pi*num/den of the sample rate, built
// from unitCircle's tables; two with Q 0.5412 and 1.3066 make a 4th-order Butterworth.
func highpass(cw, sw, q float64) biquad {
	alpha := sw / (2 * q)
	a0 := 1 + alpha
	return biquad{
		b0: (1 + cw) / 2 / a0, b1: -(1 + cw) / a0, b2: (1 + cw) / 2 / a0,
		a1: -2 * cw / a0, a2: (1 - alpha) / a0,
	}
}
