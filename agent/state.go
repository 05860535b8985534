package agent

import (
	"context"
	"fmt"
	"math"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hark-audio/hark/audio"
	"github.com/hark-audio/hark/transcript"
	"github.com/hark-audio/hark/uplink/batch"
)

// State is the retained <base>/state payload.
type State struct {
	Pipeline string       `json:"pipeline"` // starting, running, stopping, stopped
	Muted    bool         `json:"muted"`
	Speech   bool         `json:"speech"`
	Capture  CaptureState `json:"capture"`
	Uplink   UplinkState  `json:"uplink"`
	Spool    SpoolState   `json:"spool"`
	Since    string       `json:"since"` // when this state began (RFC 3339)

	// MuteReason says why the device is muted when no operator asked for it (a mute state
	// file that could not be read: privacy fails closed). A mute request clears it.
	MuteReason string `json:"mute_reason,omitempty"`
}

// CaptureState is the input's state as published: capturing, unavailable (waiting for the
// device at start), lost (being reopened).
type CaptureState struct {
	State     string `json:"state"`
	LastError string `json:"last_error,omitempty"`
}

// UplinkState is the live stream's state as published.
type UplinkState struct {
	State     string `json:"state"`
	LastError string `json:"last_error,omitempty"`
	RequestID string `json:"request_id,omitempty"`
}

// SpoolState is the spool's size as published, and the uploader's state when it is not
// simply working: "paused" with the service's reason (a refused key, a 400 about the
// request...) or "backoff" with the last failure.
type SpoolState struct {
	Entries   int    `json:"entries"`
	Bytes     int64  `json:"bytes"`
	Uploads   string `json:"uploads,omitempty"`
	LastError string `json:"last_error,omitempty"`

	// State is "unavailable" while the spool directory cannot be used (live transcription
	// goes on; speech the stream cannot carry is lost and counted), with the reason in
	// LastError; empty when it works.
	State string `json:"state,omitempty"`
}

// stateTracker publishes the state when, and only when, it changes.
type stateTracker struct {
	a  *Agent
	mu sync.Mutex
	s  State
	// spoolBusy is signalled when the spool holds entries, so housekeeping follows it
	// until it is empty again.
	spoolBusy chan struct{}
}

func (t *stateTracker) init(a *Agent) {
	t.a = a
	t.spoolBusy = make(chan struct{}, 1)
	t.s = State{Pipeline: "starting", Uplink: UplinkState{State: "idle"}}
}

func (t *stateTracker) get() State {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.s
}

// set applies f and publishes the result if anything but Since changed. The publisher's
// SetState never blocks, so this is safe on the audio path.
func (t *stateTracker) set(f func(*State)) {
	t.mu.Lock()
	prev := t.s
	f(&t.s)
	if t.s.Muted {
		// Nothing heard is sent while muted, and the state says so: speech is false, as
		// Home Assistant's speech sensor and any automation on it should see it.
		t.s.Speech = false
	}
	next := t.s
	next.Since = prev.Since
	if reflect.DeepEqual(prev, next) && prev.Since != "" {
		t.mu.Unlock()
		return
	}
	t.s.Since = transcript.FormatTime(time.Now())
	s := t.s
	// Published before unlocking: changes made at once from several goroutines (a mute and
	// the uploader's state change it causes) reach the publisher in the order they were
	// made, so the retained state is never an older one. SetState and Status never block.
	defer t.mu.Unlock()
	if t.a.pub != nil {
		t.a.pub.SetState(s)
	}
	t.a.opts.Notifier.Status(statusLine(s))
}

// touchSpool refreshes the spool gauges in the state.
func (t *stateTracker) touchSpool() {
	if t.a.spool == nil {
		return
	}
	st := t.a.spool.Stats()
	sp := SpoolState{Entries: st.Entries, Bytes: st.Bytes}
	if st.Unavailable != "" {
		sp.State, sp.LastError = "unavailable", st.Unavailable
	}
	if t.a.uploader != nil {
		if us := t.a.uploader.Stats(); us.State == batch.StatePaused || us.State == batch.StateBackoff {
			sp.Uploads, sp.LastError = string(us.State), us.LastError
		} else if us.State == batch.StateHeld {
			sp.Uploads = string(us.State) // muted: held wins
		}
	}
	t.set(func(s *State) { s.Spool = sp })
	if st.Entries > 0 {
		select {
		case t.spoolBusy <- struct{}{}:
		default:
		}
	}
}

