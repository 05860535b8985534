package spool

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hark-audio/hark/audio"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func samples(n int, seed int16) []int16 {
	s := make([]int16, n)
	for i := range s {
		s[i] = seed + int16(i%100)
	}
	return s
}

var t0 = time.Date(2026, 11, 21, 5, 0, 0, 0, time.UTC)

func mustOpen(t *testing.T, dir string, lim Limits) *Spool {
	t.Helper()
	s, err := Open(dir, lim, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func readWAV(t *testing.T, path string) []int16 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	wr, err := audio.NewWAVReader(f)
	if err != nil {
		t.Fatal(err)
	}
	if wr.Format != (audio.WAVFormat{SampleRate: 16000, Channels: 1, BitsPerSample: 16}) {
		t.Fatalf("format %+v", wr.Format)
	}
	b, err := io.ReadAll(wr)
	if err != nil {
		t.Fatal(err)
	}
	return audio.DecodePCM(nil, b)
}

func TestPutPendingCompleteAndModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	s := mustOpen(t, dir, Limits{})
	opts := url.Values{"model": {"nova-3"}, "keyterm": {"a", "b"}}
	// Put out of capture order: Pending must sort by Start.
	m2, err := s.Put(Meta{Start: t0.Add(2 * time.Second), DeviceID: "kitchen", Options: opts, Reason: "stream down"}, samples(16000, 2))
	if err != nil {
		t.Fatal(err)
	}
	m1, err := s.Put(Meta{Start: t0, DeviceID: "kitchen", Reason: "unconfirmed"}, samples(8000, 1))
	if err != nil {
		t.Fatal(err)
	}
	if m2.Samples != 16000 || m2.ID == "" || m2.Created.IsZero() || m2.Duration() != time.Second {
		t.Fatalf("meta %+v", m2)
	}
	select {
	case <-s.Changed():
	default:
		t.Fatal("Put did not signal Changed")
	}
	p := s.Pending()
	if len(p) != 2 || p[0].Meta.ID != m1.ID || p[1].Meta.ID != m2.ID {
		t.Fatalf("pending order %+v", p)
	}
	if got := p[1].Meta.Options; got.Get("model") != "nova-3" || len(got["keyterm"]) != 2 {
		t.Fatalf("options %v", got)
	}
	if got := readWAV(t, p[1].Path); len(got) != 16000 || got[5] != 7 {
		t.Fatalf("wav content: %d samples", len(got))
	}
	for _, d := range []string{dir, filepath.Join(dir, failedDir)} {
		fi, _ := os.Stat(d)
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("%s mode %v", d, fi.Mode().Perm())
		}
	}
	des, _ := os.ReadDir(dir)
	for _, de := range des {
		fi, _ := de.Info()
		if !de.IsDir() && fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", de.Name(), fi.Mode().Perm())
		}
	}
	st := s.Stats()
	if st.Entries != 2 || st.Audio != 1500*time.Millisecond || !st.Oldest.Equal(t0) || st.Bytes < 2*24000 {
		t.Fatalf("stats %+v", st)
	}

	// Claim hides an entry from Pending; a second claim fails.
	e, err := s.Claim(m1.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Claim(m1.ID); !errors.Is(err, ErrClaimed) {
		t.Fatalf("second claim: %v", err)
	}
	if p := s.Pending(); len(p) != 1 || p[0].Meta.ID != m2.ID {
		t.Fatalf("pending with claim %+v", p)
	}
	if err := s.SaveResponse(e.Meta.ID, []byte(`{"ok":1}`)); err != nil {
		t.Fatal(err)
	}
	s.Release(m1.ID)
	if p := s.Pending(); len(p) != 2 || !p[0].HasResponse {
		t.Fatalf("pending after release %+v", p)
	}
	if err := s.Complete(m1.ID); err != nil {
		t.Fatal(err)
	}
	for _, ext := range []string{extWAV, extMeta, extResp} {
		if _, err := os.Stat(s.path(m1.ID, ext)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there after Complete", ext)
		}
	}
	if err := s.Complete(m1.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("complete twice: %v", err)
	}

	// Reopen: the remaining entry survives with its metadata.
	s2 := mustOpen(t, dir, Limits{})
	p = s2.Pending()
	if len(p) != 1 || p[0].Meta.ID != m2.ID || !p[0].Meta.Start.Equal(m2.Start) || p[0].Meta.Reason != "stream down" || p[0].HasResponse {
		t.Fatalf("after reopen %+v", p)
	}
}

