package live

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hark-audio/hark/audio"
	"github.com/hark-audio/hark/config"
)

func TestQuery(t *testing.T) {
	d := config.Default().Deepgram
	d.Keyterm = []string{"hark", "Pi"}
	d.Tag = []string{"a", "b"}
	d.Redact = []string{"pci"}
	d.Diarize = true
	d.UtteranceEndMS = 1000
	d.InterimResults = true
	d.Extra = map[string]string{"no_delay": "true", "extra": "room:kitchen"}
	q := Query(d)
	want := map[string][]string{
		"model": {"nova-3"}, "language": {"en"}, "punctuate": {"true"}, "smart_format": {"true"},
		"interim_results": {"true"}, "endpointing": {"300"}, "utterance_end_ms": {"1000"},
		"diarize": {"true"}, "keyterm": {"hark", "Pi"}, "tag": {"a", "b"}, "redact": {"pci"},
		"no_delay": {"true"}, "extra": {"room:kitchen"},
		"encoding": {"linear16"}, "sample_rate": {"16000"}, "channels": {"1"},
	}
	if len(q) != len(want) {
		t.Errorf("query %v", q)
	}
	for k, vs := range want {
		if strings.Join(q[k], ",") != strings.Join(vs, ",") {
			t.Errorf("%s = %v, want %v", k, q[k], vs)
		}
	}
	d.EndpointingMS = 0
	if got := Query(d).Get("endpointing"); got != "false" {
		t.Errorf("endpointing 0 → %q", got)
	}
	// The raw-audio parameters win over anything in the options.
	u, err := streamURL("wss://api.example/v1/listen?x=1", url.Values{"encoding": {"opus"}, "model": {"nova-3"}})
	if err != nil {
		t.Fatal(err)
	}
	pu, _ := url.Parse(u)
	if pq := pu.Query(); pq.Get("encoding") != "linear16" || pq.Get("x") != "1" || pq.Get("model") != "nova-3" || pq.Get("sample_rate") != "16000" {
		t.Errorf("url %s", u)
	}
}

func TestRefusedErrorPermanent(t *testing.T) {
	for st, want := range map[int]bool{400: true, 401: true, 402: true, 403: true, 404: true, 408: false, 429: false, 500: false, 503: false} {
		if got := (&RefusedError{Status: st}).Permanent(); got != want {
			t.Errorf("%d permanent = %v", st, got)
		}
	}
}

var parserSeeds = []string{
	`{"type":"Results","channel_index":[0,1],"duration":1.98,"start":5.99,"is_final":true,"speech_final":true,"from_finalize":false,"channel":{"alternatives":[{"transcript":"Tell me more about this.","confidence":0.9996,"words":[{"word":"tell","start":6.07,"end":6.35,"confidence":0.998,"punctuated_word":"Tell"}]}]},"metadata":{"request_id":"52cc0efe"}}`,
	`{"type":"Results","start":1,"duration":1,"is_final":true,"channel":{"alternatives":[]}}`,
	`{"type":"Results","start":-4,"duration":1e300,"channel":{}}`,
	`{"type":"Results","channel":{"alternatives":[{"transcript":"","words":[{"word":"x","start":3,"end":1,"speaker":2}]}]}}`,
	`{"type":"Results","start":"soon"}`,
	`{"type":"Metadata","transaction_key":"deprecated","request_id":"abc","sha256":"00","created":"2026-08-25T21:11:31.685Z","duration":44.26,"channels":1}`,
	`{"type":"UtteranceEnd","channel":[0,1],"last_word_end":2.395}`,
	`{"type":"SpeechStarted","channel":[0,1],"timestamp":9.54}`,
	`{"type":"Error","description":"bad","message":"worse","variant":"x"}`,
	`{"type":"Weather","sunny":true}`,
	`{"no_type":1}`,
	`[1,2,3]`,
	`"Results"`,
	`{"type":`,
	``,
	"\x00\xff",
}

func TestParseMessage(t *testing.T) {
	m, err := parseMessage([]byte(parserSeeds[0]))
	if err != nil || m.Results == nil || !m.Results.IsFinal || !m.Results.SpeechFinal || m.Results.Transcript != "Tell me more about this." ||
		len(m.Results.Words) != 1 || m.Results.Words[0].Punctuated != "Tell" || m.Results.Start != 5.99 || m.Results.RequestID != "52cc0efe" {
		t.Fatalf("results: %+v %v", m.Results, err)
	}
	if m, err := parseMessage([]byte(parserSeeds[1])); err != nil || m.Results == nil || m.Results.Transcript != "" || m.Results.Words != nil {
		t.Errorf("no alternatives: %+v %v", m, err)
	}
	if m, _ := parseMessage([]byte(parserSeeds[2])); m.Results.Start != 0 || m.Results.Duration != maxStreamSeconds {
		t.Errorf("clamping: %+v", m.Results)
	}
	if m, _ := parseMessage([]byte(parserSeeds[3])); m.Results.Words[0].End != 3 || *m.Results.Words[0].Speaker != 2 {
		t.Errorf("word end before start: %+v", m.Results.Words[0])
	}
	if _, err := parseMessage([]byte(parserSeeds[4])); err == nil {
		t.Error("wrong type accepted")
	}
	if m, err := parseMessage([]byte(parserSeeds[5])); err != nil || m.Metadata == nil || m.Metadata.Duration != 44.26 || m.Metadata.RequestID != "abc" {
		t.Errorf("metadata %+v %v", m, err)
	}
	if m, err := parseMessage([]byte(parserSeeds[6])); err != nil || m.UtteranceEnd == nil || m.UtteranceEnd.LastWordEnd != 2.395 {
		t.Errorf("utterance end %+v %v", m, err)
	}
	if m, err := parseMessage([]byte(parserSeeds[7])); err != nil || m.SpeechStarted == nil || m.SpeechStarted.Timestamp != 9.54 {
		t.Errorf("speech started %+v %v", m, err)
	}
	if m, err := parseMessage([]byte(parserSeeds[8])); err != nil || m.Error == nil || m.Error.Description != "bad" {
		t.Errorf("error %+v %v", m, err)
	}
	if m, err := parseMessage([]byte(parserSeeds[9])); err != nil || m.Type != "Weather" || m.Results != nil {
		t.Errorf("unknown %+v %v", m, err)
	}
	for _, s := range parserSeeds[10:] {
		if _, err := parseMessage([]byte(s)); err == nil {
			t.Errorf("garbage %q accepted", s)
		}
	}
}

func FuzzParseMessage(f *testing.F) {
	for _, s := range parserSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseMessage(b)
		if err != nil {
			return
		}
		if r := m.Results; r != nil {
			if r.Start < 0 || r.Start > maxStreamSeconds || r.Duration < 0 || r.Duration > maxStreamSeconds {
				t.Fatalf("unclamped %+v", r)
			}
			for _, w := range r.Words {
				if w.End < w.Start || w.Start < 0 {
					t.Fatalf("bad word %+v", w)
				}
			}
			// Mapping any parsed time must not panic or overflow.
			s := segment{frames: []audio.Frame{{Time: time.Unix(0, 0)}}, taken: 1}
			_ = s.wall(r.Start+r.Duration, true)
			for _, w := range r.Words {
				_ = s.wall(w.Start, false)
			}
		}
	})
}
