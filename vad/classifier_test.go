package vad

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

func TestParseWeights(t *testing.T) {
	good, err := json.Marshal(testWeights())
	if err != nil {
		t.Fatal(err)
	}
	w, err := ParseWeights(good)
	if err != nil {
		t.Fatalf("valid weights refused: %v", err)
	}
	var v [NumFeatures]float64
	for i := range v {
		v[i] = float64(i)
	}
	if a, b := Score(w, &v), Score(testWeights(), &v); a != b || a <= 0 || a >= 1 {
		t.Fatalf("parsed weights score %g, original %g", a, b)
	}
	// The built-in weights are valid.
	if err := defaultWeights.validate(); err != nil {
		t.Fatalf("built-in weights: %v", err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*Weights)
		want string
	}{
		{"features", func(w *Weights) { w.Features = NumFeatures + 1 }, "features"},
		{"no hidden", func(w *Weights) { w.Hidden = 0 }, "hidden"},
		{"huge hidden", func(w *Weights) { w.Hidden = maxHidden + 1 }, "hidden"},
		{"short mean", func(w *Weights) { w.Mean = w.Mean[1:] }, "mean"},
		{"short W1", func(w *Weights) { w.W1 = w.W1[1:] }, "layer sizes"},
		{"short W2", func(w *Weights) { w.W2 = w.W2[1:] }, "layer sizes"},
		{"huge value", func(w *Weights) { w.B1[0] = 1e300 }, "finite"},
		{"NaN", func(w *Weights) { w.Scale[3] = math.NaN() }, "finite"},
	} {
		w := testWeights()
		tc.mod(w)
		if err := w.validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one mentioning %q", tc.name, err, tc.want)
		}
	}
	for _, bad := range []string{"", "{", "[]", `{"features": "x"}`, `{"features": 1e999}`} {
		if _, err := ParseWeights([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// FuzzParseWeights: any input is refused with an error or gives weights that score every
// feature vector with a probability in [0, 1].
func FuzzParseWeights(f *testing.F) {
	good, _ := json.Marshal(testWeights())
	f.Add(good)
	f.Add([]byte(`{"features": 44, "hidden": 1}`))
	f.Add([]byte(`null`))
	f.Add(good[:len(good)/2])
	f.Fuzz(func(t *testing.T, b []byte) {
		w, err := ParseWeights(b)
		if err != nil {
			return
		}
		var v [NumFeatures]float64
		for i := range v {
			v[i] = float64(i%7) - 3
		}
		if s := Score(w, &v); !(s >= 0 && s <= 1) {
			t.Fatalf("score %g", s)
		}
	})
}
