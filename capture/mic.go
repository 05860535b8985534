package capture

// #include <stdlib.h>
import "C"

import (
	"context"
	"errors"
	"fmt"
	"github.com/hark-audio/hark/internal/backoff"
	"log/slog"
	"runtime"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unsafe"

	"github.com/gen2brain/malgo"
	"github.com/hark-audio/hark/audio"
)

// maBackendNull is miniaudio's ma_backend_null. malgo's BackendNull constant is 13, which
// is really ma_backend_custom (malgo's list skips it), and selecting it fails with "No
// backend".
const maBackendNull malgo.Backend = 14

// backendChoice is one way of initialising a miniaudio context.
type backendChoice struct {
	name string
	list []malgo.Backend // nil: miniaudio's default order
}

// Backends lists the values Config.Backend accepts.
var Backends = []string{"auto", "alsa", "pulseaudio", "null"}

// backendChoices maps a configured backend name to the contexts to try, in order. This is
// the only place backend names meet malgo's constants.
//
// On Linux "auto" tries PulseAudio, then ALSA (miniaudio's own order) one at a time, so the
// backend in use is known and reported, and so a machine without a working audio stack is
// an error instead of miniaudio's last resort, the null backend, which records silence
// forever. Elsewhere "auto" is miniaudio's default list.
func backendChoices(name string) ([]backendChoice, error) {
	switch strings.ToLower(name) {
	case "", "auto":
		if runtime.GOOS == "linux" {
			return []backendChoice{{"pulseaudio", []malgo.Backend{malgo.BackendPulseaudio}}, {"alsa", []malgo.Backend{malgo.BackendAlsa}}}, nil
		}
		return []backendChoice{{"auto", nil}}, nil
	case "alsa":
		return []backendChoice{{"alsa", []malgo.Backend{malgo.BackendAlsa}}}, nil
	case "pulseaudio", "pulse":
		return []backendChoice{{"pulseaudio", []malgo.Backend{malgo.BackendPulseaudio}}}, nil
	case "null":
		return []backendChoice{{"null", []malgo.Backend{maBackendNull}}}, nil
	}
	return nil, fmt.Errorf("capture backend %q is not one of %s", name, strings.Join(Backends, ", "))
}

// Device is a capture device as miniaudio sees it.
type Device struct {
	ID      string // backend-specific id (ALSA "hw:1,0", PulseAudio source name); usable as Config.Device
	Name    string
	Default bool
	Backend string
	// Plugin marks an ALSA plugin pseudo-device (rate converters, up/down mixers, routes to
	// JACK, OSS or a sound server, the null device) rather than a sound card's capture
	// device: usable, but rarely what a person looking for a microphone means.
	Plugin bool
	// Monitor marks a PulseAudio monitor source: what an output plays, not a microphone.
	Monitor bool
	id      malgo.DeviceID
}

// alsaPlugin tells an ALSA plugin pseudo-device from a sound card's device by its id: card
// devices are named after the card (miniaudio's ":card,device" form of "hw:card,device",
// or hint names with CARD=), and "default"/"sysdefault" are the system's default.
func alsaPlugin(id string) bool {
	switch {
	case strings.HasPrefix(id, ":"), strings.Contains(id, "CARD="),
		strings.HasPrefix(id, "hw:"), strings.HasPrefix(id, "plughw:"),
		id == "default", id == "sysdefault", strings.HasPrefix(id, "default:"), strings.HasPrefix(id, "sysdefault:"):
		return false
	}
	return true
}

// deviceIDString shows an id as its text when it is text (ALSA, PulseAudio) and as hex
// otherwise.
func deviceIDString(id malgo.DeviceID) string {
	end := 0
	for end < len(id) && id[end] != 0 {
		end++
	}
	if end == 0 {
		return id.String()
	}
	for _, b := range id[:end] {
		if b >= 0x80 || !unicode.IsPrint(rune(b)) {
			return id.String()
		}
	}
	return string(id[:end])
}

