package main

import "testing"

func TestSpread(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want [3]float64
	}{
		{[]float64{3}, [3]float64{3, 3, 3}},
		{[]float64{5, 1, 3}, [3]float64{3, 1, 5}},
		{[]float64{4, 1, 3, 2}, [3]float64{2.5, 1, 4}},
	} {
		if got := spread(tc.in); got != tc.want {
			t.Errorf("spread(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if got := fmtStats([3]float64{0.4321, 0.25, 12.5}, "ms"); got != "0.432 [0.250, 12.5] ms" {
		t.Errorf("fmtStats: %q", got)
	}
}
