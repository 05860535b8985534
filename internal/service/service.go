// Package service tells systemd how hark is doing over the sd_notify protocol: READY=1 once
// the pipeline runs, STATUS= on every state change (shown by `systemctl status hark`),
// RELOADING=1 around a SIGHUP reload, STOPPING=1 on a graceful stop, and a watchdog that
// pings only while the daemon makes progress.
//
// The watchdog exists to turn a silent stall into a restart: a goroutine that merely pinged
// on a timer would keep a daemon whose capture is stuck alive forever. So the agent reports
// progress (an atomic store, cheap enough to call per audio frame) and the pinger sends
// WATCHDOG=1 only if every progress source moved since its previous tick.
//
// Everything is a no-op when NOTIFY_SOCKET is unset (not started by systemd), so the agent
// calls it unconditionally.
package service

import (
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Notifier sends sd_notify messages. The zero value is not usable; use New. A nil
// *Notifier is a valid no-op, so optional wiring needs no checks.
type Notifier struct {
	log     *slog.Logger
	enabled bool

	main *Source

	mu      sync.Mutex
	sources []*Source
	status  string
	stalled []string // sources idle at the latest watchdog tick

	// onTick, when set (by tests), observes each watchdog decision after it was acted on.
	onTick func(pinged bool, idle []string)

	stop chan struct{} // closed by Close
	done chan struct{} // closed when the watchdog goroutine ended
	once sync.Once
}

// Source is one thing whose progress the watchdog requires, such as the capture path or the
// main loop. Progress is safe from any goroutine, including a hot audio path.
type Source struct {
	name  string
	moved atomic.Bool
}

// Progress records that this source did work since the watchdog's previous tick.
func (s *Source) Progress() {
	// Load first: between ticks the flag is already set, and a plain load keeps the cache
	// line shared instead of writing it on every frame.
	if s != nil && !s.moved.Load() {
		s.moved.Store(true)
	}
}

// Name is the name given to NewSource.
func (s *Source) Name() string { return s.name }

// New returns a notifier that talks to $NOTIFY_SOCKET, or does nothing when it is unset.
// When systemd set a watchdog for this process (WatchdogSec=), New starts the watchdog
// goroutine; Close stops it. log receives send failures and watchdog decisions (a nil log
// discards them).
func New(log *slog.Logger) *Notifier {
	return newNotifier(log, nil)
}

func newNotifier(log *slog.Logger, onTick func(bool, []string)) *Notifier {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := &Notifier{log: log, enabled: os.Getenv("NOTIFY_SOCKET") != "", onTick: onTick,
		stop: make(chan struct{}), done: make(chan struct{})}
	n.main = n.NewSource("main")
	if iv := n.WatchdogInterval(); iv > 0 {
		go n.watchdog(iv)
	} else {
		close(n.done)
	}
	return n
}

// Close stops the watchdog goroutine and waits for it. It sends nothing: call Stopping
// first on a graceful stop. Safe to call more than once and on nil.
func (n *Notifier) Close() {
	if n == nil {
		return
	}
	n.once.Do(func() { close(n.stop) })
	<-n.done
}

// Enabled reports whether a service manager is listening.
func (n *Notifier) Enabled() bool { return n != nil && n.enabled }

// NewSource registers a further progress source the watchdog requires (the default one,
// fed by Progress, is "main"). A source is not blamed before the first tick after it was
// registered.
func (n *Notifier) NewSource(name string) *Source {
	if n == nil {
		return nil
	}
	s := &Source{name: name}
	s.moved.Store(true) // a source is not blamed before its first tick
	n.mu.Lock()
	n.sources = append(n.sources, s)
	n.mu.Unlock()
	return s
}

// Progress records progress of the default source ("main"); call it per audio frame and per
// main-loop iteration. It is an atomic store.
func (n *Notifier) Progress() {
	if n != nil {
		n.main.Progress()
	}
}

func (n *Notifier) send(state string) {
	if !n.Enabled() {
		return
	}
	// unsetEnvironment=false: the watchdog and later messages need NOTIFY_SOCKET again.
	if _, err := daemon.SdNotify(false, state); err != nil {
		n.log.Debug("sd_notify failed", "state", firstLine(state), "err", err)
	}
}

// Ready tells systemd start-up finished (and, after Reloading, that the reload finished).
func (n *Notifier) Ready() { n.send(daemon.SdNotifyReady) }

// Status sets the free-form status line `systemctl status` shows. Repeating the current
// status sends nothing.
func (n *Notifier) Status(s string) {
	if n == nil {
		return
	}
	s = strings.ReplaceAll(s, "\n", " ")
	n.mu.Lock()
	same := s == n.status
	n.status = s
	n.mu.Unlock()
	if !same {
		n.send("STATUS=" + s)
	}
}

// Stopping tells systemd a graceful stop began, so it does not report the service as
// failed while it drains.
func (n *Notifier) Stopping() { n.send(daemon.SdNotifyStopping) }

// Reloading tells systemd a configuration reload began; call Ready when it is done.
// MONOTONIC_USEC ties the message to the reload request (required by newer systemd for
// Type=notify-reload, harmless on 252, which has only Type=notify and ExecReload=kill -HUP).
func (n *Notifier) Reloading() {
	if !n.Enabled() {
		return
	}
	n.send(daemon.SdNotifyReloading + "\n" + strings.TrimSuffix(daemon.SdNotifyMonotonicUsec(), "\n"))
}

// WatchdogInterval is systemd's WatchdogSec for this process, or 0 when no watchdog is
// configured (or NOTIFY_SOCKET is unset).
func (n *Notifier) WatchdogInterval() time.Duration {
	if !n.Enabled() {
		return 0
	}
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		n.log.Warn("ignoring malformed watchdog settings", "err", err)
		return 0
	}
	return d
}

// watchdog runs until Close: every half watchdog interval it sends WATCHDOG=1 if every
// source made progress since the previous tick, and otherwise withholds it (logging which
// sources stalled, once per stall), so systemd kills and restarts a stalled daemon.
func (n *Notifier) watchdog(iv time.Duration) {
	defer close(n.done)
	t := time.NewTicker(iv / 2)
	defer t.Stop()
	stalled := false
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		var idle []string
		n.mu.Lock()
		for _, s := range n.sources {
			if !s.moved.Swap(false) {
				idle = append(idle, s.name)
			}
		}
		n.stalled = idle
		n.mu.Unlock()
		switch {
		case len(idle) == 0:
			if stalled {
				n.log.Info("progress resumed; watchdog pings resumed")
				stalled = false
			}
			n.send(daemon.SdNotifyWatchdog)
		case !stalled:
			n.log.Warn("no progress; withholding watchdog ping, systemd will restart hark if this lasts",
				"stalled", strings.Join(idle, ","), "watchdog", iv)
			stalled = true
		}
		if n.onTick != nil {
			n.onTick(len(idle) == 0, idle)
		}
	}
}

// Stalled names the progress sources that were idle at the watchdog's latest tick: what
// made systemd's watchdog fire, when it did. Empty when the watchdog is off or all moved.
func (n *Notifier) Stalled() []string {
	if n == nil {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.stalled...)
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
