// Package agent owns hark's running pipeline: it starts the parts (capture, VAD and gate,
// live uplink, spool and uploader, MQTT or stdout publishing) in order, routes audio and
// results between them, applies configuration changes, and stops them in the reverse order
// so that nothing already heard is lost.
//
// The other packages each do one job and know nothing of each other; this package is the
// only place that knows how they fit together.
//
// Start order: spool, publisher (MQTT connects in the background), uploader, capture (a
// missing microphone is waited for, with the state saying so), live uplink, then READY.
// READY does not wait for a microphone: while one is waited for, the service is up
// (publishing, transcribing the spool, saying "waiting for device"), so READY is sent when
// the wait begins and the retry loop reports progress to the watchdog.
//
// Goroutines (each started and waited for by Run):
//   - the audio loop (Run's own goroutine): capture frames → gate → uplink; the only
//     goroutine that touches the gate, so live VAD changes are handed to it through an
//     atomic pointer it checks once per frame;
//   - the live uplink's Run, which owns its connection goroutines;
//   - the spool writer: whole segments the uplink hands over are written (fsync) here,
//     never on the uplink's goroutine;
//   - the spool uploader's Run;
//   - the housekeeping loop: periodic health, state changes, systemd status.
//
// Shutdown order (graceful stop: SIGTERM, or the end of a file input), and why:
//  1. stop capture: no new audio enters;
//  2. flush the gate: an open segment is closed, so its end reaches the uplink;
//  3. close the live uplink: CloseStream behind all queued audio, read until Metadata
//     (bounded), deliver what arrived, hand every other segment whole to the spool writer,
//     then let the spool writer finish;
//  4. stop the uploader (after a bounded drain when the input was a file, so a file run
//     prints everything it can): the spool keeps whatever is left for the next start;
//  5. publish the final state and availability offline, flush and disconnect MQTT: last, so
//     every transcript produced by 3 and 4 has been queued before it.
//
// The whole stop fits in StopBudget, under the unit's TimeoutStopSec: steps 3 and 4 share
// what is left after keeping the last part of it for step 5.
package agent

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/hark-audio/hark/internal/backoff"
	"github.com/hark-audio/hark/internal/fsx"
	"github.com/hark-audio/hark/internal/logging"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hark-audio/hark/audio"
	"github.com/hark-audio/hark/capture"
	"github.com/hark-audio/hark/config"
	"github.com/hark-audio/hark/transcript"
	"github.com/hark-audio/hark/uplink/batch"
	"github.com/hark-audio/hark/uplink/live"
	"github.com/hark-audio/hark/uplink/spool"
	"github.com/hark-audio/hark/vad"
)

// Notifier is the service manager (systemd) as the agent sees it. All methods must be
// cheap and non-blocking; Progress is called for every audio frame.
type Notifier interface {
	Ready()
	Status(s string)
	Stopping()
	Progress()
}

type nopNotifier struct{}

func (nopNotifier) Ready()        {}
func (nopNotifier) Status(string) {}
func (nopNotifier) Stopping()     {}
func (nopNotifier) Progress()     {}

// ErrNoAPIKey means no Deepgram API key was found anywhere: a configuration problem that
// retrying will not fix (the command exits with EX_CONFIG so systemd stops restarting).
var ErrNoAPIKey = config.ErrNoDeepgramAuth

// StopBudget bounds a graceful stop, from STOPPING=1 to the return of Run. systemd
// SIGKILLs a service still stopping after TimeoutStopSec (30 s in hark.service), and a
// killed file run is restarted and replays its input, so the budget leaves a margin for
// the process exit under load.
const StopBudget = 25 * time.Second

// publishReserve is the part of the stop budget kept for flushing MQTT (step 5).
const publishReserve = 5 * time.Second

// ConfigError wraps errors that come from the configuration or the secrets it points to.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// Options are what the command passes to New.
type Options struct {
	Loaded   *config.Loaded
	Logger   *slog.Logger
	LevelVar *slog.LevelVar // log.level is applied live through it; may be nil
	// Stdout receives transcripts as JSON lines when no MQTT broker is configured.
	Stdout io.Writer
	// Stdin is the raw audio source for capture.input "-".
	Stdin    io.Reader
	Notifier Notifier
	// Environ is used to resolve secrets; nil means the process environment.
	Environ []string
	// Version is reported in health and Home Assistant discovery.
	Version string
	// StopBudget overrides the package's StopBudget (tests).
	StopBudget time.Duration
}

