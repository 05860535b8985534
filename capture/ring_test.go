package capture

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hark-audio/hark/audio"
)

func seqSamples(from, n int) []int16 {
	p := make([]int16, n)
	for i := range p {
		p[i] = int16(from + i)
	}
	return p
}

func TestRingWrapAndOverflowDropsOldest(t *testing.T) {
	g := newRing(10)
	now := time.Now()
	g.write(seqSamples(0, 7), now)
	dst := make([]int16, 5)
	n, info := g.read(dst)
	if n != 5 || info.start != 0 || dst[0] != 0 || dst[4] != 4 {
		t.Fatalf("read %d from %d: %v", n, info.start, dst[:n])
	}
	g.write(seqSamples(7, 9), now) // wraps: indices 7..15, 2 unread + 9 = 11 > 10
	st := g.stats()
	if st.dropped != 1 || st.written != 16 {
		t.Fatalf("dropped %d written %d, want 1 and 16", st.dropped, st.written)
	}
	dst = make([]int16, 20)
	n, info = g.read(dst)
	if n != 10 || info.start != 6 {
		t.Fatalf("read %d from %d, want 10 from 6 (the oldest, 5, was dropped)", n, info.start)
	}
	for i := 0; i < n; i++ {
		if dst[i] != int16(6+i) {
			t.Fatalf("sample %d = %d, want %d: %v", i, dst[i], 6+i, dst[:n])
		}
	}
	// A single write larger than the ring keeps its newest part.
	g.write(seqSamples(100, 25), now)
	n, info = g.read(dst)
	if n != 10 || dst[0] != 115 || dst[9] != 124 || info.start != 16+15 {
		t.Fatalf("oversized write: read %d from %d: %v", n, info.start, dst[:n])
	}
	if d := g.stats().dropped; d != 1+15 { // nothing was unread before the big write
		t.Fatalf("dropped %d, want 16", d)
	}
	if n, _ := g.read(dst); n != 0 {
		t.Fatalf("empty ring returned %d", n)
	}
}

func TestRingWriteDoesNotAllocate(t *testing.T) {
	g := newRing(16000)
	p := seqSamples(0, 320)
	now := time.Now()
	allocs := testing.AllocsPerRun(1000, func() { g.write(p, now) })
	if allocs != 0 {
		t.Fatalf("ring write allocates %.1f times per call", allocs)
	}
	// The whole callback body, including taking the time, must not allocate either.
	allocs = testing.AllocsPerRun(1000, func() { g.write(p, time.Now()) })
	if allocs != 0 {
		t.Fatalf("callback path allocates %.1f times per call", allocs)
	}
}

