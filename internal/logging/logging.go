// Package logging builds hark's *slog.Logger: text by default, JSON on request, and shaped
// for journald when stderr is connected to the journal (no timestamps, since journald adds
// its own, and a syslog "<N>" prefix per line so journald records each message's priority
// and `journalctl -p warning` works). The level lives in a slog.LevelVar so a configuration
// reload changes it without rebuilding loggers.
//
// It also holds two guards the rest of hark relies on: Repeater, which turns a failure that
// repeats every second into one line plus periodic counts plus a recovery line, and a
// redacting handler that blanks attributes named like secrets, in case one is ever passed
// to a logger by mistake.
package logging

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
)

// Format names accepted by New (the values of log.format).
const (
	FormatAuto = "auto" // text; journald-shaped when stderr is the journal
	FormatText = "text"
	FormatJSON = "json"
)

// Options tune New beyond format and level.
type Options struct {
	// Journal forces (true) or forbids (false) journald shaping; nil detects it from
	// JOURNAL_STREAM and the writer.
	Journal *bool
}

// New returns a logger writing to w in the given format ("auto", "" , "text" or "json") at
// the given level ("debug", "info", "warn", "error"; "" is info), and the LevelVar that
// controls it. An unknown format falls back to text and an unknown level to info (config
// validation rejects both before this is reached; a logger must exist to report that).
func New(format, level string, w io.Writer) (*slog.Logger, *slog.LevelVar) {
	return NewWithOptions(format, level, w, Options{})
}

// NewWithOptions is New with Options.
func NewWithOptions(format, level string, w io.Writer, o Options) (*slog.Logger, *slog.LevelVar) {
	lv := new(slog.LevelVar)
	if l, err := ParseLevel(level); err == nil {
		lv.Set(l)
	}
	journal := false
	if o.Journal != nil {
		journal = *o.Journal
	} else if f, ok := w.(*os.File); ok {
		journal = UnderJournal(f, os.Getenv("JOURNAL_STREAM"))
	}
	ho := &slog.HandlerOptions{Level: lv}
	if journal && format != FormatJSON && format != FormatText {
		// journald timestamps every line itself; a second timestamp only adds noise.
		ho.ReplaceAttr = dropTime
	}
	var h slog.Handler
	if journal {
		h = newPrefixHandler(w, format == FormatJSON, ho)
	} else if format == FormatJSON {
		h = slog.NewJSONHandler(w, ho)
	} else {
		h = slog.NewTextHandler(w, ho)
	}
	return slog.New(NewRedactHandler(h)), lv
}

func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

// ParseLevel parses a log.level value.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, nil
	case "", "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return slog.LevelInfo, fmt.Errorf("unknown log level %q (want debug, info, warn or error)", s)
}

// SetLevel applies a log.level value to lv, as a live reload does.
func SetLevel(lv *slog.LevelVar, s string) error {
	l, err := ParseLevel(s)
	if err != nil {
		return err
	}
	lv.Set(l)
	return nil
}

// UnderJournal reports whether f is the stream systemd connected to the journal:
// JOURNAL_STREAM ("DEV:INODE") matches f's device and inode. Matching both, not just the
// variable being set, matters because the variable is inherited by children whose stderr
// was redirected elsewhere.
func UnderJournal(f *os.File, journalStream string) bool {
	dev, ino, ok := strings.Cut(journalStream, ":")
	if !ok || f == nil {
		return false
	}
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	return fmt.Sprint(st.Dev) == dev && fmt.Sprint(st.Ino) == ino
}

// LinePrefix is what a line written straight to w, not through a logger, needs in front
// of it to reach the journal at level l: the syslog "<N>" prefix when w is the stream
// systemd connected to the journal ($JOURNAL_STREAM), else nothing. cmd/hark writes the
// error that ends the process this way, so `journalctl -p err` shows why hark exited
// (without it journald files the line at the stream's default, info).
func LinePrefix(w io.Writer, l slog.Level) string {
	f, ok := w.(*os.File)
	if !ok || !UnderJournal(f, os.Getenv("JOURNAL_STREAM")) {
		return ""
	}
	return fmt.Sprintf("<%d>", SyslogPriority(l))
}

// SyslogPriority maps a slog level to the syslog priority journald understands.
func SyslogPriority(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return 3 // err
	case l >= slog.LevelWarn:
		return 4 // warning
	case l >= slog.LevelInfo:
		return 6 // info
	}
	return 7 // debug
}

// prefixHandler formats each record with an inner handler into a buffer and writes it with a
// "<N>" prefix in one Write, so journald parses the priority (SyslogLevelPrefix= defaults to
// yes) and concurrent records never interleave.
type prefixHandler struct {
	inner slog.Handler
	st    *prefixState
}

type prefixState struct {
	mu  sync.Mutex
	buf bytes.Buffer
	w   io.Writer
}

func newPrefixHandler(w io.Writer, json bool, o *slog.HandlerOptions) *prefixHandler {
	st := &prefixState{w: w}
	var inner slog.Handler
	if json {
		inner = slog.NewJSONHandler(&st.buf, o)
	} else {
		inner = slog.NewTextHandler(&st.buf, o)
	}
	return &prefixHandler{inner: inner, st: st}
}

func (h *prefixHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *prefixHandler) Handle(ctx context.Context, r slog.Record) error {
	h.st.mu.Lock()
	defer h.st.mu.Unlock()
	h.st.buf.Reset()
	fmt.Fprintf(&h.st.buf, "<%d>", SyslogPriority(r.Level))
	if err := h.inner.Handle(ctx, r); err != nil {
		return err
	}
	_, err := h.st.w.Write(h.st.buf.Bytes())
	return err
}

func (h *prefixHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &prefixHandler{inner: h.inner.WithAttrs(as), st: h.st}
}

func (h *prefixHandler) WithGroup(name string) slog.Handler {
	return &prefixHandler{inner: h.inner.WithGroup(name), st: h.st}
}
