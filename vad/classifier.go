package vad

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
)

// Weights are a trained speech/noise classifier over the per-frame features (features.go):
// each feature is standardised, then one hidden layer of ReLU units and a logistic output
// give the probability that the frame is speech. They are trained offline by
// eval/train (docs/bench-vad.md); the daemon's are compiled in (weights_gen.go).
type Weights struct {
	// Features must equal NumFeatures; Hidden is the number of hidden units.
	Features int `json:"features"`
	Hidden   int `json:"hidden"`
	// Mean and Scale standardise the input: x' = (x - Mean) * Scale.
	Mean  []float64 `json:"mean"`
	Scale []float64 `json:"scale"`
	// W1 is Hidden rows of Features weights; B1 the hidden biases.
	W1 []float64 `json:"w1"`
	B1 []float64 `json:"b1"`
	// W2 and B2 map the hidden layer to the output logit.
	W2 []float64 `json:"w2"`
	B2 float64   `json:"b2"`
	// Note records how the weights were made (training command, data, held-out types).
	Note string `json:"note,omitempty"`
}

// maxHidden bounds the hidden layer (the per-frame cost) of weights read from outside.
const maxHidden = 64

// ParseWeights reads weights written by eval/train as JSON and checks them: sizes that
// match the feature vector, at most maxHidden hidden units, finite values.
func ParseWeights(data []byte) (*Weights, error) {
	var w Weights
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, fmt.Errorf("classifier weights: %w", err)
	}
	if err := w.validate(); err != nil {
		return nil, err
	}
	return &w, nil
}

func (w *Weights) validate() error {
	switch {
	case w.Features != NumFeatures:
		return fmt.Errorf("classifier weights: %d features, this build computes %d", w.Features, NumFeatures)
	case w.Hidden < 1 || w.Hidden > maxHidden:
		return fmt.Errorf("classifier weights: hidden layer of %d units, want 1 to %d", w.Hidden, maxHidden)
	case len(w.Mean) != w.Features || len(w.Scale) != w.Features:
		return errors.New("classifier weights: mean and scale need one value per feature")
	case len(w.W1) != w.Hidden*w.Features || len(w.B1) != w.Hidden || len(w.W2) != w.Hidden:
		return errors.New("classifier weights: layer sizes do not match features and hidden")
	}
	for _, s := range [][]float64{w.Mean, w.Scale, w.W1, w.B1, w.W2, {w.B2}} {
		for _, v := range s {
			if math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > 1e6 {
				return errors.New("classifier weights: a value is not a finite number of sensible size")
			}
		}
	}
	return nil
}

// classifier evaluates Weights on feature vectors without allocating.
type classifier struct {
	w      *Weights
	x      [NumFeatures]float64
	hidden [maxHidden]float64
}

// logit returns the classifier's log-odds that the frame with features v is speech.
func (c *classifier) logit(v *[NumFeatures]float64) float64 {
	w := c.w
	for i := range c.x {
		c.x[i] = float64((v[i] - w.Mean[i]) * w.Scale[i])
	}
	out := w.B2
	for h := 0; h < w.Hidden; h++ {
		row := w.W1[h*w.Features : (h+1)*w.Features]
		a := w.B1[h]
		for i, x := range c.x {
			a += float64(row[i] * x)
		}
		if a > 0 {
			out += float64(w.W2[h] * a)
		}
	}
	return out
}

// Score is the probability that a frame with features v is speech under weights w, as the
// gate computes it (for training and evaluation: bench/vad).
func Score(w *Weights, v *[NumFeatures]float64) float64 {
	c := classifier{w: w}
	return sigmoid(c.logit(v))
}

// FeatureLevelSNR is the index in Gate.Features of the energy detector's level above its
// floor (dB).
const FeatureLevelSNR = fLevelSNR
