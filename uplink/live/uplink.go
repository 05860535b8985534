package live

import (
	"context"
	"errors"
	"fmt"
	"github.com/hark-audio/hark/internal/backoff"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/hark-audio/hark/audio"
	"github.com/hark-audio/hark/internal/redact"
	"github.com/hark-audio/hark/transcript"
)

// Uplink states, as published in State.State.
const (
	StateIdle       = "idle"       // no stream open, nothing to send
	StateConnecting = "connecting" // handshake in progress
	StateConnected  = "connected"  // stream open
	StateClosing    = "closing"    // CloseStream sent, draining the last results
	StateBackoff    = "backoff"    // a transient failure; next attempt at RetryAt
	StateRefused    = "refused"    // the service refused the handshake (key, account, options)
	StateStopped    = "stopped"    // Run has returned
)

// State is the uplink's state for the agent's <base>/state message.
type State struct {
	State     string
	LastError string // the last failure (refusal message with dg-error text, close reason...)
	RequestID string // dg-request-id of the current or last connection attempt
	Since     time.Time
	RetryAt   time.Time // in backoff/refused: no new attempt before this
}

// Event is something worth publishing on <base>/event. Types: stream_opened,
// stream_closed, stream_refused, connect_failed, service_error, audio_rejected.
type Event struct {
	Type  string
	At    time.Time
	Attrs map[string]any // request_id, code, reason, cause, status, error...
}

// Segment is contiguous audio that will not get a live transcript; the agent spools it.
// Start is the capture time of the first sample (Frames[0].Time).
type Segment struct {
	Start  time.Time
	Frames []audio.Frame
	Reason string
}

// Handler receives the uplink's output. Callbacks are called from the uplink's Run
// goroutine, one at a time, and must not block (the agent queues).
type Handler struct {
	// Utterance is a final utterance: Source "live", capture wall-clock times, RequestID
	// set; Seq and DeviceID are the agent's.
	Utterance func(transcript.Utterance)
	// Interim is an interim transcript (only with Config.Interim).
	Interim func(text string, start, end time.Time)
	// Unconfirmed is audio that will not get a live transcript.
	Unconfirmed func(Segment)
	Event       func(Event)
	State       func(State)
}

// Stats are the uplink's counters for the health message.
type Stats struct {
	State               string           `json:"state"`
	Connects            int64            `json:"connects"`
	ConnectFailures     int64            `json:"connect_failures"`
	Refusals            int64            `json:"refusals"`
	Reconnects          map[string]int64 `json:"reconnects"` // unrequested stream ends, by cause
	IdleCloses          int64            `json:"idle_closes"`
	AudioSentSeconds    float64          `json:"audio_sent_s"`
	FramesSent          int64            `json:"frames_sent"`
	KeepAlives          int64            `json:"keepalives"`
	Finalizes           int64            `json:"finalizes"`
	Utterances          int64            `json:"utterances"`
	UnconfirmedSegments int64            `json:"unconfirmed_segments"`
	UnconfirmedSeconds  float64          `json:"unconfirmed_s"`
	InputDropped        int64            `json:"input_dropped"`
	EmptyFramesSkipped  int64            `json:"empty_frames_skipped"`
	MalformedMessages   int64            `json:"malformed_messages"`
	UnknownMessages     int64            `json:"unknown_messages"`
}

type counters struct {
	connects, connectFailures, refusals, idleCloses     atomic.Int64
	framesSent, samplesSent, keepAlives, finalizes      atomic.Int64
	utterances, unconfSegments, unconfSamples           atomic.Int64
	inputDropped, emptySkipped, malformed, unknownTypes atomic.Int64

	mu         sync.Mutex
	reconnects map[string]int64
}

type inKind uint8

const (
	inStart inKind = iota
	inFrame
	inEnd
)

type input struct {
	kind inKind
	t    time.Time
	f    audio.Frame
}

// openSeg is the segment the gate has open.
type openSeg struct {
	lastEnd time.Time
	spool   bool          // not streamed: goes to Unconfirmed
	reason  string        // why not streamed
	buf     []audio.Frame // spool mode: the frames so far
}

// piece is audio sent on the current stream and not yet covered by finals: the frames
// from stream position first on. closed means its segment ended.
type piece struct {
	first  int64
	frames []audio.Frame
	closed bool
}

type finalizeReq struct {
	pos      int64 // stream frames sent before the Finalize
	deadline time.Time
	timedOut bool
}

// stream is one open connection and everything tied to its clock.
type stream struct {
	c        *conn
	reqID    string
	openedAt time.Time

	frames   int64 // frames queued on this stream: the stream clock, in frames
	tm       timeMap
	pieces   []*piece
	newPiece bool
	// confirmed is how far (stream seconds) received finals or answered Finalizes reach.
	confirmed float64
	finals    []*results // received, not yet published
	finalizes []finalizeReq

	unansweredSince time.Time // first audio sent since the service last said anything
	stable          bool
	closing         bool // CloseStream queued
	closeDeadline   time.Time
	metadata        bool
	idle            bool // closed for idleness
}

