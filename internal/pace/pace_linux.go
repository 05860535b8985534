package pace

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

type impl struct {
	f       *os.File
	rc      syscall.RawConn
	read    func(fd uintptr) bool // t.readTimer, made once: a closure per Wait would allocate
	errno   syscall.Errno
	once    sync.Once
	stopped atomic.Bool
	buf     [8]byte

	first    int64  // the first tick, monotonic clock, ns
	period   int64  // ns
	stride   uint64 // ticks per expiry of the timerfd (SetStride)
	reported uint64 // ticks handed out by wait
	pending  uint64 // ticks that came due before a re-arm, for the next wait
}

func start(first time.Time, period time.Duration) (*impl, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("pace: timerfd_create: %w", err)
	}
	// An absolute expiry on the monotonic clock (the clock time.Until measures with), so a
	// first tick in the past still counts every tick due since.
	var now unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &now); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("pace: clock_gettime: %w", err)
	}
	at := max(now.Nano()+int64(time.Until(first)), 1) // 0 would disarm the timer
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(at), Interval: unix.NsecToTimespec(int64(period))}
	if err := unix.TimerfdSettime(fd, unix.TFD_TIMER_ABSTIME, &spec, nil); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("pace: timerfd_settime: %w", err)
	}
	// A non-blocking descriptor given to os.NewFile is registered with the runtime's poller.
	f := os.NewFile(uintptr(fd), "timerfd")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("pace: %w", err)
	}
	t := &impl{f: f, rc: rc, first: at, period: int64(period), stride: 1}
	t.read = t.readTimer
	return t, nil
}

// readTimer reads the expiration count. It is a RawSyscall: it never blocks (the
// descriptor is non-blocking), and skipping the runtime's syscall entry is what keeps sysmon
// asleep.
func (t *impl) readTimer(fd uintptr) bool {
	_, _, t.errno = syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&t.buf[0])), uintptr(len(t.buf)))
	return t.errno != syscall.EAGAIN && t.errno != syscall.EINTR
}

func (t *impl) wait() (uint64, error) {
	if t.pending > 0 && !t.stopped.Load() {
		n := t.pending
		t.pending = 0
		t.reported += n
		return n, nil
	}
	// RawConn.Read calls read until it reports done, parking the goroutine in the poller
	// between attempts.
	err := t.rc.Read(t.read)
	errno := t.errno
	switch {
	case t.stopped.Load():
		// Stop closed the descriptor: the read fails with the poller's "closing" error.
		return 0, ErrStopped
	case err != nil:
		return 0, fmt.Errorf("pace: %w", err)
	case errno != 0:
		return 0, fmt.Errorf("pace: read timerfd: %w", errno)
	}
	n := *(*uint64)(unsafe.Pointer(&t.buf[0])) * t.stride
	t.reported += n
	return n, nil
}

// setStride re-arms the timerfd to expire once per k ticks, at the tick that completes the
// next k not yet reported. Re-arming resets the kernel's expiration count, so expirations
// already counted on the old schedule are read first and kept for the next wait.
func (t *impl) setStride(k uint64) error {
	if k == t.stride || t.stopped.Load() {
		return nil
	}
	var rerr error
	if err := t.rc.Control(func(fd uintptr) {
		if t.readTimer(fd) && t.errno == 0 {
			t.pending += *(*uint64)(unsafe.Pointer(&t.buf[0])) * t.stride
		}
		next := t.first + int64(t.reported+t.pending+k-1)*t.period
		spec := unix.ItimerSpec{Value: unix.NsecToTimespec(next), Interval: unix.NsecToTimespec(int64(k) * t.period)}
		if err := unix.TimerfdSettime(int(fd), unix.TFD_TIMER_ABSTIME, &spec, nil); err != nil {
			rerr = fmt.Errorf("pace: timerfd_settime: %w", err)
		}
	}); err != nil {
		return fmt.Errorf("pace: %w", err)
	}
	if rerr == nil {
		t.stride = k
	}
	return rerr
}

func (t *impl) stop() {
	t.once.Do(func() {
		t.stopped.Store(true)
		t.f.Close()
	})
}
