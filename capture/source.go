package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/hark-audio/hark/audio"
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

// Source delivers frames from one input. Open starts it; Close stops it.
type Source struct {
	cfg    Config
	log    *slog.Logger
	frames chan audio.Frame
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	mu    sync.Mutex
	err   error
	stats Stats
	mic   *micInput // nil for file and stdin input
}

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
	s := &Source{cfg: cfg, log: cfg.Logger.With("component", "capture"), frames: make(chan audio.Frame, 4)}
	ctx, s.cancel = context.WithCancel(ctx)
	var err error
	switch cfg.Input {
	case "":
		err = s.startMic(ctx)
	case "-":
		in := cfg.Stdin
		if in == nil {
			in = os.Stdin
		}
		s.startFile(ctx, NewRawDecoder(in, "stdin", time.Now()), nil, false)
	default:
		var f *os.File
		f, err = os.Open(cfg.Input)
		if err != nil {
			err = fmt.Errorf("open audio file: %w", err)
			break
		}
		var d *FileDecoder
		d, err = NewFileDecoder(f, cfg.Input, time.Now())
		if err != nil {
			f.Close()
			break
		}
		s.log.Debug("file input", "file", cfg.Input, "rate", d.Format().SampleRate, "channels", d.Format().Channels)
		s.startFile(ctx, d, f, true)
	}
	if err != nil {
		s.cancel()
		return nil, err
	}
	return s, nil
}

// Frames delivers the audio. It is closed when the input ends (end of file) or after Close.
func (s *Source) Frames() <-chan audio.Frame { return s.frames }

// Err is the error that ended the input, once Frames is closed: nil for a clean end of
// file or Close, else a read error naming the input.
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
	if m != nil {
		rs := m.ring.stats()
		st.Samples = rs.written
		st.DroppedSamples = rs.dropped + m.asmDropped.Load()
	}
	return st
}

// Close stops capture and waits for its goroutines. It is safe to call more than once.
// One exception: a read blocked on Stdin cannot be interrupted, so the goroutine doing it
// ends when that read returns (at the latest when stdin is closed).
func (s *Source) Close() error {
	s.once.Do(func() {
		s.cancel()
		s.wg.Wait()
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

// startFile runs a decoder, paced at real time when cfg.Realtime. The decoding runs on its
// own goroutine so a read blocked on stdin never delays Close: Close waits for that
// goroutine only for regular files (whose reads always return).
func (s *Source) startFile(ctx context.Context, d *FileDecoder, f *os.File, waitReader bool) {
	s.stats.State = StateCapturing
	s.stats.Device = d.name
	s.stats.Backend = "file"
	decoded := make(chan audio.Frame, 2)
	var readErr error
	readDone := make(chan struct{})
	run := func() {
		defer close(readDone)
		defer close(decoded)
		if f != nil {
			defer f.Close()
		}
		for {
			fr, err := d.Next()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					readErr = err
				}
				return
			}
			select {
			case decoded <- fr:
			case <-ctx.Done():
				return
			}
		}
	}
	if waitReader {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); run() }()
	} else {
		go run()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(s.frames)
		start := time.Now()
		timer := time.NewTimer(0)
		defer timer.Stop()
		var n uint64
		for {
			var fr audio.Frame
			var ok bool
			select {
			case fr, ok = <-decoded:
			case <-ctx.Done():
				return
			}
			if !ok {
				break
			}
			// Frame i is complete, as if captured live, at start + (i+1)*100ms. Pacing
			// against that schedule (not frame to frame) keeps the rate exact.
			fr.Time = start.Add(time.Duration(fr.Seq) * audio.FrameDuration)
			if s.cfg.Realtime {
				timer.Reset(time.Until(fr.End()))
				select {
				case <-timer.C:
				case <-ctx.Done():
					return
				}
			}
			select {
			case s.frames <- fr:
			case <-ctx.Done():
				return
			}
			n++
			s.mu.Lock()
			s.stats.Frames = n
			s.stats.Samples = n * audio.FrameSamples
			s.mu.Unlock()
		}
		<-readDone
		s.mu.Lock()
		if readErr != nil {
			s.err = readErr
			s.stats.LastError, s.stats.LastErrorAt = readErr.Error(), time.Now()
			s.log.Error("audio input failed", "err", readErr)
		} else {
			s.log.Debug("audio input ended", "frames", n)
		}
		s.stats.State = StateEnded
		s.mu.Unlock()
	}()
}
