// Package batch transcribes audio files through Deepgram's pre-recorded endpoint
// (POST /v1/listen) and drains hark's spool with it, so speech that missed the live
// stream is still transcribed and published, once, with its original capture times.
//
// Client wraps go-retryablehttp with what its defaults lack: the body is re-opened from
// the file for every attempt with an explicit Content-Length (never read into memory),
// backoff is exponential with jitter, Retry-After is honoured but capped, 408 is retried
// and 4xx refusals are not, the per-attempt timeout is sized to the file, the last error
// response is kept and classified (APIError, Classify), and its logging goes to our slog
// logger at Debug (we log classified outcomes ourselves, once). The API key travels only
// in the Authorization header; URLs in logs and errors carry options, never the key.
//
// Uploader drains a spool.Spool: uploads in capture order, at most Concurrency at once,
// publishes in capture order, and deletes an entry only after Publish returned nil. The
// response is saved next to the entry before publishing, so a crash after a successful
// upload costs a publish, not a second upload. See docs/spool.md for the failure windows
// that remain.
//
// Wiring (the agent):
//
//	c := batch.NewClient(batch.ClientConfig{URL: cfg.Deepgram.PrerecordedURL, APIKey: key, Logger: log})
//	u := batch.NewUploader(sp, c, batch.UploaderConfig{Concurrency: cfg.Spool.Concurrency, Logger: log, Publish: pub})
//	go u.Run(ctx)   // returns ctx.Err() when ctx is done, after in-flight work has stopped
//	u.Kick()        // live connectivity came back: retry now
package batch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/hashicorp/go-retryablehttp"

	"github.com/hark-audio/hark/audio"
	"github.com/hark-audio/hark/internal/backoff"
	"github.com/hark-audio/hark/internal/redact"
	"github.com/hark-audio/hark/uplink"
)

// ClientConfig configures a Client. Zero values take the defaults noted.
type ClientConfig struct {
	// URL is the pre-recorded endpoint, e.g. https://api.deepgram.com/v1/listen.
	URL string
	// APIKey is sent as "Authorization: Token <key>" and nowhere else.
	APIKey string
	// TokenFile, if set, holds a short-lived JWT sent as "Authorization: Bearer <JWT>"
	// instead of the API key; it is read afresh for every call (see uplink.Authorization).
	TokenFile string
	// Options are default query options; per-call options override them key by key.
	Options url.Values
	Logger  *slog.Logger
	// Transport is the HTTP transport (default: a pooled go-cleanhttp transport).
	Transport http.RoundTripper
	// RetryMax is how many times one call retries a transient failure (default 3).
	RetryMax int
	// RetryWaitMin and RetryWaitMax bound the jittered exponential backoff between
	// attempts (default 1 s and 30 s).
	RetryWaitMin, RetryWaitMax time.Duration
	// MaxRetryAfter caps a server's Retry-After (default 60 s): a misconfigured proxy
	// must not park uploads for hours.
	MaxRetryAfter time.Duration
	// TimeoutBase, AssumedBandwidth (bytes/s) and ProcessingFactor size each attempt's
	// timeout: base + size/bandwidth + audio duration × factor (defaults 30 s,
	// 16 KiB/s, 0.5). A fixed timeout either kills large uploads on a slow uplink or
	// waits minutes on a dead connection for a small one.
	TimeoutBase      time.Duration
	AssumedBandwidth int64
	ProcessingFactor float64
	// UserAgent is sent as User-Agent (default "hark").
	UserAgent string
}

// Client calls the pre-recorded endpoint. It is safe for concurrent use.
type Client struct {
	cfg  ClientConfig
	log  *slog.Logger
	rlog retryablehttp.LeveledLogger
}

