package main

import (
	"encoding/json"
	"fmt"
	"go/format"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/hark-audio/hark/vad"
)

// The classifier's training: features from the daemon's own gate (vad.Gate.Features, so
// training and run time compute exactly the same numbers) over the train part of an
// evaluation set, frame labels from the set's speech labels, and a one-hidden-layer
// network fitted by Adam on a class-balanced logistic loss. Everything is seeded, single
// threaded and in float64, so the same set and flags give the same weights on the same
// architecture (the committed weights were made on amd64).

type trainConfig struct {
	hidden, epochs int
	seed           uint64
	batch          int
	lr, l2         float64
	// ema, if > 0, keeps an exponential moving average of the weights (decay per step)
	// and returns it: averaging the last few thousand steps makes the result depend far
	// less on the seed and the last batches.
	ema float64
	// decay is the learning rate's factor per epoch.
	decay float64
	// ensemble networks with consecutive seeds are averaged (trainEnsemble).
	ensemble int
	// parallel leave-one-out folds are trained at a time.
	parallel int
	// auc: print each feature's separation per noise type instead of training.
	auc bool
	// minLevelSNR: only frames whose level stands this far above the energy floor are
	// used; the classifier is only ever asked about such frames (it can only veto what the
	// energy detector proposes), so its capacity goes to them.
	minLevelSNR float64
	command     string
	// exclude leaves one noise type out of the weights written (-exclude), to look at how
	// a held-out type is handled.
	exclude string
	// foldsDir, if set, receives each leave-one-out model as <type>.json.
	foldsDir string
	// onsetWeight weighs the speech frames of an utterance's first onsetSpan seconds, and
	// every speech frame of an utterance shorter than shortUtt seconds, this many times
	// more than other speech frames in the loss (the speech class's total weight stays
	// the same). Those are the frames a veto at onset loses whole words on.
	onsetWeight float64
	// inputNoise adds Gaussian noise of this standard deviation to every standardised
	// input of every training frame (a regulariser: no single feature's exact value,
	// which an unseen kind of noise may not share, can decide a frame alone).
	inputNoise float64
}

const (
	onsetSpan = 0.4
	shortUtt  = 1.0
)

func defaultTrainConfig() trainConfig {
	return trainConfig{hidden: 16, epochs: 8, seed: 1, batch: 256, lr: 0.003, l2: 1e-5, minLevelSNR: 1, decay: 0.7, ensemble: 1, parallel: 1, onsetWeight: 1}
}

// frameSet holds training frames: features, label (1 speech, 0 not), noise type.
type frameSet struct {
	x     [][vad.NumFeatures]float32
	y     []float32
	noise []string
	// onset marks speech frames at an utterance's start or in a short utterance.
	onset []bool
}

// frameCover returns, per 100 ms frame, the fraction covered by labelled speech.
func frameCover(labs []interval, n int) []float64 {
	c := make([]float64, n)
	for _, l := range labs {
		for i := max(int(math.Floor(l.start*10)), 0); i < n && float64(i)/10 < l.end; i++ {
			a, b := math.Max(l.start, float64(i)/10), math.Min(l.end, float64(i+1)/10)
			if b > a {
				c[i] += (b - a) * 10
			}
		}
	}
	return c
}

// onsetFrames marks, per 100 ms frame, the frames that start within an utterance's first
// onsetSpan seconds, or anywhere in an utterance shorter than shortUtt seconds.
func onsetFrames(utts []interval, n int) []bool {
	onset := make([]bool, n)
	for _, u := range utts {
		end := u.end
		if u.end-u.start >= shortUtt {
			end = u.start + onsetSpan
		}
		for i := max(int(math.Floor(u.start*10)), 0); i < n && float64(i)/10 < end; i++ {
			onset[i] = true
		}
	}
	return onset
}

