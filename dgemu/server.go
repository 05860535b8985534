package dgemu

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Close reasons, as the service words them. The NET ones are the service's exact sentences:
// they carry the code only inside the link ("net0001"), so a client should match the code
// case-insensitively with or without the dash, never the literal "NET-0001".
const (
	ReasonNET0001  = "Deepgram did not receive audio data or a text message within the timeout window. See https://dpgr.am/net0001"
	ReasonNET0000  = "Deepgram did not provide a response message within the timeout window. See https://dpgr.am/net0000"
	ReasonDATA0000 = "DATA-0000: the payload cannot be decoded as audio. See https://dpgr.am/data0000"
)

// Config configures a Server. The zero value is a useful emulator for tests.
type Config struct {
	// Addr to listen on; default "127.0.0.1:0".
	Addr string
	// APIKey, if set, is the only key accepted (Token scheme, Bearer JWT, or the
	// "token, KEY" subprotocol). "" accepts any non-empty key.
	APIKey string
	// Utterances are the fixture: the texts of the utterances of the audio, in order.
	// The live endpoint and the pre-recorded endpoint each consume them with their own
	// cursor, which is server-wide (not per connection): a stream split over three
	// connections gets lines 1, 2, 3... as a single stream would. When the fixture is
	// exhausted, utterances are described ("speech one point two seconds").
	Utterances []string
	// Reference, if set, makes transcripts content-addressed (see Reference): utterances
	// found in the reference recording take its text whatever order they arrive in.
	Reference *Reference
	// IdleTimeout: no frame from the client for this long closes the stream with
	// Metadata then 1011 NET-0001. Default 10 s; negative disables.
	IdleTimeout time.Duration
	// NoAudioTimeout, if > 0, closes (Metadata, then 1011 NET-0000: the service produced
	// nothing in its window) a stream that has received no audio this long after opening,
	// even if KeepAlives arrive, as the docs warn the service may. Which NET code the
	// service uses there is not documented.
	NoAudioTimeout time.Duration
	// RealtimeLimit, if > 0, is the maximum ratio of audio seconds to wall-clock seconds
	// the live endpoint accepts (the service: about 1.25); the emulator enforces it by
	// reading no faster, after a 1 s burst. 0 reads as fast as the client sends.
	RealtimeLimit float64
	// UtteranceGap is the silence that separates two utterances (default 500 ms). It is
	// also the shortest silence before speech_final: a smaller endpointing acts as this.
	UtteranceGap time.Duration
	// SpeechThresholdDBFS: a 10 ms window louder than this (RMS) is speech. Default -45.
	SpeechThresholdDBFS float64
	// InterimInterval is the audio between two interim results (default 1 s).
	InterimInterval time.Duration
	// ResultsDelay, if > 0, delays every live server frame (Results, Metadata, the close)
	// by this much wall-clock time, in order: the service answers with latency, and a
	// client that closes right after CloseStream loses the last results.
	ResultsDelay time.Duration
	// Quiet switches on the service's quiet and late behaviours (quiet.go): no results
	// for wordless audio, unanswered or late Finalize answers, periodic empty finals,
	// jitter on every result.
	Quiet Quiet
	// MaxStreams, if > 0, refuses a live handshake with 429 TOO_MANY_REQUESTS while this
	// many sessions are open (the service's concurrency limit: 50 on pay-as-you-go).
	MaxStreams int
	// StrictQuery refuses unknown query parameters with 400; by default they are ignored
	// (and reported in SessionInfo.Unknown), as the service ignores many.
	StrictQuery bool
	// DeniedModels are refused with 403 INSUFFICIENT_PERMISSIONS, as for a project that
	// cannot use them.
	DeniedModels []string
	// RequireContentLength refuses pre-recorded uploads without Content-Length (chunked)
	// with 411. Off by default: the official Go SDK's FromFile uploads chunked, so the
	// service evidently accepts it.
	RequireContentLength bool
	// MaxBodyBytes limits pre-recorded uploads (413 past it). Default 2 GB.
	MaxBodyBytes int64
	// Logger receives one line per session and request; default discards.
	Logger *slog.Logger
}

// Refusal is an injected failure: a refused handshake or a failed pre-recorded request.
type Refusal struct {
	Status     int    // HTTP status: 400, 401, 402, 403, 408, 411, 413, 415, 429, 500, 502, 503, 504...
	RetryAfter string // Retry-After header value; "" sends none
	Code       string // err_code; "" = the service's usual code for Status
	Message    string // err_msg and dg-error; "" = the usual message for Status
}

// Times repeats r n times, for RefuseHandshakes and FailRequests.
func Times(n int, r Refusal) []Refusal {
	out := make([]Refusal, n)
	for i := range out {
		out[i] = r
	}
	return out
}