// statusLine is the one-line systemd STATUS=.
func statusLine(s State) string {
	var b strings.Builder
	// Words for people: "waiting for device", where the state payload says
	// "waiting_for_device".
	b.WriteString(strings.ReplaceAll(s.Pipeline, "_", " "))
	if s.Muted {
		b.WriteString(", muted")
	}
	if s.Speech {
		b.WriteString(", speech")
	}
	if s.Capture.State != "" && s.Capture.State != "capturing" {
		fmt.Fprintf(&b, "; capture %s", s.Capture.State)
		if s.Capture.LastError != "" {
			fmt.Fprintf(&b, " (%s)", s.Capture.LastError)
		}
	}
	fmt.Fprintf(&b, "; uplink %s", s.Uplink.State)
	if s.Uplink.LastError != "" {
		fmt.Fprintf(&b, " (%s)", s.Uplink.LastError)
	}
	if s.Spool.Entries > 0 {
		fmt.Fprintf(&b, "; spool %d", s.Spool.Entries)
	}
	if s.Spool.State == "unavailable" {
		fmt.Fprintf(&b, "; spool unavailable (%s)", s.Spool.LastError)
	}
	if s.Spool.Uploads == string(batch.StateHeld) {
		b.WriteString("; spool uploads held (muted)")
	}
	if s.Spool.Uploads == string(batch.StatePaused) {
		fmt.Fprintf(&b, "; spool uploads paused (%s)", s.Spool.LastError)
	}
	return b.String()
}

// counters are the agent's own gauges and counters, updated on the audio path.
type counters struct {
	framesCaptured atomic.Int64
	framesSpeech   atomic.Int64 // frames the gate passed and the agent forwarded (not muted)
	spooledSamples atomic.Int64
	spoolErrors    atomic.Int64
	utterances     atomic.Int64
	lastTranscript atomic.Int64 // unix ns of the last transcript handed to the publisher; 0: none yet
	level          levelMeter
	// cpu is the process CPU time and wall time at the previous health message, for
	// cpu_pct (touched only by Health, which runs on one goroutine at a time).
	cpuMu     sync.Mutex
	cpuPrev   time.Duration
	cpuPrevAt time.Time
}

func (c *counters) setLevel(level, floor float64) { c.level.add(level, floor) }

// levelMeter summarises the frame levels between two health messages: their mean (an
// average of power, not of decibels, so a loud second is not drowned by quiet ones) and the
// loudest frame. One frame's level sampled once a minute says nothing about a room.
type levelMeter struct {
	mu       sync.Mutex
	power    float64 // sum of 10^(dB/10) over the window
	n        int
	peak     float64
	floor    float64
	measured bool // a frame has been measured since start (the floor is known)
}

func (m *levelMeter) add(levelDB, floorDB float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.n == 0 || levelDB > m.peak {
		m.peak = levelDB
	}
	m.power += math.Pow(10, levelDB/10)
	m.n++
	m.floor, m.measured = floorDB, true
}

// take returns the window's mean and peak (ok false when no frame arrived in it) and the
// latest noise floor (floorOK false before the first frame), and starts a new window.
func (m *levelMeter) take() (mean, peak float64, ok bool, floor float64, floorOK bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.n > 0 {
		mean, peak, ok = 10*math.Log10(m.power/float64(m.n)), m.peak, true
	}
	m.power, m.n = 0, 0
	return mean, peak, ok, m.floor, m.measured
}

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

// housekeeping publishes health periodically until ctx is done. While the spool holds
// entries it also refreshes the spool gauges every second: the uploader completes entries
// after publishing their transcripts without telling the agent, and STATUS and the state
// must not show an emptied spool until the next health tick. An empty spool costs no
// wake-ups.
func (a *Agent) housekeeping(ctx context.Context) {
	interval := a.cfg().MQTT.HealthInterval.D()
	t := time.NewTicker(interval)
	defer t.Stop()
	spoolTick := time.NewTicker(time.Second)
	spoolTick.Stop()
	defer spoolTick.Stop()
	a.publishHealth()
	a.st.touchSpool()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.st.touchSpool()
			a.publishHealth()
		case <-a.st.spoolBusy:
			spoolTick.Reset(time.Second)
		case <-spoolTick.C:
			a.st.touchSpool()
			if a.st.get().Spool.Entries == 0 {
				spoolTick.Stop()
			}
		}
	}
}