// collect runs the gate (classifier off: features do not depend on it) over every file of
// a set part and keeps the frames with a clear label: at least half speech, or none.
func collect(dir string, cfg vad.Config, minLevelSNR float64) (*frameSet, error) {
	rows, err := readCSV(filepath.Join(dir, "manifest.csv"))
	if err != nil {
		return nil, err
	}
	// Features are computed only while the classifier is on; its weights do not change
	// them (only which frames the gate sends, which training does not look at).
	if cfg.ClassifierThreshold == 0 {
		cfg.ClassifierThreshold = vad.DefaultConfig().ClassifierThreshold
	}
	fs := &frameSet{}
	for _, r := range rows {
		if len(r) < 3 {
			return nil, fmt.Errorf("manifest: short row %q", r)
		}
		if class := classOf(r[2]); class == speechlikeNoTarg {
			// Babble and crowds are speech, or nearly: as negatives they would teach the
			// classifier to reject speech in noise. They are scored, not trained on.
			continue
		}
		base := strings.TrimSuffix(filepath.Join(dir, "wav", r[0]), ".wav")
		labRows, err := readCSV(base + ".lab.csv")
		if err != nil {
			return nil, err
		}
		labs, err := parseIntervals(labRows)
		if err != nil {
			return nil, fmt.Errorf("%s.lab.csv: %w", base, err)
		}
		uttRows, err := readCSV(base + ".utt.csv")
		if err != nil {
			return nil, err
		}
		utts, err := parseIntervals(uttRows)
		if err != nil {
			return nil, fmt.Errorf("%s.utt.csv: %w", base, err)
		}
		var feats [][vad.NumFeatures]float32
		var scored []bool
		if _, err := runGateWith(base+".wav", cfg, neutralWeights(), func(g *vad.Gate) {
			var v [vad.NumFeatures]float32
			f := g.Features()
			for i := range f {
				v[i] = float32(f[i])
			}
			feats = append(feats, v)
			scored = append(scored, f != nil)
		}); err != nil {
			return nil, err
		}
		cover := frameCover(labs, len(feats))
		onset := onsetFrames(utts, len(feats))
		for i, v := range feats {
			if i < 10 || !scored[i] || float64(v[vad.FeatureLevelSNR]) < minLevelSNR {
				continue // warm-up, or a frame the classifier is never asked about
			}
			switch {
			case cover[i] >= 0.5:
				fs.y = append(fs.y, 1)
			case cover[i] == 0:
				fs.y = append(fs.y, 0)
			default:
				continue
			}
			fs.x = append(fs.x, v)
			fs.noise = append(fs.noise, r[2])
			fs.onset = append(fs.onset, onset[i] && cover[i] >= 0.5)
		}
	}
	if len(fs.y) == 0 {
		return nil, fmt.Errorf("%s: no training frames", dir)
	}
	return fs, nil
}

// neutralWeights always answer 0.5: collect runs the gate with them so that the built-in
// weights (which may be for another feature layout while features change) play no part.
func neutralWeights() *vad.Weights {
	const nf = vad.NumFeatures
	return &vad.Weights{Features: nf, Hidden: 1, Mean: make([]float64, nf), Scale: make([]float64, nf),
		W1: make([]float64, nf), B1: []float64{0}, W2: []float64{0}}
}

// trainEnsemble trains tc.ensemble networks (seeds seed, seed+1, ...) and joins them into
// one whose logit is the mean of theirs: a hidden layer of all their units, the output
// weights divided by their number. Averaging networks that differ only by their seed
// takes out much of what each learned by chance, which is what decides how a noise type
// never heard in training is judged.
func trainEnsemble(fs *frameSet, exclude string, tc trainConfig) *vad.Weights {
	k := max(tc.ensemble, 1)
	var out *vad.Weights
	for i := 0; i < k; i++ {
		c := tc
		c.seed = tc.seed + uint64(i)
		w := train(fs, exclude, c)
		if out == nil {
			out = w
		} else {
			out.Hidden += w.Hidden
			out.W1 = append(out.W1, w.W1...)
			out.B1 = append(out.B1, w.B1...)
			out.W2 = append(out.W2, w.W2...)
			out.B2 += w.B2
		}
	}
	for i := range out.W2 {
		out.W2[i] /= float64(k)
	}
	out.B2 /= float64(k)
	return out
}