// NewClient returns a client with defaults filled in.
func NewClient(cfg ClientConfig) *Client {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Transport == nil {
		cfg.Transport = cleanhttp.DefaultPooledTransport()
	}
	if cfg.RetryMax == 0 {
		cfg.RetryMax = 3
	}
	if cfg.RetryMax < 0 {
		cfg.RetryMax = 0
	}
	if cfg.RetryWaitMin <= 0 {
		cfg.RetryWaitMin = time.Second
	}
	if cfg.RetryWaitMax <= 0 {
		cfg.RetryWaitMax = 30 * time.Second
	}
	if cfg.MaxRetryAfter <= 0 {
		cfg.MaxRetryAfter = 60 * time.Second
	}
	if cfg.TimeoutBase <= 0 {
		cfg.TimeoutBase = 30 * time.Second
	}
	if cfg.AssumedBandwidth <= 0 {
		cfg.AssumedBandwidth = 16 << 10
	}
	if cfg.ProcessingFactor <= 0 {
		cfg.ProcessingFactor = 0.5
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "hark"
	}
	log := cfg.Logger.With("component", "batch")
	return &Client{cfg: cfg, log: log, rlog: leveledLogger{log.With("lib", "retryablehttp")}}
}

// CloseIdleConnections closes idle keep-alive connections of the client's transport
// (at shutdown, and in tests before checking for leaked goroutines).
func (c *Client) CloseIdleConnections() {
	if ci, ok := c.cfg.Transport.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// leveledLogger adapts slog to retryablehttp. Everything goes to Debug: the library
// logs every failed attempt at Error, but a retried attempt is an expected condition;
// the Client and Uploader log the classified outcome.
type leveledLogger struct{ l *slog.Logger }

func (a leveledLogger) Error(msg string, kv ...any) { a.l.Debug(msg, scrubKV(kv)...) }
func (a leveledLogger) Info(msg string, kv ...any)  { a.l.Debug(msg, scrubKV(kv)...) }
func (a leveledLogger) Debug(msg string, kv ...any) { a.l.Debug(msg, scrubKV(kv)...) }
func (a leveledLogger) Warn(msg string, kv ...any)  { a.l.Debug(msg, scrubKV(kv)...) }

// scrubKV hides credentials in the library's log values: it logs request URLs (which may
// carry an endpoint's token= query) and errors quoting them.
func scrubKV(kv []any) []any {
	out := make([]any, len(kv))
	for i, v := range kv {
		switch x := v.(type) {
		case string:
			out[i] = redact.Text(x, 1000)
		case error:
			out[i] = redact.Text(x.Error(), 1000)
		case fmt.Stringer:
			out[i] = redact.Text(x.String(), 1000)
		default:
			out[i] = v
		}
	}
	return out
}

// NetError is a failure to get any HTTP answer (connection refused, reset, DNS,
// timeout) after all retries.
type NetError struct {
	Err      error
	Attempts int
	Timeout  bool
	msg      string // Err's text through redact.Text: it quotes the URL
}

func (e *NetError) Error() string {
	what := "network error"
	if e.Timeout {
		what = "timed out"
	}
	msg := e.msg
	if msg == "" {
		msg = redact.Text(e.Err.Error(), 500)
	}
	return fmt.Sprintf("deepgram upload %s after %d attempt(s): %s", what, e.Attempts, msg)
}

func (e *NetError) Unwrap() error { return e.Err }

// ErrBadResponse is wrapped when a 200 answer is not a usable transcription response (not
// JSON, too large, no channels, only a callback's request_id): a proxy or service fault,
// or an option that sends the results elsewhere. Retrying it costs an upload each time,
// so the uploader counts such answers per entry and moves the entry aside after a few.
var ErrBadResponse = errors.New("unusable transcription response")

// Class says what a failed call means for the entry and for the uploader.
type Class int

const (
	// ClassTransient: network, timeout, 408, 429, 5xx. Retry later with backoff.
	ClassTransient Class = iota
	// ClassAuth: 401, 402, 403. An account or key problem: pause, retry slowly, keep
	// everything.
	ClassAuth
	// ClassConfig: the request is wrong for every file (400 INVALID_QUERY_PARAMETER, a
	// wrong URL giving 404/405, 411, other 4xx): pause like ClassAuth.
	ClassConfig
	// ClassBadAudio: this file will never be accepted (a 400 saying the audio cannot be
	// processed, 413, 415): move it aside.
	ClassBadAudio
	// ClassUnusable: a 2xx answer that is not a usable transcription (ErrBadResponse).
	// Retried with backoff per entry; moved aside after a few.
	ClassUnusable
	// ClassLocal: the file could not be read locally.
	ClassLocal
	// ClassCanceled: the context ended.
	ClassCanceled
)

func (c Class) String() string {
	switch c {
	case ClassTransient:
		return "transient"
	case ClassAuth:
		return "auth"
	case ClassConfig:
		return "config"
	case ClassBadAudio:
		return "bad_audio"
	case ClassUnusable:
		return "unusable"
	case ClassLocal:
		return "local"
	case ClassCanceled:
		return "canceled"
	}
	return "unknown"
}

// Classify maps an error from TranscribeFile to a Class.
func Classify(err error) Class {
	var ae *APIError
	var ne *NetError
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded) && !errors.As(err, &ne):
		return ClassCanceled
	case errors.As(err, &ae):
		switch s := ae.Status; {
		case s == 401 || s == 402 || s == 403:
			return ClassAuth
		case s == 400 && unreadableAudio(ae):
			return ClassBadAudio
		case s == 413 || s == 415:
			return ClassBadAudio
		case s == 408 || s == 429 || s >= 500 && s != 501:
			return ClassTransient
		default:
			return ClassConfig
		}
	case errors.Is(err, ErrBadResponse):
		return ClassUnusable
	case errors.As(err, &ne):
		return ClassTransient
	}
	return ClassLocal
}

