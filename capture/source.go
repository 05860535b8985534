package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hark-audio/hark/audio"
	"github.com/hark-audio/hark/internal/fsx"
	"github.com/hark-audio/hark/internal/pace"
)

// Config selects and tunes the input. It mirrors config.Capture plus what only a program
// can supply (stdin, callbacks, logger).
type Config struct {
	// Device is a capture device name (case-insensitive substring) or id; "" is the
	// backend's default device.
	Device string
	// Input replaces the microphone: a WAV file path, or "-" for raw s16le 16 kHz mono
	// read from Stdin.
	Input string
	// Backend is "auto" (or ""), "alsa", "pulseaudio" or "null" (silence, for tests).
	Backend string
	// SampleRate is accepted for the configuration's sake; the microphone is always opened
	// with a 16 kHz client format and miniaudio converts from whatever the device runs at.
	SampleRate int
	// Realtime paces file and stdin input at real time; false delivers as fast as the
	// consumer takes frames.
	Realtime bool
	// RingMS is the capacity of the capture ring in milliseconds (default 5000).
	RingMS int
	// Stdin is read for Input "-" (default os.Stdin).
	Stdin io.Reader
	// OnEvent, if set, is called from capture's goroutines for device and overflow events.
	// It must not block for long.
	OnEvent func(Event)
	// Logger defaults to a discarding logger.
	Logger *slog.Logger
	// StallTimeout is how long the microphone may deliver nothing before the device is
	// treated as lost and reopened (default 3 s).
	StallTimeout time.Duration
}

// Event types reported through Config.OnEvent.
const (
	EventDeviceLost     = "device_lost"     // the device stopped, failed or went silent; reopening
	EventDeviceReopened = "device_reopened" // capture resumed after a loss
	EventReopenFailed   = "reopen_failed"   // one reopen attempt failed (Err says why)
	EventOverflow       = "overflow"        // the ring dropped audio (Dropped samples since the last report)
)

// Event is something that happened to the input.
type Event struct {
	Type    string
	Err     error
	At      time.Time
	Dropped uint64 // samples, for EventOverflow
	Device  string
}

// Input states reported in Stats.State.
const (
	StateCapturing = "capturing"
	StateLost      = "lost" // device lost, reopening with backoff
	StateEnded     = "ended"
	StateClosed    = "closed"
)

// Stats are counters and gauges for health reporting.
type Stats struct {
	Frames         uint64    `json:"frames"`          // frames delivered
	Samples        uint64    `json:"samples"`         // samples captured (before any drop)
	DroppedSamples uint64    `json:"dropped_samples"` // samples lost to ring overflow or discarded partial frames
	Reopens        uint64    `json:"reopens"`         // successful reopens after a loss
	Device         string    `json:"device"`          // device name in use
	Backend        string    `json:"backend"`         // backend in use
	State          string    `json:"state"`
	LastError      string    `json:"last_error,omitempty"`
	LastErrorAt    time.Time `json:"last_error_at,omitzero"`
}

// Source delivers frames from one input. Open starts it; Next returns its frames; Close
// stops it.
//
// The frames' Samples live in a ring of FrameLifetime slots that the Source fills in turn:
// a frame's samples stay valid until FrameLifetime more frames have been returned (6.4 s
// of audio), which covers everything the audio path holds on to (the gate's pre-roll is at
// most 3 s); a consumer that keeps a frame longer keeps a copy (Frame.Clone). So capture
// allocates nothing per frame.
type Source struct {
	cfg    Config
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	// Owned by the goroutine calling Next.
	next   func() (audio.Frame, error) // per kind of input
	slots  slots
	dec    *FileDecoder // file input
	stdin  *stdinFeed   // stdin input
	tick   *pace.Ticker // real-time pacing of file and stdin input; nil for a microphone
	credit uint64       // ticks due and not yet used by a frame
	idle   bool         // SetIdle(true): the pacer releases frames idleStride at a time
	ended  error        // what ended the input (io.EOF, a read error, ErrClosed): Next returns it from then on

	frames    atomic.Uint64 // frames returned by Next
	closed    atomic.Bool   // ctx is done: checked per frame (cheaper than ctx.Err, a lock)
	fileOnce  sync.Once
	file      *os.File
	mu        sync.Mutex
	err       error
	stats     Stats
	mic       *micInput // nil for file and stdin input
	lastDrops uint64    // overflow reporting (Next's goroutine)
	lastDropT time.Time
}

// ErrClosed is what Next returns once the Source was closed or the context given to Open
// ended.
var ErrClosed = errors.New("capture closed")

