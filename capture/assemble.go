package capture

import (
	"time"

	"github.com/hark-audio/hark/audio"
)

// samplePeriod is exact: 62500 ns.
const samplePeriod = time.Second / audio.SampleRate

// Clock model limits. The callback's wall-clock time jitters by a scheduling quantum; the
// frame times follow the sample count and are pulled towards the callback estimate by an
// eighth of the difference (a low-pass that averages the jitter out), at most maxSlew per
// frame, so they never jump backwards and stay within a few ms of the
// truth. A disagreement beyond resetAfter means the model is wrong (first frame, reopen,
// a suspended machine) and it restarts from the estimate.
const (
	maxSlew    = time.Millisecond
	resetAfter = 500 * time.Millisecond
)

// assembler cuts the ring's sample stream into frames. It runs on the goroutine calling
// Source.Next and reads the ring straight into the frame being filled.
type assembler struct {
	ring    *ring
	alloc   func() []int16 // storage for the next frame (the Source's slots)
	frame   []int16        // frame being filled; nil between frames
	fill    int
	fpos    uint64 // absolute ring index of frame[0]
	next    uint64 // absolute ring index expected from the next read
	seq     uint64
	epoch   uint64
	dropped uint64 // samples of partial frames discarded at a gap

	haveClock bool
	lastIdx   uint64
	lastTime  time.Time
	now       func() time.Time
}

func newAssembler(g *ring) *assembler {
	return &assembler{ring: g, now: time.Now, alloc: func() []int16 { return make([]int16, audio.FrameSamples) }}
}

// poll reads what the ring holds and returns a frame when one is complete. ok is false when
// the ring ran dry first.
func (a *assembler) poll() (f audio.Frame, ok bool) {
	for {
		if a.frame == nil {
			a.frame = a.alloc()
		}
		n, info := a.ring.read(a.frame[a.fill:audio.FrameSamples])
		if n == 0 {
			return audio.Frame{}, false
		}
		// The samples read are at frame[fill:fill+n]; a gap restarts the frame, moving them
		// to its start (rare: overflow or a reopened device).
		switch {
		case info.epoch != a.epoch:
			// The device was reopened: never join audio across the gap.
			if a.fill > 0 {
				a.dropped += uint64(a.fill)
				a.seq++
				copy(a.frame, a.frame[a.fill:a.fill+n])
			}
			a.fill = 0
			a.fpos = info.start
			a.epoch = info.epoch
			a.haveClock = false
		case info.start != a.next:
			// The ring overflowed and dropped [a.next, info.start). Every frame that range
			// touched is lost; Seq skips them so the gap is visible downstream.
			a.dropped += uint64(a.fill)
			copy(a.frame, a.frame[a.fill:a.fill+n])
			a.fill = 0
			lost := (info.start - a.fpos + audio.FrameSamples - 1) / audio.FrameSamples
			a.fpos += lost * audio.FrameSamples
			a.seq += lost
		}
		a.next = info.start
		if a.next < a.fpos { // realigning after an overflow
			k := min(uint64(n), a.fpos-a.next)
			a.dropped += k
			copy(a.frame[a.fill:], a.frame[a.fill+int(k):a.fill+n])
			n -= int(k)
			a.next += k
		}
		a.fill += n
		a.next += uint64(n)
		if a.fill < audio.FrameSamples {
			continue
		}
		f = audio.Frame{Seq: a.seq, Time: a.frameTime(info), Samples: a.frame}
		a.frame = nil
		a.fill = 0
		a.fpos += audio.FrameSamples
		a.seq++
		return f, true
	}
}

// frameTime estimates the capture time of the frame starting at a.fpos.
func (a *assembler) frameTime(info readInfo) time.Time {
	var est time.Time
	haveEst := !info.anchorT.IsZero() && info.anchorIdx >= a.fpos
	if haveEst {
		est = info.anchorT.Add(-time.Duration(info.anchorIdx-a.fpos) * samplePeriod)
	}
	var t time.Time
	switch {
	case !a.haveClock && haveEst:
		t = est
	case !a.haveClock:
		t = a.now().Add(-time.Duration(a.next-a.fpos) * samplePeriod)
	default:
		pred := a.lastTime.Add(time.Duration(a.fpos-a.lastIdx) * samplePeriod)
		t = pred
		if haveEst {
			d := est.Sub(pred)
			switch {
			case d > resetAfter || d < -resetAfter:
				t = est
			default:
				t = pred.Add(max(-maxSlew, min(maxSlew, d/8)))
			}
		}
	}
	if a.haveClock && !t.After(a.lastTime) {
		t = a.lastTime.Add(time.Microsecond)
	}
	a.haveClock, a.lastIdx, a.lastTime = true, a.fpos, t
	return t
}