// Agent is one running hark.
type Agent struct {
	opts Options
	log  *slog.Logger

	mu     sync.Mutex // guards loaded, and uplink while Run sets it
	loaded *config.Loaded
	// changes serialises every change of the running configuration and of the mute state
	// (reload, remote config/set, mute): held across read, modify, persist and adopt, so one
	// never overwrites another (remote.go).
	changes sync.Mutex

	started time.Time
	seq     atomic.Uint64
	muted   atomic.Bool

	vadNext atomic.Pointer[vad.Config] // a live VAD change not yet applied by the audio loop
	toSpool chan live.Segment          // segments the uplink gives up on, consumed by spoolWriter

	pub      publisher
	spool    *spool.Spool
	uploader *batch.Uploader
	uplink   *live.Uplink
	src      *capture.Source

	st       stateTracker
	counters counters

	spoolLog *logging.Repeater // spool write failures: once, then counted

	// journal keeps each forwarded segment on disk until it is settled (journal.go);
	// journalFirst (audio loop only) says the next forwarded frame starts a segment.
	journal      *journal
	journalFirst bool

	// spooledTags are the content tags of the entries in the spool at start: audio already
	// there (a file replayed after a restart) is not spooled twice. Read-only after Run
	// seeds it, except for journal recovery, hence tagsMu.
	spooledTags map[string]bool
	tagsMu      sync.Mutex
}