// Open starts capturing from cfg.Input (file or stdin) or the microphone. A microphone
// that cannot be opened now is an error; once running, a lost device is reopened in the
// background. ctx bounds the whole capture: cancelling it is like Close.
func Open(ctx context.Context, cfg Config) (*Source, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RingMS <= 0 {
		cfg.RingMS = 5000
	}
	if cfg.StallTimeout <= 0 {
		cfg.StallTimeout = 3 * time.Second
	}
	s := &Source{cfg: cfg, log: cfg.Logger.With("component", "capture")}
	s.ctx, s.cancel = context.WithCancel(ctx)
	context.AfterFunc(s.ctx, func() { s.closed.Store(true) })
	start := time.Now()
	var err error
	switch cfg.Input {
	case "":
		err = s.startMic(s.ctx)
	case "-":
		in := cfg.Stdin
		if in == nil {
			in = os.Stdin
		}
		s.startStdin(NewRawDecoder(in, "stdin", start))
		err = s.startPacing(start)
	default:
		var f *os.File
		// A FIFO's open waits for a writer, and its reads for data: both obey the context
		// (a SIGTERM stops a capture waiting on a silent FIFO).
		f, err = fsx.OpenInput(s.ctx, cfg.Input)
		if err != nil {
			err = fmt.Errorf("open audio file: %w", err)
			break
		}
		s.file = f
		context.AfterFunc(s.ctx, s.closeFile)
		var d *FileDecoder
		d, err = NewFileDecoder(f, cfg.Input, start)
		if err != nil {
			f.Close()
			break
		}
		s.log.Debug("file input", "file", cfg.Input, "rate", d.Format().SampleRate, "channels", d.Format().Channels)
		s.dec, s.next = d, s.nextFile
		s.stats.State, s.stats.Device, s.stats.Backend = StateCapturing, d.name, "file"
		err = s.startPacing(start)
	}
	if err != nil {
		s.cancel()
		s.closeFile()
		return nil, err
	}
	return s, nil
}

// startPacing starts the real-time schedule of file and stdin input: frame i is complete,
// as if captured live, at start + (i+1)·100 ms, and is returned no earlier.
func (s *Source) startPacing(start time.Time) error {
	if !s.cfg.Realtime {
		return nil
	}
	t, err := pace.New(start.Add(audio.FrameDuration), audio.FrameDuration)
	if err != nil {
		return err
	}
	s.tick = t
	// Close (or the end of Open's context) wakes a Next waiting for the next tick.
	context.AfterFunc(s.ctx, t.Stop)
	return nil
}

// Next returns the next frame, waiting for it: until it is due (file and stdin input in
// real time) or captured (microphone). It returns io.EOF at the end of a file or stdin,
// the read error that ended the input (also reported by Err), or ErrClosed after Close.
// A lost microphone is reopened in the background while Next waits.
//
// Next must be called from one goroutine; the frame's Samples are valid for FrameLifetime
// more frames (see Source).
func (s *Source) Next() (audio.Frame, error) {
	if s.ended != nil {
		return audio.Frame{}, s.ended
	}
	if s.closed.Load() {
		return audio.Frame{}, s.end(ErrClosed)
	}
	f, err := s.next()
	if err != nil {
		return audio.Frame{}, s.end(err)
	}
	s.frames.Add(1)
	return f, nil
}

// end records what ended the input and returns it.
func (s *Source) end(err error) error {
	if s.ctx.Err() != nil {
		err = ErrClosed
	}
	s.ended = err
	s.closeFile()
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err == ErrClosed:
	case errors.Is(err, io.EOF):
		s.log.Debug("audio input ended", "frames", s.frames.Load())
		s.stats.State = StateEnded
	default:
		s.err = err
		s.stats.LastError, s.stats.LastErrorAt = err.Error(), time.Now()
		s.stats.State = StateEnded
		s.log.Error("audio input failed", "err", err)
	}
	return err
}

// idleStride is how many frames a real-time file or stdin input releases at once while
// nobody speaks: 500 ms, so the pacer wakes twice a second instead of ten times, the bulk of
// what an idle daemon costs. The price is paid once per utterance: its start is seen up to
// 400 ms later than it would be, the frames before it having waited in the ring as pre-roll
// anyway; the end of speech, and so the transcript's latency, is unaffected.
const idleStride = 5

// SetIdle says whether anyone is speaking (the gate is closed). While idle, real-time file
// and stdin input is released idleStride frames at a time, each still no earlier than it
// is due; a microphone is unaffected (its device's period sets its wake-ups). Call it from
// the goroutine that calls Next.
func (s *Source) SetIdle(idle bool) {
	if s.tick == nil || s.idle == idle {
		return
	}
	k := 1
	if idle {
		k = idleStride
	}
	if err := s.tick.SetStride(k); err != nil {
		// Pacing stays as it was: correct, only costlier.
		s.log.Debug("pacing stride unchanged", "err", err)
		return
	}
	s.idle = idle
}

