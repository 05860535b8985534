package live

import (
	"log/slog"
	"net/url"
	"sort"
	"strconv"
	"time"

	"github.com/hark-audio/hark/audio"
	"github.com/hark-audio/hark/config"
)

// Config is what the agent gives an Uplink. Zero durations take the defaults below.
type Config struct {
	// URL is the live endpoint, e.g. wss://api.deepgram.com/v1/listen. Options are added to
	// its query.
	URL string
	// APIKey is sent as "Authorization: Token <key>". It never reaches a log or an error.
	APIKey string
	// TokenFile, if set, holds a short-lived JWT sent as "Authorization: Bearer <JWT>"
	// instead of the API key, read afresh for every connection (uplink.Authorization).
	TokenFile string
	// Options are the query options (see Query). The raw-audio parameters
	// encoding=linear16, sample_rate=16000, channels=1 are always enforced on top.
	Options url.Values

	// KeepAlive is the longest the writer stays silent on an open stream (default 4 s,
	// capped at 5 s: the service closes after about 10 s of nothing).
	KeepAlive time.Duration
	// IdleClose closes the stream gracefully after this much time without speech
	// (0: keep it open with KeepAlives). It reopens at the next onset.
	IdleClose time.Duration
	// ConnectTimeout bounds the websocket handshake (default 10 s).
	ConnectTimeout time.Duration
	// ResultTimeout: audio sent and nothing at all received for this long means the
	// connection is dead (default 15 s).
	ResultTimeout time.Duration
	// FinalizeTimeout is how long to wait for the answer to the Finalize sent at a segment's
	// end before publishing the finals received so far (default 2 s).
	FinalizeTimeout time.Duration
	// CloseTimeout bounds a graceful end: CloseStream until Metadata and the close frame
	// (default 5 s).
	CloseTimeout time.Duration
	// WriteTimeout is the write deadline of each message (default 5 s).
	WriteTimeout time.Duration
	// PingInterval is the period of websocket pings, which detect a half-open TCP
	// connection (default: KeepAlive). A read deadline of 3 periods is extended by every
	// pong and every message.
	PingInterval time.Duration

	// BackoffMin and BackoffMax bound the exponential, jittered reconnect delay after
	// transient failures (defaults 500 ms and 30 s).
	BackoffMin, BackoffMax time.Duration
	// RefusedRetry is the delay after the service refused the handshake for configuration or
	// account reasons (400/401/402/403 and other 4xx); it doubles up to 4x (default 2 min).
	RefusedRetry time.Duration
	// RetryAfterMax caps a 429's Retry-After (default 60 s).
	RetryAfterMax time.Duration
	// StableAfter resets the backoff once a connection stayed up this long (default 30 s);
	// the first final result resets it too.
	StableAfter time.Duration
	// MaxBacklog bounds the audio queued while a connection is being opened (pre-roll plus
	// connection time; default 10 s). Beyond it, or when the next attempt is further away
	// than that, a segment is not streamed: it goes to Unconfirmed (the spool) when it ends.
	MaxBacklog time.Duration
	// MaxUnconfirmed splits a segment that cannot be streamed into Unconfirmed pieces of at
	// most this length (default 2 min), so memory stays bounded.
	MaxUnconfirmed time.Duration
	// WriteQueue is the writer's queue length in messages (default 100, 10 s of audio). A
	// full queue means the service stopped reading: the connection is treated as dead.
	WriteQueue int
	// InputQueue bounds the frames waiting for the uplink's goroutine (default 600, 60 s).
	// When full, frames are dropped and counted (unless Blocking); segment starts and ends
	// are never dropped.
	InputQueue int
	// Blocking makes Frame wait for room in a full input queue instead of dropping the
	// frame. For inputs that are not real time (a file read as fast as possible), where the
	// caller can wait and dropping would lose speech; never for a microphone.
	Blocking bool

	// Interim delivers interim results to Handler.Interim (the stream must be opened with
	// interim_results=true for any to arrive).
	Interim bool
	// Logger receives the uplink's logs; nil discards them.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.KeepAlive, 4*time.Second)
	if c.KeepAlive > 5*time.Second {
		c.KeepAlive = 5 * time.Second
	}
	def(&c.ConnectTimeout, 10*time.Second)
	def(&c.ResultTimeout, 15*time.Second)
	def(&c.FinalizeTimeout, 2*time.Second)
	def(&c.CloseTimeout, 5*time.Second)
	def(&c.WriteTimeout, 5*time.Second)
	def(&c.PingInterval, c.KeepAlive)
	def(&c.BackoffMin, 500*time.Millisecond)
	def(&c.BackoffMax, 30*time.Second)
	def(&c.RefusedRetry, 2*time.Minute)
	def(&c.RetryAfterMax, 60*time.Second)
	def(&c.StableAfter, 30*time.Second)
	def(&c.MaxBacklog, 10*time.Second)
	def(&c.MaxUnconfirmed, 2*time.Minute)
	if c.WriteQueue <= 0 {
		c.WriteQueue = 100
	}
	if c.InputQueue <= 0 {
		c.InputQueue = 600
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// rawAudio are the parameters every stream carries: hark always sends headerless linear16,
// 16 kHz mono. Without encoding the service would sniff a container header that a
// reconnected stream never has.
var rawAudio = [][2]string{
	{"encoding", "linear16"},
	{"sample_rate", strconv.Itoa(audio.SampleRate)},
	{"channels", "1"},
}

// Query builds the live query options from the configuration, raw-audio parameters included.
func Query(d config.Deepgram) url.Values {
	v := url.Values{}
	set := func(k, val string) {
		if val != "" {
			v.Set(k, val)
		}
	}
	flag := func(k string, on bool) {
		if on {
			v.Set(k, "true")
		}
	}
	set("model", d.Model)
	set("language", d.Language)
	v.Set("punctuate", strconv.FormatBool(d.Punctuate))
	v.Set("smart_format", strconv.FormatBool(d.SmartFormat))
	v.Set("interim_results", strconv.FormatBool(d.InterimResults))
	if d.EndpointingMS > 0 {
		v.Set("endpointing", strconv.Itoa(d.EndpointingMS))
	} else {
		v.Set("endpointing", "false")
	}
	if d.UtteranceEndMS > 0 {
		v.Set("utterance_end_ms", strconv.Itoa(d.UtteranceEndMS))
	}
	flag("vad_events", d.VADEvents)
	flag("diarize", d.Diarize)
	flag("numerals", d.Numerals)
	flag("filler_words", d.FillerWords)
	flag("profanity_filter", d.ProfanityFilter)
	for _, m := range []struct {
		k  string
		vs []string
	}{{"keyterm", d.Keyterm}, {"keywords", d.Keywords}, {"redact", d.Redact}, {"tag", d.Tag}} {
		for _, s := range m.vs {
			v.Add(m.k, s)
		}
	}
	keys := make([]string, 0, len(d.Extra))
	for k := range d.Extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		// extra adds options; it never replaces one hark sets (config validation refuses
		// those, and parameters that send audio or results elsewhere, already).
		if k != "" && !v.Has(k) {
			v.Set(k, d.Extra[k])
		}
	}
	for _, kv := range rawAudio {
		v.Set(kv[0], kv[1])
	}
	return v
}

// streamURL joins the endpoint and the options, enforcing the raw-audio parameters.
func streamURL(base string, opts url.Values) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	q := u.Query()
	for k, vs := range opts {
		q[k] = append([]string(nil), vs...)
	}
	for _, kv := range rawAudio {
		q.Set(kv[0], kv[1])
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}