// unreadableAudio: a 400 is about the file only when the service says it could not
// process the audio ("failed to process audio: corrupt or unsupported data"). Every other
// 400 (INVALID_QUERY_PARAMETER, "Bad Request: No such model/language/tier combination
// found", an unknown option...) is about the request, fails for every file alike, and
// must pause uploads rather than send the spool to failed/.
func unreadableAudio(ae *APIError) bool {
	m := strings.ToLower(ae.Message)
	return strings.Contains(m, "failed to process audio") || strings.Contains(m, "corrupt or unsupported data")
}

// IsTimeout reports whether err is a timeout (of an attempt, not of the caller's context).
func IsTimeout(err error) bool {
	var ne *NetError
	return errors.As(err, &ne) && ne.Timeout
}

// liveOnly are live-streaming options that make no sense (or break container sniffing)
// on the pre-recorded endpoint.
var liveOnly = []string{"encoding", "sample_rate", "channels", "interim_results", "endpointing",
	"utterance_end_ms", "vad_events", "no_delay"}

// PrerecordedOptions returns a copy of live-stream options without the live-only ones,
// for uploading a WAV file.
func PrerecordedOptions(live url.Values) url.Values {
	out := url.Values{}
	for k, v := range live {
		out[k] = append([]string(nil), v...)
	}
	for _, k := range liveOnly {
		out.Del(k)
	}
	return out
}

// A 200 body is bounded by the audio it answers for: a transcript with words, utterances
// and punctuation runs under 1 KiB per second of audio, so 16 KiB per second (plus a base)
// is ample, and a proxy or service sending a body of hundreds of megabytes cannot take the
// memory of a small device (Concurrency uploads at once). maxResponseBytes caps it.
const (
	maxResponseBytes      = 64 << 20
	baseResponseBytes     = 256 << 10
	responseBytesPerAudio = 16 << 10 // per second of audio
)

func responseLimit(dur time.Duration) int64 {
	return min(int64(maxResponseBytes), baseResponseBytes+int64(dur.Seconds()*responseBytesPerAudio))
}

// maxErrorBytes bounds an error body we keep.
const maxErrorBytes = 64 << 10