// SessionInfo is a snapshot of one live session.
type SessionInfo struct {
	RequestID  string
	Query      url.Values
	AuthMethod string // "token", "bearer" or "subprotocol"
	Options    *Options
	Started    time.Time

	AudioBytes    int64   // binary payload bytes received
	AudioMessages int     // non-empty binary messages
	AudioSeconds  float64 // decoded audio, the basis of every time sent
	KeepAlives    int
	Finalizes     int
	CloseStreams  int
	EmptyBinary   int // empty binary messages (legacy end of stream)
	BadText       int // text messages answered with an Error
	ErrorsSent    int

	Interims        int
	Finals          int
	SpeechFinals    int
	FromFinalize    int
	UtteranceEnds   int
	SpeechStarteds  int
	Transcripts     []string // transcripts of the finals sent, empty ones included
	MetadataSent    bool
	MessagesWritten int

	// CloseCode and CloseReason are what the server sent (0 if it sent no close frame);
	// ClientCloseCode is the client's close frame code, if it sent one first or replied.
	CloseCode       int
	CloseReason     string
	ClientCloseCode int
	Dropped         bool // the TCP connection was cut without a close frame by a fault
	Closed          bool // the session is over and its goroutine has exited
	Ended           time.Time
}

// RequestInfo is a snapshot of one pre-recorded request.
type RequestInfo struct {
	RequestID   string
	Query       url.Values
	ContentType string
	BodyBytes   int64
	Status      int
	Transcript  string
	Done        bool
}

// Server is the emulator: a live WebSocket endpoint and a pre-recorded endpoint on
// /v1/listen, with faults on demand and observation for tests.
type Server struct {
	cfg  Config
	log  *slog.Logger
	ln   net.Listener
	hs   *http.Server
	done chan struct{}
	wg   sync.WaitGroup

	closeOnce sync.Once

	mu         sync.Mutex
	changed    chan struct{}
	sessions   []*session
	requests   []*RequestInfo
	refusals   []Refusal
	restFaults []Refusal
	answers    []Answer
	hsDelay    time.Duration
	paused     bool
	resume     chan struct{}
	dropAfter  int64
	streams    int // live handshakes accepted and not yet ended
	upgrading  int // handshakes between their checks and their session's registration
	jwtSecret  [32]byte
	fixture    []string
	liveCursor int
	restCursor int
}

// NewServer starts an emulator listening at once (on 127.0.0.1:0 unless cfg.Addr is set),
// like httptest.NewServer. It panics if it cannot listen; use Listen to get the error.
func NewServer(cfg Config) *Server {
	s, err := Listen(cfg)
	if err != nil {
		panic(fmt.Sprintf("dgemu: %v", err))
	}
	return s
}

// Listen starts an emulator and returns an error if it cannot listen.
func Listen(cfg Config) (*Server, error) {
	cfg = withDefaults(cfg)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	s := &Server{
		cfg:     cfg,
		log:     log.With("component", "dgemu"),
		ln:      ln,
		done:    make(chan struct{}),
		changed: make(chan struct{}),
		resume:  make(chan struct{}),
		fixture: append([]string(nil), cfg.Utterances...),
	}
	if _, err := rand.Read(s.jwtSecret[:]); err != nil {
		ln.Close()
		return nil, fmt.Errorf("token secret: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/listen", s.serveListen)
	mux.HandleFunc(grantPath, s.serveGrant)
	s.hs = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = s.hs.Serve(ln)
	}()
	return s, nil
}

func withDefaults(cfg Config) Config {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 10 * time.Second
	}
	if cfg.UtteranceGap <= 0 {
		cfg.UtteranceGap = 500 * time.Millisecond
	}
	if cfg.SpeechThresholdDBFS == 0 {
		cfg.SpeechThresholdDBFS = -45
	}
	if cfg.InterimInterval <= 0 {
		cfg.InterimInterval = time.Second
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 2 << 30
	}
	return cfg
}

// Addr is the listening address (host:port).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL is the live endpoint, "ws://127.0.0.1:PORT/v1/listen".
func (s *Server) URL() string { return "ws://" + s.Addr() + "/v1/listen" }

// HTTPURL is the pre-recorded endpoint, "http://127.0.0.1:PORT/v1/listen".
func (s *Server) HTTPURL() string { return "http://" + s.Addr() + "/v1/listen" }

// Close stops listening, cuts every session and request, and waits for all goroutines.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.done)
		_ = s.hs.Close()
		s.mu.Lock()
		live := append([]*session(nil), s.sessions...)
		s.mu.Unlock()
		for _, ss := range live {
			ss.kill()
		}
	})
	s.wg.Wait()
}

