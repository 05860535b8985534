package main

import (
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

	"github.com/hark-audio/hark/dgemu"
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