func initContext(bc backendChoice) (*malgo.AllocatedContext, error) {
	ctx, err := malgo.InitContext(bc.list, malgo.ContextConfig{}, nil)
	if err != nil {
		if bc.name == "pulseaudio" && errors.Is(err, malgo.ErrNoBackend) {
			// miniaudio's PulseAudio backend connects at init; failing means no server.
			return nil, fmt.Errorf("backend pulseaudio: no PulseAudio server reachable for this user: %w", err)
		}
		return nil, fmt.Errorf("backend %s: %w", bc.name, err)
	}
	return ctx, nil
}

func listWith(mctx *malgo.AllocatedContext, backend string) ([]Device, error) {
	infos, err := mctx.Devices(malgo.Capture)
	if err != nil {
		return nil, fmt.Errorf("backend %s: list devices: %w", backend, err)
	}
	out := make([]Device, 0, len(infos))
	for _, in := range infos {
		d := Device{ID: deviceIDString(in.ID), Name: in.Name(), Default: in.IsDefault != 0, Backend: backend, id: in.ID}
		switch backend {
		case "alsa":
			d.Plugin = alsaPlugin(d.ID)
		case "pulseaudio":
			d.Monitor = strings.HasSuffix(d.ID, ".monitor")
		}
		out = append(out, d)
	}
	return out, nil
}

// ListDevices lists capture devices of every backend that backend selects (for "auto",
// each one that initialises). An empty list and nil error means the backends work but see
// no capture device.
func ListDevices(ctx context.Context, backend string) ([]Device, error) {
	choices, err := backendChoices(backend)
	if err != nil {
		return nil, err
	}
	var out []Device
	var errs []error
	for _, bc := range choices {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		mctx, err := initContext(bc)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		devs, err := listWith(mctx, bc.name)
		_ = mctx.Uninit()
		mctx.Free()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, devs...)
	}
	if len(out) == 0 && len(errs) == len(choices) {
		return nil, joinErrs(errs)
	}
	return out, nil
}

// matchDevice picks the configured device: an exact id, else an exact name, else the one
// name containing want (case-insensitive). "" is the default device (nil).
func matchDevice(devs []Device, want string) (*Device, error) {
	if want == "" {
		return nil, nil
	}
	for i := range devs {
		if devs[i].ID == want {
			return &devs[i], nil
		}
	}
	for i := range devs {
		if strings.EqualFold(devs[i].Name, want) {
			return &devs[i], nil
		}
	}
	var hits []*Device
	lw := strings.ToLower(want)
	for i := range devs {
		if strings.Contains(strings.ToLower(devs[i].Name), lw) {
			hits = append(hits, &devs[i])
		}
	}
	switch len(hits) {
	case 1:
		return hits[0], nil
	case 0:
		return nil, fmt.Errorf("no device matches; available: %s", describe(devs))
	}
	var ds []Device
	for _, h := range hits {
		ds = append(ds, *h)
	}
	return nil, fmt.Errorf("%d devices match, name one by id: %s", len(hits), describe(ds))
}

func describe(devs []Device) string {
	if len(devs) == 0 {
		return "none"
	}
	var b strings.Builder
	for i, d := range devs {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q (id %s)", d.Name, d.ID)
	}
	return b.String()
}

// micInput is the microphone side of a Source.
type micInput struct {
	ring       *ring
	asm        *assembler
	asmDropped atomic.Uint64
}

// openDevice is one open of the microphone: a miniaudio context and a started device.
type openDevice struct {
	mctx    *malgo.AllocatedContext
	dev     *malgo.Device
	backend string
	name    string
	stopped chan struct{} // receives when miniaudio reports the device stopped
	closing atomic.Bool
}

// releaseTimeout bounds how long releasing a device may take. Before close called Stop,
// ma_device_uninit never returned after the PulseAudio server was killed or the source
// removed; a backend stuck some other way must still not freeze the reopen loop.
const releaseTimeout = 3 * time.Second

// abandonedDevices counts devices whose release never returned; each holds one goroutine
// stuck in C for the life of the process.
var abandonedDevices atomic.Int64

