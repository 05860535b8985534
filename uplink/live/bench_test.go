package live

import (
	"context"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/hark-audio/hark/audio"
	"github.com/hark-audio/hark/dgemu"
)

// BenchmarkSegmentEndToUtterance measures end of speech → published utterance with the
// emulator answering at once: SegmentEnd queues Finalize behind the audio, the emulator
// answers with a from_finalize final, the uplink publishes. The hangover (300 ms) is
// shorter than the emulator's endpointing gap, so the Finalize answer is what publishes.
// All of the segment's audio has reached the emulator before SegmentEnd, as in real time.
func BenchmarkSegmentEndToUtterance(b *testing.B) {
	h := newHarness(b, dgemu.Config{}, nil)
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		fr := h.g.utter(3, 10, 3)
		h.u.SegmentStart(fr[0].Time)
		feed(h.u, fr)
		want := (i + 1) * len(fr)
		h.waitSession("audio", func(si dgemu.SessionInfo) bool { return si.AudioMessages == want })
		t0 := time.Now()
		h.u.SegmentEnd(fr[len(fr)-1].End())
		h.r.wait(b, "utterance", func(r *rec) bool { return len(r.utts) == i+1 })
		h.r.mu.Lock()
		lat = append(lat, h.r.uttAt[i].Sub(t0))
		h.r.mu.Unlock()
		h.g.skip(2 * time.Second)
	}
	b.StopTimer()
	si := h.waitSession("finalize answers", func(si dgemu.SessionInfo) bool { return si.FromFinalize == b.N })
	if si.Finals != si.FromFinalize || len(h.srv.Sessions()) != 1 {
		b.Fatalf("not the Finalize path: %s", summarize(h.srv.Sessions()))
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.95), "p95-ms")
	b.ReportMetric(q(1), "max-ms")
}

// BenchmarkFrameToSocket is the cost of one frame on the uplink's path, from Frame to the
// socket write (a sink that discards), including the writer goroutine's wake-ups: frames
// are pushed back to back and the benchmark ends when the sink has read them all.
func BenchmarkFrameToSocket(b *testing.B) {
	target, frames := sink(b)
	u := New(Config{URL: target, APIKey: testKey, Options: url0(), PingInterval: time.Hour, KeepAlive: 5 * time.Second,
		MaxSegment: time.Hour, MaxBacklog: time.Hour, Logger: testLogger(b)}, Handler{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- u.Run(ctx) }()
	defer func() { cancel(); <-done }()
	f := audio.Frame{Time: time.Now(), Samples: make([]int16, audio.FrameSamples)}
	u.SegmentStart(f.Time)
	u.Frame(f) // connect
	for frames.Load() < 1 {
		runtime.Gosched()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		f.Seq++
		u.Frame(f)
	}
	for frames.Load() < int64(b.N+1) {
		runtime.Gosched()
	}
}
