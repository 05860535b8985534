package dgemu

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/demo/sample.json from the measured audio")

// demoSpans is the layout of testdata/demo/sample.json, which other packages' tests read to
// know where each sentence of sample.wav is.
type demoSpans struct {
	File       string  `json:"file"`
	SampleRate int     `json:"sample_rate"`
	Duration   float64 `json:"duration"`
	Note       string  `json:"note"`
	Utterances []struct {
		Text  string  `json:"text"`
		Start float64 `json:"start"`
		End   float64 `json:"end"`
	} `json:"utterances"`
}

func demoPath(name string) string { return filepath.Join("..", "testdata", "demo", name) }

func demoLines(t testing.TB) []string {
	b, err := os.ReadFile(demoPath("sample.txt"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// TestDemoSample checks that the emulator's segmenter finds exactly one utterance per line of
// sample.txt in sample.wav, and that sample.json records their measured positions.
func TestDemoSample(t *testing.T) {
	wav, err := os.ReadFile(demoPath("sample.wav"))
	if err != nil {
		t.Fatal(err)
	}
	if len(wav) > 600<<10 {
		t.Errorf("sample.wav is %d bytes, keep it under 600 KB", len(wav))
	}
	lines := demoLines(t)
	cfg := Config{}
	cfg = withDefaults(cfg)
	o, qerr := parseOptions(map[string][]string{"utterances": {"true"}, "punctuate": {"true"}}, false, false)
	if qerr != nil {
		t.Fatal(qerr)
	}
	i := 0
	next := func() (string, bool) {
		if i >= len(lines) {
			return "", false
		}
		i++
		return lines[i-1], true
	}
	resp, _, err := transcribeBody(bytes.NewReader(wav), o, &cfg, "req", next)
	if err != nil {
		t.Fatal(err)
	}
	utts := *resp.Results.Utterances
	if len(utts) != len(lines) {
		t.Fatalf("segmenter found %d utterances in sample.wav, sample.txt has %d lines", len(utts), len(lines))
	}
	var got demoSpans
	got.File, got.SampleRate, got.Duration = "sample.wav", 16000, resp.Metadata.Duration
	got.Note = "start/end: seconds of the first and last speech window of each sentence (dgemu segmenter, 10 ms windows, -45 dBFS)"
	for k, u := range utts {
		if u.Transcript != lines[k] {
			t.Errorf("utterance %d transcript %q, want %q", k, u.Transcript, lines[k])
		}
		got.Utterances = append(got.Utterances, struct {
			Text  string  `json:"text"`
			Start float64 `json:"start"`
			End   float64 `json:"end"`
		}{lines[k], u.Start, u.End})
	}
	out, _ := json.MarshalIndent(got, "", "  ")
	out = append(out, '\n')
	if *update {
		if err := os.WriteFile(demoPath("sample.json"), out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	have, err := os.ReadFile(demoPath("sample.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(have, out) {
		t.Errorf("sample.json is out of date; run go test ./dgemu -run TestDemoSample -update\nmeasured:\n%s", out)
	}
}
