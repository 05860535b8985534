package batch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/hark-audio/hark/transcript"
)

// Response is the pre-recorded endpoint's 200 answer. Word times are seconds from the
// start of the uploaded file.
type Response struct {
	Metadata Metadata `json:"metadata"`
	Results  Results  `json:"results"`
	// Raw is the body as received (what the uploader saves next to a spool entry).
	Raw []byte `json:"-"`
}

// Metadata is the response's metadata object.
type Metadata struct {
	RequestID string          `json:"request_id"`
	SHA256    string          `json:"sha256,omitempty"`
	Created   string          `json:"created,omitempty"`
	Duration  float64         `json:"duration"`
	Channels  int             `json:"channels"`
	Models    []string        `json:"models,omitempty"`
	ModelInfo json.RawMessage `json:"model_info,omitempty"`
}

// Results holds per-channel alternatives and, with utterances=true, utterances.
type Results struct {
	Channels   []Channel   `json:"channels"`
	Utterances []Utterance `json:"utterances,omitempty"`
}

// Channel is one audio channel's result.
type Channel struct {
	Alternatives []Alternative `json:"alternatives"`
}

// Alternative is one transcription hypothesis.
type Alternative struct {
	Transcript string  `json:"transcript"`
	Confidence float64 `json:"confidence"`
	Words      []Word  `json:"words"`
}

// Word is one recognised word, times in seconds from the start of the file.
type Word struct {
	Word           string  `json:"word"`
	Start          float64 `json:"start"`
	End            float64 `json:"end"`
	Confidence     float64 `json:"confidence"`
	PunctuatedWord string  `json:"punctuated_word,omitempty"`
	Speaker        *int    `json:"speaker,omitempty"`
}

// Utterance is an entry of results.utterances.
type Utterance struct {
	Start      float64 `json:"start"`
	End        float64 `json:"end"`
	Confidence float64 `json:"confidence"`
	Channel    int     `json:"channel"`
	Transcript string  `json:"transcript"`
	Words      []Word  `json:"words"`
	ID         string  `json:"id,omitempty"`
}

// maxFileSeconds bounds word times: Deepgram takes files up to 2 GB, far less than a
// day of 16 kHz audio would need, so a larger value is garbage.
const maxFileSeconds = 24 * 3600

// ParseResponse parses and checks a 200 body (see DecodeResponse).
func ParseResponse(b []byte) (*Response, error) {
	return DecodeResponse(bytes.NewReader(b), int64(len(b)))
}

// readError is a failure to read the body (as opposed to a body that is not usable).
type readError struct{ err error }

func (e *readError) Error() string { return e.err.Error() }