// New checks what can be checked before anything starts: secrets are readable and the
// spool directory is usable. It starts nothing.
func New(opts Options) (*Agent, error) {
	if opts.Loaded == nil {
		return nil, errors.New("agent: no configuration")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Notifier == nil {
		opts.Notifier = nopNotifier{}
	}
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	if opts.Stdin == nil {
		opts.Stdin = os.Stdin
	}
	a := &Agent{opts: opts, log: opts.Logger.With("component", "agent"), loaded: opts.Loaded,
		toSpool: make(chan live.Segment, spoolQueue)}
	a.spoolLog = logging.NewRepeater(a.log, "speech could not be spooled and is lost", 0).AtLevel(slog.LevelError)
	a.st.init(a)
	return a, nil
}

func (a *Agent) cfg() config.Config {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.loaded.Config
}

// Run runs the pipeline until ctx is cancelled or a file input ends, then stops gracefully.
// It returns nil after a graceful stop, or the error that prevented starting.
func (a *Agent) Run(ctx context.Context) error {
	a.started = time.Now()
	cfg := a.cfg()
	a.st.set(func(s *State) { s.Pipeline = "starting" })

	muted, err := readMuted(cfg.StateDir)
	if err != nil {
		// Privacy fails closed: a mute file that cannot be read may have said "muted".
		// The state and health say why; an operator's mute request (either way) clears it.
		muted = true
		reason := "mute state file unreadable: " + err.Error()
		a.log.Error("cannot read persisted mute state; starting MUTED until an operator sets it", "err", err)
		a.st.set(func(s *State) { s.MuteReason = reason })
	}
	a.muted.Store(muted)
	a.st.set(func(s *State) { s.Muted = muted })

	auth, err := config.DeepgramCredential(cfg.Deepgram, a.opts.Environ)
	if errors.Is(err, config.ErrNoDeepgramAuth) {
		return ErrNoAPIKey
	}
	if err != nil {
		return &ConfigError{fmt.Errorf("deepgram credential: %w", err)}
	}
	a.log.Info("deepgram credential loaded", "from", auth.From)

	// 1. The spool: opened first because everything after it may need to hand it audio.
	//    A spool that cannot be used (read-only or missing disk) does not stop live
	//    transcription, which needs no disk: the agent runs degraded, says so in the state
	//    and health, and retries (spoolRetry).
	sp, spoolErr := spool.OpenDegraded(cfg.Spool.Dir, spool.Limits{MaxBytes: cfg.Spool.MaxBytes, MaxAge: cfg.Spool.MaxAge.D()}, a.opts.Logger)
	if spoolErr != nil {
		a.log.Error("spool unavailable: streaming live only; speech the stream cannot carry is lost until it works; retrying", "dir", cfg.Spool.Dir, "err", spoolErr)
		a.event("spool_unavailable", time.Now(), map[string]any{"error": spoolErr.Error()})
	}
	a.spool = sp
	a.spooledTags = map[string]bool{}
	for _, e := range sp.Pending() {
		if tag, ok := contentTagOf(e.Meta.ID); ok {
			a.spooledTags[tag] = true
		}
	}
	a.journal = newJournal(cfg.Spool.Dir, cfg.Capture.Input, logging.NewRepeater(a.log, "speech journal write failed; a crash now would lose the utterance in flight", 0))
	if spoolErr == nil {
		a.recoverJournal(cfg)
	}

	// 2. Publishing: MQTT connects in the background and never blocks what follows.
	pub, err := a.newPublisher(cfg)
	if err != nil {
		return err
	}
	a.pub = pub
	a.pub.SetConfig(cfg.JSON())
	if m, ok := pub.(mqttPublisher); ok {
		// Not the run context: MQTT must outlive SIGTERM to publish the last transcripts;
		// Close ends it.
		m.Start(context.WithoutCancel(ctx))
	}

	// 3. The spool uploader needs no audio: speech spooled by the last run is transcribed
	//    even while the microphone is missing.
	client := batch.NewClient(batch.ClientConfig{URL: cfg.Deepgram.PrerecordedURL, APIKey: auth.APIKey,
		TokenFile: auth.TokenFile, Logger: a.opts.Logger})
	a.uploader = batch.NewUploader(sp, client, batch.UploaderConfig{Concurrency: cfg.Spool.Concurrency,
		Logger: a.opts.Logger, Publish: a.publishSpooled,
		OnChange: func(batch.Stats) { a.st.touchSpool() }})
	a.uploader.Hold(a.muted.Load()) // muted: spooled speech is held, not sent (SetMuted)
	loadCtx, loadCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer loadCancel()
	loadDone, retryDone := make(chan struct{}), make(chan struct{})
	go func() { defer close(loadDone); a.uploader.Run(loadCtx) }()
	go func() { defer close(retryDone); a.spoolRetry(loadCtx) }()
	a.st.touchSpool()

	// 4. Capture. A microphone that is not there yet is waited for; READY goes out when
	//    the wait begins (the service is up), or below once capture opened.
	ready := sync.OnceFunc(a.opts.Notifier.Ready)
	src, err := a.openCapture(ctx, cfg, ready)
	if err != nil {
		a.opts.Notifier.Stopping()
		loadCancel()
		<-loadDone
		<-retryDone
		a.st.set(func(s *State) { s.Pipeline = "stopped" })
		pubCtx, pubCancel := context.WithTimeout(context.Background(), publishReserve)
		a.pub.Close(pubCtx)
		pubCancel()
		if ctx.Err() != nil {
			a.log.Info("stopped while waiting for the capture device")
			return nil
		}
		return fmt.Errorf("open capture: %w", err)
	}
	a.src = src
	a.st.set(func(s *State) { s.Capture = CaptureState{State: "capturing"} })

	// 5. The live uplink, built from the configuration in effect now, not the one read at
	// start: a Deepgram option changed while capture was being waited for is in it. Built
	// and set under mu, as adopt swaps the configuration and looks for the uplink: a change
	// is either already in cfg or handed to the uplink by adopt, never lost in between.
	a.mu.Lock()
	cfg = a.loaded.Config
	up := live.New(a.liveConfig(cfg, auth), a.liveHandler())
	a.uplink = up
	a.mu.Unlock()

	// Each goroutine has its own done channel because they stop at different points of the
	// shutdown sequence.
	upCtx, upCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer upCancel()
	hkCtx, hkCancel := context.WithCancel(context.Background())
	defer hkCancel()
	upDone, hkDone, spDone := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() { defer close(spDone); a.spoolWriter() }()
	go func() { defer close(upDone); a.uplink.Run(upCtx) }()
	go func() { defer close(hkDone); a.housekeeping(hkCtx) }()

	a.st.set(func(s *State) { s.Pipeline = "running"; s.Muted = a.muted.Load() })
	ready()
	a.log.Info("hark running", "device_id", cfg.DeviceID, "input", inputName(cfg), "mqtt", cfg.MQTT.Broker != "")

	fileEnded := a.audioLoop(ctx)

	// Graceful stop, in the order documented in the package comment, inside the budget.
	a.opts.Notifier.Stopping()
	a.st.set(func(s *State) { s.Pipeline = "stopping"; s.Speech = false })
	budget := a.opts.StopBudget
	if budget <= 0 {
		budget = StopBudget
	}
	stopDeadline := time.Now().Add(budget)
	// Steps 3 and 4 end before the reserve for MQTT begins; the uplink close alone gets at
	// most 15 s of that.
	drainDeadline := stopDeadline.Add(-min(publishReserve, budget/4))
	closeDeadline := time.Now().Add(15 * time.Second)
	if drainDeadline.Before(closeDeadline) {
		closeDeadline = drainDeadline
	}
	closeCtx, closeCancel := context.WithDeadline(context.Background(), closeDeadline)
	defer closeCancel()
	if err := a.uplink.Close(closeCtx); err != nil {
		a.log.Warn("live uplink did not close cleanly", "err", err)
	}
	// The uplink's Run goroutine delivers the last results and hands every segment it did
	// not complete to the spool writer: wait for both before looking at the spool.
	upCancel()
	<-upDone
	close(a.toSpool) // the uplink hands over nothing more
	<-spDone
	if fileEnded {
		a.drainSpool(time.Until(drainDeadline))
	}
	loadCancel()
	<-loadDone
	<-retryDone
	hkCancel()
	<-hkDone
	a.st.set(func(s *State) { s.Pipeline = "stopped" })
	a.publishHealth()
	// The rest of the budget, at least the reserve: what the steps above produced still has
	// to be flushed.
	pubCtx, pubCancel := context.WithDeadline(context.Background(), stopDeadline)
	defer pubCancel()
	if err := a.pub.Close(pubCtx); err != nil {
		a.log.Warn("publisher did not close cleanly", "err", err)
	}
	if err := src.Err(); err != nil && !fileEnded {
		a.log.Warn("capture ended with an error", "err", err)
	}
	a.log.Info("hark stopped", "utterances", a.seq.Load())
	return nil
}

// audioLoop moves frames from capture through the gate to the uplink until ctx is done or
// the input ends. It reports whether a file (or stdin) input ended by itself.
//
// It is the whole audio path on this side of the uplink, on one goroutine with no queue:
// Next waits for the frame (the capture callback or the real-time pacer wakes it), the gate
// and the routing run inline, and the uplink's input takes the frame without blocking.
// While nobody speaks this loop waking once per 100 ms frame is nearly all hark does.
func (a *Agent) audioLoop(ctx context.Context) (inputEnded bool) {
	cfg := a.cfg()
	gate := vad.NewGate(cfg.VAD)
	events := make([]vad.Event, 0, 64)
	// forwarding says whether the current segment is being sent: a segment that began while
	// muted is not, even after unmuting, so the uplink never sees half a segment.
	forwarding := false
	sink := &uplinkInput{Uplink: a.uplink}
	for {
		f, err := a.src.Next()
		if err != nil {
			// ErrClosed: ctx ended (Open's context), a graceful stop. Anything else: the
			// input ended by itself (end of file, or a read error that Err reports).
			inputEnded = !errors.Is(err, capture.ErrClosed) && ctx.Err() == nil
			a.src.Close()
			a.route(sink, gate.Flush(events[:0]), &forwarding)
			return inputEnded
		}
		if c := a.vadNext.Load(); c != nil && a.vadNext.CompareAndSwap(c, nil) {
			gate.SetConfig(*c)
		}
		a.opts.Notifier.Progress()
		a.counters.framesCaptured.Add(1)
		events = a.route(sink, gate.Push(f, events[:0]), &forwarding)
		a.src.SetIdle(!gate.Open())
		an := gate.Last()
		a.counters.setLevel(an.LevelDBFS, an.FloorDBFS)
	}
}

// segmentSink is where routed speech goes: the live uplink's input.
type segmentSink interface {
	SegmentStart(t time.Time)
	Frame(f audio.Frame)
	SegmentEnd(t time.Time)
}

// uplinkInput hands frames to the live uplink, which keeps the frames it is given (until
// their audio is confirmed by a final transcript, possibly longer than capture's
// FrameLifetime), so each frame goes over as a copy of its own. The copies are cut from
// chunks of copyChunk frames: one allocation per 16 streamed frames, none while nobody
// speaks. They go once the uplink copies what it keeps, or says when it lets a frame go.
type uplinkInput struct {
	*live.Uplink
	chunk []int16
}

const copyChunk = 16

func (u *uplinkInput) Frame(f audio.Frame) { u.Uplink.Frame(u.copy(f)) }

func (u *uplinkInput) copy(f audio.Frame) audio.Frame {
	n := len(f.Samples)
	if len(u.chunk) < n {
		u.chunk = make([]int16, copyChunk*max(n, audio.FrameSamples))
	}
	s := u.chunk[:n:n] // capacity capped: no frame can grow into the next
	u.chunk = u.chunk[n:]
	copy(s, f.Samples)
	f.Samples = s
	return f
}

// route delivers gate events to the sink and returns events for reuse.
func (a *Agent) route(sink segmentSink, events []vad.Event, forwarding *bool) []vad.Event {
	for _, ev := range events {
		switch ev.Kind {
		case vad.SegmentStart:
			a.st.set(func(s *State) { s.Speech = true })
			a.event("speech_start", ev.Time, nil)
			*forwarding = !a.muted.Load()
			if *forwarding {
				a.journalFirst = true
				sink.SegmentStart(ev.Time)
			}
		case vad.SegmentFrame:
			if *forwarding && a.muted.Load() {
				// Muted mid-segment: end it here; nothing more is sent.
				sink.SegmentEnd(ev.Frame.Time)
				*forwarding = false
				a.journalEnd()
			}
			if *forwarding {
				if a.journal != nil {
					// Before the uplink has it: a kill from here on leaves it on disk.
					a.journal.frame(ev.Frame, a.journalFirst)
					a.journalFirst = false
				}
				sink.Frame(ev.Frame)
				a.counters.framesSpeech.Add(1)
			}
		case vad.SegmentEnd:
			a.st.set(func(s *State) { s.Speech = false })
			a.event("speech_end", ev.Time, nil)
			if *forwarding {
				sink.SegmentEnd(ev.Time)
				a.journalEnd()
			}
			*forwarding = false
		}
	}
	return events
}

// drainSpool waits (bounded) for the uploader to empty the spool, so that a file run
// prints transcripts of audio that could not be streamed before it exits.
func (a *Agent) drainSpool(limit time.Duration) {
	if a.spool.Stats().Entries == 0 {
		return
	}
	if a.muted.Load() {
		a.log.Info("muted: spooled speech is held and will be transcribed after an unmute", "entries", a.spool.Stats().Entries)
		return
	}
	if limit <= 0 {
		a.log.Warn("no time left to drain the spool; it will be transcribed at the next start", "entries", a.spool.Stats().Entries)
		return
	}
	a.log.Info("waiting for spooled speech to be transcribed", "entries", a.spool.Stats().Entries, "limit", limit)
	a.uploader.Kick()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for a.spool.Stats().Entries > 0 {
		select {
		case <-deadline.C:
			a.log.Warn("spool not drained before exit; it will be transcribed at the next start", "entries", a.spool.Stats().Entries)
			return
		case <-tick.C:
		}
	}
}

// openCapture opens the configured input. A microphone that is not there (a USB device
// not yet plugged in at boot, a sound server not yet up) is retried with backoff until it
// appears or ctx ends, with the state saying so, rather than exiting into a restart loop
// that systemd's start limit would end; a file or stdin that cannot be read is an error.
//
// ready is called when the wait begins: waiting is a running state. While it waits, the
// loop reports progress every second, so the watchdog sees a live retry loop and still
// catches one stuck inside capture.Open.
func (a *Agent) openCapture(ctx context.Context, cfg config.Config, ready func()) (*capture.Source, error) {
	ccfg := a.captureConfig(cfg)
	src, err := capture.Open(ctx, ccfg)
	if err == nil || cfg.Capture.Input != "" {
		return src, err
	}
	a.log.Warn("capture device not available; retrying until it appears", "err", err)
	a.event("capture_unavailable", time.Now(), map[string]any{"error": err.Error()})
	// Exponential with jitter, capped: many devices rebooting together do not retry in
	// step, and a device that appears is picked up within half a minute.
	wait := backoff.Policy{Min: time.Second, Max: 30 * time.Second}
	heartbeat := time.NewTicker(time.Second)
	defer heartbeat.Stop()
	for attempt := 2; ; attempt++ {
		a.st.set(func(s *State) {
			s.Pipeline = "waiting_for_device"
			s.Capture = CaptureState{State: "unavailable", LastError: err.Error()}
		})
		ready()
		a.opts.Notifier.Progress()
		t := time.NewTimer(wait.Delay(attempt - 2))
	sleep:
		for {
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, ctx.Err()
			case <-heartbeat.C:
				a.opts.Notifier.Progress()
			case <-t.C:
				break sleep
			}
		}
		if src, err = capture.Open(ctx, ccfg); err == nil {
			a.log.Info("capture device available", "attempts", attempt)
			return src, nil
		}
		a.log.Debug("capture device still not available", "attempt", attempt, "err", err)
	}
}

