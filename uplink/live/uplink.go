package live

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hark-audio/hark/audio"
	"github.com/hark-audio/hark/internal/backoff"
	"github.com/hark-audio/hark/internal/logging"
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

// Segment is a whole gate segment that will not get a live transcript; the agent spools
// it. Start is the capture time of its first sample (Frames[0].Time).
type Segment struct {
	Start  time.Time
	Frames []audio.Frame
	Reason string
}

// Handler receives the uplink's output. Callbacks are called from the uplink's Run
// goroutine, one at a time, never with a lock held and never on the audio path; they must
// not block for long (they delay the next results, not the audio) and must not do disk
// I/O the caller could hand to a goroutine of its own.
type Handler struct {
	// Utterance is one gate segment's transcript: Source "live", capture wall-clock times,
	// RequestID set; Seq and DeviceID are the agent's.
	Utterance func(transcript.Utterance)
	// Interim is an interim transcript (only with Config.Interim).
	Interim func(text string, start, end time.Time)
	// Unconfirmed is a whole segment that will not get a live transcript.
	Unconfirmed func(Segment)
	Event       func(Event)
	State       func(State)
	// Settled, if set, is called with the capture time of a segment's first frame once the
	// segment has been completed live (after its Utterance, or with no words): the uplink
	// no longer needs it, and a copy kept against a crash can go. Segments handed to
	// Unconfirmed are not reported here.
	Settled func(first time.Time)
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
	Segments            int64            `json:"segments"`
	Utterances          int64            `json:"utterances"`
	EmptySegments       int64            `json:"empty_segments"` // completed live with no words
	GraceCompleted      int64            `json:"grace_completed"`
	Replays             int64            `json:"replays"`
	ReplayedSeconds     float64          `json:"replayed_s"`
	UnconfirmedSegments int64            `json:"unconfirmed_segments"` // spooled
	UnconfirmedSeconds  float64          `json:"unconfirmed_s"`
	LateFinals          int64            `json:"late_finals"`
	LateWords           int64            `json:"late_words"`
	DuplicateWords      int64            `json:"duplicate_words"`
	InputDropped        int64            `json:"input_dropped"`
	EmptyFramesSkipped  int64            `json:"empty_frames_skipped"`
	MalformedMessages   int64            `json:"malformed_messages"`
	UnknownMessages     int64            `json:"unknown_messages"`
}

type counters struct {
	connects, connectFailures, refusals, idleCloses atomic.Int64
	framesSent, samplesSent, keepAlives, finalizes  atomic.Int64
	inputDropped, malformed, unknownTypes           atomic.Int64

	mu         sync.Mutex
	reconnects map[string]int64
}

// phase is the supervisor's one explicit state. Its timer follows from it: backoff waits
// for RetryAt, connected for the idle close, closing for the close deadline.
type phase uint8

const (
	phIdle phase = iota
	phConnecting
	phConnected
	phClosing
	phBackoff
	phStopped
)

// Uplink streams gate segments to Deepgram's live endpoint and publishes each segment's
// transcript once, or hands the whole segment to the spool.
type Uplink struct {
	cfg Config
	h   Handler
	log *slog.Logger
	st  counters

	// mu guards the ledger and the supervisor's state. It is held only for bookkeeping,
	// never across I/O or a handler call: Frame takes it once per frame, the connection's
	// writer once per item it sends.
	mu       sync.Mutex
	led      *ledger
	ph       phase
	until    time.Time // phBackoff: retry at; phClosing: give up at
	refused  bool      // phBackoff after a refusal (state "refused")
	conn     *conn     // phConnected, phClosing
	idleEnd  bool      // phClosing: the close is an idle close
	opts     url.Values
	started  bool
	stopped  bool // no more input
	stopping bool // Close: wind down
	stopAt   time.Time
	waiters  int // Frame calls blocked (Config.Blocking)
	space    *sync.Cond

	closeWait time.Duration
	kick      chan struct{} // cap 1: the ledger has something for Run
	closeReq  chan struct{}
	closeOnce sync.Once
	done      chan struct{}
	events    chan connEvent
	dialCh    chan dialResult

	stateMu sync.Mutex
	state   State

	// Run's own.
	dialCancel context.CancelFunc
	runCtx     context.Context
	failures   int               // consecutive failures, for the backoff
	dialLog    *logging.Repeater // "cannot open stream": once, then counted; recovery logged
	parseLog   *logging.Repeater // malformed messages: once, then counted
	refusedN   int
	stable     bool // the current connection has delivered a final (or lasted StableAfter)
	outs       []output
	settled    []time.Time
}