// Health is the retained <base>/health payload. Each call closes the window the level
// figures (mean and peak) are measured over, so it is called once per health interval.
func (a *Agent) Health() map[string]any {
	frameSec := audio.FrameDuration.Seconds()
	h := map[string]any{
		"at":                 transcript.FormatTime(time.Now()),
		"uptime_s":           round(time.Since(a.started).Seconds(), 1),
		"audio_captured_s":   round(float64(a.counters.framesCaptured.Load())*frameSec, 1),
		"audio_sent_s":       round(a.audioSentSeconds(), 1),
		"audio_speech_s":     round(float64(a.counters.framesSpeech.Load())*frameSec, 1),
		"audio_spooled_s":    round(float64(a.counters.spooledSamples.Load())/audio.SampleRate, 1),
		"utterances":         a.counters.utterances.Load(),
		"spool_write_errors": a.counters.spoolErrors.Load(),
		"muted":              a.muted.Load(),
		"version":            a.opts.Version,
	}
	if r := a.st.get().MuteReason; r != "" {
		h["mute_reason"] = r
	}
	// The levels exist once a frame has been measured (before that, 0 dBFS would read as a
	// very loud room): the mean and the peak of the frames since the last health message,
	// and the noise floor now.
	if mean, peak, ok, floor, floorOK := a.counters.level.take(); floorOK {
		if ok {
			h["level_dbfs"] = round(mean, 1)
			h["level_peak_dbfs"] = round(peak, 1)
		}
		h["noise_floor_dbfs"] = round(floor, 1)
	}
	if a.src != nil {
		h["capture"] = a.src.Stats()
	}
	if a.uplink != nil {
		h["uplink"] = a.uplink.Stats()
	}
	if a.spool != nil {
		h["spool"] = a.spool.Stats()
	}
	if a.uploader != nil {
		h["uploader"] = a.uploader.Stats()
	}
	if s, ok := a.pub.(interface{ Stats() any }); ok {
		h["mqtt"] = s.Stats()
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		h["cpu_s"] = round(cpu.Seconds(), 3)
		h["max_rss_bytes"] = ru.Maxrss * 1024
		h["cpu_pct"] = a.counters.cpuPercent(cpu, time.Now(), a.started)
	}
	if ns := a.counters.lastTranscript.Load(); ns != 0 {
		h["last_transcript_at"] = transcript.FormatTime(time.Unix(0, ns))
	}
	if rss, ok := currentRSS(); ok {
		h["rss_bytes"] = rss
	}
	return h
}

// cpuPercent is the process's CPU use since the previous health message (since start for
// the first), in percent of one core: what `hark fleet ls` shows per device.
func (c *counters) cpuPercent(cpu time.Duration, now, started time.Time) float64 {
	c.cpuMu.Lock()
	defer c.cpuMu.Unlock()
	prev, at := c.cpuPrev, c.cpuPrevAt
	if at.IsZero() {
		at = started
	}
	c.cpuPrev, c.cpuPrevAt = cpu, now
	wall := now.Sub(at)
	if wall <= 0 {
		return 0
	}
	return round(100*float64(cpu-prev)/float64(wall), 2)
}

// audioSentSeconds is the audio actually written to the live stream's socket (the uplink's
// own count), not what was handed to the uplink: a refused stream sends nothing.
func (a *Agent) audioSentSeconds() float64 {
	a.mu.Lock()
	up := a.uplink
	a.mu.Unlock()
	if up == nil {
		return 0
	}
	return up.Stats().AudioSentSeconds
}

func (a *Agent) publishHealth() {
	if a.pub != nil {
		a.pub.PublishHealth(a.Health())
	}
}

// currentRSS reads the resident set size from /proc (Linux); getrusage only has the peak.
func currentRSS() (int64, bool) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, false
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0, false
	}
	return pages * int64(os.Getpagesize()), true
}
