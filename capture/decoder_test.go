package capture

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/hark-audio/hark/audio"
)

// sineWAV returns a 16-bit WAV of secs seconds with a sine of freq Hz at amplitude amp
// (0..1) on every channel.
func sineWAV(rate, channels int, freq, amp, secs float64) []byte {
	n := int(float64(rate) * secs)
	data := make([]byte, 0, n*channels*2)
	for i := 0; i < n; i++ {
		v := int16(math.Round(amp * 32767 * math.Sin(2*math.Pi*freq*float64(i)/float64(rate))))
		for c := 0; c < channels; c++ {
			data = binary.LittleEndian.AppendUint16(data, uint16(v))
		}
	}
	return append(audio.WAVHeaderFormat(len(data), rate, channels), data...)
}

func decodeAll(t testing.TB, d *FileDecoder) []int16 {
	t.Helper()
	var out []int16
	for want := uint64(0); ; want++ {
		f, err := d.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		if f.Seq != want || len(f.Samples) != audio.FrameSamples {
			t.Fatalf("frame seq %d (want %d), %d samples", f.Seq, want, len(f.Samples))
		}
		out = append(out, f.Samples...)
	}
}

// toneAt measures the amplitude of freq in x (16 kHz) by correlating with a quadrature
// pair, which ignores other frequencies over a long window.
func toneAt(x []int16, freq float64) float64 {
	var re, im float64
	for i, v := range x {
		ph := 2 * math.Pi * freq * float64(i) / audio.SampleRate
		re += float64(v) * math.Cos(ph)
		im += float64(v) * math.Sin(ph)
	}
	return 2 * math.Hypot(re, im) / float64(len(x)) / 32767
}

func rms(x []int16) float64 {
	var s float64
	for _, v := range x {
		s += float64(v) * float64(v)
	}
	return math.Sqrt(s/float64(len(x))) / 32767
}

func TestResampleKeepsFrequencyAndLevel(t *testing.T) {
	for _, tc := range []struct {
		rate, channels int
		freq           float64
	}{
		{44100, 2, 1000}, {48000, 2, 1000}, {48000, 1, 3500}, {44100, 1, 440},
		{22050, 2, 1000}, {8000, 1, 1000}, {32000, 2, 6000}, {96000, 1, 1000},
		{11025, 1, 2000}, {44101, 2, 1000}, {192000, 1, 5000}, // odd rates use rounded phases
	} {
		wav := sineWAV(tc.rate, tc.channels, tc.freq, 0.5, 2)
		d, err := NewFileDecoder(bytes.NewReader(wav), "sine.wav", time.Unix(0, 0))
		if err != nil {
			t.Fatal(err)
		}
		out := decodeAll(t, d)
		wantN := 2 * audio.SampleRate
		if got := len(out); got != wantN {
			t.Errorf("%d Hz x%d: %d samples, want %d", tc.rate, tc.channels, got, wantN)
		}
		// Skip the filter's edges.
		mid := out[2000 : wantN-2000]
		amp := toneAt(mid, tc.freq)
		off := toneAt(mid, tc.freq*1.1)
		if math.Abs(amp-0.5) > 0.01 {
			t.Errorf("%d Hz x%d: tone amplitude %.4f, want 0.5", tc.rate, tc.channels, amp)
		}
		if off > 0.005 {
			t.Errorf("%d Hz x%d: energy off-frequency %.4f", tc.rate, tc.channels, off)
		}
		if r := rms(mid); math.Abs(r-0.5/math.Sqrt2) > 0.01 {
			t.Errorf("%d Hz x%d: rms %.4f, want %.4f (only the tone)", tc.rate, tc.channels, r, 0.5/math.Sqrt2)
		}
	}
}