// Uplink streams segments of speech to Deepgram's live endpoint and assembles transcripts.
type Uplink struct {
	cfg Config
	h   Handler
	log *slog.Logger
	st  counters

	mu        sync.Mutex
	inq       []input
	inFrames  int
	opts      url.Values
	started   bool
	stopped   bool // Close called: further input is ignored
	closeWait time.Duration

	inSig     chan struct{}
	space     chan struct{} // closed when the input queue is drained; only with Config.Blocking
	closeReq  chan struct{}
	closeOnce sync.Once
	done      chan struct{}

	stateMu sync.Mutex
	state   State

	// Everything below is owned by Run's goroutine.
	events     chan connEvent
	dialCh     chan dialResult
	dialing    bool
	dialCancel context.CancelFunc
	runCtx     context.Context

	s             *stream
	open          *openSeg
	backlog       []input
	backlogFrames int

	failures   int // consecutive failures, for the backoff (reset by a stable stream)
	failStreak int // consecutive failed attempts, for logging once with a count
	refusedN   int
	retryAt    time.Time
	lastSpeech time.Time

	closing       bool
	closeDeadline time.Time
}

// New returns an Uplink; nothing happens until Run.
func New(cfg Config, h Handler) *Uplink {
	cfg = cfg.withDefaults()
	u := &Uplink{
		cfg: cfg, h: h, log: cfg.Logger,
		opts:     cloneValues(cfg.Options),
		inSig:    make(chan struct{}, 1),
		closeReq: make(chan struct{}),
		done:     make(chan struct{}),
		events:   make(chan connEvent),
		dialCh:   make(chan dialResult, 1),
	}
	u.st.reconnects = map[string]int64{}
	u.state = State{State: StateIdle, Since: time.Now()}
	return u
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// SetOptions replaces the query options; they apply from the next stream on.
func (u *Uplink) SetOptions(opts url.Values) {
	u.mu.Lock()
	u.opts = cloneValues(opts)
	u.mu.Unlock()
}

// SegmentStart marks speech onset; t is the capture time of the segment's first sample.
// It never blocks.
func (u *Uplink) SegmentStart(t time.Time) { u.push(input{kind: inStart, t: t}) }

// Frame queues one frame of the open segment. It never blocks: when the queue is full the
// frame is dropped and counted.
func (u *Uplink) Frame(f audio.Frame) { u.push(input{kind: inFrame, f: f}) }

// SegmentEnd marks the end of the open segment. It never blocks.
func (u *Uplink) SegmentEnd(t time.Time) { u.push(input{kind: inEnd, t: t}) }

func (u *Uplink) push(in input) {
	u.mu.Lock()
	switch {
	case u.stopped:
		if in.kind == inFrame {
			u.st.inputDropped.Add(1)
		}
		u.mu.Unlock()
		return
	case in.kind == inFrame && u.inFrames >= u.cfg.InputQueue && u.cfg.Blocking:
		// A non-real-time input (a file read as fast as possible) waits for the uplink
		// instead of losing audio: nothing but this caller's pace depends on it.
		for u.inFrames >= u.cfg.InputQueue && !u.stopped {
			if u.space == nil {
				u.space = make(chan struct{})
			}
			space := u.space
			u.mu.Unlock()
			select {
			case <-space:
			case <-u.done:
				u.st.inputDropped.Add(1)
				return
			}
			u.mu.Lock()
		}
		if u.stopped {
			u.st.inputDropped.Add(1)
			u.mu.Unlock()
			return
		}
	case in.kind == inFrame && u.inFrames >= u.cfg.InputQueue:
		u.st.inputDropped.Add(1)
		u.mu.Unlock()
		return
	}
	if in.kind == inFrame {
		u.inFrames++
	}
	u.inq = append(u.inq, in)
	u.mu.Unlock()
	select {
	case u.inSig <- struct{}{}:
	default:
	}
}

// Stats returns a snapshot of the counters.
func (u *Uplink) Stats() Stats {
	s := Stats{
		State:    u.State().State,
		Connects: u.st.connects.Load(), ConnectFailures: u.st.connectFailures.Load(),
		Refusals: u.st.refusals.Load(), IdleCloses: u.st.idleCloses.Load(),
		AudioSentSeconds: float64(u.st.samplesSent.Load()) / audio.SampleRate,
		FramesSent:       u.st.framesSent.Load(), KeepAlives: u.st.keepAlives.Load(),
		Finalizes: u.st.finalizes.Load(), Utterances: u.st.utterances.Load(),
		UnconfirmedSegments: u.st.unconfSegments.Load(),
		UnconfirmedSeconds:  float64(u.st.unconfSamples.Load()) / audio.SampleRate,
		InputDropped:        u.st.inputDropped.Load(), EmptyFramesSkipped: u.st.emptySkipped.Load(),
		MalformedMessages: u.st.malformed.Load(), UnknownMessages: u.st.unknownTypes.Load(),
		Reconnects: map[string]int64{},
	}
	u.st.mu.Lock()
	for k, v := range u.st.reconnects {
		s.Reconnects[k] = v
	}
	u.st.mu.Unlock()
	return s
}

// State returns the current state.
func (u *Uplink) State() State {
	u.stateMu.Lock()
	defer u.stateMu.Unlock()
	return u.state
}

func (u *Uplink) setState(name, lastErr, reqID string, retryAt time.Time) {
	u.stateMu.Lock()
	s := State{State: name, LastError: lastErr, RequestID: reqID, RetryAt: retryAt, Since: u.state.Since}
	if s.LastError == "" && name != StateIdle && name != StateConnected {
		s.LastError = u.state.LastError
	}
	if s.RequestID == "" {
		s.RequestID = u.state.RequestID
	}
	if name != u.state.State {
		s.Since = time.Now()
	}
	changed := s != u.state
	u.state = s
	u.stateMu.Unlock()
	if changed && u.h.State != nil {
		u.h.State(s)
	}
}

func (u *Uplink) event(typ string, attrs map[string]any) {
	if u.h.Event != nil {
		u.h.Event(Event{Type: typ, At: time.Now(), Attrs: attrs})
	}
}

// Close stops the uplink gracefully: audio is no longer accepted, an open segment is ended,
// CloseStream goes out behind all queued audio, and the last results are read until
// Metadata and the close frame (bounded by Config.CloseTimeout and ctx). What arrived is
// published; audio not covered by a final goes to Unconfirmed. Close returns when Run has
// returned, or with ctx's error.
func (u *Uplink) Close(ctx context.Context) error {
	u.mu.Lock()
	u.stopped = true
	if u.space != nil { // wake a blocked Frame: it will see stopped
		close(u.space)
		u.space = nil
	}
	started := u.started
	u.started = true // Run, if called later, returns at once
	u.closeWait = u.cfg.CloseTimeout
	if dl, ok := ctx.Deadline(); ok {
		// Leave time to publish and hand off after the stream is given up.
		left := time.Until(dl)
		if d := max(left-200*time.Millisecond, left*3/4); d < u.closeWait {
			u.closeWait = max(d, 0)
		}
	}
	u.mu.Unlock()
	u.closeOnce.Do(func() { close(u.closeReq) })
	if !started {
		// Run never ran: nothing was sent, so whatever was queued goes to Unconfirmed here.
		u.runCtx = context.Background()
		u.closing, u.closeDeadline = true, time.Now()
		u.drainInputs()
		u.finish()
		close(u.done)
		return nil
	}
	select {
	case <-u.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("close live uplink: %w", ctx.Err())
	}
}

// Run owns the connection lifecycle until Close completes or ctx is done. When ctx ends
// first, the stream is dropped without a graceful close; received finals are still
// published and unconfirmed audio still handed to Unconfirmed before Run returns.
func (u *Uplink) Run(ctx context.Context) error {
	u.mu.Lock()
	if u.started {
		stopped := u.stopped
		u.mu.Unlock()
		if stopped {
			return nil // closed before Run
		}
		return errors.New("live uplink: Run called twice")
	}
	u.started = true
	u.mu.Unlock()
	defer close(u.done)
	u.runCtx = ctx

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	closeReq := u.closeReq
	for {
		if u.closing && u.s == nil && !u.dialing {
			u.finish()
			return nil
		}
		if wake := u.nextWake(); wake.IsZero() {
			timer.Stop()
		} else {
			timer.Reset(max(time.Until(wake), 0))
		}
		select {
		case <-ctx.Done():
			u.abort()
			return ctx.Err()
		case <-closeReq:
			closeReq = nil
			u.beginClose()
		case <-u.inSig:
			u.drainInputs()
		case r := <-u.dialCh:
			u.onDial(r)
		case ev := <-u.events:
			u.onEvent(ev)
		case <-timer.C:
			u.onTimer(time.Now())
		}
	}
}

func (u *Uplink) drainInputs() {
	u.mu.Lock()
	q := u.inq
	u.inq, u.inFrames = nil, 0
	if u.space != nil {
		close(u.space)
		u.space = nil
	}
	u.mu.Unlock()
	for _, in := range q {
		switch in.kind {
		case inStart:
			u.segStart(in.t)
		case inFrame:
			u.segFrame(in.f)
		case inEnd:
			u.segEnd()
		}
	}
}

// live reports whether items can go straight to the stream.
func (u *Uplink) live() bool { return u.s != nil && !u.s.closing && len(u.backlog) == 0 }

func (u *Uplink) segStart(t time.Time) {
	if u.open != nil {
		u.segEnd()
	}
	o := &openSeg{lastEnd: t}
	u.open = o
	if u.live() {
		u.sendItem(input{kind: inStart, t: t})
		return
	}
	if reason := u.cannotStream(time.Now()); reason != "" {
		o.spool, o.reason = true, reason
		return
	}
	u.pushBacklog(input{kind: inStart, t: t})
	u.maybeDial(time.Now())
}

// cannotStream says why a segment starting now should not wait for a stream.
func (u *Uplink) cannotStream(now time.Time) string {
	wait := u.retryAt.Sub(now)
	switch {
	case u.refusedN > 0 && wait > 0:
		return "refused"
	case wait > u.cfg.MaxBacklog:
		return "backoff"
	}
	return ""
}

func (u *Uplink) segFrame(f audio.Frame) {
	if len(f.Samples) == 0 {
		u.st.emptySkipped.Add(1)
		return
	}
	if u.open == nil {
		u.segStart(f.Time)
	}
	o := u.open
	o.lastEnd = f.End()
	if o.spool {
		o.buf = append(o.buf, f)
		if time.Duration(len(o.buf))*audio.FrameDuration >= u.cfg.MaxUnconfirmed {
			u.unconfirmed(o.buf, o.reason)
			o.buf = nil
		}
		return
	}
	if u.live() {
		u.sendItem(input{kind: inFrame, f: f})
		return
	}
	u.pushBacklog(input{kind: inFrame, f: f})
	if time.Duration(u.backlogFrames)*audio.FrameDuration > u.cfg.MaxBacklog {
		u.log.Warn("stream not ready in time: speech goes to the spool", "backlog", u.cfg.MaxBacklog)
		u.abandonBacklog("connect too slow")
	}
}

func (u *Uplink) segEnd() {
	o := u.open
	if o == nil {
		return
	}
	u.open = nil
	u.lastSpeech = time.Now()
	if o.spool {
		if len(o.buf) > 0 {
			u.unconfirmed(o.buf, o.reason)
		}
		return
	}
	if u.live() {
		u.sendItem(input{kind: inEnd})
		return
	}
	u.pushBacklog(input{kind: inEnd})
}

func (u *Uplink) pushBacklog(in input) {
	u.backlog = append(u.backlog, in)
	if in.kind == inFrame {
		u.backlogFrames++
	}
}

// abandonBacklog hands everything waiting for a stream to Unconfirmed: ended segments
// whole, the open segment's frames so far, and switches the open segment to spool mode.
func (u *Uplink) abandonBacklog(reason string) {
	var cur []audio.Frame
	for _, it := range u.backlog {
		switch it.kind {
		case inStart:
			if len(cur) > 0 {
				u.unconfirmed(cur, reason)
			}
			cur = nil
		case inFrame:
			cur = append(cur, it.f)
		case inEnd:
			if len(cur) > 0 {
				u.unconfirmed(cur, reason)
			}
			cur = nil
		}
	}
	u.backlog, u.backlogFrames = nil, 0
	if o := u.open; o != nil && !o.spool {
		o.spool, o.reason, o.buf = true, reason, cur
	} else if len(cur) > 0 {
		u.unconfirmed(cur, reason)
	}
}

// unconfirmed hands frames to the spool, one Segment per contiguous run.
func (u *Uplink) unconfirmed(frames []audio.Frame, reason string) {
	for len(frames) > 0 {
		n := 1
		for n < len(frames) && contiguous(frames[n-1], frames[n]) {
			n++
		}
		run := frames[:n:n]
		frames = frames[n:]
		u.st.unconfSegments.Add(1)
		u.st.unconfSamples.Add(int64(n * audio.FrameSamples))
		u.log.Info("audio handed to the spool", "start", run[0].Time, "seconds", float64(n)*audio.FrameDuration.Seconds(), "reason", reason)
		if u.h.Unconfirmed != nil {
			u.h.Unconfirmed(Segment{Start: run[0].Time, Frames: run, Reason: reason})
		}
	}
}

func contiguous(a, b audio.Frame) bool {
	if b.Seq != a.Seq+1 {
		return false
	}
	d := b.Time.Sub(a.End())
	return d < driftTolerance && d > -driftTolerance
}

// sendItem puts one item on the open stream. It may end the stream (queue overflow).
func (u *Uplink) sendItem(it input) {
	s := u.s
	switch it.kind {
	case inStart:
		s.pieces = append(s.pieces, &piece{first: s.frames})
		s.newPiece = true
	case inFrame:
		var p *piece
		if n := len(s.pieces); n > 0 && !s.pieces[n-1].closed {
			p = s.pieces[n-1]
		} else {
			p = &piece{first: s.frames}
			s.pieces = append(s.pieces, p)
			s.newPiece = true
		}
		s.tm.note(s.frames, it.f, s.newPiece)
		s.newPiece = false
		p.frames = append(p.frames, it.f)
		s.frames++
		if s.unansweredSince.IsZero() {
			s.unansweredSince = time.Now()
		}
		if !s.c.send(outMsg{kind: outAudio, frame: it.f}) {
			u.endStream("queue-overflow", false, 0, "", errors.New("write queue full: the service stopped reading"))
		}
	case inEnd:
		n := len(s.pieces)
		if n == 0 || s.pieces[n-1].closed {
			return
		}
		s.pieces[n-1].closed = true
		// With audio stopped the service may hold the last words: ask for them.
		s.finalizes = append(s.finalizes, finalizeReq{pos: s.frames, deadline: time.Now().Add(u.cfg.FinalizeTimeout)})
		if !s.c.send(outMsg{kind: outFinalize}) {
			u.endStream("queue-overflow", false, 0, "", errors.New("write queue full: the service stopped reading"))
		}
	}
}

func (u *Uplink) flushBacklog() {
	for len(u.backlog) > 0 && u.s != nil && !u.s.closing {
		it := u.backlog[0]
		u.backlog = u.backlog[1:]
		if it.kind == inFrame {
			u.backlogFrames--
		}
		u.sendItem(it)
	}
	if len(u.backlog) == 0 {
		u.backlog = nil
	}
}

func (u *Uplink) currentOptions() url.Values {
	u.mu.Lock()
	defer u.mu.Unlock()
	return cloneValues(u.opts)
}

func (u *Uplink) maybeDial(now time.Time) {
	if u.s != nil || u.dialing || len(u.backlog) == 0 || now.Before(u.retryAt) {
		return
	}
	if u.closing && !now.Before(u.closeDeadline) {
		return
	}
	target, err := streamURL(u.cfg.URL, u.currentOptions())
	if err != nil {
		u.log.Error("invalid stream URL", "err", redact.Text(err.Error(), 300))
		u.failures++
		u.retryAt = now.Add(u.cfg.RefusedRetry)
		u.abandonBacklog("invalid URL")
		u.setState(StateRefused, "invalid stream URL", "", u.retryAt)
		return
	}
	ctx, cancel := context.WithCancel(u.runCtx)
	u.dialing, u.dialCancel = true, cancel
	u.setState(StateConnecting, "", "", time.Time{})
	u.log.Debug("opening stream", "url", redact.URL(target))
	go func() { u.dialCh <- dial(ctx, &u.cfg, target) }()
}

func (u *Uplink) backoff() time.Duration {
	return backoff.Policy{Min: u.cfg.BackoffMin, Max: u.cfg.BackoffMax}.Delay(u.failures - 1)
}

func (u *Uplink) onDial(r dialResult) {
	u.dialing = false
	u.dialCancel()
	now := time.Now()
	if r.err != nil {
		u.st.connectFailures.Add(1)
		u.failStreak++
		var re *RefusedError
		var delay time.Duration
		state := StateBackoff
		attrs := map[string]any{"request_id": r.requestID, "error": r.err.Error()}
		switch {
		case errors.As(r.err, &re) && re.Permanent():
			u.st.refusals.Add(1)
			u.refusedN++
			delay = u.cfg.RefusedRetry << min(u.refusedN-1, 2)
			state = StateRefused
			attrs["status"], attrs["code"], attrs["message"] = re.Status, re.Code, re.Message
		case errors.As(r.err, &re) && re.Status == 429 && re.RetryAfter > 0:
			u.st.refusals.Add(1)
			u.failures++
			delay = min(re.RetryAfter, u.cfg.RetryAfterMax)
			attrs["status"], attrs["code"], attrs["message"] = re.Status, re.Code, re.Message
		default:
			if re != nil {
				u.st.refusals.Add(1)
				attrs["status"], attrs["code"], attrs["message"] = re.Status, re.Code, re.Message
			}
			u.failures++
			delay = u.backoff()
		}
		u.retryAt = now.Add(delay)
		attrs["retry_in_s"] = delay.Seconds()
		typ := "connect_failed"
		if re != nil {
			typ = "stream_refused"
		}
		u.event(typ, attrs)
		lvl := slog.LevelDebug
		if u.failStreak == 1 || state == StateRefused {
			lvl = slog.LevelWarn
		}
		u.log.Log(context.Background(), lvl, "cannot open stream", "err", r.err, "request_id", r.requestID,
			"attempt", u.failStreak, "retry_in", delay.Round(time.Millisecond))
		u.setState(state, r.err.Error(), r.requestID, u.retryAt)
		// A refusal will not fix itself soon (the retry is a probe): speech goes to the spool.
		if u.closing || state == StateRefused || delay > u.cfg.MaxBacklog-time.Duration(u.backlogFrames)*audio.FrameDuration {
			reason := "backoff"
			if state == StateRefused {
				reason = "refused"
			}
			u.abandonBacklog(reason)
		}
		return
	}
	if u.closing && len(u.backlog) == 0 {
		r.ws.Close()
		return
	}
	if u.failStreak > 1 {
		u.log.Info("stream recovered", "failed_attempts", u.failStreak)
	}
	u.failStreak, u.refusedN = 0, 0
	u.st.connects.Add(1)
	u.s = &stream{c: startConn(r.ws, &u.cfg, u.events, &u.st), reqID: r.requestID, openedAt: now}
	u.log.Info("stream opened", "request_id", r.requestID, "connect_ms", r.took.Milliseconds())
	u.event("stream_opened", map[string]any{"request_id": r.requestID, "connect_ms": r.took.Milliseconds()})
	u.setState(StateConnected, "", r.requestID, time.Time{})
	u.flushBacklog()
	if u.closing && u.s != nil {
		u.beginStreamClose()
	}
}

func (u *Uplink) onEvent(ev connEvent) {
	s := u.s
	if s == nil || ev.c != s.c {
		return // a replaced connection: ignore whatever it says
	}
	if ev.err != nil {
		u.onConnError(ev)
		return
	}
	if ev.parseErr != nil {
		n := u.st.malformed.Add(1)
		lvl := slog.LevelDebug
		if n == 1 || n%100 == 0 {
			lvl = slog.LevelWarn
		}
		u.log.Log(context.Background(), lvl, "malformed message from the service", "err", ev.parseErr,
			"message", string(ev.raw), "count", n, "request_id", s.reqID)
		return
	}
	s.unansweredSince = time.Time{}
	m := ev.msg
	switch {
	case m.Results != nil:
		u.onResults(m.Results)
	case m.Metadata != nil:
		s.metadata = true
		u.log.Debug("metadata", "request_id", m.Metadata.RequestID, "audio_s", m.Metadata.Duration)
		if s.closing {
			// After CloseStream the service has processed everything it received.
			u.confirmAll()
		}
	case m.UtteranceEnd != nil:
		u.emitPending()
	case m.SpeechStarted != nil:
		u.log.Debug("speech started", "stream_s", m.SpeechStarted.Timestamp)
	case m.Error != nil:
		u.log.Warn("service error message", "description", m.Error.Description, "message", m.Error.Message,
			"variant", m.Error.Variant, "request_id", s.reqID)
		u.event("service_error", map[string]any{"request_id": s.reqID, "error": m.Error.Description, "message": m.Error.Message})
	default:
		n := u.st.unknownTypes.Add(1)
		u.log.Debug("unknown message type ignored", "type", m.Type, "count", n)
	}
}

func (u *Uplink) onResults(r *results) {
	s := u.s
	if !r.IsFinal {
		if u.cfg.Interim && u.h.Interim != nil && strings.TrimSpace(r.Transcript) != "" {
			u.h.Interim(r.Transcript, s.tm.toWall(r.Start, false), s.tm.toWall(r.Start+r.Duration, true))
		}
		return
	}
	if !s.stable {
		// Results flowing: the service is healthy, so the backoff starts over.
		s.stable, u.failures = true, 0
	}
	if r.FromFinalize && len(s.finalizes) > 0 {
		// The answer to the oldest Finalize: everything sent before it is transcribed.
		if p := float64(s.finalizes[0].pos) * audio.FrameDuration.Seconds(); p > s.confirmed {
			s.confirmed = p
		}
		s.finalizes = s.finalizes[1:]
	}
	if end := r.Start + r.Duration; end > s.confirmed {
		s.confirmed = end
	}
	u.pruneFinalizes()
	if strings.TrimSpace(r.Transcript) != "" || len(r.Words) > 0 {
		s.finals = append(s.finals, r)
	}
	u.trim()
	if r.SpeechFinal || r.FromFinalize {
		u.emitPending()
	}
}

// pruneFinalizes forgets Finalizes that timed out and whose audio finals already cover:
// the service may never answer those (nothing was buffered), and the list must not grow
// on a long stream. An answered Finalize is matched to the oldest one still waiting.
func (u *Uplink) pruneFinalizes() {
	s := u.s
	i := 0
	for i < len(s.finalizes) && s.finalizes[i].timedOut &&
		float64(s.finalizes[i].pos)*audio.FrameDuration.Seconds() <= s.confirmed+0.001 {
		i++
	}
	s.finalizes = s.finalizes[i:]
}

// confirmAll marks all audio sent on the stream as transcribed.
func (u *Uplink) confirmAll() {
	s := u.s
	s.confirmed = float64(s.frames)*audio.FrameDuration.Seconds() + 1
	s.finalizes = nil
	u.trim()
}

// trim releases audio covered by finals.
func (u *Uplink) trim() {
	s := u.s
	fd := audio.FrameDuration.Seconds()
	keep := s.pieces[:0]
	for _, p := range s.pieces {
		i := 0
		for i < len(p.frames) && float64(p.first+int64(i)+1)*fd <= s.confirmed+0.001 {
			i++
		}
		p.first += int64(i)
		p.frames = p.frames[i:]
		if len(p.frames) == 0 {
			p.frames = nil
			if p.closed {
				continue
			}
		}
		keep = append(keep, p)
	}
	clear(s.pieces[len(keep):])
	s.pieces = keep
}

// emitPending publishes the received finals as one utterance.
func (u *Uplink) emitPending() {
	s := u.s
	if len(s.finals) == 0 {
		return
	}
	finals := s.finals
	s.finals = nil
	ut := transcript.Utterance{Source: transcript.SourceLive, RequestID: s.reqID}
	var texts []string
	var conf float64
	for _, r := range finals {
		if t := strings.TrimSpace(r.Transcript); t != "" {
			texts = append(texts, t)
		}
		conf += r.Confidence
		for _, w := range r.Words {
			ut.Words = append(ut.Words, transcript.Word{
				Word: w.Word, Punctuated: w.Punctuated, Confidence: w.Confidence, Speaker: w.Speaker,
				Start: s.tm.toWall(w.Start, false), End: s.tm.toWall(w.End, true),
			})
		}
	}
	ut.Text = strings.Join(texts, " ")
	ut.Confidence = conf / float64(len(finals))
	if n := len(ut.Words); n > 0 {
		ut.Start, ut.End = ut.Words[0].Start, ut.Words[n-1].End
	} else {
		first, last := finals[0], finals[len(finals)-1]
		ut.Start, ut.End = s.tm.toWall(first.Start, false), s.tm.toWall(last.Start+last.Duration, true)
	}
	if ut.Text == "" {
		return
	}
	u.st.utterances.Add(1)
	if u.h.Utterance != nil {
		u.h.Utterance(ut)
	}
}

func (u *Uplink) onConnError(ev connEvent) {
	s := u.s
	err := ev.err
	cause, code, reason := "read-error", 0, ""
	if ev.writer {
		cause = "write-error"
	}
	var ce *websocket.CloseError
	var ne net.Error
	switch {
	case errors.As(err, &ce):
		code, reason = ce.Code, ce.Text
		switch {
		case websocket.IsCloseError(err, websocket.CloseNormalClosure):
			cause = "normal"
		case websocket.IsCloseError(err, websocket.CloseAbnormalClosure):
			// gorilla's code for a TCP connection that ended without a close frame.
			cause = "dropped"
		case ce.Code == websocket.ClosePolicyViolation && reasonHas(reason, "data0000"):
			cause = "data-0000"
		case ce.Code == websocket.CloseInternalServerErr && reasonHas(reason, "net0000"):
			cause = "net-0000"
		case ce.Code == websocket.CloseInternalServerErr && reasonHas(reason, "net0001"):
			cause = "net-0001"
		default:
			cause = fmt.Sprintf("close-%d", ce.Code)
		}
	case errors.As(err, &ne) && ne.Timeout() && !ev.writer:
		cause = "half-open" // no pong and no message within the read deadline
	}
	graceful := s.closing && (cause == "normal" || s.metadata)
	u.endStream(cause, graceful, code, reason, err)
}

// reasonHas matches a Deepgram error code inside a close reason. The protocol requires
// this: the code is only in the reason sentence, written "NET-0001" or as a link
// ".../net0001", so the match ignores case and dashes.
func reasonHas(reason, code string) bool {
	r := strings.ToLower(strings.ReplaceAll(reason, "-", ""))
	return strings.Contains(r, code)
}

// endStream tears the current stream down. Order matters: first publish the finals already
// received, then hand the audio they do not cover to Unconfirmed, so no word is lost and
// none is published twice.
func (u *Uplink) endStream(cause string, graceful bool, code int, reason string, err error) {
	s := u.s
	if graceful && s.metadata {
		u.confirmAll()
	}
	u.emitPending()
	why := "stream " + cause
	for _, p := range s.pieces {
		if len(p.frames) > 0 {
			u.unconfirmed(p.frames, why)
		}
	}
	// The open segment goes on: its next frames start a new piece on the next stream.
	if n := len(s.pieces); n > 0 && !s.pieces[n-1].closed && u.open != nil && !u.open.spool {
		u.backlog = append([]input{{kind: inStart}}, u.backlog...)
	}
	s.c.shutdown()
	u.s = nil
	now := time.Now()
	attrs := map[string]any{"request_id": s.reqID, "cause": cause, "code": code, "reason": reason,
		"up_s": now.Sub(s.openedAt).Seconds()}
	errText := ""
	if err != nil && !graceful {
		errText = err.Error()
		attrs["error"] = errText
	}
	// Counters and state first, then logs and events, so whoever sees the event sees them.
	if graceful {
		if s.idle {
			u.st.idleCloses.Add(1)
		}
		u.setState(StateIdle, "", s.reqID, time.Time{})
	} else {
		u.st.mu.Lock()
		u.st.reconnects[cause]++
		u.st.mu.Unlock()
		if cause != "normal" {
			u.failures++
		}
		u.retryAt = now.Add(u.backoff())
		stErr := errText
		if reason != "" {
			stErr = fmt.Sprintf("closed %d: %s", code, reason)
		}
		u.setState(StateBackoff, stErr, s.reqID, u.retryAt)
	}
	logAttrs := []any{"code", code, "reason", reason, "request_id", s.reqID, "cause", cause,
		"audio_s", float64(s.frames) * audio.FrameDuration.Seconds()}
	switch {
	case graceful:
		u.log.Info("stream closed", logAttrs...)
	case cause == "data-0000":
		u.log.Error("stream closed: the service could not decode our audio", append(logAttrs, "err", err)...)
		u.event("audio_rejected", map[string]any{"request_id": s.reqID, "reason": reason})
	default:
		u.log.Warn("stream lost", append(logAttrs, "err", err)...)
	}
	u.event("stream_closed", attrs)
	if u.closing {
		u.maybeDial(now)
		return
	}
	if len(u.backlog) > 0 {
		if u.retryAt.Sub(now) > u.cfg.MaxBacklog-time.Duration(u.backlogFrames)*audio.FrameDuration {
			u.abandonBacklog("backoff")
		}
		u.maybeDial(now)
	}
}

// beginStreamClose queues CloseStream behind all audio; the stream ends when the service
// closes it (after Metadata) or at the deadline.
func (u *Uplink) beginStreamClose() {
	s := u.s
	if s.closing {
		return
	}
	s.closing = true
	s.closeDeadline = time.Now().Add(u.cfg.CloseTimeout)
	if u.closing && u.closeDeadline.Before(s.closeDeadline) {
		s.closeDeadline = u.closeDeadline
	}
	u.setState(StateClosing, "", s.reqID, time.Time{})
	if !s.c.send(outMsg{kind: outCloseStream}) {
		u.endStream("queue-overflow", false, 0, "", errors.New("write queue full: the service stopped reading"))
	}
}

func (u *Uplink) beginClose() {
	u.mu.Lock()
	wait := u.closeWait
	u.mu.Unlock()
	u.closing = true
	u.closeDeadline = time.Now().Add(wait)
	u.drainInputs()
	if u.open != nil {
		u.segEnd()
	}
	switch {
	case u.s != nil && !u.s.closing:
		u.beginStreamClose()
	case u.s == nil && !u.dialing:
		u.maybeDial(time.Now())
	}
}

func (u *Uplink) nextWake() time.Time {
	var w time.Time
	at := func(t time.Time) {
		if !t.IsZero() && (w.IsZero() || t.Before(w)) {
			w = t
		}
	}
	if u.closing {
		at(u.closeDeadline)
	}
	if s := u.s; s != nil {
		if s.closing {
			at(s.closeDeadline)
		}
		for _, f := range s.finalizes {
			if !f.timedOut {
				at(f.deadline)
				break
			}
		}
		if !s.unansweredSince.IsZero() {
			at(s.unansweredSince.Add(u.cfg.ResultTimeout))
		}
		if !s.stable {
			at(s.openedAt.Add(u.cfg.StableAfter))
		}
		if u.cfg.IdleClose > 0 && !s.closing && u.open == nil && len(u.backlog) == 0 {
			at(maxTime(u.lastSpeech, s.openedAt).Add(u.cfg.IdleClose))
		}
	} else if !u.dialing && !u.retryAt.IsZero() {
		if len(u.backlog) > 0 || u.State().State == StateBackoff {
			at(u.retryAt)
		}
	}
	return w
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func (u *Uplink) onTimer(now time.Time) {
	if u.closing && !now.Before(u.closeDeadline) {
		if u.dialing {
			u.dialCancel()
		}
		if u.s != nil {
			u.endStream("close-timeout", false, 0, "", errors.New("no close from the service in time"))
		}
		return
	}
	if s := u.s; s != nil {
		if s.closing && !now.Before(s.closeDeadline) {
			u.endStream("close-timeout", false, 0, "", errors.New("no close from the service in time"))
			return
		}
		for i := range s.finalizes {
			f := &s.finalizes[i]
			if !f.timedOut && !now.Before(f.deadline) {
				// The service did not answer the Finalize in time: publish what we have;
				// the audio stays held until a later final or the stream end covers it.
				f.timedOut = true
				u.log.Debug("finalize not answered in time", "request_id", s.reqID)
				u.emitPending()
			}
		}
		u.pruneFinalizes()
		if !s.unansweredSince.IsZero() && now.Sub(s.unansweredSince) >= u.cfg.ResultTimeout {
			u.endStream("result-timeout", false, 0, "", fmt.Errorf("no message from the service for %s after audio", u.cfg.ResultTimeout))
			return
		}
		if !s.stable && now.Sub(s.openedAt) >= u.cfg.StableAfter {
			s.stable, u.failures = true, 0
		}
		if u.cfg.IdleClose > 0 && !s.closing && u.open == nil && len(u.backlog) == 0 &&
			now.Sub(maxTime(u.lastSpeech, s.openedAt)) >= u.cfg.IdleClose {
			u.log.Debug("closing idle stream", "request_id", s.reqID)
			s.idle = true
			u.beginStreamClose()
		}
		return
	}
	if !u.dialing && !now.Before(u.retryAt) {
		if len(u.backlog) > 0 {
			u.maybeDial(now)
		} else if st := u.State().State; st == StateBackoff {
			u.setState(StateIdle, "", "", time.Time{})
		}
	}
}

// abort ends everything at once (Run's context is done).
func (u *Uplink) abort() {
	if u.dialing {
		u.dialCancel()
		r := <-u.dialCh
		u.dialing = false
		if r.ws != nil {
			r.ws.Close()
		}
	}
	u.closing = true
	if u.s != nil {
		u.endStream("stopped", false, 0, "", errors.New("stopped"))
	}
	u.drainInputs()
	u.segEnd()
	u.finish()
}

// finish hands whatever is left to Unconfirmed; Run returns after it.
func (u *Uplink) finish() {
	u.mu.Lock()
	u.stopped = true
	if u.space != nil { // wake a blocked Frame: it will see stopped
		close(u.space)
		u.space = nil
	}
	u.mu.Unlock()
	if u.open != nil {
		u.segEnd()
	}
	u.abandonBacklog("stopping")
	if o := u.open; o != nil && len(o.buf) > 0 {
		u.unconfirmed(o.buf, o.reason)
		o.buf = nil
	}
	u.open = nil
	u.setState(StateStopped, "", "", time.Time{})
}
