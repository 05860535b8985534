package live

import (
	"slices"
	"strings"
	"testing"

	"github.com/hark-audio/hark/config"
	"github.com/hark-audio/hark/dgemu/spec"
)

// specOmits are live options the service takes that the published AsyncAPI parameter list
// lacks (docs/emulator.md, "Where the published spec and the service differ").
var specOmits = map[string]string{
	"filler_words": "documented for streaming on Deepgram's Filler Words page; absent from asyncapi.yml",
}

// fullDeepgram sets every Deepgram option hark has a key for.
func fullDeepgram(model string) config.Deepgram {
	d := config.Default().Deepgram
	d.Model = model
	d.Language = "en-US"
	d.InterimResults, d.VADEvents, d.Diarize, d.Numerals, d.FillerWords, d.ProfanityFilter = true, true, true, true, true, true
	d.UtteranceEndMS = 1000
	d.Redact = []string{"pci"}
	d.Tag = []string{"kitchen", "pi"}
	d.Extra = map[string]string{"mip_opt_out": "true"}
	if strings.HasPrefix(model, "nova-3") {
		d.Keyterm = []string{"hark", "Raspberry Pi"}
	} else {
		d.Keywords = []string{"hark:2"}
	}
	return d
}

// Issue 11, item 4: every query parameter hark can build for the live stream is in the
// published AsyncAPI parameter list with a value its schema admits.
func TestQueryMatchesSpec(t *testing.T) {
	params := spec.LiveParams()
	for _, model := range []string{"nova-3", "nova-2"} {
		for _, d := range []config.Deepgram{fullDeepgram(model), config.Default().Deepgram} {
			if d.Model == "" {
				continue
			}
			q := Query(d)
			for k := range specOmits {
				if !slices.Contains(params.Names(), k) {
					q.Del(k)
				}
			}
			for _, err := range params.Check(q) {
				t.Errorf("%s: %v", model, err)
			}
		}
	}
	for k, why := range specOmits {
		if slices.Contains(params.Names(), k) {
			t.Errorf("%s is in the spec now (%s was the reason to excuse it): drop it from specOmits", k, why)
		}
	}
}

// Item 8: deepgram.extra never replaces an option hark sets (config validation refuses
// such keys; Query does not let one through either).
func TestQueryExtraNeverOverrides(t *testing.T) {
	d := config.Default().Deepgram
	d.Extra = map[string]string{"model": "nova-2", "encoding": "mulaw", "mip_opt_out": "true"}
	q := Query(d)
	if q.Get("model") != "nova-3" || q.Get("encoding") != "linear16" || q.Get("mip_opt_out") != "true" {
		t.Fatalf("query %s", q.Encode())
	}
	if got := q["model"]; len(got) != 1 {
		t.Fatalf("model given %d times", len(got))
	}
}