// A tone above the output Nyquist frequency must be removed, not folded into the band.
func TestResampleAntiAliasing(t *testing.T) {
	for _, tc := range []struct {
		rate int
		freq float64
	}{{48000, 10000}, {44100, 9000}, {48000, 12000}, {44100, 15000}} {
		d, err := NewFileDecoder(bytes.NewReader(sineWAV(tc.rate, 1, tc.freq, 0.9, 1)), "hi.wav", time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		out := decodeAll(t, d)
		r := rms(out[1000 : len(out)-1000])
		db := 20 * math.Log10(r/(0.9/math.Sqrt2))
		t.Logf("%d Hz in %d Hz file: %.1f dB after conversion", int(tc.freq), tc.rate, db)
		if db > -60 {
			t.Errorf("%v Hz at %d Hz input leaks through at %.1f dB", tc.freq, tc.rate, db)
		}
	}
}

func TestSixteenKPassesBitExact(t *testing.T) {
	n := 16000*3 + 123 // not a whole number of frames
	data := make([]byte, 0, 2*n)
	want := make([]int16, n)
	seed := uint32(1)
	for i := range want {
		seed = seed*1664525 + 1013904223
		want[i] = int16(seed >> 16)
		data = binary.LittleEndian.AppendUint16(data, uint16(want[i]))
	}
	want[0], want[1] = math.MinInt16, math.MaxInt16
	binary.LittleEndian.PutUint16(data[0:], uint16(want[0]))
	binary.LittleEndian.PutUint16(data[2:], uint16(want[1]))
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	d, err := NewFileDecoder(bytes.NewReader(append(audio.WAVHeader(len(data)), data...)), "x.wav", start)
	if err != nil {
		t.Fatal(err)
	}
	var got []int16
	for i := 0; ; i++ {
		f, err := d.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if wantT := start.Add(time.Duration(i) * 100 * time.Millisecond); !f.Time.Equal(wantT) {
			t.Fatalf("frame %d time %v, want %v", i, f.Time, wantT)
		}
		got = append(got, f.Samples...)
	}
	if len(got) != 31*audio.FrameSamples {
		t.Fatalf("%d samples, want %d (last frame padded)", len(got), 31*audio.FrameSamples)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("sample %d: %d, want %d", i, got[i], want[i])
		}
	}
	for i := n; i < len(got); i++ {
		if got[i] != 0 {
			t.Fatalf("padding sample %d = %d", i, got[i])
		}
	}
	// The raw decoder (stdin) must give the same frames.
	rd := NewRawDecoder(bytes.NewReader(append(data, 0x7f)), "-", start)
	raw := decodeAll(t, rd)
	if !slicesEqual(raw, got) {
		t.Fatal("raw decoder differs from the WAV decoder on the same samples")
	}
}

func slicesEqual(a, b []int16) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestEmptyInputsGiveEOF(t *testing.T) {
	d, err := NewFileDecoder(bytes.NewReader(audio.WAVHeader(0)), "empty.wav", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Next(); err != io.EOF {
		t.Fatalf("empty WAV: %v, want EOF", err)
	}
	if _, err := NewRawDecoder(strings.NewReader(""), "-", time.Time{}).Next(); err != io.EOF {
		t.Fatalf("empty raw: %v, want EOF", err)
	}
}

type failingReader struct{ after int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.after <= 0 {
		return 0, errors.New("disk on fire")
	}
	n := min(len(p), f.after)
	clear(p[:n])
	f.after -= n
	return n, nil
}

var corruptCases = []struct {
	name string
	data []byte
	want string // in the error
}{
	{"empty file", nil, "RIFF header"},
	{"text file", []byte("hello, this is not audio at all, just some text\n"), "RIFF/WAVE"},
	{"truncated header", audio.WAVHeader(100)[:30], "fmt chunk"},
	{"no data chunk", audio.WAVHeader(100)[:36], "no data chunk"},
	{"mp3 tag", append([]byte("ID3\x03\x00\x00\x00"), make([]byte, 64)...), "RIFF/WAVE"},
	{"compressed", func() []byte {
		h := audio.WAVHeader(100)
		h[20] = 0x55 // MPEG layer 3
		return append(h, make([]byte, 100)...)
	}(), "compressed"},
	{"zero channels", func() []byte {
		h := audio.WAVHeader(100)
		h[22] = 0
		return append(h, make([]byte, 100)...)
	}(), "channels"},
	{"12-bit", func() []byte {
		h := audio.WAVHeader(100)
		h[34] = 12
		return append(h, make([]byte, 100)...)
	}(), "12-bit"},
	{"absurd rate", func() []byte {
		h := audio.WAVHeader(100)
		binary.LittleEndian.PutUint32(h[24:], 5)
		return append(h, make([]byte, 100)...)
	}(), "sample rate"},
}

func TestCorruptFiles(t *testing.T) {
	for _, tc := range corruptCases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewFileDecoder(bytes.NewReader(tc.data), "/x/bad.wav", time.Time{})
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, audio.ErrNotWAV) || !strings.Contains(err.Error(), `"/x/bad.wav"`) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q: want ErrNotWAV naming the file and %q", err, tc.want)
			}
		})
	}
	// A read error in the middle of the data is reported with the file name, not as EOF.
	d, err := NewFileDecoder(io.MultiReader(bytes.NewReader(audio.WAVHeader(1<<20)), &failingReader{after: 10000}), "mid.wav", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		_, err = d.Next()
		if err != nil {
			break
		}
	}
	if err == io.EOF || !strings.Contains(err.Error(), "mid.wav") || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("mid-file read error: got %v", err)
	}
	// A truncated data chunk (recording cut short) is read up to where it ends.
	wav := sineWAV(16000, 1, 440, 0.3, 1)
	d, err = NewFileDecoder(bytes.NewReader(wav[:len(wav)-1001]), "cut.wav", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(decodeAll(t, d)); got != 16000 {
		t.Fatalf("truncated file gave %d samples, want 16000 (10 frames, last padded)", got)
	}
}