// The assembler turns arbitrary callback sizes into exact, contiguous 1600-sample frames
// with fresh slices, and marks overflow losses as Seq gaps.
func TestAssemblerFramesAndGaps(t *testing.T) {
	g := newRing(8000)
	a := newAssembler(g)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	written := 0
	write := func(n int) {
		written += n
		g.write(seqSamples(written-n, n), t0.Add(time.Duration(written)*samplePeriod))
	}
	var frames []audio.Frame
	drain := func() {
		for {
			f, ok := a.poll()
			if !ok {
				return
			}
			frames = append(frames, f)
		}
	}
	for i := 0; i < 50; i++ {
		write(441) // an awkward callback size
		drain()
	}
	if len(frames) != 50*441/1600 {
		t.Fatalf("%d frames, want %d", len(frames), 50*441/1600)
	}
	for i, f := range frames {
		if f.Seq != uint64(i) || len(f.Samples) != audio.FrameSamples || f.Samples[0] != int16(i*1600) || f.Samples[1599] != int16(i*1600+1599) {
			t.Fatalf("frame %d: seq %d first %d last %d", i, f.Seq, f.Samples[0], f.Samples[1599])
		}
		if want := t0.Add(time.Duration(i*1600) * samplePeriod); f.Time.Sub(want).Abs() > 5*time.Millisecond {
			t.Fatalf("frame %d time off by %v", i, f.Time.Sub(want))
		}
		if i > 0 && &frames[i-1].Samples[0] == &f.Samples[0] {
			t.Fatal("frames share a Samples slice")
		}
	}
	// Overflow: write 2 s without reading into a 0.5 s ring.
	before := len(frames)
	nextSeq := frames[len(frames)-1].Seq + 1
	for i := 0; i < 100; i++ {
		write(320)
	}
	drain()
	got := frames[before:]
	if len(got) == 0 || got[0].Seq <= nextSeq {
		t.Fatalf("after overflow: %d frames, first seq %d; want a gap after %d", len(got), got[0].Seq, nextSeq-1)
	}
	for i, f := range got {
		// Seq must equal the frame's position in the stream: sample index / 1600.
		if want := int16(f.Seq * 1600); f.Samples[0] != want {
			t.Fatalf("frame %d seq %d starts with sample %d, want %d", i, f.Seq, f.Samples[0], want)
		}
		if i > 0 && f.Seq != got[i-1].Seq+1 {
			t.Fatalf("gap inside readable data: %d after %d", f.Seq, got[i-1].Seq)
		}
	}
	lostFrames := got[0].Seq - nextSeq
	if dropped := g.stats().dropped + a.dropped; dropped < lostFrames*1600 || dropped >= (lostFrames+1)*1600 {
		t.Fatalf("dropped %d samples for %d lost frames", dropped, lostFrames)
	}
	// A discontinuity (device reopened) discards the partial frame and starts a new one
	// right at the first sample after it; times never go backwards.
	write(700)
	drain()
	last := frames[len(frames)-1]
	g.discontinuity()
	write(1600)
	drain()
	f := frames[len(frames)-1]
	if f.Seq != last.Seq+2 || f.Samples[0] != int16(written-1600) {
		t.Fatalf("after reopen: seq %d (last %d), first sample %d want %d", f.Seq, last.Seq, f.Samples[0], written-1600)
	}
	if !f.Time.After(last.Time) {
		t.Fatalf("time went backwards across reopen: %v then %v", last.Time, f.Time)
	}
}

// Times stay monotonic and close to the truth when callback times jitter.
func TestAssemblerClockJitter(t *testing.T) {
	g := newRing(16000)
	a := newAssembler(g)
	t0 := time.Now()
	seed := uint32(7)
	var prev time.Time
	var worst time.Duration
	for i, written := 0, 0; i < 3000; i++ {
		written += 160
		seed = seed*1664525 + 1013904223
		jitter := time.Duration(seed>>16%20000) * time.Microsecond // 0..20 ms late
		g.write(seqSamples(0, 160), t0.Add(time.Duration(written)*samplePeriod+jitter))
		for {
			f, ok := a.poll()
			if !ok {
				break
			}
			if !prev.IsZero() && !f.Time.After(prev) {
				t.Fatalf("frame %d time %v not after %v", f.Seq, f.Time, prev)
			}
			prev = f.Time
			if f.Seq > 50 {
				worst = max(worst, f.Time.Sub(t0.Add(time.Duration(f.Seq*1600)*samplePeriod)).Abs())
			}
		}
	}
	t.Logf("worst frame time error with 0-20 ms callback jitter: %v", worst)
	if worst > 25*time.Millisecond {
		t.Fatalf("frame times off by up to %v", worst)
	}
}

func BenchmarkRingWrite(b *testing.B) {
	g := newRing(80000)
	p := seqSamples(0, 320)
	now := time.Now()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		g.write(p, now)
	}
}

// goroutines counts live goroutines, leaving out two kinds that are not goroutines a test
// started and could stop: C threads that once called into Go (miniaudio's device threads
// appear as "locked to thread" goroutines with no Go frames) and releases of devices that
// miniaudio could not close (counted in abandonedDevices and reported by the test).
func goroutines() (int, string) {
	buf := make([]byte, 1<<20)
	dump := string(buf[:runtime.Stack(buf, true)])
	n := 0
	for _, g := range strings.Split(dump, "\n\n") {
		if strings.Contains(g, "locked to thread]:\nruntime.goexit") && strings.Count(g, "\n") <= 2 {
			continue
		}
		if strings.Contains(g, "malgo._Cfunc_ma_device_uninit") && abandonedDevices.Load() > 0 {
			continue
		}
		n++
	}
	return n, dump
}

// checkGoroutines fails if goroutines started during the test are still running.
func checkGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, dump := goroutines()
		if n <= before {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left running (before: %d):\n%s", n, before, dump)
		}
		time.Sleep(10 * time.Millisecond) // polling for goroutines to exit; nothing to wait on
	}
}
