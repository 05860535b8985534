package agent

import (
	"context"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
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

// roomAndSpeech writes a WAV: 4 s of quiet noise, 6 s of a loud voiced sound, 4 s of noise.
func roomAndSpeech(t *testing.T) string {
	r := rand.New(rand.NewPCG(1, 2))
	var pcm []byte
	for i := range 14 * audio.SampleRate {
		v := r.NormFloat64() * 30
		if s := float64(i) / audio.SampleRate; s >= 4 && s < 10 {
			// 150 Hz voice with harmonics, syllables at 4 Hz.
			env := 0.6 + 0.4*math.Sin(2*math.Pi*4*s)
			for h := 1.0; h <= 8; h++ {
				v += env * 3000 / h * math.Sin(2*math.Pi*150*h*s)
			}
		}
		pcm = binary.LittleEndian.AppendUint16(pcm, uint16(int16(max(-32768, min(32767, v)))))
	}
	path := filepath.Join(t.TempDir(), "room.wav")
	if err := os.WriteFile(path, append(audio.WAVHeader(len(pcm)), pcm...), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestAudioPathAllocs: capture → gate → routing allocates nothing per frame, while nobody
// speaks and inside a segment of speech. (Segment starts and ends allocate: state, events.)
// The live uplink's own input is outside this budget: today it keeps the frames it is
// given, so uplinkInput hands it a copy, one allocation per streamed frame (logged).
func TestAudioPathAllocs(t *testing.T) {
	src, err := capture.Open(context.Background(), capture.Config{Input: roomAndSpeech(t)})
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
	frame := func() {
		f, err := src.Next()
		if err != nil {
			t.Fatal(err)
		}
		events = a.route(sink, gate.Push(f, events[:0]), &forwarding)
		an := gate.Last()
		a.counters.setLevel(an.LevelDBFS, an.FloorDBFS)
	}
	for range 20 { // the noise floor settles
		frame()
	}
	if n := allocs.PerRun(10, frame); n != 0 {
		t.Errorf("silence: %.2f allocations per frame", n)
	}
	for !gate.Open() {
		frame()
	}
	frame()
	before := sink.frames
	if n := allocs.PerRun(20, frame); n != 0 {
		t.Errorf("speech: %.2f allocations per frame", n)
	}
	if !gate.Open() || sink.frames-before != 21 {
		t.Fatalf("the segment did not stay open while measured (%d frames routed)", sink.frames-before)
	}
	f, _ := src.Next()
	t.Logf("uplinkInput's copy for the live uplink: %.0f allocation per streamed frame",
		allocs.PerRun(10, func() { f.Clone() }))
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
