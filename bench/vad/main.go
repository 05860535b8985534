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
	"runtime/pprof"
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
	weightsFile := fs.String("weights", "", "classifier weights (JSON from -train) instead of the built-in ones")
	trainDir := fs.String("train", "", "train the classifier on this set part (eval/make_vad_set.sh's train/)")
	lono := fs.Bool("lono", false, "with -train: leave one noise type out; score each -set noise type with weights trained without it")
	writeJSON := fs.String("write-weights", "", "with -train: write the weights trained on every noise type as JSON")
	writeGo := fs.String("write-go", "", "with -train: write them as Go source (vad/weights_gen.go); with -weights alone: write those")
	foldsDir := fs.String("folds", "", "with -lono: write each held-out model as DIR/<type>.json; without -train: score each type with DIR/<type>.json")
	sweep := fs.String("thresholds", "", "score with each of these classifier_threshold values (comma-separated), figures only")
	tc := defaultTrainConfig()
	fs.IntVar(&tc.hidden, "hidden", tc.hidden, "with -train: hidden units")
	fs.IntVar(&tc.epochs, "epochs", tc.epochs, "with -train: passes over the training frames")
	fs.StringVar(&tc.exclude, "exclude", "", "with -train: leave this noise type out of the weights written")
	fs.Uint64Var(&tc.seed, "seed", tc.seed, "with -train: random seed (initial weights, batch order)")
	fs.Float64Var(&tc.ema, "ema", tc.ema, "with -train: return a moving average of the weights with this decay per step (0: the last weights)")
	fs.Float64Var(&tc.lr, "lr", tc.lr, "with -train: Adam's initial learning rate")
	fs.Float64Var(&tc.decay, "lr-decay", tc.decay, "with -train: the learning rate's factor per epoch")
	fs.Float64Var(&tc.l2, "l2", tc.l2, "with -train: L2 penalty on the weights")
	fs.Float64Var(&tc.minLevelSNR, "min-snr", tc.minLevelSNR, "with -train: use frames whose level stands at least this far (dB) above the floor")
	fs.IntVar(&tc.ensemble, "ensemble", tc.ensemble, "with -train: average this many networks trained with consecutive seeds")
	fs.BoolVar(&tc.auc, "auc", false, "with -train: print each feature's area under the ROC curve per noise type, then stop")
	fs.IntVar(&tc.parallel, "parallel", tc.parallel, "with -lono: train this many folds at a time")
	fs.Float64Var(&tc.inputNoise, "input-noise", tc.inputNoise, "with -train: standard deviation of Gaussian noise added to the standardised inputs of training frames")
	fs.Float64Var(&tc.onsetWeight, "onset-weight", tc.onsetWeight, "with -train: weight of speech frames at an utterance's start or in a short utterance, against 1 for other speech frames")
	profile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *profile != "" {
		f, err := os.Create(*profile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if len(sets) == 0 && *trainDir == "" && (*weightsFile == "" || *writeGo == "") {
		return errors.New("need at least one -set DIR")
	}
	l, err := config.Load(config.Options{File: *cfgFile, NoRemote: true, Environ: []string{}})
	if err != nil {
		return err
	}
	cfg := l.Config.VAD
	weightsFor := func(string) *vad.Weights { return nil }
	if *weightsFile != "" {
		data, err := os.ReadFile(*weightsFile)
		if err != nil {
			return err
		}
		w, err := vad.ParseWeights(data)
		if err != nil {
			return fmt.Errorf("%s: %w", *weightsFile, err)
		}
		weightsFor = func(string) *vad.Weights { return w }
	}
	if *weightsFile != "" && *writeGo != "" && *trainDir == "" {
		// Ship weights trained earlier (-write-weights) as vad/weights_gen.go.
		return os.WriteFile(*writeGo, goSource(weightsFor("")), 0o644)
	}
	if *dump != "" {
		return dumpFile(*dump, cfg, weightsFor(""), stdout)
	}
	fmt.Fprintf(stdout, "vad config: %+v\n\n", cfg)
	if *foldsDir != "" && *trainDir == "" {
		folds := map[string]*vad.Weights{}
		files, _ := filepath.Glob(filepath.Join(*foldsDir, "*.json"))
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			w, err := vad.ParseWeights(data)
			if err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
			folds[strings.TrimSuffix(filepath.Base(f), ".json")] = w
		}
		all := weightsFor("")
		weightsFor = func(n string) *vad.Weights {
			if w, ok := folds[n]; ok {
				return w
			}
			return all
		}
	}
	if *trainDir != "" {
		tc.command = "go run ./bench/vad " + strings.Join(args, " ")
		tc.foldsDir = *foldsDir
		wf, err := trainCommand(*trainDir, sets, cfg, tc, *lono, *writeJSON, *writeGo, stdout)
		if err != nil {
			return err
		}
		if wf == nil {
			return nil
		}
		weightsFor = wf
	}
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
	if *sweep != "" {
		for _, v := range strings.Split(*sweep, ",") {
			th, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return fmt.Errorf("-thresholds: %w", err)
			}
			c := cfg
			c.ClassifierThreshold = th
			for _, dir := range sets {
				rep, err := scoreSet(dir, c, weightsFor, false, stdout)
				if err != nil {
					return err
				}
				fmt.Fprintf(stdout, "## %s, classifier_threshold %g\n\n", dir, th)
				rep.writeFigures(stdout)
				fmt.Fprintln(stdout)
			}
		}
		return nil
	}
	for _, dir := range sets {
		rep, err := scoreSet(dir, cfg, weightsFor, *verbose, stdout)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "## %s\n\n", dir)
		rep.write(stdout)
		fmt.Fprintln(stdout)
		rep.writeFigures(stdout)
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
	ideal            int // frames sent by the ideal detector (300 ms pre-roll, 500 ms hangover)
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
func dumpFile(path string, cfg vad.Config, wt *vad.Weights, w io.Writer) error {
	var an []vad.Analysis
	sent, err := runGateWith(path, cfg, wt, func(g *vad.Gate) { an = append(an, g.Last()) })
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
		fmt.Fprintf(w, "%.1f lab=%d lvl=%6.1f floor=%6.1f thr=%6.1f score=%5.2f veto=%d speech=%d sent=%d\n", float64(i)/10, b2i(lab),
			a.LevelDBFS, a.FloorDBFS, a.ThresholdDBFS, a.Score, b2i(a.Vetoed), b2i(a.Speech), b2i(sent[i]))
	}
	return nil
}

