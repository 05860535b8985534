package agent

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/hark-audio/hark/audio"
	"github.com/hark-audio/hark/capture"
	"github.com/hark-audio/hark/config"
	"github.com/hark-audio/hark/internal/allocs"
	"github.com/hark-audio/hark/vad"
)

// nopSink takes frames the way an uplink that copies what it keeps would.
type nopSink struct{ frames int }

func (s *nopSink) SegmentStart(time.Time) {}
func (s *nopSink) Frame(audio.Frame)      { s.frames++ }
func (s *nopSink) SegmentEnd(time.Time)   {}

// roomAndDemo writes the demo recording (four spoken sentences) between 6 s of quiet room
// noise before and after.
func roomAndDemo(t *testing.T) string {
	f, err := os.Open(filepath.Join("..", "testdata", "demo", "sample.wav"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	wr, err := audio.NewWAVReader(f)
	if err != nil {
		t.Fatal(err)
	}
	speech, err := io.ReadAll(wr)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	noise := func() []byte {
		var b []byte
		for range 6 * audio.SampleRate {
			b = binary.LittleEndian.AppendUint16(b, uint16(int16(r.NormFloat64()*30)))
		}
		return b
	}
	pcm := append(append(noise(), speech...), noise()...)
	path := filepath.Join(t.TempDir(), "room.wav")
	if err := os.WriteFile(path, append(audio.WAVHeader(len(pcm)), pcm...), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestAudioPathAllocs: capture → gate → routing allocates nothing per frame, in silence and
// inside segments of speech, over the demo recording in room noise. Segment
// starts and ends are left out: they allocate (state, events), once per segment. The live
// uplink's own input is outside this budget: it keeps the frames it is given, so
// uplinkInput hands it a copy, one allocation per 16 streamed frames (measured below).
func TestAudioPathAllocs(t *testing.T) {
	src, err := capture.Open(context.Background(), capture.Config{Input: roomAndDemo(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	a := &Agent{opts: Options{Notifier: nopNotifier{}}}
	a.st.init(a)
	l, err := config.Load(config.Options{Environ: []string{"HOME=" + t.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	a.loaded = l
	gate := vad.NewGate(l.Config.VAD)
	events := make([]vad.Event, 0, 64)
	sink := &nopSink{}
	forwarding := false
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	var steady, speech, allocated int
	var ms runtime.MemStats
	for {
		runtime.ReadMemStats(&ms)
		before := ms.Mallocs
		f, err := src.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		events = a.route(sink, gate.Push(f, events[:0]), &forwarding)
		an := gate.Last()
		a.counters.setLevel(an.LevelDBFS, an.FloorDBFS)
		runtime.ReadMemStats(&ms)
		boundary := false
		for _, ev := range events {
			boundary = boundary || ev.Kind != vad.SegmentFrame
		}
		if boundary || f.Seq < 3 { // the first frames size the gate's buffers
			continue
		}
		steady++
		if forwarding {
			speech++
		}
		if n := int(ms.Mallocs - before); n > 0 {
			allocated += n
			t.Errorf("frame %d (forwarding %v): %d allocations", f.Seq, forwarding, n)
		}
	}
	t.Logf("%d steady frames (%d of them streamed), %d allocations", steady, speech, allocated)
	if speech < 40 || steady-speech < 40 {
		t.Fatalf("the recording gave %d frames of speech and %d of silence: too few to measure", speech, steady-speech)
	}
	u := &uplinkInput{}
	f := audio.Frame{Samples: make([]int16, audio.FrameSamples)}
	for i := range f.Samples {
		f.Samples[i] = int16(i)
	}
	n := allocs.PerRun(64, func() {
		if g := u.copy(f); g.Samples[1599] != 1599 || cap(g.Samples) != audio.FrameSamples {
			t.Fatal("bad copy")
		}
	})
	t.Logf("uplinkInput's copies for the live uplink: %.4f allocations per streamed frame", n)
	if n > 1.0/copyChunk {
		t.Errorf("uplinkInput allocates %.4f times per streamed frame, want at most 1/%d", n, copyChunk)
	}
}

// TestGateEmitsWithinFrameLifetime: capture reuses a frame's samples FrameLifetime frames
// later, so the gate must never emit a frame older than that. Its pre-roll is the only
// thing that holds frames back; this drives it at its largest setting through random
// speech and silence and checks the age of every frame it emits.
func TestGateEmitsWithinFrameLifetime(t *testing.T) {
	cfg := vad.DefaultConfig()
	cfg.PreRollMS, cfg.HangoverMS = 1<<20, 1<<20 // clamped to the gate's maxima
	g := vad.NewGate(cfg)
	r := rand.New(rand.NewPCG(3, 4))
	loud, quiet := make([]int16, audio.FrameSamples), make([]int16, audio.FrameSamples)
	for i := range loud {
		loud[i] = int16(8000 * math.Sin(2*math.Pi*300*float64(i)/audio.SampleRate))
		quiet[i] = int16(r.NormFloat64() * 20)
	}
	t0 := time.Now()
	events := make([]vad.Event, 0, 128)
	speech, oldest := false, uint64(0)
	for seq := uint64(0); seq < 5000; seq++ {
		if r.IntN(40) == 0 {
			speech = !speech
		}
		f := audio.Frame{Seq: seq, Time: t0.Add(time.Duration(seq) * audio.FrameDuration), Samples: quiet}
		if speech {
			f.Samples = loud
		}
		events = g.Push(f, events[:0])
		for _, ev := range events {
			if ev.Kind != vad.SegmentFrame {
				continue
			}
			age := seq - ev.Frame.Seq
			oldest = max(oldest, age)
			if age >= capture.FrameLifetime {
				t.Fatalf("frame %d emitted at frame %d: older than capture's FrameLifetime (%d)", ev.Frame.Seq, seq, capture.FrameLifetime)
			}
		}
	}
	t.Logf("oldest frame emitted: %d frames old (capture keeps %d)", oldest, capture.FrameLifetime)
	if oldest == 0 {
		t.Fatal("no pre-roll frame was ever emitted: the test did not exercise the pre-roll")
	}
}