// pace waits until the frame just read is due.
func (s *Source) pace() error {
	if s.tick == nil {
		return nil
	}
	for s.credit == 0 {
		n, err := s.tick.Wait()
		if err != nil {
			return ErrClosed
		}
		s.credit += n
	}
	s.credit--
	return nil
}

func (s *Source) nextFile() (audio.Frame, error) {
	f, err := s.dec.NextInto(s.slots.get())
	if err != nil {
		return audio.Frame{}, err
	}
	return f, s.pace()
}

func (s *Source) closeFile() {
	s.fileOnce.Do(func() {
		if s.file != nil {
			s.file.Close()
		}
	})
}

// Err is the error that ended the input: nil for a clean end of file or Close, else a read
// error naming the input.
func (s *Source) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Stats returns the current counters.
func (s *Source) Stats() Stats {
	s.mu.Lock()
	st := s.stats
	m := s.mic
	s.mu.Unlock()
	st.Frames = s.frames.Load()
	if m != nil {
		rs := m.ring.stats()
		st.Samples = rs.written
		st.DroppedSamples = rs.dropped + m.asmDropped.Load()
	} else {
		st.Samples = st.Frames * audio.FrameSamples
	}
	return st
}

// Close stops capture and waits for its goroutines; a Next waiting in another goroutine
// returns ErrClosed. It is safe to call more than once. One exception: a read blocked on
// Stdin cannot be interrupted, so the goroutine doing it ends when that read returns (at
// the latest when stdin is closed).
func (s *Source) Close() error {
	s.once.Do(func() {
		s.closed.Store(true)
		s.cancel()
		s.wg.Wait()
		s.closeFile()
		s.mu.Lock()
		s.stats.State = StateClosed
		s.mu.Unlock()
	})
	return nil
}

func (s *Source) event(e Event) {
	if e.At.IsZero() {
		e.At = time.Now()
	}
	if s.cfg.OnEvent != nil {
		s.cfg.OnEvent(e)
	}
}

func (s *Source) setErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.LastError = err.Error()
	s.stats.LastErrorAt = time.Now()
}

// stdinFeed reads stdin on its own goroutine, because a read blocked on a pipe or terminal
// cannot be interrupted and must never delay Close. Frames travel in a few buffers that go
// round between the two goroutines, so nothing is allocated per frame.
type stdinFeed struct {
	frames chan audio.Frame // decoded, closed at the end of input
	free   chan []int16     // buffers to decode into
	err    error            // read error, set before frames is closed
}

func (s *Source) startStdin(d *FileDecoder) {
	s.stats.State, s.stats.Device, s.stats.Backend = StateCapturing, d.name, "file"
	const buffers = 3
	fd := &stdinFeed{frames: make(chan audio.Frame, buffers-1), free: make(chan []int16, buffers)}
	for range buffers {
		fd.free <- make([]int16, audio.FrameSamples)
	}
	s.stdin, s.next = fd, s.nextStdin
	ctx := s.ctx
	go func() {
		defer close(fd.frames)
		for {
			var buf []int16
			select {
			case buf = <-fd.free:
			case <-ctx.Done():
				return
			}
			f, err := d.NextInto(buf)
			if err != nil {
				if !errors.Is(err, io.EOF) {
					fd.err = err
				}
				return
			}
			select {
			case fd.frames <- f:
			case <-ctx.Done():
				return
			}
		}
	}()
}

func (s *Source) nextStdin() (audio.Frame, error) {
	var f audio.Frame
	var ok bool
	select {
	case f, ok = <-s.stdin.frames:
	case <-s.ctx.Done():
		return audio.Frame{}, ErrClosed
	}
	if !ok {
		if s.stdin.err != nil {
			return audio.Frame{}, s.stdin.err
		}
		return audio.Frame{}, io.EOF
	}
	buf := f.Samples
	f.Samples = s.slots.get()
	copy(f.Samples, buf)
	s.stdin.free <- buf
	return f, s.pace()
}

// FrameLifetime is how many frames a Source returns before it reuses the Samples of a
// frame it returned: a frame's samples are valid until FrameLifetime more frames were
// returned.
const FrameLifetime = 64

// slots is the Source's frame storage, handed out in turn.
type slots struct {
	buf  []int16
	next int
}

func (sl *slots) get() []int16 {
	if sl.buf == nil {
		sl.buf = make([]int16, FrameLifetime*audio.FrameSamples)
	}
	i := sl.next * audio.FrameSamples
	sl.next = (sl.next + 1) % FrameLifetime
	return sl.buf[i : i+audio.FrameSamples : i+audio.FrameSamples]
}