func inputName(cfg config.Config) string {
	if cfg.Capture.Input != "" {
		return cfg.Capture.Input
	}
	if cfg.Capture.Device != "" {
		return "device " + cfg.Capture.Device
	}
	return "default device"
}

func (a *Agent) captureConfig(cfg config.Config) capture.Config {
	return capture.Config{
		Device: cfg.Capture.Device, Input: cfg.Capture.Input, Backend: cfg.Capture.Backend,
		SampleRate: cfg.Capture.SampleRate, Realtime: cfg.Capture.Realtime, RingMS: cfg.Capture.RingMS,
		Stdin: a.opts.Stdin, Logger: a.opts.Logger,
		OnEvent: func(ev capture.Event) {
			attrs := map[string]any{}
			errText := ""
			if ev.Err != nil {
				errText = ev.Err.Error()
				attrs["error"] = errText
			}
			a.event("capture_"+ev.Type, ev.At, attrs)
			switch ev.Type {
			case "device_lost", "reopen_failed":
				a.st.set(func(s *State) { s.Capture = CaptureState{State: "lost", LastError: errText} })
			case "device_reopened":
				a.st.set(func(s *State) { s.Capture = CaptureState{State: "capturing"} })
			}
		},
	}
}

func (a *Agent) liveConfig(cfg config.Config, auth config.DeepgramAuth) live.Config {
	d := cfg.Deepgram
	return live.Config{
		URL: d.URL, APIKey: auth.APIKey, TokenFile: auth.TokenFile, Options: live.Query(d),
		KeepAlive: d.KeepAlive.D(), IdleClose: d.IdleClose.D(), ConnectTimeout: d.ConnectTimeout.D(),
		Interim: d.InterimResults,
		// A file or stdin read faster than real time can wait for the uplink; a microphone
		// cannot, and its audio loop must never block.
		Blocking: cfg.Capture.Input != "" && !cfg.Capture.Realtime,
		Logger:   a.opts.Logger.With("component", "live"),
	}
}

