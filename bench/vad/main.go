// Command vad scores hark's VAD and gate against a labelled evaluation set made by
// ../shared/eval/make_vad_set.sh: it runs the daemon's own gate (package vad, with the
// daemon's defaults or a config file) over every WAV in the set and reports, per noise type
// and SNR, utterance recall, the fraction of audio sent against an oracle (the labels
// passed through the same pre-roll and hangover), and the fraction sent on noise-only files.
//
//	go run ./bench/vad -set /work/vadset/seed1 [-set /work/vadset/seed2] [-config FILE] [-v]
//	go run ./bench/vad -set /work/vadset/seed1 -cpu 3   # CPU of the decoder and of the VAD+gate, apart
package main

import (
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hark-audio/hark/capture"
	"github.com/hark-audio/hark/config"
	"github.com/hark-audio/hark/vad"
)

type setsFlag []string

func (s *setsFlag) String() string     { return strings.Join(*s, ",") }
func (s *setsFlag) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench/vad:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("vad", flag.ContinueOnError)
	var sets setsFlag
	fs.Var(&sets, "set", "evaluation set directory (repeatable; each is reported separately)")
	cfgFile := fs.String("config", "", "hark configuration file whose vad section is used")
	verbose := fs.Bool("v", false, "list missed utterances")
	dump := fs.String("dump", "", "write per-frame analysis of this WAV (with its labels) to stdout and exit")
	cpu := fs.Int("cpu", 0, "instead of scoring, time the decoder and the VAD+gate separately (best of N rounds)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if len(sets) == 0 {
		return errors.New("need at least one -set DIR")
	}
	l, err := config.Load(config.Options{File: *cfgFile, NoRemote: true, Environ: []string{}})
	if err != nil {
		return err
	}
	cfg := l.Config.VAD
	if *dump != "" {
		return dumpFile(*dump, cfg, stdout)
	}
	fmt.Fprintf(stdout, "vad config: %+v\n\n", cfg)
	if *cpu > 0 {
		for _, dir := range sets {
			c, err := measureCPU(dir, cfg, *cpu)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "## %s (CPU, best of %d rounds)\n\n", dir, *cpu)
			c.write(stdout)
			fmt.Fprintln(stdout)
		}
		return nil
	}
	for _, dir := range sets {
		rep, err := scoreSet(dir, cfg, *verbose, stdout)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "## %s\n\n", dir)
		rep.write(stdout)
		fmt.Fprintln(stdout)
	}
	return nil
}

// interval is a labelled span in seconds.
type interval struct{ start, end float64 }

// utterance is one placed source utterance and its label.
type utterance struct {
	interval
	id string
}

// fileResult is the score of one WAV.
type fileResult struct {
	name, noise, snr string
	frames           int
	sent, oracle     int // frames
	utts, recalled   int
	missed           []string
}

// readCSV returns the rows of a small CSV file without its header.
func readCSV(path string) ([][]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%s: empty", path)
	}
	return rows[1:], nil
}

func parseIntervals(rows [][]string) ([]interval, error) {
	out := make([]interval, 0, len(rows))
	for _, r := range rows {
		if len(r) < 2 {
			return nil, fmt.Errorf("short row %q", r)
		}
		a, err1 := strconv.ParseFloat(r[0], 64)
		b, err2 := strconv.ParseFloat(r[1], 64)
		if err1 != nil || err2 != nil || b < a {
			return nil, fmt.Errorf("bad interval %q", r)
		}
		out = append(out, interval{a, b})
	}
	return out, nil
}

// speechFrames marks every 100 ms frame that overlaps labelled speech.
func speechFrames(labs []interval, n int) []bool {
	sp := make([]bool, n)
	for _, l := range labs {
		i0 := int(math.Floor(l.start * 10))
		i1 := int(math.Ceil(l.end*10)) - 1
		for i := max(i0, 0); i <= i1 && i < n; i++ {
			sp[i] = true
		}
	}
	return sp
}

// dilate is the oracle gate: every frame within pre frames before or post frames after a
// speech frame is sent, exactly what the gate does with a perfect detector.
func dilate(sp []bool, pre, post int) []bool {
	out := make([]bool, len(sp))
	for i, s := range sp {
		if !s {
			continue
		}
		for j := max(i-pre, 0); j <= i+post && j < len(sp); j++ {
			out[j] = true
		}
	}
	return out
}

