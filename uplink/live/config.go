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

// Config is what the agent gives an Uplink. Zero values take the defaults below.
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
	// PingInterval is the period of websocket pings (default 2 s, at most KeepAlive's
	// period is used for both). PongWait without a pong or a message means the connection
	// is dead or half-open (default 3 ping periods). This, and the write deadline, is the
	// only liveness check: a service that sends nothing for silence is healthy.
	PingInterval, PongWait time.Duration
	// WriteTimeout is the write deadline of each message (default 5 s).
	WriteTimeout time.Duration
	// IdleClose closes the stream gracefully after this much time without speech
	// (0: keep it open with KeepAlives). It reopens at the next onset.
	IdleClose time.Duration
	// ConnectTimeout bounds the websocket handshake (default 10 s).
	ConnectTimeout time.Duration
	// CloseTimeout bounds a planned close: CloseStream until Metadata and the close frame
	// (default 5 s).
	CloseTimeout time.Duration

	// FinalizeGrace: a segment whose Finalize got no answer is complete after this long on
	// a connection that proved alive after the Finalize (default 1.5 s). It counts from
	// when the service can have heard the Finalize (behind a replayed backlog, at 1.25x
	// real time) and grows to twice the slowest Finalize answer seen on the connection,
	// up to FinalizeGraceMax (default 10 s).
	FinalizeGrace, FinalizeGraceMax time.Duration
	// MaxWait is how long a segment waits for a connection (at its start, or after its
	// connection was lost) before it goes to the spool whole (default 5 s). A segment
	// is not kept waiting when the next attempt is known to come later than that.
	MaxWait time.Duration
	// MaxBacklog bounds the audio sent to a new connection at once, a replay included
	// (default 10 s): the service takes audio at about 1.25x real time, so a longer
	// backlog is quicker and safer through the pre-recorded endpoint (the spool).
	MaxBacklog time.Duration
	// MaxReplays is how many times a segment may be sent again after losing its
	// connection (default 2).
	MaxReplays int
	// MaxSegment splits a segment longer than this, as the gate's max_segment_ms does
	// (default 2 min): it bounds the memory held for one segment and the size of a
	// spooled one.
	MaxSegment time.Duration

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
	// Blocking makes Frame wait while more than BlockAfter of audio is not yet written to
	// an open or opening connection, instead of letting it pile up. For inputs that are
	// not real time (a file read as fast as possible), where the caller can wait; never
	// for a microphone, whose Frame never blocks.
	Blocking   bool
	BlockAfter time.Duration

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
	c.KeepAlive = min(c.KeepAlive, 5*time.Second)
	def(&c.PingInterval, 2*time.Second)
	def(&c.PongWait, 3*min(c.PingInterval, c.KeepAlive))
	def(&c.WriteTimeout, 5*time.Second)
	def(&c.ConnectTimeout, 10*time.Second)
	def(&c.CloseTimeout, 5*time.Second)
	def(&c.FinalizeGrace, 1500*time.Millisecond)
	def(&c.FinalizeGraceMax, 10*time.Second)
	def(&c.MaxWait, 5*time.Second)
	def(&c.MaxBacklog, 10*time.Second)
	if c.MaxReplays <= 0 {
		c.MaxReplays = 2
	}
	def(&c.MaxSegment, 2*time.Minute)
	def(&c.BackoffMin, 500*time.Millisecond)
	def(&c.BackoffMax, 30*time.Second)
	def(&c.RefusedRetry, 2*time.Minute)
	def(&c.RetryAfterMax, 60*time.Second)
	def(&c.StableAfter, 30*time.Second)
	def(&c.BlockAfter, 2*time.Second)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c Config) ledger() ledgerConfig {
	return ledgerConfig{MaxBacklog: c.MaxBacklog, MaxWait: c.MaxWait, MaxReplays: c.MaxReplays,
		Grace: c.FinalizeGrace, GraceMax: c.FinalizeGraceMax, MaxSegment: c.MaxSegment}
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
