package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hark-audio/hark/audio"
	"github.com/hark-audio/hark/vad"
)

// vadTestWAV returns a 16 kHz mono WAV of noise at -55 dBFS with speech-like bursts
// (band-limited noise, 4 Hz syllable envelope) at -35 dBFS starting at each of bursts
// (seconds), each 1.5 s long. The length is deliberately not a whole number of frames.
func vadTestWAV(secs float64, bursts ...float64) []byte {
	rng := rand.New(rand.NewPCG(3, 4))
	n := int(secs*audio.SampleRate) + 123
	x := make([]float64, n)
	for i := range x {
		x[i] = 32768 * math.Pow(10, -55.0/20) * rng.NormFloat64()
	}
	for _, b := range bursts {
		var lp1, lp2 float64
		start := int(b * audio.SampleRate)
		for i := 0; i < int(1.5*audio.SampleRate) && start+i < n; i++ {
			w := rng.NormFloat64()
			lp1 += 0.5 * (w - lp1)
			lp2 += 0.15 * (lp1 - lp2)
			env := 0.5 - 0.5*math.Cos(2*math.Pi*4*float64(i)/audio.SampleRate)
			x[start+i] += 32768 * math.Pow(10, -30.0/20) * (lp1 - lp2) * env
		}
	}
	s := make([]int16, n)
	for i, v := range x {
		s[i] = int16(max(-32768, min(32767, math.Round(v))))
	}
	pcm := audio.AppendPCM(nil, s)
	return append(audio.WAVHeader(len(pcm)), pcm...)
}

func writeTemp(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// vadNoLeak fails the test if goroutines started during it are still running at its end.
func vadNoLeak(t *testing.T) {
	// Main uses signal.NotifyContext, whose first use starts os/signal's one watcher
	// goroutine for the life of the process; start it before counting.
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGWINCH)
	signal.Stop(c)
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(2 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				t.Errorf("goroutines: %d before, %d after", before, runtime.NumGoroutine())
				return
			}
			runtime.Gosched()
		}
	})
}

