package vad

import "math"

// Voicing cue: normalised autocorrelation of the 4 kHz analysis-band signal at pitch lags.
const (
	voiceLen   = 400 // 100 ms at 4 kHz
	voiceWin   = 80  // 20 ms sub-frame
	voiceMinK  = 10  // 2.5 ms
	voiceMaxK  = 50  // 12.5 ms
	voiceSubs  = 4
)

// voicing returns, per sub-frame, the peak normalised autocorrelation and its lag
// (fractional, parabolic interpolation).
func (d *detector) voicing(r, lag *[voiceSubs]float64) {
	x := d.x4[:d.n4]
	for s := 0; s < voiceSubs; s++ {
		r[s], lag[s] = 0, 0
		st := s * voiceWin
		if st+voiceWin+voiceMaxK+1 > len(x) {
			continue
		}
		w := x[st : st+voiceWin+voiceMaxK+1]
		var e0 float64
		for _, v := range w[:voiceWin] {
			e0 += float64(v) * float64(v)
		}
		if e0 <= 0 {
			continue
		}
		var ek float64
		for _, v := range w[voiceMinK : voiceMinK+voiceWin] {
			ek += float64(v) * float64(v)
		}
		var cs [voiceMaxK + 2]float64
		best, bk := -2.0, 0
		for k := voiceMinK; k <= voiceMaxK+1; k++ {
			var c float32
			a, b := w[:voiceWin], w[k:k+voiceWin]
			for i := range a {
				c += a[i] * b[i]
			}
			n := float64(c) / math.Sqrt(e0*ek+1e-30)
			cs[k] = n
			if k <= voiceMaxK && n > best {
				best, bk = n, k
			}
			if k+voiceWin < len(w) {
				ek += float64(w[k+voiceWin])*float64(w[k+voiceWin]) - float64(w[k])*float64(w[k])
			}
		}
		fl := float64(bk)
		if bk > voiceMinK && bk < voiceMaxK+1 {
			y0, y1, y2 := cs[bk-1], cs[bk], cs[bk+1]
			if den := y0 - 2*y1 + y2; den < 0 {
				fl += 0.5 * (y0 - y2) / den
			}
		}
		r[s], lag[s] = best, fl
	}
}