// train fits weights on the frames whose noise type is not excluded.
func train(fs *frameSet, exclude string, tc trainConfig) *vad.Weights {
	const nf = vad.NumFeatures
	var idx []int
	var npos, nneg float64
	weight := func(i int) float64 {
		if fs.onset[i] {
			return tc.onsetWeight
		}
		return 1
	}
	for i, n := range fs.noise {
		if n == exclude {
			continue
		}
		idx = append(idx, i)
		if fs.y[i] == 1 {
			npos += weight(i)
		} else {
			nneg++
		}
	}
	// Standardisation from the training frames.
	mean, scale := make([]float64, nf), make([]float64, nf)
	for _, i := range idx {
		for j := 0; j < nf; j++ {
			mean[j] += float64(fs.x[i][j])
		}
	}
	for j := range mean {
		mean[j] /= float64(len(idx))
	}
	for _, i := range idx {
		for j := 0; j < nf; j++ {
			d := float64(fs.x[i][j]) - mean[j]
			scale[j] += d * d
		}
	}
	for j := range scale {
		sd := math.Sqrt(scale[j] / float64(len(idx)))
		if sd < 1e-6 {
			sd = 1
		}
		scale[j] = 1 / sd
	}
	// Class weights: speech and non-speech frames count equally overall.
	wpos, wneg := 0.5*float64(len(idx))/npos, 0.5*float64(len(idx))/nneg

	rng := rand.New(rand.NewPCG(tc.seed, 0x6861726b))
	h := tc.hidden
	p := make([]float64, h*nf+h+h+1) // W1, B1, W2, B2
	w1, b1, w2 := p[:h*nf], p[h*nf:h*nf+h], p[h*nf+h:h*nf+2*h]
	for i := range w1 {
		w1[i] = rng.NormFloat64() * math.Sqrt(2/float64(nf))
	}
	for i := range w2 {
		w2[i] = rng.NormFloat64() * math.Sqrt(1/float64(h))
	}
	g := make([]float64, len(p))
	m1, m2 := make([]float64, len(p)), make([]float64, len(p))
	const beta1, beta2, eps = 0.9, 0.999, 1e-8
	x := make([]float64, nf)
	a := make([]float64, h)
	var avg []float64
	if tc.ema > 0 {
		avg = append([]float64(nil), p...)
	}
	step := 0
	for ep := 0; ep < tc.epochs; ep++ {
		rng.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
		lr := tc.lr * math.Pow(tc.decay, float64(ep))
		for s := 0; s < len(idx); s += tc.batch {
			clear(g)
			e := min(s+tc.batch, len(idx))
			for _, i := range idx[s:e] {
				for j := 0; j < nf; j++ {
					x[j] = (float64(fs.x[i][j]) - mean[j]) * scale[j]
				}
				if tc.inputNoise > 0 {
					for j := range x {
						x[j] += tc.inputNoise * rng.NormFloat64()
					}
				}
				out := p[len(p)-1]
				for k := 0; k < h; k++ {
					v := b1[k]
					for j, xj := range x {
						v += w1[k*nf+j] * xj
					}
					a[k] = math.Max(v, 0)
					out += w2[k] * a[k]
				}
				y, cw := float64(fs.y[i]), wneg
				if y == 1 {
					cw = wpos * weight(i)
				}
				d := (1/(1+math.Exp(-out)) - y) * cw // dLoss/dout
				g[len(g)-1] += d
				for k := 0; k < h; k++ {
					g[h*nf+h+k] += d * a[k]
					if a[k] > 0 {
						dk := d * w2[k]
						g[h*nf+k] += dk
						for j, xj := range x {
							g[k*nf+j] += dk * xj
						}
					}
				}
			}
			step++
			n := float64(e - s)
			c1, c2 := 1-math.Pow(beta1, float64(step)), 1-math.Pow(beta2, float64(step))
			for k := range p {
				gk := g[k]/n + tc.l2*p[k]
				m1[k] = beta1*m1[k] + (1-beta1)*gk
				m2[k] = beta2*m2[k] + (1-beta2)*gk*gk
				p[k] -= lr * (m1[k] / c1) / (math.Sqrt(m2[k]/c2) + eps)
			}
			for k := range avg {
				avg[k] = tc.ema*avg[k] + (1-tc.ema)*p[k]
			}
		}
	}
	if avg != nil {
		p = avg
		w1, b1, w2 = p[:h*nf], p[h*nf:h*nf+h], p[h*nf+h:h*nf+2*h]
	}
	return &vad.Weights{
		Features: nf, Hidden: h, Mean: mean, Scale: scale,
		W1: append([]float64(nil), w1...), B1: append([]float64(nil), b1...),
		W2: append([]float64(nil), w2...), B2: p[len(p)-1],
	}
}