// TranscribeFile uploads the file at path and returns the parsed response (Raw holds
// the body). A WAV file (RIFF/WAVE) is sent as audio/wav, another recognised container
// (FLAC, MP3, Ogg, MP4/M4A, WebM...) as is with its media type, anything else as
// application/octet-stream, which needs encoding and sample_rate in opts. progress, if
// not nil, is called as the body is sent (restarting from 0 on a retry).
func (c *Client) TranscribeFile(ctx context.Context, path string, opts url.Values, progress func(sent, total int64)) (*Response, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open audio file: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open audio file: %w", err)
	}
	size := fi.Size()
	if !fi.Mode().IsRegular() || size == 0 {
		f.Close()
		return nil, fmt.Errorf("audio file %s: not a non-empty regular file", path)
	}
	q := url.Values{}
	for k, v := range c.cfg.Options {
		q[k] = v
	}
	for k, v := range opts {
		q[k] = v
	}
	ctype, dur := sniff(f, size, q)
	f.Close()

	u, err := url.Parse(c.cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("pre-recorded URL: %s", redact.URL(c.cfg.URL))
	}
	// The endpoint's own query (a proxy's parameters) is kept; options add to it.
	if len(q) > 0 {
		base := u.Query()
		for k, v := range q {
			base[k] = v
		}
		u.RawQuery = base.Encode()
	}
	authz, secret, err := uplink.Authorization(c.cfg.APIKey, c.cfg.TokenFile)
	if err != nil {
		return nil, err
	}
	body := func() (io.Reader, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		return &progressReader{f: f, total: size, fn: progress}, nil
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, u.String(), retryablehttp.ReaderFunc(body))
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.ContentLength = size
	req.Header.Set("Authorization", authz)
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.cfg.UserAgent)

	timeout := c.timeout(size, dur)
	attempts := 0
	rc := &retryablehttp.Client{
		HTTPClient:   &http.Client{Transport: c.cfg.Transport, Timeout: timeout},
		Logger:       c.rlog,
		RetryWaitMin: c.cfg.RetryWaitMin,
		RetryWaitMax: c.cfg.RetryWaitMax,
		RetryMax:     c.cfg.RetryMax,
		CheckRetry:   checkRetry,
		Backoff:      c.backoff,
		// Keep the last response (retryablehttp would drain and drop it) so we can
		// classify the refusal and keep its body.
		ErrorHandler: func(resp *http.Response, err error, n int) (*http.Response, error) {
			attempts = n
			if resp != nil {
				return resp, nil
			}
			return nil, err
		},
		RequestLogHook: func(_ retryablehttp.Logger, _ *http.Request, i int) { attempts = i + 1 },
	}
	c.log.Debug("uploading", "bytes", size, "audio", dur, "timeout", timeout, "content_type", ctype)
	resp, err := rc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("upload: %w", ctx.Err())
		}
		return nil, &NetError{Err: err, Attempts: attempts, Timeout: isTimeout(err), msg: redact.Text(err.Error(), 500, secret)}
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBytes))
		// Server text is scrubbed before it goes anywhere: a body that echoes the
		// Authorization header must not reach a log, the health topic or failed/.
		ae := &APIError{Status: resp.StatusCode, Attempts: attempts,
			Body:      []byte(redact.Text(string(b), maxErrorBytes, secret)),
			RequestID: redact.Text(resp.Header.Get("dg-request-id"), 100, secret)}
		code, msg, rid := uplink.ParseErrorBody(b, secret)
		ae.Code, ae.Message = code, msg
		if ae.Message == "" {
			ae.Message = redact.Text(resp.Header.Get("dg-error"), 500, secret)
		}
		if ae.Message == "" {
			ae.Message = http.StatusText(resp.StatusCode)
		}
		if ae.RequestID == "" {
			ae.RequestID = rid
		}
		if ra, ok := backoff.RetryAfter(resp.Header.Get("Retry-After"), time.Now(), c.cfg.MaxRetryAfter); ok {
			ae.RetryAfter = ra
		}
		return nil, ae
	}
	limit := responseLimit(dur)
	r, err := DecodeResponse(resp.Body, limit)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("upload: %w", ctx.Err())
		}
		var re *readError
		if errors.As(err, &re) {
			return nil, &NetError{Err: fmt.Errorf("read response: %w", re.err), Attempts: attempts,
				Timeout: isTimeout(re.err), msg: redact.Text("read response: "+re.err.Error(), 500, secret)}
		}
		return nil, fmt.Errorf("%w (request_id %s): %s", ErrBadResponse,
			redact.Text(resp.Header.Get("dg-request-id"), 100, secret), redact.Text(err.Error(), 300, secret))
	}
	if r.Metadata.RequestID == "" {
		r.Metadata.RequestID = redact.Text(resp.Header.Get("dg-request-id"), 100, secret)
	}
	// What is saved next to the entry: the parsed response, re-encoded (only the fields
	// hark uses), so the body is never held twice.
	if r.Raw, err = json.Marshal(r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadResponse, err)
	}
	return r, nil
}

