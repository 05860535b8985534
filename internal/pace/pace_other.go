//go:build !linux

package pace

import (
	"sync"
	"time"
)

type impl struct {
	next   time.Time // the first tick not yet reported
	period time.Duration
	stride uint64
	timer  *time.Timer
	done   chan struct{}
	once   sync.Once
}

func start(first time.Time, period time.Duration) (*impl, error) {
	return &impl{next: first, period: period, stride: 1, timer: time.NewTimer(time.Until(first)), done: make(chan struct{})}, nil
}

func (t *impl) wait() (uint64, error) {
	select {
	case <-t.timer.C:
	case <-t.done:
		return 0, ErrStopped
	}
	n := uint64(time.Since(t.next)/t.period) + 1
	t.next = t.next.Add(time.Duration(n) * t.period)
	t.arm()
	return n, nil
}

// arm sets the timer for the tick that completes the next stride.
func (t *impl) arm() {
	t.timer.Reset(time.Until(t.next.Add(time.Duration(t.stride-1) * t.period)))
}

func (t *impl) setStride(k uint64) error {
	t.timer.Stop()
	t.stride = k
	t.arm()
	return nil
}

func (t *impl) stop() {
	t.once.Do(func() {
		t.timer.Stop()
		close(t.done)
	})
}
