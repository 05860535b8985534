package dgemu

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"sync"

	"github.com/hark-audio/hark/audio"
)

// Reference makes transcripts content-addressed: when Config.Reference is set, each
// detected utterance is located in a reference recording by an exact search for its first
// speech window's samples, and takes the text of the reference span it lies in — only the
// words of the part of the span it actually covers. hark sends audio bit-exact (live frames
// and spooled WAVs alike), so a test that mixes the live and pre-recorded paths, or cuts a
// sentence in two, gets the right words whatever order things happen in. An utterance that
// is not found falls back to the order-based fixture.
type Reference struct {
	Samples []int16 // 16 kHz mono
	Spans   []ReferenceSpan

	once sync.Once
	idx  map[uint64][]int32 // first four samples of a window → positions
}

// ReferenceSpan is one sentence of the reference: its speech in seconds and its text.
type ReferenceSpan struct {
	Start, End float64
	Text       string
}

// LoadReference reads a 16 kHz mono 16-bit WAV and a JSON file of the form
// {"utterances": [{"text": ..., "start": s, "end": s}, ...]} (testdata/demo/sample.json).
func LoadReference(wavPath, jsonPath string) (*Reference, error) {
	f, err := os.Open(wavPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := audio.NewWAVReader(f)
	if err != nil {
		return nil, fmt.Errorf("reference %s: %w", wavPath, err)
	}
	if r.Format.SampleRate != audio.SampleRate || r.Format.Channels != 1 || r.Format.BitsPerSample != 16 || r.Format.Float {
		return nil, fmt.Errorf("reference %s: want 16 kHz mono 16-bit PCM, got %+v", wavPath, r.Format)
	}
	raw, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("reference %s: %w", wavPath, err)
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		return nil, err
	}
	var js struct {
		Utterances []struct {
			Text  string  `json:"text"`
			Start float64 `json:"start"`
			End   float64 `json:"end"`
		} `json:"utterances"`
	}
	if err := json.Unmarshal(b, &js); err != nil {
		return nil, fmt.Errorf("reference %s: %w", jsonPath, err)
	}
	ref := &Reference{Samples: audio.DecodePCM(nil, raw)}
	for _, u := range js.Utterances {
		ref.Spans = append(ref.Spans, ReferenceSpan{Start: u.Start, End: u.End, Text: u.Text})
	}
	if len(ref.Spans) == 0 {
		return nil, fmt.Errorf("reference %s: no utterances", jsonPath)
	}
	return ref, nil
}

func key4(s []int16) uint64 {
	return uint64(uint16(s[0])) | uint64(uint16(s[1]))<<16 | uint64(uint16(s[2]))<<32 | uint64(uint16(s[3]))<<48
}

// find returns the position (in samples) where w occurs exactly in the reference.
func (r *Reference) find(w []int16) (int, bool) {
	if len(w) < 4 {
		return 0, false
	}
	r.once.Do(func() {
		r.idx = make(map[uint64][]int32)
		for i := 0; i+4 <= len(r.Samples); i++ {
			k := key4(r.Samples[i:])
			r.idx[k] = append(r.idx[k], int32(i))
		}
	})
	for _, p := range r.idx[key4(w)] {
		i := int(p)
		if i+len(w) > len(r.Samples) {
			continue
		}
		match := true
		for j, v := range w {
			if r.Samples[i+j] != v {
				match = false
				break
			}
		}
		if match {
			return i, true
		}
	}
	return 0, false
}

// spanAt returns the span containing sec, allowing for the detector's onset landing a
// little before the labelled start or after the labelled end.
func (r *Reference) spanAt(sec float64) (int, bool) {
	const slack = 0.3
	for i, s := range r.Spans {
		if sec >= s.Start-slack && sec <= s.End+slack {
			return i, true
		}
	}
	return 0, false
}

// refLookup locates the samples of window i in the reference.
func (t *transcriber) refLookup(i int) (span int, pos float64, ok bool) {
	if t.ref == nil || t.an.rate != audio.SampleRate {
		return 0, 0, false
	}
	win := t.an.winSamples
	a := int64(i*win) - t.recentStart
	if a < 0 || a+int64(win) > int64(len(t.recent)) {
		return 0, 0, false
	}
	w := make([]int16, win)
	for j, v := range t.recent[a : a+int64(win)] {
		w[j] = int16(math.Max(-32768, math.Min(32767, math.Round(float64(v)*32768))))
	}
	// The onset window may begin in silence that is not in the reference (audio spliced
	// off the sample grid): try its tail too.
	for skip := 0; skip <= 3*win/4; skip += win / 4 {
		p, found := t.ref.find(w[skip:])
		if !found {
			continue
		}
		sec := float64(p-skip) / audio.SampleRate
		span, ok = t.ref.spanAt(sec)
		return span, sec, ok
	}
	return 0, 0, false
}

// keepRecent remembers the samples of the windows the next step calls can look at: the
// partial window carried over plus the new chunk.
func (t *transcriber) keepRecent(x []float32) {
	if t.ref == nil {
		return
	}
	if drop := len(t.recent) - t.an.winSamples; drop > 0 {
		t.recent = append(t.recent[:0], t.recent[drop:]...)
		t.recentStart += int64(drop)
	}
	t.recent = append(t.recent, x...)
}

// refTokens keeps the words of the reference span whose share of the span lies within the
// utterance's extent, so a sentence cut in two is transcribed as two complementary halves.
// The extent is the audio the utterance stands for, not only its speech windows: the first
// utterance of a stream or file owns the audio back to its start, and one closed by
// Finalize or the end of the audio owns the audio up to that end. Both are contiguous with
// the onset, so a cut that falls in a quiet stretch between two words gives each word to
// exactly one side.
func (t *transcriber) refTokens(u *utt) []string {
	s := t.ref.Spans[u.refSpan]
	tokens := strings.Fields(s.Text)
	from := u.refPos
	if u.first {
		from -= t.an.time(u.startWin) - t.an.time(0)
	}
	to := u.refPos + t.an.time(u.lastWin+1) - t.an.time(u.startWin)
	if u.closedAtEnd {
		to = u.refPos + t.an.time(len(t.an.speech)) - t.an.time(u.startWin)
	}
	if from <= s.Start+0.05 && to >= s.End-0.05 {
		return tokens
	}
	var out []string
	n := float64(len(tokens))
	for k, tok := range tokens {
		c := s.Start + (float64(k)+0.5)/n*(s.End-s.Start)
		if c >= from && c < to {
			out = append(out, tok)
		}
	}
	return out
}
