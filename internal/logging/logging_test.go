package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func lines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestTextDefault(t *testing.T) {
	var b bytes.Buffer
	log, lv := New("", "", &b)
	log.Info("hello", "component", "test")
	log.Debug("hidden")
	got := lines(b.String())
	if len(got) != 1 {
		t.Fatalf("lines %q", got)
	}
	if !strings.HasPrefix(got[0], "time=") || !strings.Contains(got[0], "level=INFO msg=hello component=test") {
		t.Fatalf("text line %q", got[0])
	}
	if lv.Level() != slog.LevelInfo {
		t.Fatalf("default level %v", lv.Level())
	}
}

func TestLevelChangesLive(t *testing.T) {
	var b bytes.Buffer
	log, lv := New("text", "warn", &b)
	child := log.With("component", "x") // loggers derived before the change follow it too
	child.Info("dropped")
	if err := SetLevel(lv, "debug"); err != nil {
		t.Fatal(err)
	}
	child.Debug("kept")
	if err := SetLevel(lv, "loud"); err == nil {
		t.Fatal("unknown level accepted")
	}
	if lv.Level() != slog.LevelDebug {
		t.Fatal("a rejected level changed the level")
	}
	got := lines(b.String())
	if len(got) != 1 || !strings.Contains(got[0], "msg=kept") {
		t.Fatalf("got %q", got)
	}
}

func TestParseLevel(t *testing.T) {
	for in, want := range map[string]slog.Level{"debug": slog.LevelDebug, "": slog.LevelInfo, "INFO": slog.LevelInfo,
		"warn": slog.LevelWarn, "warning": slog.LevelWarn, "error": slog.LevelError} {
		if got, err := ParseLevel(in); err != nil || got != want {
			t.Errorf("ParseLevel(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseLevel("trace"); err == nil {
		t.Error("trace accepted")
	}
}

func TestJSON(t *testing.T) {
	var b bytes.Buffer
	log, _ := New("json", "debug", &b)
	log.Debug("d", "n", 3)
	var m map[string]any
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		t.Fatalf("not JSON: %q: %v", b.String(), err)
	}
	if m["msg"] != "d" || m["level"] != "DEBUG" || m["n"] != 3.0 || m["time"] == nil {
		t.Fatalf("got %v", m)
	}
}

// journalFile makes a real file and a JOURNAL_STREAM value naming it, as systemd does for
// the stream it connects to journald.
func journalFile(t *testing.T) (*os.File, string) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "journal"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	fi, _ := f.Stat()
	st := fi.Sys().(*syscall.Stat_t)
	return f, fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

func TestUnderJournal(t *testing.T) {
	f, js := journalFile(t)
	other, _ := journalFile(t)
	if !UnderJournal(f, js) {
		t.Fatal("matching dev:ino not detected")
	}
	for _, bad := range []string{"", "garbage", "1:2"} {
		if UnderJournal(f, bad) {
			t.Fatalf("detected with JOURNAL_STREAM=%q", bad)
		}
	}
	if UnderJournal(other, js) {
		t.Fatal("inherited JOURNAL_STREAM for another file detected as the journal")
	}
}

func TestJournalShape(t *testing.T) {
	f, js := journalFile(t)
	t.Setenv("JOURNAL_STREAM", js)
	log, _ := New("auto", "debug", f)
	log.Debug("d")
	log.Info("i", "component", "c")
	log.Warn("w")
	log.Error("e")
	log.WithGroup("g").With("a", 1).Info("grouped")
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"<7>level=DEBUG msg=d",
		"<6>level=INFO msg=i component=c",
		"<4>level=WARN msg=w",
		"<3>level=ERROR msg=e",
		"<6>level=INFO msg=grouped g.a=1",
	}
	if got := lines(string(b)); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("journal lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// An explicit text format keeps its timestamps under the journal, with the prefix.
	h, js3 := journalFile(t)
	t.Setenv("JOURNAL_STREAM", js3)
	tl, _ := New("text", "info", h)
	tl.Info("t")
	b, _ = os.ReadFile(h.Name())
	if !strings.HasPrefix(string(b), "<6>time=") {
		t.Fatalf("explicit text under journal: %q", b)
	}

	// JSON under the journal keeps its fields but gains the priority prefix.
	g, js2 := journalFile(t)
	t.Setenv("JOURNAL_STREAM", js2)
	jl, _ := New("json", "info", g)
	jl.Warn("w")
	b, _ = os.ReadFile(g.Name())
	s := string(b)
	if !strings.HasPrefix(s, "<4>{") {
		t.Fatalf("json under journal: %q", s)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(strings.TrimPrefix(s, "<4>")), &m); err != nil || m["msg"] != "w" {
		t.Fatalf("json under journal: %q %v", s, err)
	}
}

func TestJournalConcurrentLinesDoNotInterleave(t *testing.T) {
	var b bytes.Buffer
	yes := true
	log, _ := NewWithOptions("auto", "info", &syncWriter{w: &b}, Options{Journal: &yes})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := log.With("g", g)
			for i := range 200 {
				l.Info("m", "i", i)
			}
		}()
	}
	wg.Wait()
	got := lines(b.String())
	if len(got) != 1600 {
		t.Fatalf("%d lines", len(got))
	}
	for _, l := range got {
		if !strings.HasPrefix(l, "<6>level=INFO msg=m g=") || strings.Count(l, "<6>") != 1 {
			t.Fatalf("torn line %q", l)
		}
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func TestIsSecretKey(t *testing.T) {
	secret := []string{"key", "api_key", "apiKey", "APIKey", "token", "access_token", "password", "mqtt.password",
		"Authorization", "secret", "deepgram-api-key", "client_secret", "pass"}
	plain := []string{"keyterm", "keywords", "api_key_file", "password_file", "keepalive", "monkey", "component",
		"err", "broker", "topic", "from", "secret_from", "passive", "tokens_sent"}
	for _, k := range secret {
		if !IsSecretKey(k) {
			t.Errorf("%q not treated as secret", k)
		}
	}
	for _, k := range plain {
		if IsSecretKey(k) {
			t.Errorf("%q treated as secret", k)
		}
	}
}

type groupValuer struct{}

func (groupValuer) LogValue() slog.Value {
	return slog.GroupValue(slog.String("token", "tok-123"), slog.String("host", "h"))
}

func TestRedaction(t *testing.T) {
	var b bytes.Buffer
	log, _ := New("json", "debug", &b)
	log.With("api_key", "sk-with").Info("m",
		"password", "hunter2",
		slog.Group("mqtt", slog.String("username", "u"), slog.String("password", "pw-in-group")),
		"creds", groupValuer{},
		"api_key_file", "/etc/hark/credentials/deepgram-api-key",
	)
	out := b.String()
	for _, leak := range []string{"sk-with", "hunter2", "pw-in-group", "tok-123"} {
		if strings.Contains(out, leak) {
			t.Fatalf("secret %q leaked: %s", leak, out)
		}
	}
	for _, keep := range []string{`"username":"u"`, `"host":"h"`, `"/etc/hark/credentials/deepgram-api-key"`, `"password":"REDACTED"`} {
		if !strings.Contains(out, keep) {
			t.Fatalf("%s missing from %s", keep, out)
		}
	}
}

// fakeClock drives a Repeater's notion of time.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestRepeater(t *testing.T) {
	var b bytes.Buffer
	log, _ := New("text", "debug", &b)
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	r := NewRepeater(log, "connect failed", time.Minute)
	r.now = clk.now

	r.OK() // success without failure logs nothing
	boom := errors.New("connection refused")
	for i := range 30 { // 30 failures one second apart: one line
		clk.t = clk.t.Add(time.Second)
		r.Fail(boom, "attempt", i)
	}
	if n := len(lines(b.String())); n != 1 {
		t.Fatalf("%d lines after 30 failures in 30 s:\n%s", n, b.String())
	}
	for range 40 { // crossing the minute: one summary
		clk.t = clk.t.Add(time.Second)
		r.Fail(errors.New("timeout"))
	}
	if f, n := r.Failing(); !f || n != 70 {
		t.Fatalf("Failing() = %v, %d", f, n)
	}
	clk.t = clk.t.Add(5 * time.Second)
	r.OK()
	r.OK() // logged once
	got := lines(b.String())
	if len(got) != 3 {
		t.Fatalf("lines:\n%s", b.String())
	}
	for i, want := range []string{
		`level=WARN msg="connect failed" err="connection refused" attempt=0`,
		`level=WARN msg="connect failed (repeated)" err=timeout repeated=60 failures=61 failing_for=1m0s`,
		`level=INFO msg="connect failed: recovered" failures=70 failing_for=1m14s last_err=timeout`,
	} {
		if !strings.Contains(got[i], want) {
			t.Errorf("line %d = %q\nwant it to contain %q", i, got[i], want)
		}
	}
	if f, _ := r.Failing(); f {
		t.Fatal("still failing after OK")
	}
	// A new run starts with a fresh first line.
	r.Fail(boom)
	if got := lines(b.String()); len(got) != 4 || !strings.Contains(got[3], `msg="connect failed" err="connection refused"`) {
		t.Fatalf("new run: %q", got)
	}
}

