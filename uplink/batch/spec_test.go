package batch

import (
	"net/url"
	"strings"
	"testing"

	"github.com/hark-audio/hark/config"
	"github.com/hark-audio/hark/dgemu/spec"
	"github.com/hark-audio/hark/uplink/live"
)

// Issue 11, item 4: every query parameter the batch client can send is in the published
// OpenAPI parameter list of POST /v1/listen, with a value its schema admits: the spooled
// WAV uploads (the live options less the live-only ones) for every Deepgram key hark has.
// (hark transcribe --raw also sends sample_rate and channels, which the service requires
// for headerless audio but openapi.yml does not list: docs/emulator.md.)
func TestPrerecordedOptionsMatchSpec(t *testing.T) {
	params := spec.PrerecordedParams()
	for _, model := range []string{"nova-3", "nova-2"} {
		d := config.Default().Deepgram
		d.Model = model
		d.Language = "en-US"
		d.InterimResults, d.VADEvents, d.Diarize, d.Numerals, d.FillerWords, d.ProfanityFilter = true, true, true, true, true, true
		d.UtteranceEndMS = 1000
		d.Redact = []string{"pci", "numbers"}
		d.Tag = []string{"kitchen"}
		d.Extra = map[string]string{"mip_opt_out": "true"}
		if strings.HasPrefix(model, "nova-3") {
			d.Keyterm = []string{"hark"}
		} else {
			d.Keywords = []string{"hark:2"}
		}
		q := PrerecordedOptions(live.Query(d))
		q.Set("utterances", "true")
		for _, err := range params.Check(q) {
			t.Errorf("%s: %v", model, err)
		}
	}
	// The raw form, less the two parameters the spec omits.
	raw := url.Values{"model": {"nova-3"}, "encoding": {"linear16"}}
	for _, err := range params.Check(raw) {
		t.Error(err)
	}
}
