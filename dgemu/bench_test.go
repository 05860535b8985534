package dgemu

import (
	"bytes"
	"net/url"
	"os"
	"testing"

	"github.com/hark-audio/hark/audio"
)

// BenchmarkTranscribeBody measures the pre-recorded path on the demo sample (15.3 s).
func BenchmarkTranscribeBody(b *testing.B) {
	wav, err := os.ReadFile(demoPath("sample.wav"))
	if err != nil {
		b.Fatal(err)
	}
	o, _ := parseOptions(url.Values{"model": {"nova-3"}, "utterances": {"true"}}, false, false)
	cfg := withDefaults(Config{})
	lines := demoLines(b)
	b.SetBytes(int64(len(wav)))
	b.ReportAllocs()
	for b.Loop() {
		i := 0
		next := func() (string, bool) { i++; return lines[(i-1)%len(lines)], true }
		if _, _, err := transcribeBody(bytes.NewReader(wav), o, &cfg, "id", next); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLiveFrame measures decoding and analysing one 100 ms live message.
func BenchmarkLiveFrame(b *testing.B) {
	o, _ := parseOptions(url.Values{"model": {"nova-3"}, "encoding": {"linear16"}, "sample_rate": {"16000"}, "interim_results": {"true"}}, true, false)
	cfg := withDefaults(Config{})
	tr := newTranscriber(o, 16000, &cfg, func() (string, bool) { return "a b c", true }, func(any) {}, resultsMeta{})
	frame := tone(0.1)
	quiet := silence(0.1)
	f := audio.WAVFormat{SampleRate: 16000, Channels: 1, BitsPerSample: 16}
	var mono []float32
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		src := frame
		if i%20 >= 10 { // 1 s speech, 1 s silence
			src = quiet
		}
		i++
		mono = decodeMono(mono[:0], src, f)
		tr.addSamples(mono)
	}
}