func TestRepeaterConcurrent(t *testing.T) {
	var b bytes.Buffer
	log, _ := New("text", "debug", &syncWriter{w: &b})
	r := NewRepeater(log, "x", time.Hour)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 500 {
				r.Fail(errors.New("e"))
			}
		}()
	}
	wg.Wait()
	if _, n := r.Failing(); n != 2000 {
		t.Fatalf("counted %d of 2000", n)
	}
	r.OK()
	if got := lines(b.String()); len(got) != 2 || !strings.Contains(got[1], "failures=2000") {
		t.Fatalf("got %q", got)
	}
}

func BenchmarkDisabledDebug(b *testing.B) {
	var buf bytes.Buffer
	log, _ := New("text", "info", &buf)
	b.ReportAllocs()
	for b.Loop() {
		log.Debug("frame", "seq", 1)
	}
}

// TestLinePrefix: a line written straight to the journal's stream gets the priority
// prefix; any other writer gets none.
func TestLinePrefix(t *testing.T) {
	f, js := journalFile(t)
	other, _ := journalFile(t)
	t.Setenv("JOURNAL_STREAM", js)
	if got := LinePrefix(f, slog.LevelError); got != "<3>" {
		t.Errorf("journal stream: prefix %q, want <3>", got)
	}
	if got := LinePrefix(f, slog.LevelWarn); got != "<4>" {
		t.Errorf("journal stream, warn: prefix %q, want <4>", got)
	}
	if got := LinePrefix(other, slog.LevelError); got != "" {
		t.Errorf("another file: prefix %q", got)
	}
	if got := LinePrefix(&bytes.Buffer{}, slog.LevelError); got != "" {
		t.Errorf("a buffer: prefix %q", got)
	}
}
