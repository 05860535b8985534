package live

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/hark-audio/hark/internal/redact"
)

// Server message kinds, discriminated by the JSON "type" field.
const (
	msgResults       = "Results"
	msgMetadata      = "Metadata"
	msgUtteranceEnd  = "UtteranceEnd"
	msgSpeechStarted = "SpeechStarted"
	msgError         = "Error"
)

// serverMsg is one parsed text frame from the service. Exactly one of the pointers is set
// for a known type; Type alone is set for an unknown one.
type serverMsg struct {
	Type          string
	Results       *results
	Metadata      *metadata
	UtteranceEnd  *utteranceEnd
	SpeechStarted *speechStarted
	Error         *errorMsg
}

type results struct {
	Start, Duration float64 // stream seconds of the audio this result covers
	IsFinal         bool
	SpeechFinal     bool
	FromFinalize    bool
	Transcript      string
	Confidence      float64
	Words           []word
	RequestID       string
}

type word struct {
	Word       string
	Punctuated string
	Start, End float64 // stream seconds
	Confidence float64
	Speaker    *int
}

type metadata struct {
	RequestID string
	Duration  float64 // seconds of audio the service received
}

type utteranceEnd struct{ LastWordEnd float64 }

type speechStarted struct{ Timestamp float64 }

type errorMsg struct{ Description, Message, Variant string }

// Wire shapes. Numbers are decoded as json.Number-free float64; fields the service may omit
// are simply zero. "channel" is an object in Results but an array elsewhere, hence one
// struct per type.
type wireType struct {
	Type string `json:"type"`
}

type wireResults struct {
	Start        float64 `json:"start"`
	Duration     float64 `json:"duration"`
	IsFinal      bool    `json:"is_final"`
	SpeechFinal  bool    `json:"speech_final"`
	FromFinalize bool    `json:"from_finalize"`
	Channel      struct {
		Alternatives []struct {
			Transcript string  `json:"transcript"`
			Confidence float64 `json:"confidence"`
			Words      []struct {
				Word           string  `json:"word"`
				PunctuatedWord string  `json:"punctuated_word"`
				Start          float64 `json:"start"`
				End            float64 `json:"end"`
				Confidence     float64 `json:"confidence"`
				Speaker        *int    `json:"speaker"`
			} `json:"words"`
		} `json:"alternatives"`
	} `json:"channel"`
	Metadata struct {
		RequestID string `json:"request_id"`
	} `json:"metadata"`
}

type wireMetadata struct {
	RequestID string  `json:"request_id"`
	Duration  float64 `json:"duration"`
}

type wireUtteranceEnd struct {
	LastWordEnd float64 `json:"last_word_end"`
}

type wireSpeechStarted struct {
	Timestamp float64 `json:"timestamp"`
}

type wireError struct {
	Description string `json:"description"`
	Message     string `json:"message"`
	Variant     string `json:"variant"`
}

// maxStreamSeconds bounds any time the service reports; anything outside [0, max] is
// clamped so a garbage value cannot overflow a time.Duration later.
const maxStreamSeconds = 7 * 24 * 3600

func clampSec(s float64) float64 {
	switch {
	case math.IsNaN(s) || s < 0:
		return 0
	case s > maxStreamSeconds:
		return maxStreamSeconds
	}
	return s
}

var errNoType = errors.New("message has no type")

// parseMessage decodes one text frame. It never panics; an error means the frame is
// malformed (the caller logs it and carries on). An unknown type is not an error.
func parseMessage(b []byte) (serverMsg, error) {
	var t wireType
	if err := json.Unmarshal(b, &t); err != nil {
		return serverMsg{}, fmt.Errorf("decode server message: %w", err)
	}
	m := serverMsg{Type: t.Type}
	switch t.Type {
	case "":
		return m, errNoType
	case msgResults:
		var w wireResults
		if err := json.Unmarshal(b, &w); err != nil {
			return m, fmt.Errorf("decode Results: %w", err)
		}
		r := &results{
			Start: clampSec(w.Start), Duration: clampSec(w.Duration),
			IsFinal: w.IsFinal, SpeechFinal: w.SpeechFinal, FromFinalize: w.FromFinalize,
			RequestID: w.Metadata.RequestID,
		}
		// alternatives should hold one entry; guard against none.
		if alts := w.Channel.Alternatives; len(alts) > 0 {
			a := alts[0]
			r.Transcript, r.Confidence = a.Transcript, a.Confidence
			for _, x := range a.Words {
				wd := word{Word: x.Word, Punctuated: x.PunctuatedWord, Start: clampSec(x.Start),
					End: clampSec(x.End), Confidence: x.Confidence, Speaker: x.Speaker}
				if wd.End < wd.Start {
					wd.End = wd.Start
				}
				r.Words = append(r.Words, wd)
			}
		}
		m.Results = r
	case msgMetadata:
		var w wireMetadata
		if err := json.Unmarshal(b, &w); err != nil {
			return m, fmt.Errorf("decode Metadata: %w", err)
		}
		m.Metadata = &metadata{RequestID: w.RequestID, Duration: clampSec(w.Duration)}
	case msgUtteranceEnd:
		var w wireUtteranceEnd
		if err := json.Unmarshal(b, &w); err != nil {
			return m, fmt.Errorf("decode UtteranceEnd: %w", err)
		}
		m.UtteranceEnd = &utteranceEnd{LastWordEnd: clampSec(w.LastWordEnd)}
	case msgSpeechStarted:
		var w wireSpeechStarted
		if err := json.Unmarshal(b, &w); err != nil {
			return m, fmt.Errorf("decode SpeechStarted: %w", err)
		}
		m.SpeechStarted = &speechStarted{Timestamp: clampSec(w.Timestamp)}
	case msgError:
		var w wireError
		if err := json.Unmarshal(b, &w); err != nil {
			return m, fmt.Errorf("decode Error: %w", err)
		}
		// Server text: logged and published as an event, so scrubbed like every error body.
		m.Error = &errorMsg{Description: redact.Text(w.Description, 300), Message: redact.Text(w.Message, 300),
			Variant: redact.Text(w.Variant, 100)}
	}
	return m, nil
}

// refusal is the parsed body of a refused handshake. Deepgram uses err_code/err_msg, but
// some responses (503) use error_code; both are accepted.