// compressedBytesPerSecond is the density assumed for compressed audio when estimating its
// duration for the timeout: 16 kbit/s, as low as speech codecs go, so the estimate errs long.
const compressedBytesPerSecond = 2000

// sniff picks the content type and estimates the audio duration (for the timeout). Raw
// audio (an encoding in the query) is application/octet-stream; otherwise the container is
// recognised by its signature (audio.SniffContainer): WAV, FLAC, MP3, Ogg, MP4/M4A, WebM...
// are sent as they are with their own media type.
func sniff(f *os.File, size int64, q url.Values) (ctype string, dur time.Duration) {
	var head [audio.SniffLen]byte
	n, _ := io.ReadFull(f, head[:])
	if c, ok := audio.SniffContainer(head[:n]); ok && q.Get("encoding") == "" && c.ContentType != "audio/wav" {
		return c.ContentType, time.Duration(size * int64(time.Second) / compressedBytesPerSecond)
	}
	hdr := head[:min(n, 12)]
	if len(hdr) == 12 && bytes.Equal(hdr[0:4], []byte("RIFF")) && bytes.Equal(hdr[8:12], []byte("WAVE")) {
		ctype = "audio/wav"
		if _, err := f.Seek(0, io.SeekStart); err == nil {
			if wr, err := audio.NewWAVReader(f); err == nil {
				if bps := int64(wr.Format.SampleRate * wr.Format.BlockAlign()); bps > 0 {
					return ctype, time.Duration(size * int64(time.Second) / bps)
				}
			}
		}
	} else {
		ctype = "application/octet-stream"
		rate, _ := strconv.Atoi(q.Get("sample_rate"))
		ch, _ := strconv.Atoi(q.Get("channels"))
		if rate > 0 && q.Get("encoding") == "linear16" {
			return ctype, time.Duration(size * int64(time.Second) / int64(rate*max(ch, 1)*2))
		}
	}
	// Unknown layout: assume 16 kHz mono 16-bit, the densest format hark deals in.
	return ctype, time.Duration(size * int64(time.Second) / (audio.SampleRate * 2))
}

func (c *Client) timeout(size int64, dur time.Duration) time.Duration {
	return c.cfg.TimeoutBase + time.Duration(size*int64(time.Second)/c.cfg.AssumedBandwidth) +
		time.Duration(float64(dur)*c.cfg.ProcessingFactor)
}

// checkRetry retries connection errors (as retryablehttp does, minus certificate and
// scheme errors), 408, 429 and 5xx except 501; never another 4xx.
func checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		return retryablehttp.DefaultRetryPolicy(ctx, resp, err)
	}
	s := resp.StatusCode
	return s == http.StatusRequestTimeout || s == http.StatusTooManyRequests || s >= 500 && s != http.StatusNotImplemented || s == 0, nil
}

// backoff honours Retry-After on 429/503 up to MaxRetryAfter, else the jittered policy.
func (c *Client) backoff(lo, hi time.Duration, attempt int, resp *http.Response) time.Duration {
	if resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
		if ra, ok := backoff.RetryAfter(resp.Header.Get("Retry-After"), time.Now(), c.cfg.MaxRetryAfter); ok {
			return ra
		}
	}
	return backoff.Policy{Min: lo, Max: hi}.Delay(attempt)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// progressReader is the request body of one attempt: the file, counted as it is read.
type progressReader struct {
	f     *os.File
	sent  int64
	total int64
	fn    func(sent, total int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.f.Read(b)
	if n > 0 && p.fn != nil {
		p.sent += int64(n)
		p.fn(p.sent, p.total)
	}
	return n, err
}

func (p *progressReader) Close() error { return p.f.Close() }