// release closes o, giving up (and leaking it) if miniaudio does not return in time.
func (s *Source) release(o *openDevice) {
	o.closing.Store(true) // from now on the callbacks ignore this device
	done := make(chan struct{})
	go func() {
		o.close()
		close(done)
	}()
	t := time.NewTimer(releaseTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		n := abandonedDevices.Add(1)
		s.log.Error("capture device did not close; abandoning it", "device", o.name, "backend", o.backend,
			"timeout", releaseTimeout, "abandoned_total", n)
	}
}

func (o *openDevice) close() {
	o.closing.Store(true)
	// Stop before Uninit: ma_device_uninit only signals the worker thread and joins it, but
	// the PulseAudio worker sits in a blocking poll that only stream activity ends. A dead
	// stream (server killed, source removed) never wakes it, and uninit hung forever
	// (seen with gdb: pthread_join on a worker in pa_mainloop_poll). ma_device_stop also
	// wakes the backend's loop.
	_ = o.dev.Stop()
	o.dev.Uninit()
	_ = o.mctx.Uninit()
	o.mctx.Free()
}

// open tries each backend choice in turn and starts the device on the first that works.
func (m *micInput) open(cfg Config) (*openDevice, error) {
	choices, err := backendChoices(cfg.Backend)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, bc := range choices {
		o, err := m.openWith(bc, cfg.Device)
		if err == nil {
			return o, nil
		}
		errs = append(errs, err)
	}
	name := cfg.Device
	if name == "" {
		name = "default"
	}
	return nil, fmt.Errorf("open capture device %q: %w", name, joinErrs(errs))
}

func (m *micInput) openWith(bc backendChoice, want string) (*openDevice, error) {
	mctx, err := initContext(bc)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*openDevice, error) {
		_ = mctx.Uninit()
		mctx.Free()
		return nil, fmt.Errorf("backend %s: %w", bc.name, err)
	}
	devs, err := listWith(mctx, bc.name)
	if err != nil {
		return fail(err)
	}
	dev, err := matchDevice(devs, want)
	if err != nil {
		return fail(err)
	}
	dc := malgo.DefaultDeviceConfig(malgo.Capture)
	dc.Capture.Format = malgo.FormatS16
	dc.Capture.Channels = 1
	dc.SampleRate = audio.SampleRate
	dc.Resampling.Algorithm = malgo.ResampleAlgorithmLinear
	dc.Resampling.Linear.LpfOrder = 8 // miniaudio's maximum: the low-pass that keeps aliasing out
	// Latency matters little here (frames are 100 ms and the gate has a pre-roll); slack
	// does. miniaudio sizes the server/driver buffer as period x periods (PulseAudio's
	// maxlength), and audio is lost there whenever this process is late by more than that:
	// with 20 ms x 3, a loaded test machine lost most of its audio. 100 ms x 4 = 400 ms.
	// One period per frame: each period is a callback into Go and a wake-up of the
	// consumer, the largest part of the idle cost of a microphone.
	dc.PeriodSizeInMilliseconds = 100
	dc.Periods = 4
	name := "default"
	var idPtr unsafe.Pointer
	if dev != nil {
		// The id goes into a C struct, so it must live in C memory.
		idPtr = dev.id.Pointer()
		defer C.free(idPtr)
		dc.Capture.DeviceID = idPtr
		name = dev.Name
	} else {
		for _, d := range devs {
			if d.Default {
				name = d.Name
			}
		}
	}
	o := &openDevice{mctx: mctx, backend: bc.name, name: name, stopped: make(chan struct{}, 1)}
	g := m.ring
	cb := malgo.DeviceCallbacks{
		Data: func(_, in []byte, frames uint32) {
			// C thread, buffer valid only now: copy and return.
			if o.closing.Load() {
				return
			}
			now := time.Now()
			n := int(frames)
			if n > len(in)/2 {
				n = len(in) / 2
			}
			if n == 0 {
				return
			}
			g.write(unsafe.Slice((*int16)(unsafe.Pointer(&in[0])), n), now)
		},
		Stop: func() {
			if o.closing.Load() {
				return
			}
			select {
			case o.stopped <- struct{}{}:
			default:
			}
		},
	}
	d, err := malgo.InitDevice(mctx.Context, dc, cb)
	if err != nil {
		return fail(fmt.Errorf("init device %q: %w", name, err))
	}
	o.dev = d
	if f := d.CaptureFormat(); f != malgo.FormatS16 || d.CaptureChannels() != 1 || d.SampleRate() != audio.SampleRate {
		o.close()
		return nil, fmt.Errorf("backend %s: device %q: got format %d, %d channels, %d Hz instead of s16 mono 16 kHz", bc.name, name, f, d.CaptureChannels(), d.SampleRate())
	}
	if err := d.Start(); err != nil {
		o.close()
		return nil, fmt.Errorf("backend %s: start device %q: %w", bc.name, name, err)
	}
	return o, nil
}