func (s *Server) serveListen(w http.ResponseWriter, r *http.Request) {
	s.wg.Add(1)
	defer s.wg.Done()
	select {
	case <-s.done:
		return
	default:
	}
	reqID := uuid.NewString()
	w.Header().Set("dg-request-id", reqID)
	switch {
	case r.Method == http.MethodGet && strings.EqualFold(r.Header.Get("Upgrade"), "websocket"):
		s.serveLive(w, r, reqID)
	case r.Method == http.MethodPost:
		s.serveREST(w, r, reqID)
	case r.Method == http.MethodGet:
		refuse(w, reqID, Refusal{Status: http.StatusBadRequest, Code: "INVALID_REQUEST", Message: "expected a WebSocket upgrade"})
	default:
		w.Header().Set("Allow", "GET, POST")
		refuse(w, reqID, Refusal{Status: http.StatusMethodNotAllowed, Code: "METHOD_NOT_ALLOWED", Message: "method not allowed"})
	}
}

var usualRefusals = map[int][2]string{
	400: {"INVALID_QUERY_PARAMETER", "Bad Request"},
	401: {"INVALID_AUTH", "Invalid credentials."},
	402: {"ASR_PAYMENT_REQUIRED", "Project does not have enough credits for an ASR request."},
	403: {"INSUFFICIENT_PERMISSIONS", "Project does not have access to the requested model."},
	408: {"SLOW_UPLOAD", "The request timed out while receiving the body."},
	411: {"LENGTH_REQUIRED", "A Content-Length header is required."},
	413: {"PAYLOAD_TOO_LARGE", "The audio exceeds the size limit."},
	415: {"UNSUPPORTED_MEDIA_TYPE", "Unsupported media type."},
	429: {"TOO_MANY_REQUESTS", "Too many requests. Please try again later."},
	500: {"INTERNAL_SERVER_ERROR", "Internal server error."},
	502: {"BAD_GATEWAY", "Bad gateway."},
	503: {"SERVICE_UNAVAILABLE", "The service is temporarily unavailable."},
	504: {"GATEWAY_TIMEOUT", "Processing the audio took too long."},
}

// refuse writes a refusal as the service does: dg-error header and a JSON body (503 uses
// error_code instead of err_code).
func refuse(w http.ResponseWriter, reqID string, r Refusal) {
	code, msg := r.Code, r.Message
	if u, ok := usualRefusals[r.Status]; ok {
		if code == "" {
			code = u[0]
		}
		if msg == "" {
			msg = u[1]
		}
	}
	if code == "" {
		code = "ERROR"
	}
	if msg == "" {
		msg = http.StatusText(r.Status)
	}
	body := errorBody{ErrMsg: msg, RequestID: reqID}
	if r.Status == http.StatusServiceUnavailable {
		body.ErrorCode = code
	} else {
		body.ErrCode = code
	}
	h := w.Header()
	h.Set("dg-request-id", reqID)
	h.Set("dg-error", msg)
	h.Set("Content-Type", "application/json")
	if r.RetryAfter != "" {
		h.Set("Retry-After", r.RetryAfter)
	}
	w.WriteHeader(r.Status)
	_ = json.NewEncoder(w).Encode(body)
}

func (s *Server) denied(model string) bool {
	for _, m := range s.cfg.DeniedModels {
		if strings.EqualFold(m, model) {
			return true
		}
	}
	return false
}

// nextFixture hands out the next fixture text from the live or the pre-recorded cursor.
func (s *Server) nextFixture(live bool) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := &s.restCursor
	if live {
		c = &s.liveCursor
	}
	if *c >= len(s.fixture) {
		return "", false
	}
	t := s.fixture[*c]
	*c++
	return t, true
}

// ReadFixture reads a fixture file: one utterance text per line; blank lines and lines
// starting with # are skipped.
func ReadFixture(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open fixture: %w", err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		lines = append(lines, l)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read fixture %s: %w", path, err)
	}
	return lines, nil
}

// SetUtterances replaces the fixture and rewinds both cursors.
func (s *Server) SetUtterances(lines []string) {
	s.mu.Lock()
	s.fixture = append([]string(nil), lines...)
	s.liveCursor, s.restCursor = 0, 0
	s.mu.Unlock()
}

// ---- faults ----

// RefuseHandshakes queues refusals: the next len(rs) live handshakes are refused, in order.
func (s *Server) RefuseHandshakes(rs ...Refusal) {
	s.mu.Lock()
	s.refusals = append(s.refusals, rs...)
	s.mu.Unlock()
}

// FailRequests queues failures: the next len(rs) pre-recorded requests get these
// statuses, in order, before their body is read.
func (s *Server) FailRequests(rs ...Refusal) {
	s.mu.Lock()
	s.restFaults = append(s.restFaults, rs...)
	s.mu.Unlock()
}

