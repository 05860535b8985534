package main

import (
	"bytes"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hark-audio/hark/audio"
	"github.com/hark-audio/hark/vad"
)

func TestSpeechFramesAndDilate(t *testing.T) {
	sp := speechFrames([]interval{{0.25, 0.31}, {1.0, 1.05}}, 15)
	want := map[int]bool{2: true, 3: true, 10: true}
	for i, s := range sp {
		if s != want[i] {
			t.Fatalf("frame %d speech=%v", i, s)
		}
	}
	d := dilate(sp, 2, 1)
	// frames 0..4 (2,3 with pre 2 and post 1), 8..11 (10)
	wantD := map[int]bool{0: true, 1: true, 2: true, 3: true, 4: true, 8: true, 9: true, 10: true, 11: true}
	for i, s := range d {
		if s != wantD[i] {
			t.Fatalf("dilated frame %d = %v", i, s)
		}
	}
}

func TestSentCoverage(t *testing.T) {
	labs := []interval{{1.0, 1.5}, {2.0, 2.5}, {5, 6}}
	sent := make([]bool, 40)
	for i := 10; i < 15; i++ {
		sent[i] = true // covers 1.0-1.5
	}
	u := interval{1.0, 2.5}
	if c := sentCoverage(u, labs, sent); math.Abs(c-0.5) > 1e-9 {
		t.Fatalf("coverage %g, want 0.5", c)
	}
	sent[22] = true // 2.2-2.3
	if c := sentCoverage(u, labs, sent); math.Abs(c-0.6) > 1e-9 {
		t.Fatalf("coverage %g, want 0.6", c)
	}
	if c := sentCoverage(interval{3, 4}, labs, sent); c != 1 {
		t.Fatalf("utterance without labelled speech: coverage %g", c)
	}
}

func TestParseIntervals(t *testing.T) {
	if _, err := parseIntervals([][]string{{"1", "0.5"}}); err == nil {
		t.Fatal("end before start accepted")
	}
	if _, err := parseIntervals([][]string{{"x", "1"}}); err == nil {
		t.Fatal("non-number accepted")
	}
	iv, err := parseIntervals([][]string{{"0.5", "1.25", "id"}})
	if err != nil || iv[0] != (interval{0.5, 1.25}) {
		t.Fatalf("%v %v", iv, err)
	}
}