func runGate(path string, cfg vad.Config, w *vad.Weights) ([]bool, error) {
	return runGateWith(path, cfg, w, nil)
}

// runGateWith runs the daemon's gate (with classifier weights w, nil for the built-in
// ones) over a WAV and returns which frames were sent; onFrame, if set, sees the gate
// after every frame.
func runGateWith(path string, cfg vad.Config, w *vad.Weights, onFrame func(*vad.Gate)) ([]bool, error) {
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
	g.SetWeights(w)
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
			onFrame(g)
		}
	}
	mark(g.Flush(ev[:0]))
	for len(sent) < n {
		sent = append(sent, false)
	}
	return sent[:n], nil
}

func scoreFile(dir, name, noise, snr string, cfg vad.Config, w *vad.Weights) (fileResult, error) {
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
	var an []vad.Analysis
	sent, err := runGateWith(base+".wav", cfg, w, func(g *vad.Gate) { an = append(an, g.Last()) })
	if err != nil {
		return res, err
	}
	res.frames = len(sent)
	oracle := dilate(speechFrames(labs, len(sent)), cfg.PreRollMS/100, cfg.HangoverMS/100)
	ideal := dilate(speechFrames(labs, len(sent)), idealPreRollMS/100, idealHangoverMS/100)
	for i := range sent {
		if ideal[i] {
			res.ideal++
		}
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
			res.missed = append(res.missed, fmt.Sprintf("%s %s %.2f-%.2f coverage %.2f%s", name, u.id, u.start, u.end, c, why(u.interval, labs, an, sent)))
		}
	}
	return res, nil
}

// why says, for a missed utterance, what happened to its labelled speech frames that were
// not sent: vetoed by the classifier (the energy detector proposed them) or below the
// energy detector's thresholds; and the classifier's mean score over them.
func why(u interval, labs []interval, an []vad.Analysis, sent []bool) string {
	sp := speechFrames(labs, len(an))
	var lost, vetoed, quiet, scored int
	var score float64
	for i := max(int(math.Floor(u.start*10)), 0); i < len(an) && float64(i)/10 < u.end; i++ {
		if !sp[i] || sent[i] {
			continue
		}
		lost++
		switch {
		case an[i].Vetoed:
			vetoed++
		case !an[i].Speech:
			quiet++
		}
		if an[i].Score >= 0 {
			score += an[i].Score
			scored++
		}
	}
	if scored > 0 {
		score /= float64(scored)
	}
	return fmt.Sprintf(" (lost speech frames %d: vetoed %d, below threshold %d, mean score %.2f)", lost, vetoed, quiet, score)
}