// startMic opens the microphone once (an error here is returned by Open) and starts the
// supervisor, which reopens a lost device. Frames are assembled by Next, on the consumer's
// goroutine: the callback's thread wakes it once a frame is complete.
func (s *Source) startMic(ctx context.Context) error {
	samples := s.cfg.RingMS * audio.SampleRate / 1000
	m := &micInput{ring: newRing(max(samples, 2*audio.FrameSamples))}
	m.asm = newAssembler(m.ring)
	m.asm.alloc = s.slots.get
	o, err := m.open(s.cfg)
	if err != nil {
		return err
	}
	s.log.Info("capture device opened", "device", o.name, "backend", o.backend)
	s.mu.Lock()
	s.mic = m
	s.stats.State = StateCapturing
	s.stats.Device, s.stats.Backend = o.name, o.backend
	s.mu.Unlock()
	s.next = s.nextMic
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.superviseMic(ctx, m, o)
	}()
	return nil
}

// nextMic assembles the next frame from the ring, waiting for the callback when the ring
// runs dry.
func (s *Source) nextMic() (audio.Frame, error) {
	m := s.mic
	for {
		f, ok := m.asm.poll()
		m.asmDropped.Store(m.asm.dropped)
		if ok {
			s.reportOverflow(m)
			return f, nil
		}
		if !m.ring.arm(uint64(audio.FrameSamples - m.asm.fill)) {
			continue // arrived meanwhile
		}
		select {
		case <-m.ring.notify:
		case <-s.ctx.Done():
			return audio.Frame{}, ErrClosed
		}
	}
}

// reportOverflow reports ring overflow from the consumer's side, never from the callback,
// at most once a second. Partial frames discarded at a reopen are counted in Stats, not
// reported as overflow.
func (s *Source) reportOverflow(m *micInput) {
	drops := m.ring.stats().dropped
	if drops == s.lastDrops || time.Since(s.lastDropT) < time.Second {
		return
	}
	s.log.Warn("capture ring overflow: audio dropped", "samples", drops-s.lastDrops, "total", drops)
	s.event(Event{Type: EventOverflow, Dropped: drops - s.lastDrops})
	s.lastDrops, s.lastDropT = drops, time.Now()
}

// reopenBackoff paces reopening a lost device: a fleet that lost its audio server at once
// does not retry in lockstep, and a device that comes back is picked up within 30 s.
var reopenBackoff = backoff.Policy{Min: 200 * time.Millisecond, Max: 30 * time.Second}

// startupGrace is added to the stall timeout until a freshly opened device delivers its
// first audio: measured on PulseAudio, the first stream of a new server took about 2 s to
// deliver anything (later ones about 90 ms).
const startupGrace = 5 * time.Second

// stableAfter is how long a reopened device must keep working before a later loss counts
// as a new problem (fresh backoff, logged at Warn again).
const stableAfter = time.Minute

