package spool

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"time"

	"github.com/hark-audio/hark/audio"
)

// Meta describes one spooled speech segment. It is stored as JSON next to the WAV file.
type Meta struct {
	// ID names the entry's files. Put fills it in when empty (capture time + random
	// suffix, so names sort roughly in capture order); a caller-chosen ID must be a plain
	// file name of letters, digits, '.', '_' and '-' not starting with '.'.
	ID string
	// Start is the capture wall-clock time of the first sample.
	Start time.Time
	// DeviceID is the device that captured the audio.
	DeviceID string
	// Options are the Deepgram query options in force when the audio was captured (the
	// uploader drops the live-only ones such as encoding).
	Options url.Values
	// Reason says why the segment was spooled (e.g. "stream down", "unconfirmed").
	Reason string
	// Samples is the number of 16 kHz mono samples in the WAV file; Put sets it.
	Samples int64
	// Created is when the entry was written; Put sets it. MaxAge counts from it.
	Created time.Time
}

// Duration is the length of the entry's audio.
func (m Meta) Duration() time.Duration {
	return time.Duration(m.Samples) * time.Second / audio.SampleRate
}

// metaVersion is bumped when the JSON form changes incompatibly; Open moves entries of an
// unknown version aside rather than guessing.
const metaVersion = 1

type metaJSON struct {
	Version    int                 `json:"version"`
	ID         string              `json:"id"`
	Start      string              `json:"start"`
	DeviceID   string              `json:"device_id,omitempty"`
	Options    map[string][]string `json:"options,omitempty"`
	Reason     string              `json:"reason,omitempty"`
	Samples    int64               `json:"samples"`
	SampleRate int                 `json:"sample_rate"`
	Channels   int                 `json:"channels"`
	Created    string              `json:"created"`
}

// MarshalMeta returns the on-disk JSON form of m.
func MarshalMeta(m Meta) ([]byte, error) {
	j := metaJSON{Version: metaVersion, ID: m.ID, Start: m.Start.UTC().Format(time.RFC3339Nano),
		DeviceID: m.DeviceID, Options: m.Options, Reason: m.Reason, Samples: m.Samples,
		SampleRate: audio.SampleRate, Channels: 1, Created: m.Created.UTC().Format(time.RFC3339Nano)}
	return json.MarshalIndent(j, "", "  ")
}

// maxSamples bounds what a metadata file may claim: a 4 GiB WAV is far beyond any
// utterance and beyond what the RIFF size fields can describe.
const maxSamples = (1<<32 - 64) / 2

// ParseMeta parses and validates the on-disk JSON form. Files in the spool directory are
// outside input (another process or a damaged disk may have written them), so every
// field is checked.
func ParseMeta(b []byte) (Meta, error) {
	var j metaJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return Meta{}, fmt.Errorf("parse spool metadata: %w", err)
	}
	if j.Version != metaVersion {
		return Meta{}, fmt.Errorf("spool metadata version %d, want %d", j.Version, metaVersion)
	}
	if err := validID(j.ID); err != nil {
		return Meta{}, err
	}
	if j.SampleRate != audio.SampleRate || j.Channels != 1 {
		return Meta{}, fmt.Errorf("spool metadata: %d Hz, %d channels; want %d Hz mono", j.SampleRate, j.Channels, audio.SampleRate)
	}
	if j.Samples <= 0 || j.Samples > maxSamples {
		return Meta{}, fmt.Errorf("spool metadata: %d samples out of range", j.Samples)
	}
	start, err := time.Parse(time.RFC3339Nano, j.Start)
	if err != nil {
		return Meta{}, fmt.Errorf("spool metadata start: %w", err)
	}
	created, err := time.Parse(time.RFC3339Nano, j.Created)
	if err != nil {
		return Meta{}, fmt.Errorf("spool metadata created: %w", err)
	}
	m := Meta{ID: j.ID, Start: start, DeviceID: j.DeviceID, Reason: j.Reason, Samples: j.Samples, Created: created}
	if len(j.Options) > 0 {
		m.Options = url.Values(j.Options)
	}
	return m, nil
}

// validID accepts plain file names only, so an ID can never escape the spool directory
// or collide with the temp-file and sidecar naming.
func validID(id string) error {
	if id == "" || len(id) > 128 || id[0] == '.' {
		return fmt.Errorf("invalid spool entry id %q", id)
	}
	for _, r := range id {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
		if !ok {
			return fmt.Errorf("invalid spool entry id %q", id)
		}
	}
	for _, suf := range []string{".resp", ".reason", ".wav", ".json"} {
		// "x.resp" would make "x.resp.json" ambiguous between entry x.resp and x's response.
		if strings.HasSuffix(id, suf) {
			return fmt.Errorf("invalid spool entry id %q (reserved suffix)", id)
		}
	}
	return nil
}

// newID makes a name that sorts in capture order at millisecond resolution; the random
// suffix keeps two segments starting in the same millisecond apart.
func newID(start time.Time) string {
	return fmt.Sprintf("%s-%08x", start.UTC().Format("20060102T150405.000Z"), rand.Uint32())
}

var errNoAudio = errors.New("spool: no samples to store")
