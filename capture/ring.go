package capture

import (
	"sync"
	"time"
)

// ring is the bounded buffer between the audio callback (a C thread that must return
// quickly) and the frame assembler. Positions are absolute sample indices since the start
// of capture, so a reader can tell exactly which samples it lost.
//
// The lock is held only for a bounded memcpy (at most one callback buffer or one frame)
// and never across I/O or channel operations, so the callback never waits on anything but
// another short copy. write neither allocates nor blocks on the reader: when the ring is
// full the oldest samples are overwritten and counted.
type ring struct {
	mu      sync.Mutex
	buf     []int16
	w, r    uint64 // absolute indices: next to write, next to read
	dropped uint64 // samples overwritten before they were read
	// anchor: the sample at index anchorIdx-1 was captured at about anchorT (the callback
	// runs once the buffer is complete).
	anchorIdx uint64
	anchorT   time.Time
	epoch     uint64 // bumped at a discontinuity (device reopened)
	epochAt   uint64 // index of the first sample of the current epoch
	writes    uint64 // callbacks seen, for the stall watchdog
	// The reader is woken once enough audio for a frame has arrived, not at every callback:
	// armed (with want, the unread samples it waits for) by arm, cleared by the write that
	// satisfies it.
	armed  bool
	want   uint64
	notify chan struct{}
}

func newRing(samples int) *ring {
	return &ring{buf: make([]int16, samples), notify: make(chan struct{}, 1)}
}

// write copies p into the ring. It is the only thing the audio callback does.
func (g *ring) write(p []int16, now time.Time) {
	g.mu.Lock()
	n := uint64(len(p))
	size := uint64(len(g.buf))
	if n > size { // a callback larger than the whole ring: keep its newest part
		skip := n - size
		g.dropped += g.w - g.r + skip
		g.w += skip
		g.r = g.w
		p = p[skip:]
		n = size
	}
	if over := g.w + n - g.r; over > size {
		d := over - size
		g.r += d
		g.dropped += d
	}
	off := g.w % size
	c := copy(g.buf[off:], p)
	copy(g.buf, p[c:])
	g.w += n
	g.anchorIdx, g.anchorT = g.w, now
	g.writes++
	wake := g.armed && g.w-g.r >= g.want
	if wake {
		g.armed = false
	}
	g.mu.Unlock()
	if wake {
		select {
		case g.notify <- struct{}{}:
		default:
		}
	}
}

// arm asks for a notification once at least want samples are unread. It returns false,
// arming nothing, when they already are.
func (g *ring) arm(want uint64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.w-g.r >= want {
		return false
	}
	g.armed, g.want = true, want
	return true
}

// readInfo describes what read returned.
type readInfo struct {
	start     uint64 // absolute index of dst[0]
	anchorIdx uint64
	anchorT   time.Time
	epoch     uint64 // epoch of the returned samples
	newEpoch  bool   // dst[0] is the first sample of epoch
}

// read copies up to len(dst) of the oldest unread samples into dst.
func (g *ring) read(dst []int16) (int, readInfo) {
	g.mu.Lock()
	defer g.mu.Unlock()
	info := readInfo{start: g.r, anchorIdx: g.anchorIdx, anchorT: g.anchorT, epoch: g.epoch, newEpoch: g.r == g.epochAt}
	size := uint64(len(g.buf))
	n := min(uint64(len(dst)), g.w-g.r)
	if g.r < g.epochAt {
		// Samples of the previous epoch: stop at the break. Its anchor no longer applies.
		n = min(n, g.epochAt-g.r)
		info.epoch--
		info.anchorT = time.Time{}
	}
	off := g.r % size
	c := copy(dst[:n], g.buf[off:])
	copy(dst[c:n], g.buf)
	g.r += n
	return int(n), info
}

// discontinuity marks a break in the stream (the device was reopened): samples written
// after it start a new epoch, and read never returns samples of two epochs at once, so the
// reader can discard a partial frame instead of joining audio from either side of a gap.
// If the reader has not yet reached an earlier break, the unread audio before this one is
// dropped: only one pending break is tracked, and a reader that far behind loses data anyway.
func (g *ring) discontinuity() {
	g.mu.Lock()
	if g.epoch > 0 && g.r < g.epochAt {
		g.dropped += g.w - g.r
		g.r = g.w
	}
	g.epoch++
	g.epochAt = g.w
	g.mu.Unlock()
}

type ringStats struct {
	written, dropped, writes uint64
	lastWrite                time.Time
}

func (g *ring) stats() ringStats {
	g.mu.Lock()
	defer g.mu.Unlock()
	return ringStats{written: g.w, dropped: g.dropped, writes: g.writes, lastWrite: g.anchorT}
}