// New returns an Uplink; nothing happens until Run.
func New(cfg Config, h Handler) *Uplink {
	cfg = cfg.withDefaults()
	u := &Uplink{
		cfg: cfg, h: h, log: cfg.Logger,
		led:      newLedger(cfg.ledger()),
		opts:     cloneValues(cfg.Options),
		kick:     make(chan struct{}, 1),
		closeReq: make(chan struct{}),
		done:     make(chan struct{}),
		events:   make(chan connEvent),
		dialCh:   make(chan dialResult, 1),
	}
	u.space = sync.NewCond(&u.mu)
	u.dialLog = logging.NewRepeater(u.log, "cannot open stream", 0)
	u.parseLog = logging.NewRepeater(u.log, "malformed message from the service", 0)
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

// ---- input (the agent's audio goroutine) ----

// SegmentStart marks speech onset. t, the capture time of the segment's first sample, is
// informational: the frames carry their own times. It never blocks.
func (u *Uplink) SegmentStart(t time.Time) {
	u.mu.Lock()
	if u.stopped {
		u.mu.Unlock()
		return
	}
	u.led.start(time.Now())
	c := u.conn
	u.mu.Unlock()
	if c != nil {
		c.notify()
	}
	u.poke()
}

// Frame adds one frame to the open segment. The uplink keeps f.Samples (no copy) until the
// segment's outcome is decided: the caller must not reuse it. Frame never blocks unless
// Config.Blocking, and does not allocate.
func (u *Uplink) Frame(f audio.Frame) {
	now := time.Now()
	u.mu.Lock()
	if u.cfg.Blocking {
		for !u.stopped && u.mustWait() {
			u.waiters++
			u.space.Wait()
			u.waiters--
			now = time.Now()
		}
	}
	if u.stopped {
		u.mu.Unlock()
		u.st.inputDropped.Add(1)
		return
	}
	nseg, nout := u.led.nextID, len(u.led.out)
	wake := u.led.frame(f, now)
	// Run must look when the frame started a segment or decided something.
	poke := u.led.nextID != nseg || len(u.led.out) != nout
	c := u.conn
	u.mu.Unlock()
	if wake && c != nil {
		c.notify()
	}
	if poke {
		u.poke()
	}
}

// mustWait (mu held) says whether a Blocking Frame should wait: audio is piling up for a
// connection that is open, being opened or about to be. In a backoff it does not wait: the
// ledger's rules decide between waiting and the spool, as for a microphone.
func (u *Uplink) mustWait() bool {
	if u.ph != phIdle && u.ph != phConnecting && u.ph != phConnected {
		return false
	}
	if o := u.led.open; o != nil && o.state == segSpool {
		return false
	}
	return u.led.unsent() >= framesIn(u.cfg.BlockAfter)
}

// SegmentEnd marks the end of the open segment. It never blocks.
func (u *Uplink) SegmentEnd(time.Time) {
	u.mu.Lock()
	if u.stopped {
		u.mu.Unlock()
		return
	}
	wake := u.led.end(time.Now())
	c := u.conn
	u.mu.Unlock()
	if wake && c != nil {
		c.notify()
	}
	u.poke()
}

// Withhold stops the audio the uplink holds from being sent (a mute): every segment
// not yet sent in full, the open one included, goes whole to Unconfirmed (the spool)
// instead, the open one when it ends. It never blocks.
func (u *Uplink) Withhold(why string) {
	u.mu.Lock()
	n := u.led.withhold(why)
	if u.waiters > 0 {
		u.space.Broadcast()
	}
	u.mu.Unlock()
	if n > 0 {
		u.log.Info("audio not yet sent withheld from the stream", "segments", n, "why", why)
		u.poke()
	}
}

func (u *Uplink) poke() {
	select {
	case u.kick <- struct{}{}:
	default:
	}
}

// take is the writer's access to the ledger.
func (u *Uplink) take(epoch uint64, now time.Time) sendItem {
	u.mu.Lock()
	it := u.led.take(epoch, now)
	if u.waiters > 0 && it.kind == itemAudio {
		u.space.Broadcast()
	}
	u.mu.Unlock()
	return it
}

// ---- observation ----

// Stats returns a snapshot of the counters.
func (u *Uplink) Stats() Stats {
	u.mu.Lock()
	n := u.led.n
	u.mu.Unlock()
	fs := audio.FrameDuration.Seconds()
	s := Stats{
		State:    u.State().State,
		Connects: u.st.connects.Load(), ConnectFailures: u.st.connectFailures.Load(),
		Refusals: u.st.refusals.Load(), IdleCloses: u.st.idleCloses.Load(),
		AudioSentSeconds: float64(u.st.samplesSent.Load()) / audio.SampleRate,
		FramesSent:       u.st.framesSent.Load(), KeepAlives: u.st.keepAlives.Load(),
		Finalizes: u.st.finalizes.Load(), Segments: n.segments, Utterances: n.published + n.lateFinals,
		EmptySegments: n.empty, GraceCompleted: n.graceCompleted,
		Replays: n.replays, ReplayedSeconds: float64(n.replayedFrames) * fs,
		UnconfirmedSegments: n.spooled, UnconfirmedSeconds: float64(n.spooledFrames) * fs,
		LateFinals: n.lateFinals, LateWords: n.lateWords, DuplicateWords: n.duplicateWords,
		InputDropped: u.st.inputDropped.Load(), EmptyFramesSkipped: n.emptyFrames,
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

// ---- lifecycle ----

// Close stops the uplink gracefully: input is no longer accepted, an open segment is ended,
// CloseStream goes out behind all queued audio, and the last results are read until
// Metadata and the close frame (bounded by Config.CloseTimeout and ctx). What completed is
// published; every other segment goes to Unconfirmed whole. Close returns when Run has
// returned, or with ctx's error.
func (u *Uplink) Close(ctx context.Context) error {
	u.mu.Lock()
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
	if !started {
		// Run never ran: nothing was sent, so every segment goes to Unconfirmed here.
		u.stopped = true
		u.led.finish(time.Now(), "stopping")
		u.ph = phStopped
		u.space.Broadcast()
		u.mu.Unlock()
		u.deliver()
		u.setState(StateStopped, "", "", time.Time{})
		u.closeOnce.Do(func() { close(u.closeReq) })
		close(u.done)
		return nil
	}
	u.mu.Unlock()
	u.closeOnce.Do(func() { close(u.closeReq) })
	select {
	case <-u.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("close live uplink: %w", ctx.Err())
	}
}

// Run owns the connections until Close completes or ctx is done. When ctx ends first, the
// stream is dropped without a graceful close; completed segments are still published and
// the others handed to Unconfirmed before Run returns.
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
		next := u.step(time.Now())
		u.deliver()
		if u.phase() == phStopped {
			u.setState(StateStopped, "", "", time.Time{})
			return nil
		}
		timer.Stop() // since Go 1.23 a stopped timer's channel holds no stale tick
		if !next.IsZero() {
			timer.Reset(max(time.Until(next), 0))
		}
		select {
		case <-ctx.Done():
			u.abort()
			u.deliver()
			u.setState(StateStopped, "", "", time.Time{})
			return ctx.Err()
		case <-closeReq:
			closeReq = nil
			u.beginStop()
		case <-u.kick:
		case r := <-u.dialCh:
			u.onDial(r)
		case ev := <-u.events:
			u.onEvent(ev)
		case <-timer.C:
		}
	}
}

func (u *Uplink) phase() phase {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.ph
}

// setPhase changes the phase (mu held) and wakes blocked Frame calls, whose wait depends
// on it.
func (u *Uplink) setPhase(p phase, until time.Time) {
	u.ph, u.until = p, until
	if u.waiters > 0 {
		u.space.Broadcast()
	}
}

// step does whatever is due at now for the current phase, and returns when it must run
// next (zero: only when something happens). It is the one place that turns the state into
// actions and timers.
func (u *Uplink) step(now time.Time) time.Time {
	u.mu.Lock()
	u.led.tick(now)
	if u.waiters > 0 {
		u.space.Broadcast() // tick may have spooled what a Blocking Frame waits on
	}
	if u.conn != nil && u.led.probe(now) {
		// A Finalize's grace ran out: a pong from now on completes its segment.
		u.conn.ping()
	}
	need := u.led.needsConn()
	var due time.Time
	at := func(t time.Time) {
		if !t.IsZero() && (due.IsZero() || t.Before(due)) {
			due = t
		}
	}
	at(u.led.deadline(now))
	if u.stopping {
		at(u.stopAt)
	}
	late := u.stopping && !now.Before(u.stopAt) // stopping, and out of time
	switch u.ph {
	case phIdle:
		switch {
		case need && !late:
			u.mu.Unlock()
			u.dial(now)
			return due
		case u.stopping:
			u.stopNow(now)
		}
	case phBackoff:
		switch {
		case u.stopping:
			u.stopNow(now)
		case now.Before(u.until):
			at(u.until)
		case need:
			u.mu.Unlock()
			u.dial(now)
			return due
		case !u.refused:
			u.setPhase(phIdle, time.Time{})
			u.mu.Unlock()
			u.setState(StateIdle, "", "", time.Time{})
			return due
		}
		// Refused: the state says so until the next segment's attempt (a probe).
	case phConnecting:
		if late && u.dialCancel != nil {
			u.dialCancel() // onDial sees the failure
		}
	case phConnected:
		closeNow := u.stopping
		if !closeNow && u.cfg.IdleClose > 0 && u.led.quiet() {
			idleAt := maxTime(u.led.lastEnd, u.conn.opened).Add(u.cfg.IdleClose)
			if now.Before(idleAt) {
				at(idleAt)
			} else {
				closeNow = true
				u.log.Debug("closing idle stream", "request_id", u.conn.reqID)
			}
		}
		if closeNow {
			reqID := u.beginStreamClose(now, !u.stopping)
			at(u.until)
			u.mu.Unlock()
			u.setState(StateClosing, "", reqID, time.Time{})
			return due
		}
	case phClosing:
		if now.Before(u.until) {
			at(u.until)
			break
		}
		lc := u.led.conn
		graceful := lc != nil && lc.metadata && lc.closeTaken
		u.mu.Unlock()
		u.endConn(now, ending{cause: "close-timeout", graceful: graceful, closeFrame: true,
			err: errors.New("no close from the service in time")})
		return u.step(now)
	}
	u.mu.Unlock()
	return due
}

// stopNow (mu held) ends the uplink: every undecided segment goes to the spool whole.
func (u *Uplink) stopNow(now time.Time) {
	u.led.finish(now, "stopping")
	u.stopped = true
	u.setPhase(phStopped, time.Time{})
	u.space.Broadcast()
}

func (u *Uplink) beginStop() {
	now := time.Now()
	u.mu.Lock()
	u.stopped = true // no more input
	u.stopping = true
	u.stopAt = now.Add(u.closeWait)
	wake := u.led.end(now)
	c := u.conn
	u.space.Broadcast()
	u.mu.Unlock()
	if wake && c != nil {
		c.notify()
	}
}

// beginStreamClose (mu held) queues CloseStream behind everything on the connection and
// returns its request id.
func (u *Uplink) beginStreamClose(now time.Time, idle bool) string {
	c := u.conn
	until := now.Add(u.cfg.CloseTimeout)
	if u.stopping && u.stopAt.Before(until) {
		until = u.stopAt
	}
	u.idleEnd = idle
	u.led.closeStream(c.epoch)
	u.setPhase(phClosing, until)
	c.notify()
	return c.reqID
}

// deliver hands the ledger's decisions to the handler, in order, outside the lock.
func (u *Uplink) deliver() {
	u.mu.Lock()
	u.outs = u.led.takeOutputs(u.outs[:0])
	u.settled = u.led.takeSettled(u.settled[:0])
	u.mu.Unlock()

	for _, o := range u.outs {
		switch o.kind {
		case outUtterance:
			if o.how == "late" {
				u.log.Warn("words arrived after their segment was published by the Finalize grace: published on their own",
					"segment", o.id, "words", len(o.utt.Words), "request_id", o.utt.RequestID)
			} else {
				u.log.Debug("utterance", "segment", o.id, "completed_by", o.how, "replays", o.replays, "request_id", o.utt.RequestID)
			}
			if u.h.Utterance != nil {
				u.h.Utterance(o.utt)
			}
		case outSpool:
			u.log.Info("segment handed to the spool", "segment", o.id, "start", o.seg.Start,
				"seconds", float64(len(o.seg.Frames))*audio.FrameDuration.Seconds(), "reason", o.seg.Reason, "replays", o.replays)
			if u.h.Unconfirmed != nil {
				u.h.Unconfirmed(o.seg)
			}
		}
	}
	clear(u.outs)
	// After the outputs: a segment's utterance is handed over before it is settled.
	if u.h.Settled != nil {
		for _, t := range u.settled {
			u.h.Settled(t)
		}
	}
}

// ---- connections ----

func (u *Uplink) currentOptions() url.Values {
	u.mu.Lock()
	defer u.mu.Unlock()
	return cloneValues(u.opts)
}

// dial starts a handshake in a goroutine of its own; onDial gets the result.
func (u *Uplink) dial(now time.Time) {
	target, err := streamURL(u.cfg.URL, u.currentOptions())
	if err != nil {
		u.log.Error("invalid stream URL", "err", redact.Text(err.Error(), 300))
		u.failures++
		retry := now.Add(u.cfg.RefusedRetry)
		u.mu.Lock()
		u.refused = true
		u.setPhase(phBackoff, retry)
		u.led.setNoConnUntil(retry, "invalid URL", true, now)
		u.mu.Unlock()
		u.setState(StateRefused, "invalid stream URL", "", retry)
		return
	}
	ctx, cancel := context.WithCancel(u.runCtx)
	u.mu.Lock()
	u.dialCancel = cancel
	u.setPhase(phConnecting, time.Time{})
	u.mu.Unlock()
	u.setState(StateConnecting, "", "", time.Time{})
	u.log.Debug("opening stream", "url", redact.URL(target))
	go func() { u.dialCh <- dial(ctx, &u.cfg, target) }()
}

func (u *Uplink) backoff() time.Duration {
	return backoff.Policy{Min: u.cfg.BackoffMin, Max: u.cfg.BackoffMax}.Delay(u.failures - 1)
}

func (u *Uplink) onDial(r dialResult) {
	u.dialCancel()
	u.dialCancel = nil
	now := time.Now()
	if r.err != nil {
		u.onDialFailed(r, now)
		return
	}
	u.mu.Lock()
	if u.stopping && !u.led.needsConn() {
		u.setPhase(phIdle, time.Time{})
		u.mu.Unlock()
		r.ws.Close()
		return
	}
	u.mu.Unlock()
	u.dialLog.OK("request_id", r.requestID)
	u.refusedN, u.stable = 0, false
	u.st.connects.Add(1)
	u.mu.Lock()
	epoch := u.led.newEpoch()
	u.led.connect(epoch, r.requestID, now)
	c := startConn(u, r.ws, epoch, r.requestID, now)
	u.conn, u.refused = c, false
	u.setPhase(phConnected, time.Time{})
	u.mu.Unlock()
	c.notify()
	u.log.Info("stream opened", "request_id", r.requestID, "connect_ms", r.took.Milliseconds())
	u.event("stream_opened", map[string]any{"request_id": r.requestID, "connect_ms": r.took.Milliseconds()})
	u.setState(StateConnected, "", r.requestID, time.Time{})
}

func (u *Uplink) onDialFailed(r dialResult, now time.Time) {
	u.st.connectFailures.Add(1)
	var re *RefusedError
	var delay time.Duration
	state, why := StateBackoff, "backoff"
	attrs := map[string]any{"request_id": r.requestID, "error": r.err.Error()}
	switch {
	case errors.As(r.err, &re) && re.Permanent():
		u.st.refusals.Add(1)
		u.refusedN++
		delay = u.cfg.RefusedRetry << min(u.refusedN-1, 2)
		state, why = StateRefused, "refused"
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
	retryAt := now.Add(delay)
	attrs["retry_in_s"] = delay.Seconds()
	u.mu.Lock()
	u.refused = state == StateRefused
	u.setPhase(phBackoff, retryAt)
	// A refusal will not fix itself soon (the retry is a probe): its speech goes to the
	// spool; so does speech that would wait longer than MaxWait.
	u.led.setNoConnUntil(retryAt, why, state == StateRefused, now)
	u.mu.Unlock()
	typ := "connect_failed"
	if re != nil {
		typ = "stream_refused"
	}
	u.event(typ, attrs)
	u.dialLog.Fail(r.err, "request_id", r.requestID, "retry_in", delay.Round(time.Millisecond).String())
	u.setState(state, r.err.Error(), r.requestID, retryAt)
}

func (u *Uplink) onEvent(ev connEvent) {
	u.mu.Lock()
	c := u.conn
	u.mu.Unlock()
	if c == nil || ev.c != c {
		return // a replaced connection: ignore whatever it says
	}
	now := time.Now()
	switch {
	case ev.err != nil:
		u.onConnError(ev, now)
	case ev.pong:
		u.mu.Lock()
		u.led.heard(c.epoch, now)
		u.mu.Unlock()
	case ev.parseErr != nil:
		u.st.malformed.Add(1)
		u.parseLog.Fail(ev.parseErr, "message", string(ev.raw), "request_id", c.reqID)
		u.mu.Lock()
		u.led.heard(c.epoch, now)
		u.mu.Unlock()
	default:
		u.onMessage(c, ev.msg, now)
	}
}

func (u *Uplink) onMessage(c *conn, m serverMsg, now time.Time) {
	switch {
	case m.Results != nil:
		r := m.Results
		u.mu.Lock()
		u.led.result(c.epoch, r, now)
		var start, end time.Time
		interim := !r.IsFinal && u.cfg.Interim && u.h.Interim != nil && strings.TrimSpace(r.Transcript) != ""
		if interim {
			start, end = u.led.toWall(c.epoch, r.Start, false), u.led.toWall(c.epoch, r.Start+r.Duration, true)
		}
		u.mu.Unlock()
		if interim {
			u.h.Interim(r.Transcript, start, end)
		}
		if r.IsFinal && !u.stable {
			// Results flowing: the service is healthy, so the backoff starts over.
			u.stable, u.failures = true, 0
		}
	case m.Metadata != nil:
		u.log.Debug("metadata", "request_id", m.Metadata.RequestID, "audio_s", m.Metadata.Duration)
		u.mu.Lock()
		u.led.metadata(c.epoch, now)
		u.mu.Unlock()
	case m.UtteranceEnd != nil, m.SpeechStarted != nil:
		u.mu.Lock()
		u.led.heard(c.epoch, now)
		u.mu.Unlock()
	case m.Error != nil:
		u.mu.Lock()
		u.led.heard(c.epoch, now)
		u.mu.Unlock()
		u.log.Warn("service error message", "description", m.Error.Description, "message", m.Error.Message,
			"variant", m.Error.Variant, "request_id", c.reqID)
		u.event("service_error", map[string]any{"request_id": c.reqID, "error": m.Error.Description, "message": m.Error.Message})
	default:
		n := u.st.unknownTypes.Add(1)
		u.log.Debug("unknown message type ignored", "type", m.Type, "count", n)
	}
}

// metadataSeen reports whether Metadata arrived on c after our CloseStream.
func (c *conn) metadataSeen(u *Uplink) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	lc := u.led.conn
	return lc != nil && lc.epoch == c.epoch && lc.metadata && lc.closeTaken
}

// ending describes how a connection ended.
type ending struct {
	cause    string // for the reconnect counter and the event: "normal", "dropped", "half-open"...
	graceful bool   // a planned close that completed: no reconnect counted, no backoff
	// closeFrame: the peer is alive (it closed with a close frame, or we are giving up a
	// planned close): answer or send a close frame before closing the socket. Only a dead
	// peer's socket is closed abruptly.
	closeFrame bool
	code       int
	reason     string
	err        error
}

func (u *Uplink) onConnError(ev connEvent, now time.Time) {
	e := ending{cause: closeCause(ev), err: ev.err}
	var ce *websocket.CloseError
	if errors.As(ev.err, &ce) {
		e.code, e.reason = ce.Code, ce.Text
		// gorilla reports a TCP connection that ended without a close frame as 1006.
		e.closeFrame = ce.Code != websocket.CloseAbnormalClosure
	}
	e.graceful = u.phase() == phClosing && (e.cause == "normal" || ev.c.metadataSeen(u))
	u.endConn(now, e)
}

// closeCause classifies what ended a connection, for the reconnect counter and the event.
func closeCause(ev connEvent) string {
	var ce *websocket.CloseError
	var ne net.Error
	switch err := ev.err; {
	case errors.As(err, &ce):
		switch {
		case ce.Code == websocket.CloseNormalClosure:
			return "normal"
		case ce.Code == websocket.CloseAbnormalClosure:
			return "dropped"
		case ce.Code == websocket.ClosePolicyViolation && reasonHas(ce.Text, "data0000"):
			return "data-0000"
		case ce.Code == websocket.CloseInternalServerErr && reasonHas(ce.Text, "net0000"):
			return "net-0000"
		case ce.Code == websocket.CloseInternalServerErr && reasonHas(ce.Text, "net0001"):
			return "net-0001"
		}
		return fmt.Sprintf("close-%d", ce.Code)
	case errors.As(err, &ne) && ne.Timeout() && ev.writer:
		return "write-timeout" // the service stopped reading
	case errors.As(err, &ne) && ne.Timeout():
		return "half-open" // no pong and no message within PongWait
	case ev.writer:
		return "write-error"
	}
	return "read-error"
}

// reasonHas matches a Deepgram error code inside a close reason. The protocol requires
// this: the code is only in the reason sentence, written "NET-0001" or as a link
// ".../net0001", so the match ignores case and dashes.
func reasonHas(reason, code string) bool {
	r := strings.ToLower(strings.ReplaceAll(reason, "-", ""))
	return strings.Contains(r, code)
}

// endConn ends the current connection. The ledger first: the connection's incomplete
// segments wait for the next one (or go to the spool), and its writer finds nothing more
// to send. Then the goroutines are stopped and waited for, so a new connection never
// overlaps the old one.
func (u *Uplink) endConn(now time.Time, e ending) {
	cause, graceful, code, reason, err := e.cause, e.graceful, e.code, e.reason, e.err
	u.mu.Lock()
	c := u.conn
	if c == nil {
		u.mu.Unlock()
		return
	}
	idle := u.idleEnd
	u.led.lost(c.epoch, now)
	u.conn, u.idleEnd = nil, false
	audioS := float64(u.st.framesSent.Load()) * audio.FrameDuration.Seconds()
	var retryAt time.Time
	if graceful {
		u.setPhase(phIdle, time.Time{})
	} else {
		if now.Sub(c.opened) >= u.cfg.StableAfter {
			u.failures = 0 // it had been fine for a while: this is a new streak
		}
		if cause != "normal" {
			u.failures++
		}
		retryAt = now.Add(u.backoff())
		u.refused = false
		u.setPhase(phBackoff, retryAt)
		u.led.setNoConnUntil(retryAt, "backoff", false, now)
	}
	u.mu.Unlock()
	c.shutdown(graceful || e.closeFrame, u.events)

	attrs := map[string]any{"request_id": c.reqID, "cause": cause, "code": code, "reason": reason,
		"up_s": now.Sub(c.opened).Seconds()}
	errText := ""
	if err != nil && !graceful {
		errText = err.Error()
		attrs["error"] = errText
	}
	// Counters and state first, then logs and events, so whoever sees the event sees them.
	if graceful {
		if idle {
			u.st.idleCloses.Add(1)
		}
		u.setState(StateIdle, "", c.reqID, time.Time{})
	} else {
		u.st.mu.Lock()
		u.st.reconnects[cause]++
		u.st.mu.Unlock()
		stErr := errText
		if reason != "" {
			stErr = fmt.Sprintf("closed %d: %s", code, reason)
		}
		u.setState(StateBackoff, stErr, c.reqID, retryAt)
	}
	logAttrs := []any{"code", code, "reason", reason, "request_id", c.reqID, "cause", cause, "audio_sent_s", audioS}
	switch {
	case graceful:
		u.log.Info("stream closed", logAttrs...)
	case cause == "data-0000":
		u.log.Error("stream closed: the service could not decode our audio", append(logAttrs, "err", err)...)
		u.event("audio_rejected", map[string]any{"request_id": c.reqID, "reason": reason})
	default:
		u.log.Warn("stream lost", append(logAttrs, "err", err)...)
	}
	u.event("stream_closed", attrs)
}

// abort ends everything at once (Run's context is done).
func (u *Uplink) abort() {
	u.mu.Lock()
	u.stopped, u.stopping = true, true
	cancel := u.dialCancel
	u.mu.Unlock()
	if cancel != nil {
		cancel()
		r := <-u.dialCh
		if r.ws != nil {
			r.ws.Close()
		}
	}
	if u.phase() == phConnected || u.phase() == phClosing {
		u.endConn(time.Now(), ending{cause: "stopped", err: errors.New("stopped")})
	}
	u.mu.Lock()
	u.stopNow(time.Now())
	u.mu.Unlock()
}