func TestPutRejects(t *testing.T) {
	s := mustOpen(t, t.TempDir(), Limits{MaxBytes: 10000})
	for name, tc := range map[string]struct {
		m   Meta
		n   int
		err error
	}{
		"empty":     {Meta{Start: t0}, 0, errNoAudio},
		"too large": {Meta{Start: t0}, 6000, ErrTooLarge},
		"bad id":    {Meta{ID: "../x", Start: t0}, 10, nil},
		"dot id":    {Meta{ID: ".tmp-x", Start: t0}, 10, nil},
		"resp id":   {Meta{ID: "x.resp", Start: t0}, 10, nil},
	} {
		_, err := s.Put(tc.m, samples(tc.n, 0))
		if err == nil || tc.err != nil && !errors.Is(err, tc.err) {
			t.Errorf("%s: err %v", name, err)
		}
	}
	if _, err := s.Put(Meta{ID: "same", Start: t0}, samples(10, 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(Meta{ID: "same", Start: t0}, samples(10, 0)); err == nil {
		t.Fatal("duplicate id accepted")
	}
	if st := s.Stats(); st.PutErrors != 6 || st.LastPutError == "" || st.Entries != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestEvictOldestBySize(t *testing.T) {
	dir := t.TempDir()
	// Each entry: 44 + 2*1000 bytes of WAV + ~300 bytes of JSON.
	s := mustOpen(t, dir, Limits{MaxBytes: 3 * 2400})
	var ids []string
	for i := range 5 {
		m, err := s.Put(Meta{Start: t0.Add(time.Duration(i) * time.Second)}, samples(1000, int16(i)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
		if i == 1 {
			// A claimed entry (being uploaded) is never evicted.
			if _, err := s.Claim(m.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	st := s.Stats()
	if st.Bytes > 3*2400 {
		t.Fatalf("over limit: %+v", st)
	}
	if st.Evicted != 2 || st.EvictedAudio != 2*1000*time.Second/16000 {
		t.Fatalf("evicted %+v", st)
	}
	var left []string
	for _, e := range s.Pending() {
		left = append(left, e.Meta.ID)
	}
	want := []string{ids[3], ids[4]}
	if fmt.Sprint(left) != fmt.Sprint(want) {
		t.Fatalf("left %v want %v (claimed %s kept)", left, want, ids[1])
	}
	if _, err := os.Stat(s.path(ids[0], extWAV)); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("evicted file still on disk")
	}
	// Failed entries go before pending ones.
	s.Release(ids[1])
	if err := s.MoveAside(ids[3], "corrupt audio", []byte(`{"err_code":"Bad Request"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(Meta{Start: t0.Add(10 * time.Second)}, samples(1000, 9)); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Failed != 0 || st.Entries != 3 || st.Evicted != 2 {
		t.Fatalf("failed entry should have been evicted first: %+v", st)
	}
}

func TestPruneByAge(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Limits{MaxAge: time.Hour})
	now := t0
	s.now = func() time.Time { return now }
	old, _ := s.Put(Meta{Start: t0}, samples(100, 0))
	now = now.Add(50 * time.Minute)
	young, _ := s.Put(Meta{Start: t0.Add(time.Minute)}, samples(100, 0))
	if err := s.MoveAside(young.ID, "x", nil); err != nil {
		t.Fatal(err)
	}
	now = now.Add(20 * time.Minute)
	if n := s.Prune(); n != 1 {
		t.Fatalf("pruned %d", n)
	}
	if st := s.Stats(); st.Entries != 0 || st.Evicted != 1 || st.Failed != 1 {
		t.Fatalf("stats %+v", st)
	}
	now = now.Add(time.Hour)
	s.Prune()
	if st := s.Stats(); st.Failed != 0 || st.Bytes != 0 {
		t.Fatalf("failed entry not aged out %+v", st)
	}
	_ = old
}

func TestMoveAside(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Limits{})
	m, _ := s.Put(Meta{Start: t0}, samples(100, 0))
	if err := s.SaveResponse(m.ID, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.MoveAside(m.ID, "deepgram answered 400", []byte(`{"err_code":"Bad Request"}`)); err != nil {
		t.Fatal(err)
	}
	for _, ext := range []string{extWAV, extMeta, extReason, extResp} {
		if _, err := os.Stat(s.failedPath(m.ID, ext)); err != nil {
			t.Errorf("failed/%s: %v", ext, err)
		}
	}
	b, _ := os.ReadFile(s.failedPath(m.ID, extReason))
	if !strings.Contains(string(b), "deepgram answered 400") || !strings.Contains(string(b), `"err_code": "Bad Request"`) {
		t.Fatalf("reason file: %s", b)
	}
	if len(s.Pending()) != 0 {
		t.Fatal("moved entry still pending")
	}
	s2 := mustOpen(t, dir, Limits{})
	if st := s2.Stats(); st.Failed != 1 || st.Entries != 0 || st.FailedBytes == 0 {
		t.Fatalf("after reopen %+v", st)
	}
}

// TestRecover covers every leftover a crash or outside damage can produce.
func TestRecover(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Limits{})
	good, _ := s.Put(Meta{Start: t0, DeviceID: "d"}, samples(100, 0))
	withResp, _ := s.Put(Meta{Start: t0.Add(time.Second)}, samples(100, 0))
	if err := s.SaveResponse(withResp.ID, []byte(`{"metadata":{}}`)); err != nil {
		t.Fatal(err)
	}
	trunc, _ := s.Put(Meta{Start: t0.Add(2 * time.Second)}, samples(100, 0))
	badMeta, _ := s.Put(Meta{Start: t0.Add(3 * time.Second)}, samples(100, 0))
	lonely, _ := s.Put(Meta{Start: t0.Add(4 * time.Second)}, samples(100, 0))

	os.Truncate(s.path(trunc.ID, extWAV), 100)
	os.WriteFile(s.path(badMeta.ID, extMeta), []byte("{not json"), 0o600)
	os.Remove(s.path(lonely.ID, extWAV))                                        // metadata without audio
	os.WriteFile(filepath.Join(dir, "orphan"+extWAV), make([]byte, 244), 0o600) // audio without metadata
	os.WriteFile(filepath.Join(dir, "ghost"+extResp), []byte("{}"), 0o600)
	os.WriteFile(filepath.Join(dir, tmpPrefix+"x.wav-123"), []byte("half"), 0o600)
	os.WriteFile(filepath.Join(dir, failedDir, tmpPrefix+"y"), []byte("half"), 0o600)

	s2 := mustOpen(t, dir, Limits{})
	p := s2.Pending()
	if len(p) != 2 || p[0].Meta.ID != good.ID || p[1].Meta.ID != withResp.ID || !p[1].HasResponse || p[0].HasResponse {
		t.Fatalf("pending %+v", p)
	}
	if b, err := s2.Response(withResp.ID); err != nil || string(b) != `{"metadata":{}}` {
		t.Fatalf("response %q %v", b, err)
	}
	st := s2.Stats()
	if st.Orphans != 2 || st.Failed != 2 {
		t.Fatalf("stats %+v", st)
	}
	des, _ := os.ReadDir(dir)
	for _, de := range des {
		n := de.Name()
		if strings.HasPrefix(n, tmpPrefix) || strings.HasPrefix(n, "orphan") || strings.HasPrefix(n, "ghost") || strings.HasPrefix(n, lonely.ID) {
			t.Errorf("leftover %s", n)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, failedDir, tmpPrefix+"y")); err == nil {
		t.Error("temp file in failed/ not removed")
	}
	for _, id := range []string{trunc.ID, badMeta.ID} {
		if _, err := os.Stat(s2.failedPath(id, extReason)); err != nil {
			t.Errorf("%s not moved aside: %v", id, err)
		}
	}
}

// TestOpenTightensPermissions: a directory created too open (by hand, or an old umask)
// is narrowed to 0700.
func TestOpenTightensPermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sp")
	os.Mkdir(dir, 0o755)
	os.Chmod(dir, 0o755)
	mustOpen(t, dir, Limits{})
	fi, _ := os.Stat(dir)
	if fi.Mode().Perm() != 0o700 {
		t.Fatalf("mode %v", fi.Mode().Perm())
	}
}

// TestDiskFull fills a real, size-limited filesystem (a 256 KiB tmpfs; mounting needs
// root or CAP_SYS_ADMIN, else the test is skipped and says so).
func TestDiskFull(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=256k,mode=0700"); err != nil {
		t.Skipf("cannot mount a small tmpfs here (%v): the ENOSPC path is not exercised", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, 0) })
	s := mustOpen(t, dir, Limits{})
	var stored []Meta
	var err error
	for i := 0; i < 10; i++ {
		var m Meta
		m, err = s.Put(Meta{Start: t0.Add(time.Duration(i) * time.Second)}, samples(30000, int16(i))) // 60 KB each
		if err != nil {
			break
		}
		stored = append(stored, m)
	}
	if err == nil {
		t.Fatal("a 256 KiB filesystem took 600 KB")
	}
	if !errors.Is(err, ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("error %v does not match ErrNoSpace/ENOSPC", err)
	}
	t.Logf("stored %d entries, then: %v", len(stored), err)
	if len(stored) < 2 {
		t.Fatalf("only %d entries fit", len(stored))
	}
	st := s.Stats()
	if st.PutErrors != 1 || st.Entries != len(stored) || st.Evicted != 0 {
		t.Fatalf("stats %+v", st)
	}
	// Nothing already stored was lost, and nothing of the failed Put remains.
	des, _ := os.ReadDir(dir)
	for _, de := range des {
		if strings.HasPrefix(de.Name(), tmpPrefix) {
			t.Errorf("temp file left: %s", de.Name())
		}
	}
	s2 := mustOpen(t, dir, Limits{})
	p := s2.Pending()
	if len(p) != len(stored) {
		t.Fatalf("after reopen %d entries, stored %d", len(p), len(stored))
	}
	for i, e := range p {
		if got := readWAV(t, e.Path); len(got) != 30000 || got[0] != int16(i) {
			t.Fatalf("entry %d damaged", i)
		}
	}
	// Completing one frees room and the next Put works again.
	if err := s2.Complete(p[0].Meta.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Put(Meta{Start: t0.Add(time.Hour)}, samples(30000, 0)); err != nil {
		t.Fatalf("put after freeing space: %v", err)
	}
}

// TestCrashDuringPut kills -9 a child process inside Put at each critical point and
// checks that reopening yields exactly the entries whose Put returned, and no debris.
func TestCrashDuringPut(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("linux only")
	}
	for _, stage := range []string{"temps-written", "wav-renamed"} {
		t.Run(stage, func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.v")
			cmd.Env = append(os.Environ(), "SPOOL_CRASH_DIR="+dir, "SPOOL_CRASH_STAGE="+stage)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// The child prints "AT <stage>" and then blocks forever; wait for that line.
			sc := bufio.NewScanner(out)
			reached := false
			for sc.Scan() {
				if sc.Text() == "AT "+stage {
					reached = true
					break
				}
			}
			if !reached {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatal("child never reached the crash point")
			}
			cmd.Process.Signal(syscall.SIGKILL)
			go io.Copy(io.Discard, out)
			cmd.Wait()

			s := mustOpen(t, dir, Limits{})
			p := s.Pending()
			if len(p) != 1 || p[0].Meta.ID != "first" {
				t.Fatalf("after crash at %s: pending %+v", stage, p)
			}
			des, _ := os.ReadDir(dir)
			for _, de := range des {
				if !de.IsDir() && !strings.HasPrefix(de.Name(), "first") {
					t.Errorf("debris after crash: %s", de.Name())
				}
			}
			if stage == "wav-renamed" && s.Stats().Orphans != 1 {
				t.Errorf("orphan not counted: %+v", s.Stats())
			}
		})
	}
}

// TestCrashChild is the child half of TestCrashDuringPut.
func TestCrashChild(t *testing.T) {
	dir, stage := os.Getenv("SPOOL_CRASH_DIR"), os.Getenv("SPOOL_CRASH_STAGE")
	if dir == "" {
		t.Skip("child process only")
	}
	s, err := Open(dir, Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(Meta{ID: "first", Start: t0}, samples(1600, 0)); err != nil {
		t.Fatal(err)
	}
	crashHook = func(st string) {
		if st == stage {
			fmt.Printf("AT %s\n", st)
			select {} // wait for SIGKILL
		}
	}
	s.Put(Meta{ID: "second", Start: t0.Add(time.Second)}, samples(1600, 1))
	t.Fatal("crash point not reached")
}

func TestMetaRoundTrip(t *testing.T) {
	m := Meta{ID: "abc", Start: t0.Add(123456789), DeviceID: "dev", Options: url.Values{"model": {"nova-3"}},
		Reason: "r", Samples: 42, Created: t0}
	b, err := MarshalMeta(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseMeta(b)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Start.Equal(m.Start) || got.ID != m.ID || got.Samples != 42 || got.Options.Get("model") != "nova-3" || !got.Created.Equal(t0) {
		t.Fatalf("round trip %+v", got)
	}
}

var metaSeeds = []string{
	`{"version":1,"id":"a","start":"2026-11-21T05:00:00Z","samples":10,"sample_rate":16000,"channels":1,"created":"2026-11-21T05:00:00Z"}`,
	`{"version":2,"id":"a","start":"2026-11-21T05:00:00Z","samples":10,"sample_rate":16000,"channels":1,"created":"2026-11-21T05:00:00Z"}`,
	`{"version":1,"id":"../a","start":"2026-11-21T05:00:00Z","samples":10,"sample_rate":16000,"channels":1,"created":"2026-11-21T05:00:00Z"}`,
	`{"version":1,"id":"a","start":"x","samples":10,"sample_rate":16000,"channels":1,"created":"2026-11-21T05:00:00Z"}`,
	`{"version":1,"id":"a","start":"2026-11-21T05:00:00Z","samples":-1,"sample_rate":16000,"channels":1,"created":"2026-11-21T05:00:00Z"}`,
	`{"version":1,"id":"a","start":"2026-11-21T05:00:00Z","samples":10,"sample_rate":8000,"channels":2,"created":"2026-11-21T05:00:00Z"}`,
	`{"version":1,"id":"a","start":"2026-11-21T05:00:00Z","samples":10,"sample_rate":16000,"channels":1,"created":"2026-11-21T05:00:00Z","options":{"model":["nova-3"]}}`,
	`{}`, `null`, `[]`, ``,
}

func TestParseMetaTable(t *testing.T) {
	for i, s := range metaSeeds {
		_, err := ParseMeta([]byte(s))
		if ok := err == nil; ok != (i == 0 || i == 6) {
			t.Errorf("seed %d: err %v", i, err)
		}
	}
}

func FuzzParseMeta(f *testing.F) {
	for _, s := range metaSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMeta(b)
		if err != nil {
			return
		}
		if validID(m.ID) != nil || m.Samples <= 0 || m.Samples > maxSamples {
			t.Fatalf("accepted invalid meta %+v", m)
		}
		// What parses must survive a round trip unchanged.
		b2, err := MarshalMeta(m)
		if err != nil {
			t.Fatal(err)
		}
		m2, err := ParseMeta(b2)
		if err != nil || m2.ID != m.ID || !m2.Start.Equal(m.Start) || m2.Samples != m.Samples {
			t.Fatalf("round trip: %+v %v", m2, err)
		}
	})
}

func TestStatsJSON(t *testing.T) {
	b, err := json.Marshal(Stats{Entries: 2, Audio: 1500 * time.Millisecond, EvictedAudio: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if s := string(b); !strings.Contains(s, `"entries":2`) || !strings.Contains(s, `"audio_seconds":1.5`) || !strings.Contains(s, `"evicted_audio_seconds":1`) || strings.Contains(s, "oldest") {
		t.Fatalf("%s", s)
	}
}
