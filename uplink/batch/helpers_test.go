package batch

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hark-audio/hark/dgemu"
	"github.com/hark-audio/hark/transcript"
	"github.com/hark-audio/hark/uplink/spool"
)

const testKey = "test-key-1234"

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// speech returns d of "speech" (a 300 Hz tone at about -12 dBFS) framed by 200 ms of
// silence, which the emulator's energy detector reads as one utterance.
func speech(d time.Duration) []int16 {
	pad := 3200
	n := int(d.Seconds() * 16000)
	s := make([]int16, pad+n+pad)
	for i := range n {
		s[pad+i] = int16(8000 * math.Sin(2*math.Pi*300*float64(i)/16000))
	}
	return s
}

// startEmu starts an emulator and closes it at the end of the test.
func startEmu(t *testing.T, cfg dgemu.Config) *dgemu.Server {
	t.Helper()
	if cfg.APIKey == "" {
		cfg.APIKey = testKey
	}
	srv, err := dgemu.Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

func newTestClient(t *testing.T, u string) *Client {
	c := NewClient(ClientConfig{URL: u, APIKey: testKey, Logger: testLogger(t),
		RetryWaitMin: 10 * time.Millisecond, RetryWaitMax: 50 * time.Millisecond, MaxRetryAfter: 200 * time.Millisecond,
		Options: map[string][]string{"model": {"nova-3"}}})
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// freePort returns an address nothing listens on (yet): an outage until an emulator is
// started there.
func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

// receiver records publishes in order; fail makes the next publishes fail.
type receiver struct {
	mu    sync.Mutex
	got   []transcript.Utterance
	fails int
	ch    chan struct{}
}

func newReceiver() *receiver { return &receiver{ch: make(chan struct{}, 1)} }

func (r *receiver) publish(u transcript.Utterance) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fails > 0 {
		r.fails--
		return fmt.Errorf("broker unavailable (test)")
	}
	r.got = append(r.got, u)
	select {
	case r.ch <- struct{}{}:
	default:
	}
	return nil
}

func (r *receiver) list() []transcript.Utterance {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]transcript.Utterance(nil), r.got...)
}

// wait waits until n utterances were published.
func (r *receiver) wait(t *testing.T, n int, timeout time.Duration) []transcript.Utterance {
	t.Helper()
	tm := time.NewTimer(timeout)
	defer tm.Stop()
	for {
		if l := r.list(); len(l) >= n {
			return l
		}
		select {
		case <-r.ch:
		case <-tm.C:
			t.Fatalf("timed out: %d of %d published", len(r.list()), n)
		}
	}
}

// waitFor polls cond with pacing until it holds or the timeout passes; used only for
// uploader state, which has no change notification.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // pacing the poll
	}
}

func openSpool(t *testing.T, dir string) *spool.Spool {
	t.Helper()
	sp, err := spool.Open(dir, spool.Limits{}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// runUploader runs u until the test ends and checks that Run returns.
func runUploader(t *testing.T, u *Uploader) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- u.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != context.Canceled {
				t.Errorf("Run returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
		u.c.CloseIdleConnections()
	})
}

func countStatus(srv *dgemu.Server, status int) int {
	n := 0
	for _, r := range srv.Requests() {
		if r.Done && r.Status == status {
			n++
		}
	}
	return n
}

func writeFile(t *testing.T, path string, b []byte) {
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

type lockedBuilder struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (l *lockedBuilder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func slogTo(b *strings.Builder) *slog.Logger {
	return slog.New(slog.NewTextHandler(&lockedBuilder{b: b}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
