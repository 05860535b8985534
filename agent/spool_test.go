package agent

import (
	"testing"
	"time"

	"github.com/hark-audio/hark/audio"
)

// A segment handed to the spool whole may contain a gap where capture dropped frames: the
// gap becomes silence, so that the uploader's linear mapping of file seconds from the
// segment's start gives the words after it their capture times.
func TestSegmentSamplesFillsGaps(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	fr := func(seq uint64, v int16) audio.Frame {
		s := make([]int16, audio.FrameSamples)
		for i := range s {
			s[i] = v
		}
		return audio.Frame{Seq: seq, Time: t0.Add(time.Duration(seq) * audio.FrameDuration), Samples: s}
	}
	got := segmentSamples([]audio.Frame{fr(10, 1), fr(11, 2), fr(14, 3), fr(15, 4)})
	want := []int16{1, 2, 0, 0, 3, 4}
	if len(got) != len(want)*audio.FrameSamples {
		t.Fatalf("%d samples, want %d", len(got), len(want)*audio.FrameSamples)
	}
	for i, v := range want {
		if s := got[i*audio.FrameSamples]; s != v {
			t.Errorf("frame %d starts with %d, want %d", i, s, v)
		}
	}
	// Without gaps: the frames as they are.
	if got := segmentSamples([]audio.Frame{fr(1, 5), fr(2, 6)}); len(got) != 2*audio.FrameSamples || got[audio.FrameSamples] != 6 {
		t.Errorf("contiguous frames changed: %d samples", len(got))
	}
}