// frameAccuracy is the balanced accuracy of w at probability 0.5 on the frames of one
// noise type ("" for all), with the frames counted.
func frameAccuracy(fs *frameSet, w *vad.Weights, noise string) (bal float64, n int) {
	var tp, fn, tn, fp float64
	for i := range fs.y {
		if noise != "" && fs.noise[i] != noise {
			continue
		}
		var v [vad.NumFeatures]float64
		for j := range v {
			v[j] = float64(fs.x[i][j])
		}
		speech := vad.Score(w, &v) >= 0.5
		switch {
		case fs.y[i] == 1 && speech:
			tp++
		case fs.y[i] == 1:
			fn++
		case speech:
			fp++
		default:
			tn++
		}
		n++
	}
	r := func(a, b float64) float64 {
		if a+b == 0 {
			return 1
		}
		return a / (a + b)
	}
	return (r(tp, fn) + r(tn, fp)) / 2, n
}

// trainCommand implements -train: it trains on every noise type of the train part and
// writes the weights where asked; with -lono it also trains one model per noise type of
// the train part, without that type, and returns a weightsFor that scores each type with
// the model that never saw it.
func trainCommand(dir string, sets []string, cfg vad.Config, tc trainConfig, lono bool, writeJSON, writeGo string, w io.Writer) (func(string) *vad.Weights, error) {
	fs, err := collect(dir, cfg, tc.minLevelSNR)
	if err != nil {
		return nil, err
	}
	types := map[string]int{}
	var pos int
	for i, n := range fs.noise {
		types[n]++
		if fs.y[i] == 1 {
			pos++
		}
	}
	names := make([]string, 0, len(types))
	for n := range types {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return noiseOrder(names[i]) < noiseOrder(names[j]) })
	fmt.Fprintf(w, "training frames: %d (%d speech) from %s, noise types %s\n\n", len(fs.y), pos, dir, strings.Join(names, " "))

	if tc.auc {
		featureAUC(fs, names, w)
		return nil, nil
	}
	all := trainEnsemble(fs, tc.exclude, tc)
	which := "every noise type"
	if tc.exclude != "" {
		which += " but " + tc.exclude
	}
	all.Note = fmt.Sprintf("trained on %s of %s (%d frames), hidden %d, epochs %d, seed %d: %s", which,
		filepath.Base(filepath.Dir(filepath.Clean(dir)))+"/"+filepath.Base(dir), len(fs.y), tc.hidden, tc.epochs, tc.seed, tc.command)
	fmt.Fprintln(w, "| noise type | frames | balanced frame accuracy (training data) |")
	fmt.Fprintln(w, "|---|---|---|")
	for _, n := range names {
		acc, k := frameAccuracy(fs, all, n)
		fmt.Fprintf(w, "| %s | %d | %.3f |\n", n, k, acc)
	}
	fmt.Fprintln(w)
	if writeJSON != "" {
		b, _ := json.MarshalIndent(all, "", " ")
		if err := os.WriteFile(writeJSON, append(b, '\n'), 0o644); err != nil {
			return nil, err
		}
	}
	if writeGo != "" {
		if err := os.WriteFile(writeGo, goSource(all), 0o644); err != nil {
			return nil, err
		}
	}
	if !lono {
		if len(sets) == 0 {
			return nil, nil
		}
		return func(string) *vad.Weights { return all }, nil
	}
	folds := map[string]*vad.Weights{}
	fmt.Fprintln(w, "leave one noise type out: balanced frame accuracy on the held-out type's training-part frames")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| held out | trained without it | trained with it |")
	fmt.Fprintln(w, "|---|---|---|")
	// The folds are independent trainings, each deterministic on its own: they may run
	// side by side (-parallel) with the same results.
	var held []string
	for _, n := range names {
		if classOf(n) != "clean" && classOf(n) != "quiet" { // not noise types: always in training
			held = append(held, n)
		}
	}
	trained := make([]*vad.Weights, len(held))
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(tc.parallel, 1))
	for i, n := range held {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			trained[i] = trainEnsemble(fs, n, tc)
			<-sem
		}()
	}
	wg.Wait()
	for i, n := range held {
		wn := trained[i]
		folds[n] = wn
		if tc.foldsDir != "" {
			b, _ := json.Marshal(wn)
			if err := os.WriteFile(filepath.Join(tc.foldsDir, n+".json"), b, 0o644); err != nil {
				return nil, err
			}
		}
		accOut, _ := frameAccuracy(fs, wn, n)
		accIn, _ := frameAccuracy(fs, all, n)
		fmt.Fprintf(w, "| %s | %.3f | %.3f |\n", n, accOut, accIn)
	}
	fmt.Fprintln(w)
	return func(noise string) *vad.Weights {
		if wn, ok := folds[noise]; ok {
			return wn
		}
		return all // clean, quiet, and types the train part lacks
	}, nil
}

