package vad

import (
	"os"
	"strconv"
	"strings"
)

// TEMPORARY experiment knobs (removed before hand-off).
var holdFull = false
var spreadAll = os.Getenv("VX_SPREADALL") != ""

func init() {
	if v := os.Getenv("VX_BF"); v != "" {
		bandFactor, _ = strconv.ParseFloat(v, 64)
	}
	if v := os.Getenv("VX_BX"); v != "" {
		bandExtraDB, _ = strconv.ParseFloat(v, 64)
	}
	if os.Getenv("VX_HOLDFULL") != "" {
		holdFull = true
	}
	if v := os.Getenv("VX_BANDS"); v != "" {
		bandEdges = nil
		if v != "none" {
			for _, p := range strings.Split(v, ",") {
				ab := strings.Split(p, "-")
				a, _ := strconv.ParseFloat(ab[0], 64)
				b, _ := strconv.ParseFloat(ab[1], 64)
				bandEdges = append(bandEdges, [2]float64{a, b})
			}
		}
	}
}