// vadRun runs the command line as main would and returns the exit status and output.
func vadRun(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

type csvRow struct {
	start, end, level, floor float64
	speech, sent             bool
}

func parseVADCSV(t *testing.T, out string) []csvRow {
	t.Helper()
	r := csv.NewReader(strings.NewReader(out))
	recs, err := r.ReadAll()
	if err != nil {
		t.Fatalf("CSV does not parse: %v", err)
	}
	if len(recs) == 0 || strings.Join(recs[0], ",") != vadCSVHeader {
		t.Fatalf("header %q, want %q", recs[0], vadCSVHeader)
	}
	var rows []csvRow
	for i, rec := range recs[1:] {
		if len(rec) != 6 {
			t.Fatalf("row %d has %d fields", i, len(rec))
		}
		var f [4]float64
		for j := range f {
			v, err := strconv.ParseFloat(rec[j], 64)
			if err != nil {
				t.Fatalf("row %d field %d: %v", i, j, err)
			}
			f[j] = v
		}
		b := func(s string) bool {
			if s != "0" && s != "1" {
				t.Fatalf("row %d: %q is not 0/1", i, s)
			}
			return s == "1"
		}
		rows = append(rows, csvRow{f[0], f[1], f[2], f[3], b(rec[4]), b(rec[5])})
	}
	return rows
}

func TestVADCSV(t *testing.T) {
	vadNoLeak(t)
	wav := vadTestWAV(12, 3, 8)
	path := writeTemp(t, "in.wav", wav)
	// The bursts are band-limited noise, not speech, and the classifier rightly vetoes
	// some of their frames: the timing checked here is the energy detector's (the
	// classifier's part is TestVADCSVMatchesGate's and the vad package's).
	conf := writeTemp(t, "hark.yaml", []byte("vad:\n  classifier_threshold: 0\n"))
	code, out, errOut := vadRun("vad", path, "--csv", "--config", conf)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	rows := parseVADCSV(t, out)
	samples := (len(wav) - 44) / 2
	wantRows := (samples + audio.FrameSamples - 1) / audio.FrameSamples
	if len(rows) != wantRows {
		t.Fatalf("%d rows, want %d (one per started 100 ms frame)", len(rows), wantRows)
	}
	cfg := vad.DefaultConfig()
	pre := cfg.PreRollMS / 100
	firstSpeech, firstSent := -1, -1
	for i, r := range rows {
		if math.Abs(r.start-float64(i)/10) > 1e-9 || math.Abs(r.end-float64(i+1)/10) > 1e-9 {
			t.Fatalf("row %d spans %g-%g", i, r.start, r.end)
		}
		if r.speech && !r.sent {
			t.Fatalf("row %d: speech but not sent (sent must include speech)", i)
		}
		if r.speech && firstSpeech < 0 {
			firstSpeech = i
		}
		if r.sent && firstSent < 0 {
			firstSent = i
		}
	}
	if firstSpeech < 30 || firstSpeech > 34 {
		t.Fatalf("first speech at row %d, burst starts at 30", firstSpeech)
	}
	if firstSent != firstSpeech-pre {
		t.Fatalf("first sent row %d, want %d (pre-roll before the onset)", firstSent, firstSpeech-pre)
	}
	// Rows between the two bursts, after the hangover, are not sent; the second burst is.
	if rows[65].sent {
		t.Fatal("row 65 (between bursts) sent")
	}
	found := false
	for _, r := range rows[80:100] {
		found = found || r.speech
	}
	if !found {
		t.Fatal("second burst not detected")
	}
}

// The CLI's sent column is exactly what the daemon's gate emits for the same frames.
func TestVADCSVMatchesGate(t *testing.T) {
	wav := vadTestWAV(10, 2, 6)
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	if err := runVAD(context.Background(), bytes.NewReader(wav), "t.wav", vad.DefaultConfig(), &csvSink{w: bw}); err != nil {
		t.Fatal(err)
	}
	bw.Flush()
	rows := parseVADCSV(t, buf.String())

	samples, err := audio.NewWAVReader(bytes.NewReader(wav))
	if err != nil {
		t.Fatal(err)
	}
	pcm, _ := io.ReadAll(samples)
	all := audio.DecodePCM(nil, pcm)
	g := vad.NewGate(vad.DefaultConfig())
	sent := map[uint64]bool{}
	var ev []vad.Event
	for i := 0; i*audio.FrameSamples < len(all); i++ {
		s := make([]int16, audio.FrameSamples)
		copy(s, all[i*audio.FrameSamples:])
		ev = g.Push(audio.Frame{Seq: uint64(i), Time: time.Unix(0, 0), Samples: s}, ev[:0])
		if math.Abs(round1(g.Last().LevelDBFS)-rows[i].level) > 1e-9 {
			t.Fatalf("row %d level %g, gate %g", i, rows[i].level, g.Last().LevelDBFS)
		}
		for _, e := range ev {
			if e.Kind == vad.SegmentFrame {
				sent[e.Frame.Seq] = true
			}
		}
	}
	for _, e := range g.Flush(nil) {
		if e.Kind == vad.SegmentFrame {
			sent[e.Frame.Seq] = true
		}
	}
	for i, r := range rows {
		if r.sent != sent[uint64(i)] {
			t.Fatalf("row %d sent=%v, gate sent=%v", i, r.sent, sent[uint64(i)])
		}
	}
}

func TestVADTerminalView(t *testing.T) {
	t.Setenv("COLUMNS", "")
	path := writeTemp(t, "in.wav", vadTestWAV(8, 3))
	code, out, errOut := vadRun("vad", "--config", "", path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"segment 1 starts at", "segment 1 ends at", "summary", "in 1 segments", "┃", "▶", " S▶",
		"classifier 0.5", "score", "v vetoed", "vetoed  ", "e ended", "   - e▶\n"} {
		if !strings.Contains(out, want) {
			t.Fatalf("view lacks %q:\n%s", want, out)
		}
	}
	rows := regexp.MustCompile(`(?m)^ *[0-9]+\.[0-9]s .* ([01]\.[0-9]{2}|   -) [Sve ]`).FindAllString(out, -1)
	if len(rows) != 81 {
		t.Fatalf("%d frame rows with a score, want 81:\n%s", len(rows), out)
	}
}

// Issue 13 item 6: the view fits the terminal. At 80 columns (the default when stdout is
// not a terminal) and at any $COLUMNS, no line reaches the last column, and the frame
// rows keep the level, the score and the marks.
func TestVADTerminalFitsWidth(t *testing.T) {
	path := writeTemp(t, "in.wav", vadTestWAV(8, 3))
	for _, tc := range []struct {
		columns    string
		width      int
		floorShown bool
	}{{"", 80, true}, {"80", 80, true}, {"60", 60, true}, {"55", 55, false}, {"40", 40, false}, {"20", 40, false}, {"200", 200, true}, {"junk", 80, true}} {
		t.Run("COLUMNS="+tc.columns, func(t *testing.T) {
			t.Setenv("COLUMNS", tc.columns)
			code, out, errOut := vadRun("vad", "--config", "", path)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			longest := 0
			for _, l := range strings.Split(out, "\n") {
				longest = max(longest, utf8.RuneCountInString(l))
			}
			if longest > tc.width-1 {
				t.Fatalf("a line has %d columns, the terminal %d:\n%s", longest, tc.width, out)
			}
			if tc.width >= 80 && longest < 75 {
				t.Fatalf("longest line %d columns: the view does not use a %d-column terminal", longest, tc.width)
			}
			if got := strings.Contains(out, "floor thresh"); got != tc.floorShown {
				t.Fatalf("floor and threshold columns shown=%v at width %d", got, tc.width)
			}
			if !regexp.MustCompile(`(?m)^ +3\.[0-9]s .*-[0-9]+\.[0-9] [01]\.[0-9]{2} S▶$`).MatchString(out) {
				t.Fatalf("no speech row with level, score and marks around 3 s:\n%s", out)
			}
		})
	}
}

func TestTermWidth(t *testing.T) {
	t.Setenv("COLUMNS", "")
	if w := termWidth(&bytes.Buffer{}); w != 80 {
		t.Fatalf("not a terminal: width %d, want 80", w)
	}
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if w := termWidth(f); w != 80 {
		t.Fatalf("/dev/null: width %d, want 80", w)
	}
	t.Setenv("COLUMNS", " 132 ")
	if w := termWidth(f); w != 132 {
		t.Fatalf("COLUMNS=132: width %d", w)
	}
	t.Setenv("COLUMNS", "-5")
	if w := termWidth(f); w != 80 {
		t.Fatalf("COLUMNS=-5: width %d, want 80", w)
	}
}

func TestVADErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "g.wav")
	os.WriteFile(garbage, []byte("this is not a wav file at all"), 0o644)
	badCfg := filepath.Join(dir, "bad.yaml")
	os.WriteFile(badCfg, []byte("vad:\n  threshold_db: 100\n"), 0o644)
	good := writeTemp(t, "ok.wav", vadTestWAV(1))
	for _, tc := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"no file", []string{"vad"}, 2, "usage"},
		{"two files", []string{"vad", good, good}, 2, "usage"},
		{"missing", []string{"vad", filepath.Join(dir, "nope.wav")}, 1, "no such file"},
		{"garbage", []string{"vad", garbage, "--csv"}, 1, "not a readable WAV"},
		{"bad config", []string{"vad", good, "--config", badCfg}, 1, "vad.threshold_db"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := vadRun(tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.msg) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, errOut, tc.code, tc.msg)
			}
		})
	}
}

// FuzzVADCSV feeds arbitrary bytes through the WAV→CSV path: it must return an error or
// well-formed rows, never panic.
func FuzzVADCSV(f *testing.F) {
	valid := vadTestWAV(0.05) // small: mutated rates make the resampler slow on long inputs
	f.Add(valid)
	f.Add(valid[:44])
	f.Add(valid[:60])
	f.Add([]byte("RIFF\x00\x00\x00\x00WAVE"))
	f.Add([]byte("not a wav"))
	stereo8k := append(audio.WAVHeaderFormat(8000, 8000, 2), make([]byte, 8000)...)
	f.Add(stereo8k)
	f.Fuzz(func(t *testing.T, b []byte) {
		var buf bytes.Buffer
		bw := bufio.NewWriter(&buf)
		err := runVAD(context.Background(), bytes.NewReader(b), "fuzz.wav", vad.DefaultConfig(), &csvSink{w: bw})
		bw.Flush()
		if err != nil {
			return
		}
		lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
		if lines[0] != vadCSVHeader {
			t.Fatalf("header %q", lines[0])
		}
		for _, l := range lines[1:] {
			if strings.Count(l, ",") != 5 {
				t.Fatalf("bad row %q", l)
			}
		}
	})
}