func FuzzFileDecoder(f *testing.F) {
	for _, tc := range corruptCases {
		f.Add(tc.data)
	}
	f.Add(sineWAV(44100, 2, 1000, 0.5, 0.05))
	f.Add(sineWAV(16000, 1, 1000, 0.5, 0.05))
	f.Add(sineWAV(8000, 3, 1000, 0.5, 0.05))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := NewFileDecoder(bytes.NewReader(data), "fuzz.wav", time.Time{})
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.wav") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for i := 0; i < 10000; i++ {
			fr, err := d.Next()
			if err != nil {
				return
			}
			if len(fr.Samples) != audio.FrameSamples || fr.Seq != uint64(i) {
				t.Fatalf("bad frame %d: seq %d, %d samples", i, fr.Seq, len(fr.Samples))
			}
		}
		t.Fatal("decoder produced 10000 frames from a small input")
	})
}

func BenchmarkResample48kStereo(b *testing.B) { benchDecode(b, 48000, 2) }
func BenchmarkResample44kStereo(b *testing.B) { benchDecode(b, 44100, 2) }
func BenchmarkDecode16kMono(b *testing.B)     { benchDecode(b, 16000, 1) }

// benchDecode reports the cost per second of audio converted.
func benchDecode(b *testing.B, rate, ch int) {
	wav := sineWAV(rate, ch, 1000, 0.5, 10)
	b.SetBytes(int64(len(wav)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d, err := NewFileDecoder(bytes.NewReader(wav), "b.wav", time.Time{})
		if err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := d.Next(); err != nil {
				break
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/10/1e3, "µs/audio-s")
}

// writeTemp writes data to a file in a test temp dir and returns its path.
func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// The resampler is centred (no group delay), so frame times computed from sample counts
// hold: a click half a second into the file comes out half a second into the frames.
func TestResampleAddsNoDelay(t *testing.T) {
	for _, rate := range []int{8000, 22050, 44100, 48000, 11025} {
		data := make([]byte, 2*rate)
		binary.LittleEndian.PutUint16(data[2*(rate/2):], uint16(20000))
		d, err := NewFileDecoder(bytes.NewReader(append(audio.WAVHeaderFormat(len(data), rate, 1), data...)), "click.wav", time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		out := decodeAll(t, d)
		peak, at := 0, 0
		for i, v := range out {
			if a := int(v); a > peak {
				peak, at = a, i
			}
		}
		if at < 7999 || at > 8001 {
			t.Errorf("%d Hz: click at output sample %d, want 8000", rate, at)
		}
	}
}

// The direct path's read-ahead block gives the same samples whatever sizes the reads
// return (a pipe delivers arbitrary pieces), for a file ending mid-frame on an odd byte.
func TestDirectPathShortReads(t *testing.T) {
	pcm := append(sineWAV(16000, 1, 440, 0.5, 3.33)[44:], 0x7f) // an odd data chunk
	data := append(audio.WAVHeader(len(pcm)), pcm...)
	want := decodeAll(t, mustDecoder(t, bytes.NewReader(data)))
	if len(want) != 34*audio.FrameSamples {
		t.Fatalf("%d samples, want 34 frames", len(want))
	}
	for name, r := range map[string]io.Reader{
		"one byte": iotest.OneByteReader(bytes.NewReader(data)),
		"half":     iotest.HalfReader(bytes.NewReader(data)),
		"data err": iotest.DataErrReader(bytes.NewReader(data)),
	} {
		if got := decodeAll(t, mustDecoder(t, r)); !slicesEqual(got, want) {
			t.Errorf("%s: %d samples differ from a whole read's %d", name, len(got), len(want))
		}
	}
	d := NewRawDecoder(iotest.OneByteReader(bytes.NewReader(pcm)), "stdin", time.Time{})
	if got := decodeAll(t, d); !slicesEqual(got[:len(want)], want) {
		t.Error("raw input read a byte at a time differs")
	}
}

func mustDecoder(t *testing.T, r io.Reader) *FileDecoder {
	t.Helper()
	d, err := NewFileDecoder(r, "x.wav", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}
