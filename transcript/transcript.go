// Package transcript defines the final utterance hark publishes, whichever path produced
// it (the live stream or the spool), and its JSON form: the payload of the
// <base>/transcript MQTT topic and of the JSON lines `hark run` prints without MQTT.
package transcript

import (
	"encoding/json"
	"time"
)

// Source says which path produced an utterance.
type Source string

const (
	SourceLive  Source = "live"
	SourceSpool Source = "spool"
)

// TimeLayout is RFC 3339 with milliseconds, the format of every time hark publishes.
const TimeLayout = "2006-01-02T15:04:05.000Z07:00"

// Word is one recognised word with capture wall-clock times.
type Word struct {
	Word       string
	Punctuated string // Deepgram's punctuated_word, when punctuation is on
	Start, End time.Time
	Confidence float64
	Speaker    *int // with diarize
}

// Utterance is one final utterance.
type Utterance struct {
	Text       string
	Start, End time.Time // capture wall-clock time of the utterance's audio
	Words      []Word
	Confidence float64
	Source     Source
	RequestID  string // Deepgram's request id of the connection or upload
	Seq        uint64 // per-process sequence number, in publication order
	DeviceID   string
}

type wordJSON struct {
	Word       string  `json:"word"`
	Punctuated string  `json:"punctuated_word,omitempty"`
	Start      string  `json:"start"`
	End        string  `json:"end"`
	Confidence float64 `json:"confidence"`
	Speaker    *int    `json:"speaker,omitempty"`
}

type utteranceJSON struct {
	Text       string     `json:"text"`
	Start      string     `json:"start"`
	End        string     `json:"end"`
	Words      []wordJSON `json:"words"`
	Confidence float64    `json:"confidence"`
	Source     Source     `json:"source"`
	RequestID  string     `json:"request_id"`
	Seq        uint64     `json:"seq"`
	DeviceID   string     `json:"device_id,omitempty"`
}

// FormatTime formats t as published (RFC 3339 with milliseconds, in UTC).
func FormatTime(t time.Time) string { return t.UTC().Format(TimeLayout) }

// MarshalJSON writes the published payload.
func (u Utterance) MarshalJSON() ([]byte, error) {
	j := utteranceJSON{
		Text: u.Text, Start: FormatTime(u.Start), End: FormatTime(u.End),
		Words: make([]wordJSON, len(u.Words)), Confidence: u.Confidence,
		Source: u.Source, RequestID: u.RequestID, Seq: u.Seq, DeviceID: u.DeviceID,
	}
	for i, w := range u.Words {
		j.Words[i] = wordJSON{Word: w.Word, Punctuated: w.Punctuated, Start: FormatTime(w.Start),
			End: FormatTime(w.End), Confidence: w.Confidence, Speaker: w.Speaker}
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads the published payload back (used by the on-disk MQTT queue and tests).
func (u *Utterance) UnmarshalJSON(b []byte) error {
	var j utteranceJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	var err error
	parse := func(s string) time.Time {
		t, e := time.Parse(time.RFC3339Nano, s)
		if e != nil && err == nil {
			err = e
		}
		return t
	}
	*u = Utterance{Text: j.Text, Start: parse(j.Start), End: parse(j.End), Confidence: j.Confidence,
		Source: j.Source, RequestID: j.RequestID, Seq: j.Seq, DeviceID: j.DeviceID}
	for _, w := range j.Words {
		u.Words = append(u.Words, Word{Word: w.Word, Punctuated: w.Punctuated, Start: parse(w.Start),
			End: parse(w.End), Confidence: w.Confidence, Speaker: w.Speaker})
	}
	return err
}
