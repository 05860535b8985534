// Package pulsetest runs a private PulseAudio server for tests: a daemon in a temporary
// runtime directory with a null sink "vsink" whose monitor is the default source, so what
// is played into vsink (Play) is what a capture of the default source hears. Tests skip,
// saying why, when PulseAudio is not installed (scripts/install-test-deps.sh installs it).
//
//	p := pulsetest.Start(t)            // started, and this process's clients pointed at it
//	p.Play(t, "speech.wav")
//
// New makes a server that is not started yet, for tests of a client that must wait for
// one: point the client at p.Socket(), then p.Start().
package pulsetest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Server is a private PulseAudio daemon.
type Server struct {
	t        testing.TB
	dir      string
	keep     *exec.Cmd // pacat playing silence into vsink
	keepDone chan struct{}
	started  bool
}

// New prepares a server in a fresh runtime directory without starting it; it is stopped and
// its directory removed when the test ends. It skips the test when PulseAudio's programs
// are missing.
func New(t testing.TB) *Server {
	t.Helper()
	for _, tool := range []string{"pulseaudio", "pactl", "paplay", "pacat"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (packages pulseaudio and pulseaudio-utils; scripts/install-test-deps.sh)", tool)
		}
	}
	dir, err := os.MkdirTemp("", "hark-pulse-") // short path: unix socket names are limited
	if err != nil {
		t.Fatal(err)
	}
	p := &Server{t: t, dir: dir}
	t.Cleanup(func() {
		p.Stop()
		os.RemoveAll(dir)
	})
	return p
}

// Start is New, then Start, with this process's PulseAudio clients (malgo) pointed at it.
func Start(t testing.TB) *Server {
	p := New(t)
	p.Setenv(t)
	p.Start()
	return p
}

// Setenv points this process's PulseAudio clients at the server for the rest of the test.
func (p *Server) Setenv(t testing.TB) {
	t.Setenv("XDG_RUNTIME_DIR", p.dir)
	t.Setenv("PULSE_SERVER", p.Socket())
}

// Socket is the server's address as PULSE_SERVER takes it.
func (p *Server) Socket() string { return "unix:" + filepath.Join(p.dir, "pulse", "native") }

// Env is the environment of a process that should use the server.
func (p *Server) Env() []string {
	return append(os.Environ(), "XDG_RUNTIME_DIR="+p.dir, "PULSE_SERVER="+p.Socket())
}

// Run runs a PulseAudio tool (pactl, paplay...) against the server, logging its output on
// failure.
func (p *Server) Run(name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Env = p.Env()
	out, err := cmd.CombinedOutput()
	if err != nil {
		p.t.Logf("%s %v: %v\n%s", name, args, err, out)
	}
	return err
}

// Start starts the daemon and a player that keeps feeding silence into vsink: a null
// sink's monitor delivers audio only while something plays into the sink (measured: an
// idle monitor gave parecord 0 bytes in 2 s), and a real microphone never goes quiet like
// that.
func (p *Server) Start() {
	p.t.Helper()
	if err := p.Run("pulseaudio", "--daemonize=yes", "--exit-idle-time=-1", "-n",
		"--load=module-native-protocol-unix", "--load=module-null-sink sink_name=vsink"); err != nil {
		p.t.Fatalf("start pulseaudio: %v", err)
	}
	p.started = true
	if err := p.Run("pactl", "set-default-source", "vsink.monitor"); err != nil {
		p.t.Fatalf("pactl: %v", err)
	}
	p.StartPlayer()
}

// StartPlayer (re)starts the player of silence and waits for its stream.
func (p *Server) StartPlayer() {
	p.t.Helper()
	p.StopPlayer()
	zero, err := os.Open("/dev/zero")
	if err != nil {
		p.t.Fatal(err)
	}
	p.keep = exec.Command("pacat", "--playback", "--device=vsink", "--raw", "--format=s16le",
		"--rate=16000", "--channels=1", "--latency-msec=100")
	p.keep.Env, p.keep.Stdin = p.Env(), zero
	if err := p.keep.Start(); err != nil {
		p.t.Fatalf("pacat: %v", err)
	}
	zero.Close()
	p.keepDone = make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { c.Wait(); close(done) }(p.keep, p.keepDone)
	// Wait until the player's stream is connected (the server has no event we can block on
	// from here, so ask it, a bounded number of times).
	for i := 0; ; i++ {
		cmd := exec.Command("pactl", "list", "short", "sink-inputs")
		cmd.Env = p.Env()
		out, err := cmd.Output()
		if err == nil && len(bytes.TrimSpace(out)) > 0 {
			return
		}
		if i == 100 {
			p.t.Fatalf("pacat's stream never appeared: %v %s", err, out)
		}
		time.Sleep(20 * time.Millisecond) // polling the server, which has no event for it
	}
}

// StopPlayer stops the player of silence.
func (p *Server) StopPlayer() {
	if p.keep != nil {
		p.keep.Process.Kill()
		<-p.keepDone
		p.keep = nil
	}
}

// Play plays a WAV file into vsink and returns when it has been played.
func (p *Server) Play(t testing.TB, wav string) {
	t.Helper()
	if err := p.Run("paplay", "--latency-msec=200", "--device=vsink", wav); err != nil {
		t.Fatalf("paplay: %v", err)
	}
}

// Stop kills the daemon (a lost sound server, for the client) and the player. Start
// brings it back on the same socket.
func (p *Server) Stop() {
	if !p.started {
		return
	}
	_ = p.Run("pulseaudio", "--kill")
	p.StopPlayer()
	p.started = false
}
