package vad

import "fmt"

// Config holds the VAD and gate settings (the `vad:` section of hark's configuration).
// Times are in milliseconds so the section needs no duration parsing of its own.
type Config struct {
	// ThresholdDB is how far above the adaptive noise floor a frame's level must rise to
	// count as speech onset.
	ThresholdDB float64 `yaml:"threshold_db" json:"threshold_db"`
	// PreRollMS is how much audio before the detected onset is sent with the segment.
	PreRollMS int `yaml:"preroll_ms" json:"preroll_ms"`
	// HangoverMS is how long the gate stays open after the last speech frame.
	HangoverMS int `yaml:"hangover_ms" json:"hangover_ms"`
}

// DefaultConfig returns the defaults the daemon and `hark vad` share.
func DefaultConfig() Config {
	return Config{ThresholdDB: 9, PreRollMS: 500, HangoverMS: 700}
}

// FieldError is a validation error naming the offending key inside the vad section.
type FieldError struct {
	Key string
	Msg string
}

func (e *FieldError) Error() string { return fmt.Sprintf("%s: %s", e.Key, e.Msg) }

// Validate checks ranges. Errors are *FieldError with the key relative to the section.
func (c Config) Validate() error {
	switch {
	case c.ThresholdDB < 1 || c.ThresholdDB > 40:
		return &FieldError{"threshold_db", fmt.Sprintf("%g is out of range [1, 40]", c.ThresholdDB)}
	case c.PreRollMS < 0 || c.PreRollMS > 3000 || c.PreRollMS%100 != 0:
		return &FieldError{"preroll_ms", fmt.Sprintf("%d must be a multiple of 100 in [0, 3000]", c.PreRollMS)}
	case c.HangoverMS < 0 || c.HangoverMS > 5000 || c.HangoverMS%100 != 0:
		return &FieldError{"hangover_ms", fmt.Sprintf("%d must be a multiple of 100 in [0, 5000]", c.HangoverMS)}
	}
	return nil
}