// liveHandler adapts the uplink's callbacks. They run on the uplink's Run goroutine, never
// on the audio path; none writes to disk itself (a segment for the spool goes to the spool
// writer) or waits on the network.
func (a *Agent) liveHandler() live.Handler {
	return live.Handler{
		Utterance: func(u transcript.Utterance) { a.publishUtterance(u) },
		Interim: func(text string, start, end time.Time) {
			a.pub.PublishInterim(map[string]any{"text": text, "start": transcript.FormatTime(start),
				"end": transcript.FormatTime(end), "is_final": false})
		},
		// A full queue (the disk is slower than the faults) holds the uplink's results
		// back, never the audio, and loses nothing.
		Unconfirmed: func(seg live.Segment) { a.toSpool <- seg },
		// Published live (or answered with no words): its journal copy can go.
		Settled: func(first time.Time) {
			if a.journal != nil {
				a.journal.remove(first)
			}
		},
		Event: func(ev live.Event) {
			a.event(ev.Type, ev.At, ev.Attrs)
		},
		State: func(s live.State) {
			a.st.set(func(st *State) {
				st.Uplink = UplinkState{State: s.State, LastError: s.LastError, RequestID: s.RequestID}
			})
		},
	}
}

// spoolQueue bounds the segments waiting for the spool writer (each at most a few MB).
const spoolQueue = 16

