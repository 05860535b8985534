// Package leaktest checks that a test leaves no goroutines behind. Tests across hark use it
// so that every component's Close really waits for what it started.
package leaktest

import (
	"runtime"
	"testing"
	"time"
)

// Check records the number of goroutines now and registers a cleanup that fails the test
// if more are running after it. Call it first in a test: cleanups run last-in first-out,
// so the check runs after every server and client registered later has been closed.
func Check(t testing.TB) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() { Wait(t, before) })
}

// Wait fails t if more than before goroutines are still running once the ones that are
// winding down have had up to 10 s to exit. It polls the count; nothing is decided by a
// fixed sleep.
func Wait(t testing.TB, before int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= before {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("goroutine leak: %d running, %d before the test\n%s", n, before, buf)
		}
		runtime.Gosched()
		time.Sleep(10 * time.Millisecond) // polling interval of the count only
	}
}
