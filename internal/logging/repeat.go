package logging

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// DefaultSummaryEvery is how often a Repeater reports a failure that keeps happening.
const DefaultSummaryEvery = time.Minute

// Repeater logs a failure that may repeat many times a minute (a broker that refuses every
// reconnect, a device that keeps failing to open) without flooding the journal: the first
// failure is logged at Warn with its error, repeats are counted and summarised at most once
// per interval ("repeated N times", with the latest error), and the first success after
// failures is logged at Info with the total count and how long it lasted.
//
// It is safe for concurrent use.
type Repeater struct {
	log   *slog.Logger
	msg   string
	every time.Duration
	now   func() time.Time
	level slog.Level // of the failure lines: Warn unless AtLevel

	mu       sync.Mutex
	failing  bool
	since    time.Time // first failure of the current run
	lastLog  time.Time // last line written for the current run
	total    int       // failures in the current run
	unlogged int       // failures since the last line
	lastErr  error
}

// NewRepeater returns a Repeater logging msg ("mqtt connect failed") to log, summarising
// every interval (0 means DefaultSummaryEvery).
func NewRepeater(log *slog.Logger, msg string, every time.Duration) *Repeater {
	if every <= 0 {
		every = DefaultSummaryEvery
	}
	return &Repeater{log: log, msg: msg, every: every, now: time.Now, level: slog.LevelWarn}
}

// AtLevel sets the level of the failure lines (Warn by default): Error for a failure that
// loses data, such as speech that could not be spooled. It returns r, for chaining at
// construction.
func (r *Repeater) AtLevel(l slog.Level) *Repeater {
	r.mu.Lock()
	r.level = l
	r.mu.Unlock()
	return r
}

// Fail records one failure. attrs are added to the lines it writes.
func (r *Repeater) Fail(err error, attrs ...any) {
	r.mu.Lock()
	now := r.now()
	r.total++
	r.lastErr = err
	if !r.failing {
		r.failing, r.since, r.lastLog, r.unlogged = true, now, now, 0
		lvl := r.level
		r.mu.Unlock()
		r.log.Log(context.Background(), lvl, r.msg, append([]any{"err", err}, attrs...)...)
		return
	}
	r.unlogged++
	if now.Sub(r.lastLog) < r.every {
		r.mu.Unlock()
		return
	}
	n, total, since, lvl := r.unlogged, r.total, now.Sub(r.since), r.level
	r.lastLog, r.unlogged = now, 0
	r.mu.Unlock()
	r.log.Log(context.Background(), lvl, r.msg+" (repeated)",
		append([]any{"err", err, "repeated", n, "failures", total, "failing_for", since.Round(time.Second).String()}, attrs...)...)
}

// OK records a success; after failures it logs the recovery once.
func (r *Repeater) OK(attrs ...any) {
	r.mu.Lock()
	if !r.failing {
		r.mu.Unlock()
		return
	}
	total, since, lastErr := r.total, r.now().Sub(r.since), r.lastErr
	r.failing, r.total, r.unlogged, r.lastErr = false, 0, 0, nil
	r.mu.Unlock()
	r.log.Log(context.Background(), slog.LevelInfo, r.msg+": recovered",
		append([]any{"failures", total, "failing_for", since.Round(time.Second).String(), "last_err", lastErr}, attrs...)...)
}

// Failing reports whether the last outcome was a failure, and how many in a row.
func (r *Repeater) Failing() (bool, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failing, r.total
}
