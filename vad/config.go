package vad

import "fmt"

// Config holds the VAD and gate settings (the `vad:` section of hark's configuration).
// Times are in milliseconds so the section needs no duration parsing of its own.
//
// Levels are measured in the analysis band (speech band, about 250–3500 Hz) of the VAD's own
// filtered copy of the audio, in dB relative to full scale. The noise floor is a low
// percentile of the recent band levels; the speech threshold sits ThresholdDB above it,
// raised further when the noise itself fluctuates (machine noise), see NoiseFactor.
type Config struct {
	// ThresholdDB is the least distance above the noise floor a frame's band level must
	// reach to count as speech onset. Lower catches quieter speech, higher rejects more noise.
	ThresholdDB float64 `yaml:"threshold_db" json:"threshold_db"`
	// NoiseFactor scales the measured spread of the noise level (dB) into extra threshold:
	// threshold = floor + max(ThresholdDB, min(NoiseFactor*spread, 10 dB)). Steady noise
	// (fans, hiss) has a small spread and keeps the threshold low; lumpy machine noise
	// raises it.
	NoiseFactor float64 `yaml:"noise_factor" json:"noise_factor"`
	// ReleaseDB is the hysteresis: once speech is detected, frames count as speech while
	// their level stays above threshold - ReleaseDB.
	ReleaseDB float64 `yaml:"release_db" json:"release_db"`
	// MinLevelDBFS is an absolute level below which nothing is speech, so a silent
	// (digitally zero or very quiet) input does not turn its own hiss into speech.
	MinLevelDBFS float64 `yaml:"min_level_dbfs" json:"min_level_dbfs"`
	// FloorWindowMS is the history the noise floor is measured over. Longer rides out
	// longer continuous speech; shorter follows a changing noise level sooner.
	FloorWindowMS int `yaml:"floor_window_ms" json:"floor_window_ms"`
	// PreRollMS is how much audio before the detected onset is sent with the segment.
	PreRollMS int `yaml:"preroll_ms" json:"preroll_ms"`
	// HangoverMS is how long the gate stays open after the last speech frame. While it
	// runs, frames above the hold level count as speech again, so it also bridges the
	// quiet stretches inside an utterance (on the evaluation set, raising it from 700 to
	// 1000 ms is what lifted machine-noise recall at 10 dB SNR to 1.00; docs/bench-vad.md).
	HangoverMS int `yaml:"hangover_ms" json:"hangover_ms"`
	// MaxSegmentMS splits a segment that has been open this long (0 = never): the segment
	// ends and the next frame starts a new one, without pre-roll and without losing audio.
	// It bounds the size of one spooled utterance and lets a transcript be finalized
	// during endless speech or noise the floor has not yet learned.
	MaxSegmentMS int `yaml:"max_segment_ms" json:"max_segment_ms"`
	// ClassifierThreshold is the speech probability (0 to 1) the built-in speech/noise
	// classifier must give before an energy onset counts as speech; while speech lasts,
	// it continues while the classifier's mean over the last second stays above half of
	// this. Higher rejects more non-stationary noise (machinery, clanks, crackle, music)
	// at the price of quiet or short words; 0 turns the classifier off (energy alone).
	ClassifierThreshold float64 `yaml:"classifier_threshold" json:"classifier_threshold"`
}

// Limits that Validate enforces; the gate preallocates for the largest values.
const (
	maxPreRollMS   = 3000
	maxHangoverMS  = 5000
	maxFloorWindow = 30000
)

// DefaultConfig returns the defaults the daemon and `hark vad` share.
func DefaultConfig() Config {
	return Config{
		ThresholdDB:   3,
		NoiseFactor:   3.3,
		ReleaseDB:     3,
		MinLevelDBFS:  -65,
		FloorWindowMS: 20000,
		PreRollMS:     600,
		HangoverMS:    1000,
		MaxSegmentMS:  60000,

		ClassifierThreshold: 0.5,
	}
}

// FieldError is a validation error naming the offending key inside the vad section.
type FieldError struct {
	Key string
	Msg string
}

func (e *FieldError) Error() string { return fmt.Sprintf("%s: %s", e.Key, e.Msg) }

// Validate checks ranges. Errors are *FieldError with the key relative to the section.
func (c Config) Validate() error {
	ms := func(key string, v, lo, hi int) error {
		if v < lo || v > hi || v%100 != 0 {
			return &FieldError{key, fmt.Sprintf("%d must be a multiple of 100 in [%d, %d]", v, lo, hi)}
		}
		return nil
	}
	rng := func(key string, v, lo, hi float64) error {
		if !(v >= lo && v <= hi) { // also rejects NaN
			return &FieldError{key, fmt.Sprintf("%g is out of range [%g, %g]", v, lo, hi)}
		}
		return nil
	}
	for _, err := range []error{
		rng("threshold_db", c.ThresholdDB, 1, 40),
		rng("noise_factor", c.NoiseFactor, 0, 10),
		rng("release_db", c.ReleaseDB, 0, 20),
		rng("min_level_dbfs", c.MinLevelDBFS, -100, 0),
		ms("floor_window_ms", c.FloorWindowMS, 2000, maxFloorWindow),
		ms("preroll_ms", c.PreRollMS, 0, maxPreRollMS),
		ms("hangover_ms", c.HangoverMS, 0, maxHangoverMS),
		rng("classifier_threshold", c.ClassifierThreshold, 0, 0.99),
	} {
		if err != nil {
			return err
		}
	}
	if c.MaxSegmentMS != 0 {
		if err := ms("max_segment_ms", c.MaxSegmentMS, 1000, 3600000); err != nil {
			err.(*FieldError).Msg += " (or 0 for no limit)"
			return err
		}
	}
	return nil
}