// superviseMic watches the open device and reopens it when it stops, fails or goes silent.
// While audio flows it wakes once per StallTimeout (a timer due StallTimeout after the last
// callback), not on a polling tick.
func (s *Source) superviseMic(ctx context.Context, m *micInput, o *openDevice) {
	cur := o // the open device, nil while reopening
	defer func() {
		if cur != nil {
			s.release(cur)
		}
	}()
	timer := time.NewTimer(0)
	timer.Stop()
	defer timer.Stop()
	// A device that keeps failing right after each reopen is one problem, not many: the
	// backoff carries on across such losses and only the first is logged above Debug. A
	// device that stayed up for stableAfter starts afresh.
	streak, attempt := 0, 0
	openedAt := time.Now()
	for {
		// Watch the open device: no callback for StallTimeout means it is lost (with a grace
		// until the first audio after an open).
		lastWrites := m.ring.stats().writes
		lastChange := time.Now()
		limit := s.cfg.StallTimeout + startupGrace
		timer.Reset(limit)
		var reason error
		for reason == nil {
			select {
			case <-ctx.Done():
				return
			case <-o.stopped:
				reason = errors.New("device stopped")
			case <-timer.C:
				st := m.ring.stats()
				now := time.Now()
				if st.writes != lastWrites {
					lastWrites, limit = st.writes, s.cfg.StallTimeout
					lastChange = st.lastWrite
					if lastChange.IsZero() || lastChange.After(now) {
						lastChange = now
					}
				}
				since := now.Sub(lastChange)
				if since >= limit {
					reason = fmt.Errorf("no audio for %s", since.Round(time.Millisecond))
					break
				}
				timer.Reset(limit - since)
				if streak > 0 && now.Sub(openedAt) >= stableAfter {
					s.log.Info("capture device stable again", "device", o.name, "losses", streak)
					streak, attempt = 0, 0
				}
			}
		}
		timer.Stop()
		lostAt := time.Now()
		streak++
		level := slog.LevelWarn
		if streak > 1 {
			level = slog.LevelDebug
		}
		s.log.Log(ctx, level, "capture device lost; reopening", "device", o.name, "backend", o.backend, "err", reason, "losses", streak)
		s.setErr(fmt.Errorf("capture device %q lost: %w", o.name, reason))
		s.mu.Lock()
		s.stats.State = StateLost
		s.mu.Unlock()
		s.event(Event{Type: EventDeviceLost, Err: reason, Device: o.name})
		s.release(cur)
		cur = nil
		m.ring.discontinuity()

		// Reopen with backoff until it works or capture is stopped.
		for failures := 0; ; attempt++ {
			timer.Reset(reopenBackoff.Delay(attempt))
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
			no, err := m.open(s.cfg)
			if err != nil {
				failures++
				if failures == 1 && streak == 1 {
					s.log.Warn("reopening capture device failed; retrying", "err", err)
				} else {
					s.log.Debug("reopening capture device failed", "failures", failures, "err", err)
				}
				s.setErr(err)
				s.event(Event{Type: EventReopenFailed, Err: err})
				continue
			}
			attempt++
			o, cur, openedAt = no, no, time.Now()
			level := slog.LevelInfo
			if streak > 1 {
				level = slog.LevelDebug
			}
			s.log.Log(ctx, level, "capture device reopened", "device", o.name, "backend", o.backend,
				"failed_attempts", failures, "down", time.Since(lostAt).Round(time.Millisecond), "losses", streak)
			s.mu.Lock()
			s.stats.Reopens++
			s.stats.State = StateCapturing
			s.stats.Device, s.stats.Backend = o.name, o.backend
			s.mu.Unlock()
			s.event(Event{Type: EventDeviceReopened, Device: o.name})
			break
		}
	}
}

// joinErrs is errors.Join on one line: these messages end up in a single log line, the
// systemd status and the MQTT state.
func joinErrs(errs []error) error { return oneLine{errors.Join(errs...)} }

type oneLine struct{ err error }

func (e oneLine) Error() string { return strings.ReplaceAll(e.err.Error(), "\n", "; ") }
func (e oneLine) Unwrap() error { return e.err }
