package capture

import (
	"context"
	"testing"
	"time"

	"github.com/hark-audio/hark/audio"
	"github.com/hark-audio/hark/internal/allocs"
	"github.com/hark-audio/hark/internal/pace"
)

// The frame path allocates nothing per frame, for each kind of file input: 16 kHz mono
// (read directly), and 48 kHz stereo (mixed down and resampled); paced at real time or not.
func TestFileNextAllocs(t *testing.T) {
	for _, in := range []struct {
		name      string
		rate, chs int
	}{{"16k-mono", 16000, 1}, {"48k-stereo", 48000, 2}} {
		for _, realtime := range []bool{false, true} {
			path := writeTemp(t, in.name+".wav", sineWAV(in.rate, in.chs, 440, 0.3, 30))
			s, err := Open(context.Background(), Config{Input: path, Realtime: realtime})
			if err != nil {
				t.Fatal(err)
			}
			if realtime {
				// The same pacing, with every tick already due: the test need not wait.
				s.tick.Stop()
				if s.tick, err = pace.New(time.Now().Add(-time.Hour), audio.FrameDuration); err != nil {
					t.Fatal(err)
				}
			}
			for range 5 { // warm up: buffers reach their working size
				if _, err := s.Next(); err != nil {
					t.Fatal(err)
				}
			}
			n := allocs.PerRun(50, func() {
				if _, err := s.Next(); err != nil {
					t.Fatal(err)
				}
			})
			s.Close()
			if realtime {
				s.tick.Stop()
			}
			if n != 0 {
				t.Errorf("%s realtime=%v: Next allocates %.2f times per frame", in.name, realtime, n)
			}
		}
	}
}

// The microphone's consumer side (ring to frame, in the Source's slots) allocates nothing
// per frame either; the callback side is TestRingNoAlloc.
func TestMicAssembleAllocs(t *testing.T) {
	var sl slots
	g := newRing(16000)
	a := newAssembler(g)
	a.alloc = sl.get
	p := seqSamples(0, audio.FrameSamples)
	now := time.Now()
	for range 3 {
		g.write(p, now)
		a.poll()
	}
	n := allocs.PerRun(100, func() {
		g.write(p[:800], now)
		g.arm(audio.FrameSamples)
		g.write(p[800:], now)
		if _, ok := a.poll(); !ok {
			t.Fatal("no frame")
		}
	})
	if n != 0 {
		t.Fatalf("assembling a frame allocates %.2f times", n)
	}
}

// Frames from a Source keep their samples for FrameLifetime frames, then the storage is
// reused: the promise the audio path's consumers rely on.
func TestFrameLifetime(t *testing.T) {
	var sl slots
	first := sl.get()
	first[0] = 7
	for i := 1; i < FrameLifetime; i++ {
		if s := sl.get(); &s[0] == &first[0] {
			t.Fatalf("slot reused after %d frames", i)
		}
	}
	if s := sl.get(); &s[0] != &first[0] || cap(s) != audio.FrameSamples {
		t.Fatal("slots are not reused in turn, or a frame can grow into the next")
	}
}
