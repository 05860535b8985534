package live

import (
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"syscall"
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
	u, frames, f := sinkUplink(b, Config{PingInterval: time.Hour, KeepAlive: 5 * time.Second,
		MaxSegment: time.Hour, MaxBacklog: time.Hour})
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

// BenchmarkReplay measures what a lost connection costs a segment: the time from the drop
// (all of the segment's audio sent, its Finalize not yet answered) to the segment's
// utterance published from the next connection, for segments of 2, 5 and 9 s, with the
// emulator ingesting at 1.25x real time after a 1 s burst, as the service does. It includes
// the reconnect backoff (50 to 100 ms with this harness's BackoffMin), the handshake, the
// replay and the Finalize answer.
//
//	go test -run '^$' -bench Replay -benchtime 5x ./uplink/live
func BenchmarkReplay(b *testing.B) {
	for _, sec := range []int{2, 5, 9} {
		b.Run(fmt.Sprintf("%ds", sec), func(b *testing.B) {
			h := newHarness(b, dgemu.Config{RealtimeLimit: 1.25}, nil)
			var lat []time.Duration
			for i := 0; i < b.N; i++ {
				fr := h.g.utter(3, 10*sec-5, 2)
				h.u.SegmentStart(fr[0].Time)
				feed(h.u, fr)
				h.waitSession("audio", func(si dgemu.SessionInfo) bool { return !si.Closed && si.AudioMessages == len(fr) })
				n := len(h.srv.Sessions())
				t0 := time.Now()
				h.srv.DropSessions()
				h.u.SegmentEnd(fr[len(fr)-1].End())
				h.r.wait(b, "utterance", func(r *rec) bool { return len(r.utts) == i+1 })
				h.r.mu.Lock()
				lat = append(lat, h.r.uttAt[i].Sub(t0))
				h.r.mu.Unlock()
				if m := len(h.srv.Sessions()); m != n+1 {
					b.Fatalf("%d sessions after the drop, want %d", m, n+1)
				}
				h.g.skip(2 * time.Second)
			}
			b.StopTimer()
			if st := h.u.Stats(); st.Replays != int64(b.N) || st.UnconfirmedSegments != 0 {
				b.Fatalf("replays %d, spooled %d", st.Replays, st.UnconfirmedSegments)
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Milliseconds()), "p50-ms")
			b.ReportMetric(float64(lat[len(lat)-1].Milliseconds()), "max-ms")
		})
	}
}

// BenchmarkRealtimeCPU measures the process's CPU time (user+system) per audio second
// while 100 ms frames are produced in real time (a ticker) and sent to a sink in the same
// process, against two floors on this machine, where waking a goroutine is not free:
//   - ticker: the ticker alone;
//   - raw-tcp: the ticking goroutine writes each frame's 3208 bytes to a plain TCP socket
//     (the least any client must do per frame), read by the sink;
//   - uplink: Frame on the ticking goroutine, the uplink's writer goroutine framing and
//     writing it, a segment (Finalize) every 2 s, pings and KeepAlives.
//
// The uplink's own cost is its difference to raw-tcp.
//
//	go test -run '^$' -bench RealtimeCPU -benchtime 1x -count 3 ./uplink/live
func BenchmarkRealtimeCPU(b *testing.B) {
	const audioSec = 10
	run := func(b *testing.B, frame func(k int)) {
		var cpu time.Duration
		for i := 0; i < b.N; i++ {
			before := cpuTime()
			tick := time.NewTicker(audio.FrameDuration)
			for k := range audioSec * 10 {
				<-tick.C
				frame(k)
			}
			tick.Stop()
			cpu += cpuTime() - before
		}
		b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N*audioSec), "cpu-ms/audio-s")
	}
	b.Run("ticker", func(b *testing.B) { run(b, func(int) {}) })
	b.Run("raw-tcp", func(b *testing.B) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			_, _ = io.Copy(io.Discard, c)
		}()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		buf := make([]byte, 8+audio.FrameBytes)
		run(b, func(int) {
			_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			_, _ = c.Write(buf)
		})
	})
	b.Run("uplink", func(b *testing.B) {
		u, _, f := sinkUplink(b, Config{})
		run(b, func(k int) {
			if k%20 == 0 {
				u.SegmentEnd(f.End())
				u.SegmentStart(f.End())
			}
			f.Seq++
			f.Time = f.Time.Add(audio.FrameDuration)
			u.Frame(f)
		})
	})
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