// spoolWriter writes the segments the uplink hands over until toSpool is closed.
func (a *Agent) spoolWriter() {
	for seg := range a.toSpool {
		a.spoolSegment(seg)
	}
}

// spoolSegment stores a segment the live stream could not transcribe. A failure here is
// the one place speech can be lost, so it is logged loudly and counted.
func (a *Agent) spoolSegment(seg live.Segment) {
	if len(seg.Frames) == 0 {
		return
	}
	cfg := a.cfg()
	samples := segmentSamples(seg.Frames)
	// The content tag names the entry, so the next start knows what is already spooled: a
	// file or stdin run that systemd restarts replays the same audio, which must not be
	// spooled (and transcribed, and published) twice.
	tag := contentTag(samples)
	a.tagsMu.Lock()
	already := a.spooledTags[tag]
	a.tagsMu.Unlock()
	if already {
		a.log.Info("speech already in the spool; not spooled again", "start", seg.Start, "tag", tag)
		a.journalRemove(seg.Start)
		return
	}
	meta := spool.Meta{ID: seg.Start.UTC().Format("20060102T150405.000Z") + "-" + tag, Start: seg.Start,
		DeviceID: cfg.DeviceID, Options: batchOptions(cfg.Deepgram), Reason: seg.Reason}
	if _, err := a.spool.Put(meta, samples); err != nil {
		n := a.counters.spoolErrors.Add(1)
		// Once, then counted (spool_write_errors in health): a full disk fails every
		// utterance, and one line per utterance buried everything else in the journal.
		a.spoolLog.Fail(err, "start", seg.Start, "seconds", float64(len(samples))/audio.SampleRate, "spool_write_errors", n)
		a.event("error", time.Now(), map[string]any{"error": "spool: " + err.Error()})
		return
	}
	a.spoolLog.OK()
	a.journalRemove(seg.Start) // durable in the spool now: the journal copy can go
	a.counters.spooledSamples.Add(int64(len(samples)))
	a.event("spooled", time.Now(), map[string]any{"start": transcript.FormatTime(seg.Start),
		"seconds": float64(len(samples)) / audio.SampleRate, "reason": seg.Reason})
	// No Kick: Put wakes an idle uploader, and a backoff in progress is there because the
	// service or the network failed (docs/spool.md).
	a.st.touchSpool()
}