// SetHandshakeDelay delays every later handshake (live and pre-recorded responses) by d
// before answering; 0 turns it off.
func (s *Server) SetHandshakeDelay(d time.Duration) {
	s.mu.Lock()
	s.hsDelay = d
	s.mu.Unlock()
}

// DropSessions cuts the TCP connection of every open session without a close frame and
// returns how many it cut.
func (s *Server) DropSessions() int {
	n := 0
	for _, ss := range s.openSessions() {
		ss.drop()
		n++
	}
	return n
}

// DropAfterAudio arms a one-shot fault: the first session (open or future) whose received
// audio reaches n bytes has its TCP connection cut. 0 disarms.
func (s *Server) DropAfterAudio(n int64) {
	s.mu.Lock()
	s.dropAfter = n
	s.mu.Unlock()
}

// StopReading makes every session stop reading its socket after the message it is
// handling, so the client's writes eventually block; the idle timer is suspended too.
func (s *Server) StopReading() {
	s.mu.Lock()
	s.paused = true
	s.mu.Unlock()
}

// ResumeReading undoes StopReading.
func (s *Server) ResumeReading() {
	s.mu.Lock()
	if s.paused {
		s.paused = false
		close(s.resume)
		s.resume = make(chan struct{})
	}
	s.mu.Unlock()
}

// CloseSessions sends Metadata then a close frame with code and reason to every open
// session and returns how many it closed.
func (s *Server) CloseSessions(code int, reason string) int {
	n := 0
	for _, ss := range s.openSessions() {
		if ss.closeWith(code, reason) {
			n++
		}
	}
	return n
}

// FailNET0000 closes every open session with 1011 NET-0000 (after Metadata), as the service
// does when it produced no text frame in its window.
func (s *Server) FailNET0000() int { return s.CloseSessions(1011, ReasonNET0000) }

// ---- observation ----

// Changed returns a channel closed at the next change of any session or request.
func (s *Server) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Sessions returns snapshots of every live session so far, in start order.
func (s *Server) Sessions() []SessionInfo {
	s.lockSettled()
	defer s.mu.Unlock()
	out := make([]SessionInfo, len(s.sessions))
	for i, ss := range s.sessions {
		out[i] = ss.snapshotLocked()
	}
	return out
}

// Requests returns snapshots of every pre-recorded request so far, in arrival order.
func (s *Server) Requests() []RequestInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]RequestInfo, len(s.requests))
	for i, r := range s.requests {
		out[i] = *r
		out[i].Query = cloneValues(r.Query)
	}
	return out
}

// WaitSession waits until a session satisfies ok and returns its snapshot.
func (s *Server) WaitSession(ctx context.Context, ok func(SessionInfo) bool) (SessionInfo, error) {
	for {
		ch := s.Changed()
		for _, si := range s.Sessions() {
			if ok(si) {
				return si, nil
			}
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return SessionInfo{}, fmt.Errorf("waiting for a session: %w", ctx.Err())
		}
	}
}

// WaitRequest waits until a pre-recorded request satisfies ok and returns its snapshot.
func (s *Server) WaitRequest(ctx context.Context, ok func(RequestInfo) bool) (RequestInfo, error) {
	for {
		ch := s.Changed()
		for _, ri := range s.Requests() {
			if ok(ri) {
				return ri, nil
			}
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return RequestInfo{}, fmt.Errorf("waiting for a request: %w", ctx.Err())
		}
	}
}

// lockSettled locks s.mu once no handshake is between its 101 and its registration, so a
// client that saw its handshake succeed finds its session (waiting at most a second).
func (s *Server) lockSettled() {
	deadline := time.NewTimer(time.Second)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		if s.upgrading == 0 {
			return
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			s.mu.Lock()
			return
		}
	}
}

func (s *Server) openSessions() []*session {
	s.lockSettled()
	defer s.mu.Unlock()
	var out []*session
	for _, ss := range s.sessions {
		if !ss.info.Closed {
			out = append(out, ss)
		}
	}
	return out
}

// sleep paces (handshake delay, realtime limit); it returns false if stop or the server
// closed first.
func (s *Server) sleep(d time.Duration, stop <-chan struct{}) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-stop:
		return false
	case <-s.done:
		return false
	}
}

// keepHistory bounds what a long-running emulator remembers: past this many entries the
// oldest finished ones are forgotten (open ones never are).
const keepHistory = 1000

func trimClosed[T any](xs []T, done func(T) bool) []T {
	if len(xs) <= 2*keepHistory {
		return xs
	}
	out := make([]T, 0, keepHistory)
	drop := len(xs) - keepHistory
	for _, x := range xs {
		if drop > 0 && done(x) {
			drop--
			continue
		}
		out = append(out, x)
	}
	return out
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}
