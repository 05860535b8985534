package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hark-audio/hark/audio"
	"github.com/hark-audio/hark/dgemu"
	"github.com/hark-audio/hark/transcript"
)

// blockedIn waits until a thread of process pid is inside system call nr (read from
// /proc/<pid>/task/*/syscall), so a signal is sent while the process is blocked where it
// used to hang, not before it got there.
func blockedIn(t *testing.T, pid int, name string) {
	t.Helper()
	nrs := map[string]map[string]string{"amd64": {"openat": "257", "read": "0"}, "arm64": {"openat": "56", "read": "63"}}
	nr, ok := nrs[runtime.GOARCH][name]
	if !ok {
		t.Skipf("system call numbers for %s unknown", runtime.GOARCH)
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/syscall", pid))
		for _, f := range tasks {
			if b, err := os.ReadFile(f); err == nil && strings.HasPrefix(string(b), nr+" ") {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("process %d never blocked in %s", pid, name)
}

// holdsOpen waits until process pid has path open (its input opened; the read that
// follows blocks, as nothing is written).
func holdsOpen(t *testing.T, pid int, path string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
		for _, fd := range fds {
			if l, err := os.Readlink(fd); err == nil && l == path {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("process %d never opened %s", pid, path)
}

// exitWithin waits for cmd to exit after a signal, failing if it takes longer than d.
func exitWithin(t *testing.T, cmd *exec.Cmd, d time.Duration) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ws := ee.Sys().(syscall.WaitStatus); ws.Signaled() {
				t.Fatalf("killed by %v: the signal was not handled", ws.Signal())
			}
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(d):
		cmd.Process.Kill()
		<-done
		t.Fatalf("still running %s after the signal", d)
	}
	return -1
}

func mkfifo(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "audio.fifo")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	return p
}

// Issue 12 item 5: `hark transcribe` on a FIFO with no writer stops on SIGTERM at once,
// with the documented "interrupted" status, instead of hanging in open.
func TestTranscribeFIFOObeysSignal(t *testing.T) {
	_, cfg := transcribeEnv(t, "right-key")
	fifo := mkfifo(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		cmd, _, stderr := harkProcess(t, nil, "transcribe", fifo, "--config", cfg)
		blockedIn(t, cmd.Process.Pid, "openat")
		cmd.Process.Signal(sig)
		if code := exitWithin(t, cmd, 10*time.Second); code != exitTranscribeInterrupted {
			t.Fatalf("%v: exit %d, want %d; stderr %q", sig, code, exitTranscribeInterrupted, stderr.String())
		}
	}
}

// Issue 12 item 5: `hark run` with capture.input a FIFO stops on SIGTERM both while it
// waits for a writer (open) and while a writer is connected but silent (read).
func TestRunFIFOInputObeysSignal(t *testing.T) {
	emu := dgemu.NewServer(dgemu.Config{})
	defer emu.Close()
	fifo := mkfifo(t)
	cfg := writeRunConfig(t, emu, "")
	b, _ := os.ReadFile(cfg)
	wav, _ := filepath.Abs(filepath.Join("..", "..", "testdata", "demo", "sample.wav"))
	os.WriteFile(cfg, []byte(strings.Replace(string(b), wav, fifo, 1)), 0o600)

	cmd, _, stderr := harkProcess(t, nil, "run", "--config", cfg)
	blockedIn(t, cmd.Process.Pid, "openat")
	cmd.Process.Signal(syscall.SIGTERM)
	if code := exitWithin(t, cmd, 10*time.Second); code != 0 {
		t.Fatalf("no writer: exit %d; stderr %q", code, stderr.String())
	}

	// A writer that holds the FIFO open and sends nothing (O_RDWR never blocks on Linux).
	w, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	cmd, _, stderr = harkProcess(t, nil, "run", "--config", cfg)
	holdsOpen(t, cmd.Process.Pid, fifo)
	cmd.Process.Signal(syscall.SIGTERM)
	if code := exitWithin(t, cmd, 10*time.Second); code != 0 {
		t.Fatalf("silent writer: exit %d; stderr %q", code, stderr.String())
	}
}

// runOutput runs `hark run` to the end of its input and returns the transcripts it printed.
func runOutput(t *testing.T, cfg string) []transcript.Utterance {
	t.Helper()
	cmd, out, stderr := harkProcess(t, nil, "run", "--config", cfg)
	var us []transcript.Utterance
	for out.Scan() {
		var u transcript.Utterance
		if err := json.Unmarshal(out.Bytes(), &u); err != nil {
			t.Fatalf("stdout line is not a transcript: %q", out.Text())
		}
		us = append(us, u)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("hark run: %v\n%s", err, stderr.String())
	}
	return us
}

// Issue 12 item 7: a SIGKILL in the middle of an utterance being streamed loses nothing:
// the next start recovers it from the journal into the spool and transcribes it, once.
func TestSIGKILLMidUtteranceRecovered(t *testing.T) {
	lines := demoLines(t)
	emu := dgemu.NewServer(dgemu.Config{Utterances: lines})
	defer emu.Close()
	cfg := writeRunConfig(t, emu, "")
	b, _ := os.ReadFile(cfg)
	body := strings.Replace(string(b), "capture:\n", "capture:\n  realtime: true\n", 1)
	os.WriteFile(cfg, []byte(body), 0o600)

	cmd, out, _ := harkProcess(t, nil, "run", "--config", cfg)
	results := make(chan transcript.Utterance, 10)
	go func() {
		defer close(results)
		for out.Scan() {
			var u transcript.Utterance
			if json.Unmarshal(out.Bytes(), &u) == nil {
				results <- u
			}
		}
	}()
	var first transcript.Utterance
	select {
	case first = <-results:
	case <-time.After(30 * time.Second):
		t.Fatal("no first utterance within 30 s")
	}
	// Mid second sentence (4.56–6.88 s of the file): the service has heard past 5.2 s.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := emu.WaitSession(ctx, func(s dgemu.SessionInfo) bool { return s.AudioSeconds >= 5.2 }); err != nil {
		t.Fatalf("the service never heard the second sentence: %v", err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	for u := range results {
		if u.Text != first.Text {
			t.Logf("also published before the kill: %q", u.Text)
		}
	}

	// Restart on a short silent input: what is recovered is published, then it exits.
	silent := filepath.Join(t.TempDir(), "silence.wav")
	os.WriteFile(silent, append(audio.WAVHeader(32000), make([]byte, 32000)...), 0o600)
	wav, _ := filepath.Abs(filepath.Join("..", "..", "testdata", "demo", "sample.wav"))
	os.WriteFile(cfg, []byte(strings.Replace(body, wav, silent, 1)), 0o600)
	got := runOutput(t, cfg)
	if len(got) != 1 || got[0].Source != transcript.SourceSpool {
		t.Fatalf("after the restart got %+v, want the interrupted sentence once, from the spool", got)
	}
	// It is the second sentence: it began about 4.1 s after the first (0.5 s into the file).
	if d := got[0].Start.Sub(first.Start); d < 3*time.Second || d > 5500*time.Millisecond {
		t.Errorf("recovered utterance starts %s after the first, want about 4.1 s", d)
	}
	// A further start finds nothing more: recovered once, never doubled.
	if again := runOutput(t, cfg); len(again) != 0 {
		t.Fatalf("a second restart published %+v again", again)
	}
}

// Issue 12 item 5: `hark vad` on a FIFO with no writer stops on SIGTERM too.
func TestVADFIFOObeysSignal(t *testing.T) {
	fifo := mkfifo(t)
	cfg := filepath.Join(t.TempDir(), "hark.yaml")
	os.WriteFile(cfg, []byte("device_id: x\n"), 0o600)
	cmd, _, stderr := harkProcess(t, nil, "vad", fifo, "--config", cfg, "--csv")
	blockedIn(t, cmd.Process.Pid, "openat")
	cmd.Process.Signal(syscall.SIGTERM)
	exitWithin(t, cmd, 10*time.Second)
	if !strings.Contains(stderr.String(), "canceled") {
		t.Errorf("stderr %q, want the interruption said", stderr.String())
	}
}
