package service

import (
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// notifySocket listens on a unixgram socket and points NOTIFY_SOCKET at it, as systemd does.
func notifySocket(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return c
}

// recv returns the next datagram, failing after a generous timeout.
func recv(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no datagram: %v", err)
	}
	return string(buf[:n])
}

// pending returns datagrams already queued. Sending on a unix datagram socket is
// synchronous (the message is in the receiver's queue when the send returns), so this is
// deterministic for anything sent before the call.
func pending(c *net.UnixConn) []string {
	var out []string
	buf := make([]byte, 4096)
	for {
		c.SetReadDeadline(time.Now().Add(time.Millisecond))
		n, err := c.Read(buf)
		if err != nil {
			return out
		}
		out = append(out, string(buf[:n]))
	}
}

func TestMessages(t *testing.T) {
	c := notifySocket(t)
	n := New(nil)
	if !n.Enabled() {
		t.Fatal("not enabled with NOTIFY_SOCKET set")
	}
	n.Ready()
	if got := recv(t, c); got != "READY=1" {
		t.Fatalf("got %q, want READY=1", got)
	}
	n.Status("streaming")
	if got := recv(t, c); got != "STATUS=streaming" {
		t.Fatalf("got %q", got)
	}
	n.Status("streaming") // unchanged: not re-sent
	n.Status("line one\nline two")
	if got := recv(t, c); got != "STATUS=line one line two" {
		t.Fatalf("got %q (a repeated status must not be re-sent; newlines must not split the message)", got)
	}

	var before unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &before); err != nil {
		t.Fatal(err)
	}
	n.Reloading()
	got := recv(t, c)
	lines := strings.Split(got, "\n")
	if len(lines) != 2 || lines[0] != "RELOADING=1" || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=") {
		t.Fatalf("reloading message %q, want RELOADING=1\\nMONOTONIC_USEC=N", got)
	}
	usec, err := strconv.ParseInt(strings.TrimPrefix(lines[1], "MONOTONIC_USEC="), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	var after unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &after)
	if usec < before.Nano()/1000 || usec > after.Nano()/1000 {
		t.Fatalf("MONOTONIC_USEC=%d not within [%d, %d]: not CLOCK_MONOTONIC in µs", usec, before.Nano()/1000, after.Nano()/1000)
	}
	n.Ready()
	if got := recv(t, c); got != "READY=1" {
		t.Fatalf("got %q after reload", got)
	}
	n.Stopping()
	if got := recv(t, c); got != "STOPPING=1" {
		t.Fatalf("got %q", got)
	}
}

func TestNoSocketIsNoop(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	os.Unsetenv("NOTIFY_SOCKET")
	t.Setenv("WATCHDOG_USEC", "1000")
	n := New(nil)
	if n.Enabled() || n.WatchdogInterval() != 0 {
		t.Fatal("enabled without NOTIFY_SOCKET")
	}
	n.Ready()
	n.Status("x")
	n.Reloading()
	n.Stopping()
	n.Progress()
	n.Close()
	n.Close()
	checkLeaks(t)
	var nilN *Notifier
	nilN.Ready()
	nilN.Status("x")
	nilN.Progress()
	nilN.NewSource("x").Progress()
	nilN.Close()
}

func TestWatchdogOnlyWithProgress(t *testing.T) {
	c := notifySocket(t)
	t.Setenv("WATCHDOG_USEC", "40000") // ticks every 20 ms
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	type tick struct {
		pinged bool
		idle   []string
	}
	ticks := make(chan tick)
	stopTicks := make(chan struct{})
	n := newNotifier(nil, func(p bool, idle []string) {
		select {
		case ticks <- tick{p, idle}:
		case <-stopTicks:
		}
	})
	capture := n.NewSource("capture")
	if got := n.WatchdogInterval(); got != 40*time.Millisecond {
		t.Fatalf("interval %v", got)
	}
	next := func() tick {
		t.Helper()
		select {
		case tk := <-ticks:
			return tk
		case <-time.After(10 * time.Second):
			t.Fatal("no watchdog tick")
		}
		return tick{}
	}

	// A fresh source is not blamed before its first tick.
	if tk := next(); !tk.pinged {
		t.Fatalf("first tick withheld: idle %v", tk.idle)
	}
	if got := recv(t, c); got != "WATCHDOG=1" {
		t.Fatalf("got %q", got)
	}
	// No progress at all: two ticks, no ping.
	for range 2 {
		if tk := next(); tk.pinged || len(tk.idle) != 2 {
			t.Fatalf("tick without progress: %+v", tk)
		}
	}
	if p := pending(c); len(p) != 0 {
		t.Fatalf("pinged without progress: %q", p)
	}
	// Main loop runs but capture is stalled: still no ping.
	n.Progress()
	if tk := next(); tk.pinged || len(tk.idle) != 1 || tk.idle[0] != "capture" {
		t.Fatalf("stalled capture: %+v", tk)
	}
	if s := n.Stalled(); len(s) != 1 || s[0] != "capture" {
		t.Fatalf("Stalled() = %q, want [capture]", s)
	}
	if p := pending(c); len(p) != 0 {
		t.Fatalf("pinged with capture stalled: %q", p)
	}
	// Both progress: ping.
	n.Progress()
	capture.Progress()
	if tk := next(); !tk.pinged {
		t.Fatalf("withheld with progress: %+v", tk)
	}
	if got := recv(t, c); got != "WATCHDOG=1" {
		t.Fatalf("got %q", got)
	}
	// Progress counts once: the tick after it needs new progress.
	if tk := next(); tk.pinged {
		t.Fatal("pinged twice for one progress report")
	}
	close(stopTicks) // a tick in flight while closing must not block Close
	n.Close()
	checkLeaks(t)
}

func TestWatchdogOtherPID(t *testing.T) {
	notifySocket(t)
	t.Setenv("WATCHDOG_USEC", "40000")
	t.Setenv("WATCHDOG_PID", "1")
	if d := New(nil).WatchdogInterval(); d != 0 {
		t.Fatalf("watchdog meant for pid 1 enabled here: %v", d)
	}
}

func BenchmarkProgress(b *testing.B) {
	n := New(nil)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n.Progress()
		}
	})
}

// checkLeaks fails if a watchdog goroutine is still alive after Close returned.
func checkLeaks(t *testing.T) {
	t.Helper()
	buf := make([]byte, 1<<20)
	s := string(buf[:runtime.Stack(buf, true)])
	if strings.Contains(s, "service.(*Notifier).watchdog") {
		t.Fatal("watchdog goroutine leaked:\n" + s)
	}
}