// report aggregates file results per (noise, snr).
type report struct {
	rows map[string]*agg
	keys []string
}

type agg struct {
	noise, snr, class     string
	noiseOnly             bool
	frames, sent, oracle  int
	ideal                 int
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
func (a *agg) idealFrac() float64  { return float64(a.ideal) / float64(a.frames) }

// scoreSet scores every file of a set; weightsFor gives the classifier weights for a
// noise type (nil: the built-in ones), so leave-one-noise-type-out can score each type
// with weights that never saw it.
func scoreSet(dir string, cfg vad.Config, weightsFor func(noise string) *vad.Weights, verbose bool, w io.Writer) (*report, error) {
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
		class := classOf(noise)
		if len(r) >= 8 && r[7] != "" {
			class = r[7]
		}
		res, err := scoreFile(dir, name, noise, snr, cfg, weightsFor(noise))
		if err != nil {
			return nil, err
		}
		key := noise + " " + snr
		if track == "noiseonly" {
			key = "noise-only " + key
		}
		a := rep.rows[key]
		if a == nil {
			a = &agg{noise: noise, snr: snr, class: class, noiseOnly: track == "noiseonly"}
			rep.rows[key] = a
			rep.keys = append(rep.keys, key)
		}
		a.files++
		a.frames += res.frames
		a.sent += res.sent
		a.oracle += res.oracle
		a.ideal += res.ideal
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

// noiseTypes in report order, with their class when the manifest has none (sets made by
// ../shared/eval/make_vad_set.sh).
var noiseTypes = []struct{ name, class string }{
	{"clean", "clean"}, {"quiet", "quiet"},
	{"white", "stationary"}, {"pink", "stationary"}, {"brown", "stationary"}, {"hiss", "stationary"}, {"hum", "stationary"},
	{"crackle", "nonstationary"}, {"industrial", "nonstationary"}, {"machine", "nonstationary"}, {"traffic", "nonstationary"},
	{"clank", "nonstationary"}, {"water", "nonstationary"}, {"music", "nonstationary"},
	{"babble", "speechlike"}, {"crowd", "speechlike"},
}

func noiseOrder(n string) int {
	for i, v := range noiseTypes {
		if n == v.name {
			return i
		}
	}
	return 99
}

func classOf(n string) string {
	for _, v := range noiseTypes {
		if n == v.name {
			return v.class
		}
	}
	return "nonstationary"
}

func snrValue(s string) float64 {
	if s == "inf" {
		return math.Inf(1)
	}
	v, _ := strconv.ParseFloat(s, 64)
	return v
}

// Targets of issue 14.
const (
	goalRecall10     = 0.97 // utterance recall at SNR >= 10 dB, every noise but speech-like ones
	goalRecall5      = 0.90 // at 5 dB
	goalQuiet        = 0.98 // quiet speaker (-40 dBFS)
	goalStationary   = 0.02 // noise-only sent, stationary noise
	goalNonstat      = 0.25 // noise-only sent, non-stationary noise
	goalAboveIdeal   = 0.08 // sent above the ideal detector, stationary mixtures
	idealPreRollMS   = 300
	idealHangoverMS  = 500
	speechlikeNoTarg = "speechlike"
)

// target returns the verdict for a row against the targets, or "".
func (a *agg) target() string {
	snr := snrValue(a.snr)
	ok := func(b bool) string {
		if b {
			return "pass"
		}
		return "FAIL"
	}
	if a.class == speechlikeNoTarg {
		return "(no target)"
	}
	if a.noiseOnly {
		switch a.class {
		case "stationary":
			return ok(a.sentFrac() <= goalStationary) + " (<= 0.02)"
		case "nonstationary":
			return ok(a.sentFrac() <= goalNonstat) + " (<= 0.25)"
		}
		return ""
	}
	var verdicts []string
	switch {
	case a.class == "quiet":
		verdicts = append(verdicts, ok(a.recall() >= goalQuiet)+" recall >= 0.98")
	case snr >= 10:
		verdicts = append(verdicts, ok(a.recall() >= goalRecall10)+" recall >= 0.97")
	case snr >= 5:
		verdicts = append(verdicts, ok(a.recall() >= goalRecall5)+" recall >= 0.90")
	}
	if a.class == "stationary" {
		verdicts = append(verdicts, ok(a.sentFrac()-a.idealFrac() <= goalAboveIdeal)+" sent − ideal <= 0.08")
	}
	return strings.Join(verdicts, ", ")
}

func (r *report) write(w io.Writer) {
	fmt.Fprintln(w, "| noise | class | SNR dB | files | utterances | recall | sent | oracle | sent − oracle | sent − ideal | target |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|")
	for _, k := range r.keys {
		a := r.rows[k]
		if a.noiseOnly {
			continue
		}
		fmt.Fprintf(w, "| %s | %s | %s | %d | %d | %.3f | %.3f | %.3f | %+.3f | %+.3f | %s |\n", a.noise, a.class, a.snr, a.files, a.utts,
			a.recall(), a.sentFrac(), a.oracleFrac(), a.sentFrac()-a.oracleFrac(), a.sentFrac()-a.idealFrac(), a.target())
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| noise only | class | SNR-equivalent level dB | files | seconds | sent | target |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, k := range r.keys {
		a := r.rows[k]
		if !a.noiseOnly {
			continue
		}
		fmt.Fprintf(w, "| %s | %s | %s | %d | %.0f | %.3f | %s |\n", a.noise, a.class, a.snr, a.files, float64(a.frames)/10, a.sentFrac(), a.target())
	}
}

// writeFigures prints the summary figures: the worst row of each kind, named.
func (r *report) writeFigures(w io.Writer) {
	type worst struct {
		v    float64
		name string
		set  bool
	}
	lo := func(x *worst, v float64, name string) {
		if !math.IsNaN(v) && (!x.set || v < x.v) {
			*x = worst{v, name, true}
		}
	}
	hi := func(x *worst, v float64, name string) {
		if !x.set || v > x.v {
			*x = worst{v, name, true}
		}
	}
	var r10, r5, quiet, stat, nonstat, above worst
	var r5all, nonstatAll []string
	for _, k := range r.keys {
		a := r.rows[k]
		snr := snrValue(a.snr)
		name := a.noise + " " + a.snr
		switch {
		case a.class == speechlikeNoTarg:
		case a.noiseOnly && a.class == "stationary":
			hi(&stat, a.sentFrac(), name)
		case a.noiseOnly && a.class == "nonstationary":
			hi(&nonstat, a.sentFrac(), name)
			nonstatAll = append(nonstatAll, fmt.Sprintf("%s %.2f", name, a.sentFrac()))
		case a.noiseOnly:
		case a.class == "quiet":
			lo(&quiet, a.recall(), name)
		case snr >= 10:
			lo(&r10, a.recall(), name)
		case snr >= 5:
			lo(&r5, a.recall(), name)
			r5all = append(r5all, fmt.Sprintf("%s %.2f", a.noise, a.recall()))
		}
		if !a.noiseOnly && a.class == "stationary" {
			hi(&above, a.sentFrac()-a.idealFrac(), name)
		}
	}
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "**not met**"
	}
	fmt.Fprintln(w, "| figure | goal | hark | |")
	fmt.Fprintln(w, "|---|---|---|---|")
	row := func(fig, goal string, x worst, ok bool, more string) {
		if !x.set {
			fmt.Fprintf(w, "| %s | %s | (no rows) | |\n", fig, goal)
			return
		}
		fmt.Fprintf(w, "| %s | %s | %.3f (%s)%s | %s |\n", fig, goal, x.v, x.name, more, verdict(ok))
	}
	row("utterance recall, SNR >= 10 dB, every noise but speech-like (min)", ">= 0.97", r10, r10.v >= goalRecall10, "")
	row("utterance recall at 5 dB (min)", ">= 0.90", r5, r5.v >= goalRecall5, "; "+strings.Join(r5all, ", "))
	row("quiet speaker (-40 dBFS) recall", ">= 0.98", quiet, quiet.v >= goalQuiet, "")
	row("noise-only sent, stationary (max)", "<= 0.02", stat, stat.v <= goalStationary, "")
	row("noise-only sent, non-stationary (max)", "<= 0.25", nonstat, nonstat.v <= goalNonstat, "; "+strings.Join(nonstatAll, ", "))
	row(fmt.Sprintf("sent above the ideal detector (%d ms pre-roll, %d ms hangover), stationary mixtures (max)", idealPreRollMS, idealHangoverMS),
		"<= +0.08", above, above.v <= goalAboveIdeal, "")
}
