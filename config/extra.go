package config

import (
	"fmt"
	"sort"
	"strings"
)

// deepgram.extra adds query options hark has no key for. It must not be a way around the
// rest of the configuration, so some keys are refused wherever the value comes from (file,
// environment, remote: the same Validate):
//
//   - options hark sets itself, from its own keys or always: extra never overrides them
//     (an extra model= would bypass deepgram.model's validation; encoding= would break the
//     stream);
//   - options that send audio or results to someone else: callback (the service then
//     posts the transcript to that URL and answers hark with only a request id) and
//     callback_method.
//
// Remotely, deepgram.extra is a sensitive key (remote.allow), like the URL.

// harkSetOptions are the query options hark builds from its own keys (uplink/live.Query)
// or always sends (the raw audio format), and the pre-recorded ones it adds.
var harkSetOptions = map[string]string{
	"model": "deepgram.model", "language": "deepgram.language", "punctuate": "deepgram.punctuate",
	"smart_format": "deepgram.smart_format", "interim_results": "deepgram.interim_results",
	"endpointing": "deepgram.endpointing_ms", "utterance_end_ms": "deepgram.utterance_end_ms",
	"vad_events": "deepgram.vad_events", "diarize": "deepgram.diarize", "numerals": "deepgram.numerals",
	"filler_words": "deepgram.filler_words", "profanity_filter": "deepgram.profanity_filter",
	"keyterm": "deepgram.keyterm", "keywords": "deepgram.keywords", "redact": "deepgram.redact",
	"tag": "deepgram.tag", "encoding": "", "sample_rate": "", "channels": "",
}

// elsewhereOptions send audio or results somewhere other than back to hark.
var elsewhereOptions = map[string]bool{"callback": true, "callback_method": true}

func validateExtra(extra map[string]string) error {
	keys := make([]string, 0, len(extra))
	for k := range extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		lk := strings.ToLower(strings.TrimSpace(k))
		switch own, set := harkSetOptions[lk]; {
		case k == "":
			return fmt.Errorf("an empty option name")
		case lk != k:
			return fmt.Errorf("%q: option names are lower case without spaces", k)
		case elsewhereOptions[lk]:
			return fmt.Errorf("%q is refused: it sends audio or transcripts somewhere other than hark", k)
		case set && own != "":
			return fmt.Errorf("%q is set by hark; use %s", k, own)
		case set:
			return fmt.Errorf("%q is set by hark and cannot be changed (it streams linear16 16 kHz mono and asks for what it needs)", k)
		}
	}
	return nil
}
