package agent

import (
	"encoding/json"
	"sort"
	"testing"
	"time"

	"github.com/hark-audio/hark/dgemu"
	"github.com/hark-audio/hark/transcript"
)

// BenchmarkEndOfSpeechToTranscript measures, on the whole agent in real time, the time from
// the end of the last word of an utterance (its capture wall-clock time) to the moment its
// JSON line is written. It includes the gate's hangover (the segment must end: one
// transcript per segment), the Finalize round trip and assembly. "answering": the emulator
// answers the Finalize at once; "quiet": it leaves a Finalize with only silence pending
// unanswered, so the segment completes after the Finalize grace and a ping's round trip.
// Each iteration streams the four demo sentences (about 22 s); run with -benchtime 1x.
//
//	go test -run '^$' -bench EndOfSpeech -benchtime 1x -count 3 ./agent
func BenchmarkEndOfSpeechToTranscript(b *testing.B) {
	for _, mode := range []string{"answering", "quiet"} {
		b.Run(mode, func(b *testing.B) {
			q := dgemu.Quiet{}
			if mode == "quiet" {
				q = dgemu.Modes["quiet"]
			}
			benchEndOfSpeech(b, q)
		})
	}
}

func benchEndOfSpeech(b *testing.B, q dgemu.Quiet) {
	d := loadDemo(b)
	var lat []time.Duration
	for i := 0; i < b.N; i++ {
		emu := dgemu.NewServer(dgemu.Config{Utterances: d.lines, Quiet: q})
		h := newHarness(b, emu, "capture:\n  realtime: true\n")
		h.start()
		arrivals := make(chan time.Duration, 16)
		go func() {
			for l := range h.out.lines {
				now := time.Now()
				var u transcript.Utterance
				if json.Unmarshal([]byte(l), &u) == nil {
					arrivals <- now.Sub(u.End)
				}
			}
		}()
		pos := 0.0
		for s := range d.spans {
			h.feedSentence(d, s, &pos, 2)
		}
		h.endInput()
		for range d.spans {
			select {
			case l := <-arrivals:
				lat = append(lat, l)
			case <-time.After(10 * time.Second):
				b.Fatal("missing utterance")
			}
		}
		close(h.out.lines)
		emu.Close()
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Milliseconds()), "p50-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Milliseconds()), "max-ms")
	b.ReportMetric(float64(lat[0].Milliseconds()), "min-ms")
}
