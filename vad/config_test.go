package vad

import (
	"errors"
	"math"
	"testing"
)

func TestValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	for _, tc := range []struct {
		key string
		mod func(*Config)
	}{
		{"threshold_db", func(c *Config) { c.ThresholdDB = 0.5 }},
		{"threshold_db", func(c *Config) { c.ThresholdDB = math.NaN() }},
		{"noise_factor", func(c *Config) { c.NoiseFactor = -1 }},
		{"release_db", func(c *Config) { c.ReleaseDB = 21 }},
		{"min_level_dbfs", func(c *Config) { c.MinLevelDBFS = 1 }},
		{"floor_window_ms", func(c *Config) { c.FloorWindowMS = 1000 }},
		{"floor_window_ms", func(c *Config) { c.FloorWindowMS = 20050 }},
		{"preroll_ms", func(c *Config) { c.PreRollMS = 3100 }},
		{"preroll_ms", func(c *Config) { c.PreRollMS = 250 }},
		{"hangover_ms", func(c *Config) { c.HangoverMS = -100 }},
		{"max_segment_ms", func(c *Config) { c.MaxSegmentMS = 500 }},
		{"classifier_threshold", func(c *Config) { c.ClassifierThreshold = -0.1 }},
		{"classifier_threshold", func(c *Config) { c.ClassifierThreshold = 1 }},
		{"classifier_threshold", func(c *Config) { c.ClassifierThreshold = math.NaN() }},
	} {
		c := DefaultConfig()
		tc.mod(&c)
		err := c.Validate()
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Key != tc.key {
			t.Errorf("%s: got %v, want a FieldError for %s", tc.key, err, tc.key)
		}
	}
	for _, ok := range []func(*Config){
		func(c *Config) { c.MaxSegmentMS = 0 },
		func(c *Config) { c.PreRollMS, c.HangoverMS = 0, 0 },
		func(c *Config) { c.PreRollMS, c.HangoverMS, c.FloorWindowMS = 3000, 5000, 30000 },
		func(c *Config) { c.ClassifierThreshold = 0 }, // energy only
		func(c *Config) { c.ClassifierThreshold = 0.99 },
	} {
		c := DefaultConfig()
		ok(&c)
		if err := c.Validate(); err != nil {
			t.Errorf("%+v rejected: %v", c, err)
		}
	}
}

// The largest valid settings must fit the gate's preallocated buffers.
func TestGateLimitsMatchValidate(t *testing.T) {
	c := DefaultConfig()
	c.PreRollMS, c.HangoverMS, c.FloorWindowMS = maxPreRollMS, maxHangoverMS, maxFloorWindow
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	g := NewGate(c)
	fr := silentFrames(400)
	var ev []Event
	for i, f := range fr {
		ev = g.step(f, i == 350, false, ev[:0])
	}
	if len(ev) != 1 || ev[0].Kind != SegmentFrame {
		t.Fatalf("unexpected events %+v", ev)
	}
	g2 := NewGate(c)
	for _, f := range fr[:100] {
		g2.step(f, false, false, nil)
	}
	ev = g2.step(fr[100], true, false, nil)
	if len(ev) != 2+maxPreRollMS/100 || ev[1].Frame.Seq != 100-maxPreRollMS/100 {
		t.Fatalf("full pre-roll: %d events, first frame %d", len(ev), ev[1].Frame.Seq)
	}
}
