// Package pace wakes one goroutine on a fixed schedule (first, first+period, ...) for as
// little CPU as the operating system allows. hark paces file and stdin input at real time
// with it: while nobody speaks that tick is nearly all the daemon does, so its cost is the
// idle cost.
//
// Why not time.Timer: each Go timer expiry wakes two threads (the one parked in the network
// poller, which the runtime arms with a millisecond timeout and so usually wakes twice, and
// sysmon, which sleeps until the next timer when the process is idle), and a timer re-armed
// per frame adds the scheduler's bookkeeping. Measured on the 2-core build machine, 200 ticks
// at 100 ms: time.Timer 800 context switches and 16-18 ms of CPU, this package's timerfd
// ticker 209 context switches and 8 ms (process start included; see BENCHMARKS.md). On
// Linux the ticker is a timerfd read through the runtime's poller: the kernel keeps the
// schedule, the one thread parked in epoll wakes per tick, and the read is a raw system
// call, which, unlike an ordinary one, does not wake sysmon. Elsewhere it is a time.Timer.
package pace

import (
	"errors"
	"time"
)

// ErrStopped is returned by Wait after Stop.
var ErrStopped = errors.New("pace: ticker stopped")

// Ticker ticks at first, first+period, first+2·period, ...: on a schedule, not period after
// the previous wake, so the rate is exact however late the consumer runs. Ticks that came
// due while the consumer was busy are counted by the next Wait, never dropped.
//
// Wait must be called from one goroutine at a time; Stop from any.
type Ticker struct{ i *impl }

// New starts a ticker. A first tick already in the past is due at once.
func New(first time.Time, period time.Duration) (*Ticker, error) {
	if period <= 0 {
		return nil, errors.New("pace: period must be positive")
	}
	i, err := start(first, period)
	if err != nil {
		return nil, err
	}
	return &Ticker{i: i}, nil
}

// Wait blocks until at least one tick not yet reported is due and returns how many came due
// since the previous Wait (at least 1), or ErrStopped once Stop was called.
func (t *Ticker) Wait() (uint64, error) { return t.i.wait() }

// SetStride makes the ticker wake its consumer once per k ticks instead of once per tick
// (k >= 1): the schedule of ticks is unchanged, but the ticks are handed out k at a time,
// when the last of them is due. hark's file input uses it while nobody speaks: the pacer then
// wakes twice a second rather than ten times, and the frames it releases in a batch wait in
// the ring (pre-roll) as they would have anyway. Ticks due before the change are not lost:
// the next Wait reports them at once. Call it from the goroutine that calls Wait.
func (t *Ticker) SetStride(k int) error {
	if k < 1 {
		return errors.New("pace: stride must be at least 1")
	}
	return t.i.setStride(uint64(k))
}

// Stop ends the ticker and wakes a blocked Wait. It is safe to call more than once.
func (t *Ticker) Stop() { t.i.stop() }