// limitedReader is io.LimitedReader that tells "the body ended" from "the limit was hit"
// and keeps read errors apart from decoding errors.
type limitedReader struct {
	r    io.Reader
	left int64
	over bool
	err  error
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		// One byte past the limit tells a body of exactly the limit from a larger one.
		var one [1]byte
		n, err := l.r.Read(one[:])
		if n > 0 {
			l.over = true
			return 0, errTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if err != nil && err != io.EOF {
		l.err = err
	}
	return n, err
}

var errTooLarge = errors.New("larger than the limit")

// DecodeResponse decodes a 200 body from r as it arrives, reading at most limit bytes,
// and checks it. It rejects bodies larger than limit; bodies that are not a
// transcription response: no results, an empty channel list or a channel without
// alternatives (an unusable answer, not an empty transcript), a callback's bare
// {"request_id"}; and word times that are not finite, negative, reversed or absurdly
// large, so nothing downstream turns garbage into wall-clock times.
func DecodeResponse(body io.Reader, limit int64) (*Response, error) {
	lr := &limitedReader{r: body, left: limit}
	var probe struct {
		Response
		RequestID *string `json:"request_id"` // a callback's acknowledgement
	}
	dec := json.NewDecoder(lr)
	if err := dec.Decode(&probe); err != nil {
		switch {
		case lr.over:
			return nil, fmt.Errorf("parse transcription response: larger than %d bytes", limit)
		case lr.err != nil:
			return nil, &readError{lr.err}
		}
		return nil, fmt.Errorf("parse transcription response: %w", err)
	}
	r := probe.Response
	if r.Results.Channels == nil {
		if probe.RequestID != nil && r.Metadata.RequestID == "" {
			return nil, errors.New("parse transcription response: only a request_id, the answer to a callback request (the transcript went to the callback URL)")
		}
		return nil, errors.New("parse transcription response: no results.channels")
	}
	if len(r.Results.Channels) == 0 {
		return nil, errors.New("parse transcription response: results.channels is empty")
	}
	if len(r.Results.Channels[0].Alternatives) == 0 {
		return nil, errors.New("parse transcription response: the first channel has no alternatives")
	}
	for _, ch := range r.Results.Channels {
		for _, alt := range ch.Alternatives {
			for _, w := range alt.Words {
				if !(w.Start >= 0 && w.End >= w.Start && w.End <= maxFileSeconds) {
					return nil, fmt.Errorf("parse transcription response: word %q has times %v..%v", w.Word, w.Start, w.End)
				}
			}
		}
	}
	if math.IsNaN(r.Metadata.Duration) || r.Metadata.Duration < 0 {
		return nil, errors.New("parse transcription response: bad metadata.duration")
	}
	return &r, nil
}

// Best returns the first alternative of the first channel, or nil if there is none.
func (r *Response) Best() *Alternative {
	if len(r.Results.Channels) == 0 || len(r.Results.Channels[0].Alternatives) == 0 {
		return nil
	}
	return &r.Results.Channels[0].Alternatives[0]
}

// Transcript is the best alternative's transcript ("" if there is none).
func (r *Response) Transcript() string {
	if a := r.Best(); a != nil {
		return strings.TrimSpace(a.Transcript)
	}
	return ""
}

// ToUtterance maps the response onto one published utterance whose times are capture
// wall-clock: start is the capture time of the file's first sample, dur the file's audio
// length. The utterance spans its words when there are any, else the whole file.
func (r *Response) ToUtterance(start time.Time, dur time.Duration, deviceID string) transcript.Utterance {
	u := transcript.Utterance{Source: transcript.SourceSpool, RequestID: r.Metadata.RequestID,
		DeviceID: deviceID, Start: start, End: start.Add(dur)}
	a := r.Best()
	if a == nil {
		return u
	}
	u.Text = strings.TrimSpace(a.Transcript)
	u.Confidence = a.Confidence
	at := func(sec float64) time.Time { return start.Add(time.Duration(math.Round(sec * 1e9))) }
	for _, w := range a.Words {
		u.Words = append(u.Words, transcript.Word{Word: w.Word, Punctuated: w.PunctuatedWord,
			Start: at(w.Start), End: at(w.End), Confidence: w.Confidence, Speaker: w.Speaker})
	}
	if len(a.Words) > 0 {
		u.Start = u.Words[0].Start
		u.End = u.Words[len(u.Words)-1].End
	}
	return u
}

// APIError is a refusal from the service (any non-2xx answer), parsed defensively:
// Deepgram uses err_code/err_msg, some 5xx use error_code, and proxies send HTML.
type APIError struct {
	Status     int
	Code       string // err_code or error_code
	Message    string // err_msg, message, or the dg-error header
	RequestID  string // dg-request-id header or body request_id
	RetryAfter time.Duration
	Attempts   int
	// Body is the raw body (bounded), kept to store next to a moved-aside entry.
	Body []byte
}

func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = "(no message)"
	}
	s := fmt.Sprintf("deepgram answered %d", e.Status)
	if e.Code != "" {
		s += " " + e.Code
	}
	s += ": " + msg
	if e.RequestID != "" {
		s += " (request_id " + e.RequestID + ")"
	}
	if e.Attempts > 1 {
		s += fmt.Sprintf(" after %d attempts", e.Attempts)
	}
	return s
}