// sentCoverage is the fraction of the labelled speech inside [u.start, u.end] that lies
// in sent frames.
func sentCoverage(u interval, labs []interval, sent []bool) float64 {
	var total, in float64
	for _, l := range labs {
		a, b := math.Max(l.start, u.start), math.Min(l.end, u.end)
		if b <= a {
			continue
		}
		total += b - a
		for i := int(math.Floor(a * 10)); float64(i)/10 < b; i++ {
			fa, fb := math.Max(a, float64(i)/10), math.Min(b, float64(i+1)/10)
			if fb > fa && i >= 0 && i < len(sent) && sent[i] {
				in += fb - fa
			}
		}
	}
	if total == 0 {
		return 1
	}
	return in / total
}

// dumpFile prints one row per frame: time, labelled speech, level, floor, threshold,
// speech, sent; for looking at what the detector does around a miss.
func dumpFile(path string, cfg vad.Config, w io.Writer) error {
	var an []vad.Analysis
	sent, err := runGateAnalysis(path, cfg, func(a vad.Analysis) { an = append(an, a) })
	if err != nil {
		return err
	}
	var sp []bool
	if rows, err := readCSV(strings.TrimSuffix(path, ".wav") + ".lab.csv"); err == nil {
		labs, err := parseIntervals(rows)
		if err != nil {
			return err
		}
		sp = speechFrames(labs, len(sent))
	}
	b2i := func(b bool) int {
		if b {
			return 1
		}
		return 0
	}
	for i, a := range an {
		lab := false
		if sp != nil {
			lab = sp[i]
		}
		fmt.Fprintf(w, "%.1f lab=%d lvl=%6.1f floor=%6.1f thr=%6.1f speech=%d sent=%d\n", float64(i)/10, b2i(lab),
			a.LevelDBFS, a.FloorDBFS, a.ThresholdDBFS, b2i(a.Speech), b2i(sent[i]))
	}
	return nil
}

func runGate(path string, cfg vad.Config) ([]bool, error) { return runGateAnalysis(path, cfg, nil) }

// runGate runs the daemon's gate over a WAV and returns which frames were sent.
func runGateAnalysis(path string, cfg vad.Config, onFrame func(vad.Analysis)) ([]bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dec, err := capture.NewFileDecoder(f, path, time.Unix(0, 0))
	if err != nil {
		return nil, err
	}
	g := vad.NewGate(cfg)
	var sent []bool
	ev := make([]vad.Event, 0, 64)
	mark := func(ev []vad.Event) {
		for _, e := range ev {
			if e.Kind == vad.SegmentFrame {
				for uint64(len(sent)) <= e.Frame.Seq {
					sent = append(sent, false)
				}
				sent[e.Frame.Seq] = true
			}
		}
	}
	n := 0
	for {
		fr, err := dec.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		n++
		mark(g.Push(fr, ev[:0]))
		if onFrame != nil {
			onFrame(g.Last())
		}
	}
	mark(g.Flush(ev[:0]))
	for len(sent) < n {
		sent = append(sent, false)
	}
	return sent[:n], nil
}

func scoreFile(dir, name, noise, snr string, cfg vad.Config) (fileResult, error) {
	res := fileResult{name: name, noise: noise, snr: snr}
	base := strings.TrimSuffix(filepath.Join(dir, "wav", name), ".wav")
	labRows, err := readCSV(base + ".lab.csv")
	if err != nil {
		return res, err
	}
	labs, err := parseIntervals(labRows)
	if err != nil {
		return res, fmt.Errorf("%s.lab.csv: %w", base, err)
	}
	uttRows, err := readCSV(base + ".utt.csv")
	if err != nil {
		return res, err
	}
	var utts []utterance
	for _, r := range uttRows {
		iv, err := parseIntervals([][]string{r})
		if err != nil || len(r) < 3 {
			return res, fmt.Errorf("%s.utt.csv: bad row %q", base, r)
		}
		utts = append(utts, utterance{iv[0], r[2]})
	}
	sent, err := runGate(base+".wav", cfg)
	if err != nil {
		return res, err
	}
	res.frames = len(sent)
	oracle := dilate(speechFrames(labs, len(sent)), cfg.PreRollMS/100, cfg.HangoverMS/100)
	for i := range sent {
		if sent[i] {
			res.sent++
		}
		if oracle[i] {
			res.oracle++
		}
	}
	for _, u := range utts {
		res.utts++
		if c := sentCoverage(u.interval, labs, sent); c >= 0.95 {
			res.recalled++
		} else {
			res.missed = append(res.missed, fmt.Sprintf("%s %s %.2f-%.2f coverage %.2f", name, u.id, u.start, u.end, c))
		}
	}
	return res, nil
}

// report aggregates file results per (noise, snr).
type report struct {
	rows map[string]*agg
	keys []string
}

