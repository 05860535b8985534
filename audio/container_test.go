package audio_test

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/hark-audio/hark/audio"
	"github.com/hark-audio/hark/internal/audiotest"
)

// TestSniffContainer recognises files written by the real encoders, by their contents.
func TestSniffContainer(t *testing.T) {
	dir := t.TempDir()
	pcm := make([]int16, 16000)
	for i := range pcm {
		pcm[i] = int16(8000 * math.Sin(float64(i)/8))
	}
	wav := filepath.Join(dir, "in.wav")
	os.WriteFile(wav, append(audio.WAVHeader(2*len(pcm)), audio.AppendPCM(nil, pcm)...), 0o600)
	check := func(path, name, ctype string) {
		t.Helper()
		b, _ := os.ReadFile(path)
		c, ok := audio.SniffContainer(b[:min(len(b), audio.SniffLen)])
		if !ok || c.Name != name || c.ContentType != ctype {
			t.Errorf("%s: sniffed %+v %v, want %s %s (first bytes % x)", filepath.Base(path), c, ok, name, ctype, b[:min(len(b), 16)])
		}
	}
	check(wav, "WAV", "audio/wav")
	for i, f := range audiotest.Formats {
		if p := audiotest.Encode(t, wav, f, dir, "f"+string(rune('a'+i))); p != "" {
			check(p, f.Name, f.ContentType)
		}
	}
	// Not audio, or audio without a header: not recognised.
	ones := bytes.Repeat([]byte{0xFF}, 64)
	for name, b := range map[string][]byte{
		"empty": nil, "text": []byte("hello, not audio"), "raw PCM of -1": ones, "raw PCM": audio.AppendPCM(nil, pcm[:32]),
		"RIFF but not WAVE": []byte("RIFF\x00\x00\x00\x00AVI LIST"), "short": []byte("fL"),
	} {
		if c, ok := audio.SniffContainer(b); ok {
			t.Errorf("%s recognised as %+v", name, c)
		}
	}
}

// FuzzSniffContainer: any bytes: no panic, and a recognised container has a name and a
// media type.
func FuzzSniffContainer(f *testing.F) {
	for _, s := range []string{"RIFF\x00\x00\x00\x00WAVE", "fLaC", "OggS\x00\x02OpusHead", "ID3\x04", "\xff\xfb\x90\x00",
		"\xff\xf1\x50\x80", "\x00\x00\x00\x20ftypM4A ", "\x1a\x45\xdf\xa3\x9f\x42\x82\x84webm", "#!AMR\n", "FORM\x00\x00\x00\x00AIFF", "\xff\xff\xff\xff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, ok := audio.SniffContainer(b)
		if ok != (c.Name != "" && c.ContentType != "") {
			t.Fatalf("%q: %+v %v", b, c, ok)
		}
	})
}