// writeWAV writes samples (noise at -60 dBFS with loud noise bursts at the given
// intervals) as a 16 kHz WAV.
func writeWAV(t *testing.T, path string, secs float64, bursts []interval) {
	rng := rand.New(rand.NewPCG(1, 2))
	s := make([]int16, int(secs*audio.SampleRate))
	for i := range s {
		v := 30 * rng.NormFloat64()
		tt := float64(i) / audio.SampleRate
		for _, b := range bursts {
			if tt >= b.start && tt < b.end {
				v += 3000 * rng.NormFloat64() * (0.5 - 0.5*math.Cos(2*math.Pi*4*tt))
			}
		}
		s[i] = int16(max(-32768, min(32767, v)))
	}
	pcm := audio.AppendPCM(nil, s)
	if err := os.WriteFile(path, append(audio.WAVHeader(len(pcm)), pcm...), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestScoreSmallSet builds a two-file set in the generator's layout and checks the report.
func TestScoreSmallSet(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "wav"), 0o755)
	bursts := []interval{{3, 4.5}, {8, 9}}
	writeWAV(t, filepath.Join(dir, "wav", "A_pink_10.wav"), 12, bursts)
	os.WriteFile(filepath.Join(dir, "wav", "A_pink_10.lab.csv"), []byte("start,end\n3.000,4.500\n8.000,9.000\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "wav", "A_pink_10.utt.csv"), []byte("start,end,utt_id,source\n3.000,4.500,u1,x\n8.000,9.000,u2,x\n"), 0o644)
	writeWAV(t, filepath.Join(dir, "wav", "noiseonly_pink_10.wav"), 10, nil)
	os.WriteFile(filepath.Join(dir, "wav", "noiseonly_pink_10.lab.csv"), []byte("start,end\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "wav", "noiseonly_pink_10.utt.csv"), []byte("start,end,utt_id,source\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "manifest.csv"), []byte("file,track,noise,snr_db,duration_s,speech_s,n_utts\n"+
		"A_pink_10.wav,A,pink,10,12,2.5,2\nnoiseonly_pink_10.wav,noiseonly,pink,10,10,0,0\n"), 0o644)
	var out bytes.Buffer
	if err := run([]string{"-set", dir}, &out); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{
		"| pink | stationary | 10 | 1 | 2 | 1.000 |", // both utterances recalled
		"| pink | stationary | 10 | 1 | 10 | 0.000 | pass (<= 0.02) |",
		"| noise-only sent, stationary (max) | <= 0.02 | 0.000 (pink 10) | met |",
	} {
		if !strings.Contains(got, want) {
			t.Fatalf("report lacks %q:\n%s", want, got)
		}
	}
	if err := run(nil, &out); err == nil {
		t.Fatal("no -set accepted")
	}
	if err := run([]string{"-set", t.TempDir()}, &out); err == nil {
		t.Fatal("set without manifest accepted")
	}
}

// TestCPUSplit runs the per-stage CPU measurement on a small set: the audio duration must
// be exactly the frames decoded, the report must name every stage, and an empty set is an
// error.
func TestCPUSplit(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "wav"), 0o755)
	writeWAV(t, filepath.Join(dir, "wav", "A_pink_10.wav"), 12, []interval{{3, 4.5}})
	writeWAV(t, filepath.Join(dir, "wav", "noiseonly_pink_10.wav"), 10, nil)
	c, err := measureCPU(dir, vad.DefaultConfig(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(c.audioSec-22) > 1e-9 {
		t.Fatalf("measured %g s of audio, want 22", c.audioSec)
	}
	var out bytes.Buffer
	if err := run([]string{"-set", dir, "-cpu", "1"}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"capture.FileDecoder", "audio.WAVReader + DecodePCM", "VAD + gate", "22 s of audio"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("report lacks %q:\n%s", want, out.String())
		}
	}
	if _, err := measureCPU(t.TempDir(), vad.DefaultConfig(), 1); err == nil {
		t.Fatal("empty set accepted")
	}
}

// TestOnsetFrames: an utterance's first 400 ms are onset frames, a short utterance is one
// whole, and frames outside utterances are not.
func TestOnsetFrames(t *testing.T) {
	got := onsetFrames([]interval{{1.05, 3}, {4, 4.5}}, 50)
	for i, on := range got {
		want := (i >= 10 && i <= 14) || (i >= 40 && i <= 44)
		if on != want {
			t.Fatalf("frame %d (%.1f s): onset %v, want %v", i, float64(i)/10, on, want)
		}
	}
}

// TestTrainSmallSet trains on a tiny set in the generator's layout: the weights written
// (JSON, Go source, one fold per held-out type) parse, and the report names every type.
func TestTrainSmallSet(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "wav"), 0o755)
	man := "file,track,noise,snr_db,duration_s,speech_s,n_utts,class\n"
	for _, n := range []string{"pink", "machine", "babble"} {
		name := "C_" + n + "_10"
		writeWAV(t, filepath.Join(dir, "wav", name+".wav"), 12, []interval{{3, 4.5}, {8, 9}})
		os.WriteFile(filepath.Join(dir, "wav", name+".lab.csv"), []byte("start,end\n3.000,4.500\n8.000,9.000\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "wav", name+".utt.csv"), []byte("start,end,utt_id,source\n3.000,4.500,u1,x\n8.000,9.000,u2,x\n"), 0o644)
		man += name + ".wav,C," + n + ",10,12,2.5,2," + classOf(n) + "\n"
	}
	os.WriteFile(filepath.Join(dir, "manifest.csv"), []byte(man), 0o644)
	out := t.TempDir()
	var rep bytes.Buffer
	args := []string{"-train", dir, "-lono", "-folds", out, "-epochs", "2", "-hidden", "4",
		"-onset-weight", "3", "-input-noise", "0.1", "-write-weights", filepath.Join(out, "all.json"), "-write-go", filepath.Join(out, "w.go"), "-set", dir}
	if err := run(args, &rep); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"all.json", "pink.json", "machine.json"} {
		data, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := vad.ParseWeights(data); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "babble.json")); err == nil {
		t.Fatal("a model was trained without babble, but babble is never trained on")
	}
	src, _ := os.ReadFile(filepath.Join(out, "w.go"))
	if !strings.Contains(string(src), "var defaultWeights = Weights{") || !strings.Contains(string(src), "Hidden:   4,") {
		t.Fatalf("generated source:\n%s", src)
	}
	for _, want := range []string{"| pink |", "| machine |", "leave one noise type out", "| figure | goal | hark |"} {
		if !strings.Contains(rep.String(), want) {
			t.Fatalf("report lacks %q:\n%s", want, rep.String())
		}
	}
}
