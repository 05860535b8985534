package pace

import (
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/hark-audio/hark/internal/leaktest"
)

// Ticks are never early, and each one is reported exactly once: after the ticks reported so
// far, the last of them is due no later than now.
func TestTicksOnSchedule(t *testing.T) {
	leaktest.Check(t)
	first := time.Now().Add(20 * time.Millisecond)
	const period = 5 * time.Millisecond
	tk, err := New(first, period)
	if err != nil {
		t.Fatal(err)
	}
	defer tk.Stop()
	var total uint64
	for total < 20 {
		n, err := tk.Wait()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Fatal("Wait returned 0 ticks")
		}
		total += n
		if due := first.Add(time.Duration(total-1) * period); time.Now().Before(due) {
			t.Fatalf("tick %d reported %v before it was due", total, due.Sub(time.Now()))
		}
	}
}

// A first tick in the past: every tick due since then is counted by the first Wait.
func TestMissedTicksCounted(t *testing.T) {
	const period = 10 * time.Millisecond
	tk, err := New(time.Now().Add(-50*period), period)
	if err != nil {
		t.Fatal(err)
	}
	defer tk.Stop()
	n, err := tk.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if n < 50 {
		t.Fatalf("first Wait reported %d ticks; at least 50 were due", n)
	}
}

// Stop wakes a Wait blocked on a tick an hour away, and every later Wait fails.
func TestStopWakesWait(t *testing.T) {
	leaktest.Check(t)
	tk, err := New(time.Now().Add(time.Hour), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() {
		_, err := tk.Wait()
		done <- err
	}()
	tk.Stop()
	tk.Stop()
	select {
	case err := <-done:
		if !errors.Is(err, ErrStopped) {
			t.Fatalf("Wait after Stop: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not wake Wait")
	}
	if _, err := tk.Wait(); !errors.Is(err, ErrStopped) {
		t.Fatalf("Wait on a stopped ticker: %v", err)
	}
}

// Waiting allocates nothing: it runs once per audio frame.
func TestWaitAllocs(t *testing.T) {
	tk, err := New(time.Now().Add(-time.Hour), time.Millisecond) // always due
	if err != nil {
		t.Fatal(err)
	}
	defer tk.Stop()
	tk.Wait()
	if n := testing.AllocsPerRun(20, func() {
		if _, err := tk.Wait(); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("Wait allocates %v times", n)
	}
}

func TestBadPeriod(t *testing.T) {
	if _, err := New(time.Now(), 0); err == nil {
		t.Fatal("period 0 accepted")
	}
}

// BenchmarkIdleTick compares what one tick costs the whole process (CPU and context
// switches, from getrusage) with this package and with a re-armed time.Timer on the same
// schedule, the pattern it replaces. The wall time per op is the period; read the custom
// metrics:
//
//	go test -run '^$' -bench IdleTick -benchtime 200x ./internal/pace
func BenchmarkIdleTick(b *testing.B) {
	const period = 10 * time.Millisecond
	b.Run("pace", func(b *testing.B) {
		tk, err := New(time.Now().Add(period), period)
		if err != nil {
			b.Fatal(err)
		}
		defer tk.Stop()
		measure(b, func() {
			for n := uint64(0); n < uint64(b.N); {
				k, err := tk.Wait()
				if err != nil {
					b.Fatal(err)
				}
				n += k
			}
		})
	})
	b.Run("time.Timer", func(b *testing.B) {
		start := time.Now()
		t := time.NewTimer(time.Hour)
		measure(b, func() {
			for i := 1; i <= b.N; i++ {
				t.Reset(time.Until(start.Add(time.Duration(i) * period)))
				<-t.C
			}
		})
	})
}

func measure(b *testing.B, f func()) {
	var r0, r1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &r0)
	b.ResetTimer()
	f()
	b.StopTimer()
	syscall.Getrusage(syscall.RUSAGE_SELF, &r1)
	cpu := (r1.Utime.Nano() + r1.Stime.Nano()) - (r0.Utime.Nano() + r0.Stime.Nano())
	csw := (r1.Nvcsw + r1.Nivcsw) - (r0.Nvcsw + r0.Nivcsw)
	b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/tick")
	b.ReportMetric(float64(csw)/float64(b.N), "ctxsw/tick")
}

// SetStride hands ticks out k at a time without moving the schedule: ticks due before the
// change are reported by the next Wait (re-arming the timer resets the kernel's count, so
// these are the ones a careless re-arm loses), a strided Wait reports whole strides, and no
// tick is ever reported before it is due.
func TestStrideKeepsSchedule(t *testing.T) {
	leaktest.Check(t)
	const period = 4 * time.Millisecond
	first := time.Now().Add(-50 * period)
	tk, err := New(first, period)
	if err != nil {
		t.Fatal(err)
	}
	defer tk.Stop()
	if err := tk.SetStride(0); err == nil {
		t.Fatal("SetStride(0) accepted")
	}
	if err := tk.SetStride(4); err != nil {
		t.Fatal(err)
	}
	n, err := tk.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if n < 50 {
		t.Fatalf("first Wait after SetStride reported %d ticks; at least 50 were due before it", n)
	}
	total := n
	for _, k := range []int{4, 1, 3, 1, 5} {
		if err := tk.SetStride(k); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			n, err := tk.Wait()
			if err != nil {
				t.Fatal(err)
			}
			total += n
			if due := first.Add(time.Duration(total-1) * period); time.Now().Before(due) {
				t.Fatalf("stride %d: tick %d reported %v before it was due", k, total, due.Sub(time.Now()))
			}
			// The first Wait after a change may also report ticks due before it.
			if i > 0 && n%uint64(k) != 0 {
				t.Fatalf("stride %d: Wait reported %d ticks, not whole strides", k, n)
			}
		}
	}
}