// goSource renders weights as the generated Go file vad/weights_gen.go.
func goSource(wt *vad.Weights) []byte {
	var b strings.Builder
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	list := func(name string, s []float64) {
		fmt.Fprintf(&b, "\t%s: []float64{", name)
		for i, v := range s {
			if i%6 == 0 {
				b.WriteString("\n\t\t")
			} else {
				b.WriteString(" ")
			}
			b.WriteString(f(v) + ",")
		}
		b.WriteString("\n\t},\n")
	}
	b.WriteString("// Code generated by bench/vad -train; DO NOT EDIT.\n\npackage vad\n\n")
	fmt.Fprintf(&b, "// defaultWeights is the classifier the daemon uses: %s\n", wt.Note)
	b.WriteString("var defaultWeights = Weights{\n")
	fmt.Fprintf(&b, "\tFeatures: %d,\n\tHidden:   %d,\n", wt.Features, wt.Hidden)
	list("Mean", wt.Mean)
	list("Scale", wt.Scale)
	list("W1", wt.W1)
	list("B1", wt.B1)
	list("W2", wt.W2)
	fmt.Fprintf(&b, "\tB2:   %s,\n\tNote: %q,\n}\n", f(wt.B2), wt.Note)
	src, err := format.Source([]byte(b.String()))
	if err != nil {
		panic(err) // a bug in the template above
	}
	return src
}

// featureAUC prints, per noise type, the area under the ROC curve of each feature alone
// for the type's speech frames against its noise frames (0.5: no separation; below 0.5 the
// feature is lower for speech), to see which features carry what.
func featureAUC(fs *frameSet, names []string, w io.Writer) {
	fmt.Fprintf(w, "| feature |")
	for _, n := range names {
		fmt.Fprintf(w, " %s |", n)
	}
	fmt.Fprintln(w)
	type pt struct {
		v   float32
		pos bool
	}
	for j := 0; j < vad.NumFeatures; j++ {
		fmt.Fprintf(w, "| %d |", j)
		for _, n := range names {
			var ps []pt
			var np, nn float64
			for i := range fs.y {
				if fs.noise[i] == n {
					ps = append(ps, pt{fs.x[i][j], fs.y[i] == 1})
					if fs.y[i] == 1 {
						np++
					} else {
						nn++
					}
				}
			}
			sort.Slice(ps, func(a, b int) bool { return ps[a].v < ps[b].v })
			// Mann-Whitney: sum of the ranks of the positives (ties get the mean rank).
			var rank float64
			for a := 0; a < len(ps); {
				b := a
				for b < len(ps) && ps[b].v == ps[a].v {
					b++
				}
				r := float64(a+b+1) / 2
				for k := a; k < b; k++ {
					if ps[k].pos {
						rank += r
					}
				}
				a = b
			}
			auc := (rank - np*(np+1)/2) / (np * nn)
			fmt.Fprintf(w, " %.2f |", auc)
		}
		fmt.Fprintln(w)
	}
}