type agg struct {
	noise, snr            string
	noiseOnly             bool
	frames, sent, oracle  int
	utts, recalled, files int
}

func (a *agg) recall() float64 {
	if a.utts == 0 {
		return math.NaN()
	}
	return float64(a.recalled) / float64(a.utts)
}
func (a *agg) sentFrac() float64   { return float64(a.sent) / float64(a.frames) }
func (a *agg) oracleFrac() float64 { return float64(a.oracle) / float64(a.frames) }

func scoreSet(dir string, cfg vad.Config, verbose bool, w io.Writer) (*report, error) {
	rows, err := readCSV(filepath.Join(dir, "manifest.csv"))
	if err != nil {
		return nil, err
	}
	rep := &report{rows: map[string]*agg{}}
	for _, r := range rows {
		if len(r) < 4 {
			return nil, fmt.Errorf("manifest: short row %q", r)
		}
		name, track, noise, snr := r[0], r[1], r[2], r[3]
		res, err := scoreFile(dir, name, noise, snr, cfg)
		if err != nil {
			return nil, err
		}
		key := noise + " " + snr
		if track == "noiseonly" {
			key = "noise-only " + key
		}
		a := rep.rows[key]
		if a == nil {
			a = &agg{noise: noise, snr: snr, noiseOnly: track == "noiseonly"}
			rep.rows[key] = a
			rep.keys = append(rep.keys, key)
		}
		a.files++
		a.frames += res.frames
		a.sent += res.sent
		a.oracle += res.oracle
		a.utts += res.utts
		a.recalled += res.recalled
		if verbose {
			for _, m := range res.missed {
				fmt.Fprintln(w, "missed:", m)
			}
		}
	}
	sort.SliceStable(rep.keys, func(i, j int) bool {
		a, b := rep.rows[rep.keys[i]], rep.rows[rep.keys[j]]
		if a.noiseOnly != b.noiseOnly {
			return !a.noiseOnly
		}
		if a.noise != b.noise {
			return noiseOrder(a.noise) < noiseOrder(b.noise)
		}
		return snrValue(a.snr) > snrValue(b.snr)
	})
	return rep, nil
}

func noiseOrder(n string) int {
	for i, v := range []string{"clean", "pink", "brown", "machine", "babble"} {
		if n == v {
			return i
		}
	}
	return 99
}

func snrValue(s string) float64 {
	if s == "inf" {
		return math.Inf(1)
	}
	v, _ := strconv.ParseFloat(s, 64)
	return v
}

// target returns the verdict for a row against the project's targets, or "".
func (a *agg) target() string {
	snr := snrValue(a.snr)
	ok := func(b bool) string {
		if b {
			return "pass"
		}
		return "FAIL"
	}
	if a.noiseOnly {
		switch a.noise {
		case "pink", "brown":
			return ok(a.sentFrac() <= 0.02) + " (<= 0.02)"
		case "machine":
			return ok(a.sentFrac() <= 0.25) + " (<= 0.25)"
		}
		return ""
	}
	var verdicts []string
	if a.noise != "babble" {
		switch {
		case snr >= 10:
			verdicts = append(verdicts, ok(a.recall() >= 1)+" recall 1.00")
		case snr >= 5:
			verdicts = append(verdicts, ok(a.recall() >= 0.98)+" recall >= 0.98")
		}
	}
	if a.noise == "pink" || a.noise == "brown" {
		verdicts = append(verdicts, ok(math.Abs(a.sentFrac()-a.oracleFrac()) <= 0.08)+" sent ±0.08")
	}
	return strings.Join(verdicts, ", ")
}

func (r *report) write(w io.Writer) {
	fmt.Fprintln(w, "| noise | SNR dB | files | utterances | recall | sent | oracle | sent − oracle | target |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	for _, k := range r.keys {
		a := r.rows[k]
		if a.noiseOnly {
			continue
		}
		fmt.Fprintf(w, "| %s | %s | %d | %d | %.3f | %.3f | %.3f | %+.3f | %s |\n", a.noise, a.snr, a.files, a.utts,
			a.recall(), a.sentFrac(), a.oracleFrac(), a.sentFrac()-a.oracleFrac(), a.target())
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| noise only | SNR-equivalent level dB | files | seconds | sent | target |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, k := range r.keys {
		a := r.rows[k]
		if !a.noiseOnly {
			continue
		}
		fmt.Fprintf(w, "| %s | %s | %d | %.0f | %.3f | %s |\n", a.noise, a.snr, a.files, float64(a.frames)/10, a.sentFrac(), a.target())
	}
}
