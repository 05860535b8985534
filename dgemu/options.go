package dgemu

import (
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// Options are the parsed query options of one request (live or pre-recorded).
type Options struct {
	Model    string // as requested; "" when omitted (the service then uses an old default)
	Language string

	// Encoding is "" when the client declared none: the service then expects a container
	// (the emulator decodes WAV only).
	Encoding   string
	SampleRate int // 0 when not given
	Channels   int // 1 when not given

	Punctuate      bool
	SmartFormat    bool
	InterimResults bool
	VADEvents      bool
	Utterances     bool // pre-recorded only

	// EndpointingMs is the silence before speech_final; -1 when endpointing=false.
	EndpointingMs  int
	UtteranceEndMs int // 0 when not requested

	Keywords []string
	Keyterms []string
	Tags     []string
	Extra    map[string]string // extra=key:value, echoed in metadata

	// Unknown lists query parameters the emulator does not know (ignored unless
	// Config.StrictQuery).
	Unknown []string
}

// queryError is a refusal caused by the query: status, err_code and message.
type queryError struct {
	status int
	code   string
	msg    string
}

func (e *queryError) Error() string { return fmt.Sprintf("%d %s: %s", e.status, e.code, e.msg) }

func badParam(format string, args ...any) *queryError {
	return &queryError{status: 400, code: "INVALID_QUERY_PARAMETER", msg: fmt.Sprintf(format, args...)}
}

// boolParams are the documented boolean options; their values must be true or false.
var boolParams = map[string]bool{
	"punctuate": true, "smart_format": true, "interim_results": true, "vad_events": true,
	"diarize": true, "numerals": true, "filler_words": true, "profanity_filter": true,
	"no_delay": true, "multichannel": true, "utterances": true, "paragraphs": true,
	"detect_language": true, "dictation": true, "measurements": true, "mip_opt_out": true,
	"detect_entities": true, "detect_topics": true, "sentiment": true, "summarize": true,
	"topics": true, "intents": true,
}

// multiParams may repeat; every other known parameter must appear at most once.
var multiParams = map[string]bool{
	"keywords": true, "keyterm": true, "tag": true, "extra": true, "replace": true,
	"search": true, "redact": true,
}

// otherParams are known options the emulator accepts without modelling them.
var otherParams = map[string]bool{
	"model": true, "language": true, "encoding": true, "sample_rate": true, "channels": true,
	"endpointing": true, "utterance_end_ms": true, "version": true, "tier": true,
	"utt_split": true, "callback": true, "callback_method": true, "diarize_version": true,
	"alternatives": true, "custom_topic": true, "custom_topic_mode": true, "custom_intent": true,
	"custom_intent_mode": true,
}

// rawEncodings lists the encodings the service accepts for raw audio. Only the linear
// PCM ones are decoded by the emulator; the others are refused at the handshake with a
// message saying so, rather than silently transcribed as nothing.
var rawEncodings = map[string]bool{
	"linear16": true, "linear32": true, "flac": false, "mulaw": false, "alaw": false,
	"amr-nb": false, "amr-wb": false, "opus": false, "ogg-opus": false, "speex": false,
	"g729": false,
}

// modelInfo is what the service reports for a model.
type modelInfo struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Arch    string `json:"arch"`
	uuid    string
}

// parseOptions validates a query the way the service does at the handshake (or before
// reading a pre-recorded body). live says which endpoint; strict refuses unknown parameters.
func parseOptions(q url.Values, live, strict bool) (*Options, *queryError) {
	o := &Options{Channels: 1, EndpointingMs: 10}
	names := make([]string, 0, len(q))
	for k := range q {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		vs := q[k]
		known := boolParams[k] || multiParams[k] || otherParams[k]
		if !known {
			o.Unknown = append(o.Unknown, k)
			if strict {
				return nil, badParam("unknown query parameter %q", k)
			}
			continue
		}
		if !multiParams[k] && len(vs) > 1 {
			return nil, badParam("query parameter %q given %d times; it takes one value", k, len(vs))
		}
		if boolParams[k] {
			b, err := parseBool(vs[0])
			if err != nil {
				return nil, badParam("%s: %v", k, err)
			}
			switch k {
			case "punctuate":
				o.Punctuate = b
			case "smart_format":
				o.SmartFormat = b
			case "interim_results":
				o.InterimResults = b
			case "vad_events":
				o.VADEvents = b
			case "utterances":
				o.Utterances = b
			}
		}
	}
	get := func(k string) (string, bool) {
		vs, ok := q[k]
		if !ok || len(vs) == 0 {
			return "", false
		}
		return vs[0], true
	}
	if v, ok := get("model"); ok {
		if v == "" {
			return nil, badParam("model must not be empty")
		}
		o.Model = v
	}
	o.Language = "en"
	if v, ok := get("language"); ok {
		o.Language = v
	}
	if qe := checkModelLanguage(o.Model, o.Language); qe != nil {
		return nil, qe
	}
	if v, ok := get("encoding"); ok {
		decodable, known := rawEncodings[strings.ToLower(v)]
		if !known {
			return nil, badParam("encoding %q is not a supported encoding", v)
		}
		if !decodable {
			return nil, badParam("encoding %q is accepted by Deepgram but not emulated by dgemu (use linear16)", v)
		}
		o.Encoding = strings.ToLower(v)
	}
	if v, ok := get("sample_rate"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1000 || n > 768000 {
			return nil, badParam("sample_rate %q is not a valid sample rate", v)
		}
		o.SampleRate = n
	}
	if v, ok := get("channels"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 32 {
			return nil, badParam("channels %q is not a valid channel count", v)
		}
		o.Channels = n
	}
	if o.Encoding != "" && o.SampleRate == 0 {
		return nil, badParam("sample_rate is required when encoding is %s", o.Encoding)
	}
	if v, ok := get("endpointing"); ok {
		switch strings.ToLower(v) {
		case "false":
			o.EndpointingMs = -1
		case "true":
			o.EndpointingMs = 10
		default:
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 60000 {
				return nil, badParam("endpointing must be false or a number of milliseconds, got %q", v)
			}
			o.EndpointingMs = n
		}
	}
	if v, ok := get("utterance_end_ms"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 60000 {
			return nil, badParam("utterance_end_ms must be a number of milliseconds, got %q", v)
		}
		if live && !o.InterimResults {
			return nil, badParam("utterance_end_ms requires interim_results=true")
		}
		o.UtteranceEndMs = n
	}
	o.Keywords = q["keywords"]
	o.Keyterms = q["keyterm"]
	o.Tags = q["tag"]
	arch := ""
	if mi, ok := knownModel(o.Model); ok {
		arch = mi.Arch
	}
	if len(o.Keywords) > 0 && arch == "nova-3" {
		return nil, badParam("keywords is not supported with nova-3 models; use keyterm")
	}
	if len(o.Keyterms) > 0 && arch != "nova-3" {
		return nil, badParam("keyterm is only supported with nova-3 models")
	}
	for _, kv := range q["extra"] {
		k, v, ok := strings.Cut(kv, ":")
		if !ok || k == "" {
			return nil, badParam("extra must be key:value, got %q", kv)
		}
		if o.Extra == nil {
			o.Extra = map[string]string{}
		}
		o.Extra[k] = v
	}
	return o, nil
}

func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("%q is not true or false", s)
}