// spoolRetry opens an unavailable spool again, with backoff, until it works or ctx ends.
// A Put also tries it first, so speech is stored as soon as the disk is back.
func (a *Agent) spoolRetry(ctx context.Context) {
	wait := backoff.Policy{Min: time.Second, Max: time.Minute}
	for attempt := 0; !a.spool.Available(); attempt++ {
		t := time.NewTimer(wait.Delay(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if err := a.spool.Reopen(); err != nil {
			a.log.Debug("spool still unavailable", "attempt", attempt+1, "err", err)
			a.st.touchSpool()
			continue
		}
		a.log.Info("spool available again", "dir", a.spool.Dir(), "attempts", attempt+1)
		a.event("spool_available", time.Now(), nil)
		a.recoverJournal(a.cfg()) // what a killed run left, now that it can be stored
		a.st.touchSpool()
	}
}

func (a *Agent) journalEnd() {
	if a.journal != nil {
		a.journal.end()
	}
}

func (a *Agent) journalRemove(first time.Time) {
	if a.journal != nil {
		a.journal.remove(first)
	}
}

// recoverJournal puts the segments a killed run left in the journal into the spool (by
// content tag: one that reached the spool too is not stored twice) and removes their
// journal files. A segment that cannot be stored keeps its file for the next start.
func (a *Agent) recoverJournal(cfg config.Config) {
	a.tagsMu.Lock()
	defer a.tagsMu.Unlock()
	js, err := readJournals(filepath.Join(cfg.Spool.Dir, journalDir))
	if err != nil {
		a.log.Warn("cannot read the speech journal; what it holds stays for the next start", "err", err)
		return
	}
	for _, j := range js {
		if len(j.frames) == 0 {
			os.Remove(j.path)
			continue
		}
		if j.input != "" && j.input != "-" && j.input == cfg.Capture.Input {
			// This run reads the same file again from its start and hears the segment
			// again: a recovered copy would be published twice.
			a.log.Info("journal of the input file being read again dropped: the file is replayed", "input", j.input, "start", j.frames[0].Time)
			os.Remove(j.path)
			continue
		}
		samples := segmentSamples(j.frames)
		tag := contentTag(samples)
		start := j.frames[0].Time
		secs := float64(len(samples)) / audio.SampleRate
		if !a.spooledTags[tag] {
			meta := spool.Meta{ID: start.UTC().Format("20060102T150405.000Z") + "-" + tag, Start: start,
				DeviceID: cfg.DeviceID, Options: batchOptions(cfg.Deepgram), Reason: "recovered after a crash"}
			if _, err := a.spool.Put(meta, samples); err != nil {
				if errors.Is(err, spool.ErrTooLarge) { // it never will be: do not retry at every start
					a.log.Error("speech recovered from the journal is larger than the spool may hold; dropped", "start", start, "seconds", secs, "err", err)
					os.Remove(j.path)
					continue
				}
				a.log.Error("speech recovered from the journal could not be spooled; kept for the next start", "start", start, "seconds", secs, "err", err)
				continue
			}
			a.spooledTags[tag] = true
			a.log.Warn("speech in flight when the last run was killed recovered into the spool", "start", start, "seconds", secs)
			a.event("recovered", time.Now(), map[string]any{"start": transcript.FormatTime(start), "seconds": secs})
		}
		os.Remove(j.path)
	}
}

// maxGapFrames bounds the silence segmentSamples puts in for frames capture dropped.
const maxGapFrames = 600

// segmentSamples joins a segment's frames for the spool. Frames capture dropped inside the
// segment (a gap in Seq) become silence, so that file seconds map linearly back to capture
// time from the segment's start, as the uploader maps them.
func segmentSamples(frames []audio.Frame) []int16 {
	n := len(frames)
	if n > 0 {
		n += min(int(frames[len(frames)-1].Seq-frames[0].Seq)+1-n, maxGapFrames)
	}
	samples := make([]int16, 0, n*audio.FrameSamples)
	for i, f := range frames {
		if i > 0 && f.Seq > frames[i-1].Seq+1 {
			if missing := int(f.Seq - frames[i-1].Seq - 1); missing <= maxGapFrames {
				samples = append(samples, make([]int16, missing*audio.FrameSamples)...)
			}
		}
		samples = append(samples, f.Samples...)
	}
	return samples
}

// contentTag identifies audio by its samples: the first 64 bits of their SHA-256, in hex.
func contentTag(samples []int16) string {
	b := make([]byte, 2*len(samples))
	for i, v := range samples {
		binary.LittleEndian.PutUint16(b[2*i:], uint16(v))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// contentTagOf extracts the content tag from a spool entry ID made by spoolSegment
// ("<start>-<16 hex digits>"); IDs without one (older entries) have none.
func contentTagOf(id string) (string, bool) {
	i := strings.LastIndexByte(id, '-')
	if i < 0 || len(id)-i-1 != 16 {
		return "", false
	}
	tag := id[i+1:]
	if _, err := hex.DecodeString(tag); err != nil {
		return "", false
	}
	return tag, true
}

// batchOptions are the pre-recorded query options matching the live ones, without the raw
// audio parameters (spool files are WAV).
func batchOptions(d config.Deepgram) map[string][]string {
	return batch.PrerecordedOptions(live.Query(d))
}

func (a *Agent) publishSpooled(u transcript.Utterance) error {
	u.Source = transcript.SourceSpool
	err := a.publishUtterance(u)
	a.st.touchSpool()
	return err
}

// publishUtterance numbers an utterance and hands it to the publisher.
func (a *Agent) publishUtterance(u transcript.Utterance) error {
	if u.Source == "" {
		u.Source = transcript.SourceLive
	}
	u.DeviceID = a.cfg().DeviceID
	u.Seq = a.seq.Add(1)
	if err := a.pub.PublishTranscript(u); err != nil {
		a.log.Error("transcript could not be queued", "seq", u.Seq, "err", err)
		return err
	}
	a.counters.utterances.Add(1)
	a.counters.lastTranscript.Store(time.Now().UnixNano())
	return nil
}

// event publishes an event: {"type": ..., "at": ..., more attributes}.
func (a *Agent) event(typ string, at time.Time, attrs map[string]any) {
	if at.IsZero() {
		at = time.Now()
	}
	ev := map[string]any{"type": typ, "at": transcript.FormatTime(at)}
	for k, v := range attrs {
		ev[k] = v
	}
	if a.pub != nil {
		a.pub.PublishEvent(ev)
	}
}

// ---- mute ----

const mutedFile = "muted"

func readMuted(stateDir string) (bool, error) {
	b, err := os.ReadFile(filepath.Join(stateDir, mutedFile))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var v struct {
		Muted bool `json:"muted"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return false, fmt.Errorf("parse %s: %w", mutedFile, err)
	}
	return v.Muted, nil
}

// SetMuted mutes or unmutes: while muted no audio is sent anywhere (live or spool);
// capture keeps running so its health stays visible. The setting survives a restart.
//
// Muting holds the spool: entries spooled before (or while) muted are neither uploaded nor
// published until unmuted, and audio handed to the live uplink but not yet sent is
// withheld and spooled (held) too. DiscardSpool drops what is held, on request.
func (a *Agent) SetMuted(m bool) error {
	a.changes.Lock() // in order with the other changes: the file and the flag agree
	defer a.changes.Unlock()
	cfg := a.cfg()
	b, _ := json.Marshal(map[string]bool{"muted": m})
	if err := fsx.WriteFile(filepath.Join(cfg.StateDir, mutedFile), b, 0o600); err != nil {
		return fmt.Errorf("persist mute state: %w", err)
	}
	if a.muted.Swap(m) != m {
		a.applyMute(m)
		a.log.Info("mute changed", "muted", m)
		a.event(map[bool]string{true: "muted", false: "unmuted"}[m], time.Now(), nil)
	}
	a.st.set(func(s *State) { s.Muted = m; s.MuteReason = "" })
	return nil
}

// applyMute holds or releases the spool uploads and withholds the live uplink's unsent
// audio. The parts may not exist yet (SetMuted before Run): Run reads the flag.
func (a *Agent) applyMute(m bool) {
	if a.uploader != nil {
		a.uploader.Hold(m)
	}
	if !m {
		return
	}
	a.mu.Lock()
	up := a.uplink
	a.mu.Unlock()
	if up != nil {
		up.Withhold("muted")
	}
}

// DiscardSpool drops the speech the spool holds (a mute request with discard_spool) and
// returns how many entries it dropped. An upload in flight at that moment is not dropped.
func (a *Agent) DiscardSpool() int {
	if a.spool == nil {
		return 0
	}
	n := a.spool.Discard()
	if n > 0 {
		a.event("spool_discarded", time.Now(), map[string]any{"entries": n})
	}
	a.st.touchSpool()
	return n
}
