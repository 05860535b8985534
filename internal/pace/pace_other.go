//go:build !linux

package pace

import (
	"sync"
	"time"
)

type impl struct {
	next   time.Time
	period time.Duration
	timer  *time.Timer
	done   chan struct{}
	once   sync.Once
}

func start(first time.Time, period time.Duration) (*impl, error) {
	return &impl{next: first, period: period, timer: time.NewTimer(time.Until(first)), done: make(chan struct{})}, nil
}

func (t *impl) wait() (uint64, error) {
	select {
	case <-t.timer.C:
	case <-t.done:
		return 0, ErrStopped
	}
	n := uint64(time.Since(t.next)/t.period) + 1
	t.next = t.next.Add(time.Duration(n) * t.period)
	t.timer.Reset(time.Until(t.next))
	return n, nil
}

func (t *impl) stop() {
	t.once.Do(func() {
		t.timer.Stop()
		close(t.done)
	})
}
