package batch

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hark-audio/hark/dgemu"
	"github.com/hark-audio/hark/internal/leaktest"
	"github.com/hark-audio/hark/transcript"
	"github.com/hark-audio/hark/uplink/spool"
)

var base = time.Date(2026, 11, 21, 6, 0, 0, 0, time.UTC)

// putN spools n utterances one minute apart (capture time), starting at minute first,
// of slightly different lengths, and returns their metadata.
func putN(t *testing.T, sp *spool.Spool, first, n int) []spool.Meta {
	t.Helper()
	var out []spool.Meta
	for i := first; i < first+n; i++ {
		m, err := sp.Put(spool.Meta{Start: base.Add(time.Duration(i) * time.Minute), DeviceID: "kitchen",
			Options: map[string][]string{"model": {"nova-3"}, "encoding": {"linear16"}, "sample_rate": {"16000"}, "interim_results": {"true"}},
			Reason:  "stream down"}, speech(time.Second+time.Duration(i%5)*100*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// checkPublished verifies that got holds exactly the utterances of metas, in capture
// order, each once, with capture wall-clock times inside its own segment.
func checkPublished(t *testing.T, got []transcript.Utterance, metas []spool.Meta) {
	t.Helper()
	if len(got) != len(metas) {
		t.Fatalf("published %d, want %d", len(got), len(metas))
	}
	for i, u := range got {
		m := metas[i]
		end := m.Start.Add(m.Duration())
		if u.Start.Before(m.Start) || u.End.After(end) || !u.End.After(u.Start) {
			t.Errorf("utterance %d (%q) spans %v..%v, outside its segment %v..%v", i, u.Text, u.Start, u.End, m.Start, end)
		}
		if u.Source != transcript.SourceSpool || u.RequestID == "" || u.Text == "" || u.DeviceID != "kitchen" || len(u.Words) == 0 {
			t.Errorf("utterance %d: %+v", i, u)
		}
	}
}

func newUploader(t *testing.T, sp *spool.Spool, c *Client, r *receiver, conc int) *Uploader {
	return NewUploader(sp, c, UploaderConfig{Concurrency: conc, Logger: testLogger(t), Publish: r.publish,
		RetryMin: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond, PausedRetry: time.Hour, KickMinInterval: time.Millisecond})
}

// TestUploaderOutages: three network outages (nothing listening) covering 1, 3 and 6
// utterances; each time the service comes back, the spool drains in capture order and
// every utterance is uploaded once and published once.
func TestUploaderOutages(t *testing.T) {
	leaktest.Check(t)
	addr := freePort(t)
	c := newTestClient(t, "http://"+addr+"/v1/listen")
	c.cfg.RetryMax = 1
	sp := openSpool(t, t.TempDir())
	r := newReceiver()
	u := newUploader(t, sp, c, r, 2)
	runUploader(t, u)
	var all []spool.Meta
	uploads := 0
	for i, n := range []int{1, 3, 6} {
		failures := u.Stats().Failures
		all = append(all, putN(t, sp, len(all), n)...)
		waitFor(t, "a failed upload during the outage", 10*time.Second, func() bool { return u.Stats().Failures > failures })
		if st := sp.Stats(); st.Entries != n {
			t.Fatalf("outage %d: %d entries spooled, want %d", i, st.Entries, n)
		}
		srv, err := dgemu.Listen(dgemu.Config{Addr: addr, APIKey: testKey})
		if err != nil {
			t.Fatal(err)
		}
		u.Kick() // live connectivity is back
		got := r.wait(t, len(all), 20*time.Second)
		uploads += countStatus(srv, 200)
		for _, q := range srv.Requests() {
			if q.Query.Get("encoding") != "" || q.Query.Get("interim_results") != "" || q.Query.Get("model") != "nova-3" {
				t.Errorf("live-only options sent with a WAV upload: %v", q.Query)
			}
		}
		srv.Close()
		checkPublished(t, got, all)
		if uploads != len(all) {
			t.Fatalf("after outage %d: %d successful uploads for %d utterances", i, uploads, len(all))
		}
		// Entries are removed just after their publish returns.
		waitFor(t, "spool drained", 5*time.Second, func() bool { st := sp.Stats(); return st.Entries == 0 && st.Bytes == 0 })
	}
	waitFor(t, "idle", 5*time.Second, func() bool { return u.Stats().State == StateIdle })
	st := u.Stats()
	if st.Published != int64(len(all)) || st.Uploaded != int64(len(all)) || st.LastError != "" {
		t.Fatalf("stats %+v", st)
	}
}

// TestUploaderRetryAfter: 503 and 429 with Retry-After, then success. The client does
// no retries of its own here, so the uploader's wait honours (capped) Retry-After.
func TestUploaderRetryAfter(t *testing.T) {
	leaktest.Check(t)
	srv := startEmu(t, dgemu.Config{})
	c := newTestClient(t, srv.HTTPURL())
	c.cfg.RetryMax = 0
	sp := openSpool(t, t.TempDir())
	r := newReceiver()
	u := newUploader(t, sp, c, r, 1)
	srv.FailRequests(dgemu.Refusal{Status: 503, RetryAfter: "1"}, dgemu.Refusal{Status: 429, RetryAfter: "7200"})
	metas := putN(t, sp, 0, 2)
	runUploader(t, u)
	got := r.wait(t, 2, 20*time.Second)
	checkPublished(t, got, metas)
	reqs := srv.Requests()
	if len(reqs) != 4 || reqs[0].Status != 503 || reqs[1].Status != 429 || countStatus(srv, 200) != 2 {
		t.Fatalf("requests %+v", reqs)
	}
	waitFor(t, "idle", 5*time.Second, func() bool { return u.Stats().State == StateIdle })
	if st := u.Stats(); st.Failures != 2 || st.Published != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// TestUploaderCorruptMovedAside: the service calls one file corrupt (400); it goes to
// failed/ with the reason, and the entries around it are published in order.
func TestUploaderCorruptMovedAside(t *testing.T) {
	leaktest.Check(t)
	srv := startEmu(t, dgemu.Config{})
	c := newTestClient(t, srv.HTTPURL())
	dir := t.TempDir()
	sp := openSpool(t, dir)
	metas := putN(t, sp, 0, 3)
	// Damage the middle entry's fmt chunk, keeping its size (so Open would not notice).
	p := filepath.Join(dir, metas[1].ID+".wav")
	b, _ := os.ReadFile(p)
	copy(b[12:36], strings.Repeat("\xff", 24))
	writeFile(t, p, b)
	r := newReceiver()
	u := newUploader(t, sp, c, r, 2)
	runUploader(t, u)
	got := r.wait(t, 2, 20*time.Second)
	checkPublished(t, got, []spool.Meta{metas[0], metas[2]})
	waitFor(t, "moved aside", 5*time.Second, func() bool { return u.Stats().MovedAside == 1 })
	reason, err := os.ReadFile(filepath.Join(dir, "failed", metas[1].ID+".reason.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(reason), "corrupt or unsupported data") || !strings.Contains(string(reason), `"err_code": "Bad Request"`) {
		t.Fatalf("reason file:\n%s", reason)
	}
	if _, err := os.Stat(filepath.Join(dir, "failed", metas[1].ID+".wav")); err != nil {
		t.Fatal("audio not kept in failed/")
	}
	if n := countStatus(srv, 400); n != 1 {
		t.Fatalf("%d 400s: the corrupt file was retried", n)
	}
	// An entry is completed (removed) just after its publish returns.
	waitFor(t, "spool emptied", 5*time.Second, func() bool { return sp.Stats().Entries == 0 })
	if st := sp.Stats(); st.Failed != 1 {
		t.Fatalf("spool %+v", st)
	}
}

// TestUploaderAccountRefusalPauses: 401/402/403 pause uploading without dropping or
// moving anything; a Kick (connectivity back, rate-limited) resumes.
func TestUploaderAccountRefusalPauses(t *testing.T) {
	for _, status := range []int{401, 402, 403} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			leaktest.Check(t)
			srv := startEmu(t, dgemu.Config{})
			c := newTestClient(t, srv.HTTPURL())
			sp := openSpool(t, t.TempDir())
			r := newReceiver()
			u := newUploader(t, sp, c, r, 1)
			srv.FailRequests(dgemu.Refusal{Status: status})
			metas := putN(t, sp, 0, 3)
			runUploader(t, u)
			waitFor(t, "paused", 10*time.Second, func() bool { return u.Stats().State == StatePaused })
			st := u.Stats()
			if st.LastClass != "auth" || !strings.Contains(st.LastError, fmt.Sprint(status)) || st.NextAttempt.Before(time.Now().Add(30*time.Minute)) {
				t.Fatalf("stats %+v", st)
			}
			if ss := sp.Stats(); ss.Entries != 3 || ss.Failed != 0 || len(r.list()) != 0 {
				t.Fatalf("something was dropped or published: %+v", ss)
			}
			// The refusal was not retried, and nothing else was tried.
			if n := len(srv.Requests()); n != 1 {
				t.Fatalf("%d requests while refused: %+v", n, srv.Requests())
			}
			u.Kick()
			checkPublished(t, r.wait(t, 3, 20*time.Second), metas)
		})
	}
}

// TestUploaderPublishOrderNoReupload: with 3 uploads in flight, a failed Publish stops
// the pass; the uploads that finished meanwhile saved their responses, so the retry
// publishes everything in capture order without uploading anything twice.
func TestUploaderPublishOrderNoReupload(t *testing.T) {
	leaktest.Check(t)
	srv := startEmu(t, dgemu.Config{})
	c := newTestClient(t, srv.HTTPURL())
	sp := openSpool(t, t.TempDir())
	r := newReceiver()
	r.fails = 2
	u := newUploader(t, sp, c, r, 3)
	metas := putN(t, sp, 0, 8)
	runUploader(t, u)
	got := r.wait(t, 8, 20*time.Second)
	checkPublished(t, got, metas)
	if n := countStatus(srv, 200); n != 8 || len(srv.Requests()) != 8 {
		t.Fatalf("%d uploads (%d requests) for 8 entries", n, len(srv.Requests()))
	}
	waitFor(t, "idle", 5*time.Second, func() bool { return u.Stats().State == StateIdle })
	if st := u.Stats(); st.PublishErrors != 2 || st.Published != 8 || st.Uploaded != 8 || st.Resumed == 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestUploaderCrash kills -9 a child process running the uploader at two points and
// restarts on the same spool: every utterance is published exactly once, and an upload
// whose response was saved is not repeated.
func TestUploaderCrash(t *testing.T) {
	for _, mode := range []string{"during-upload", "before-publish"} {
		t.Run(mode, func(t *testing.T) {
			leaktest.Check(t)
			srv := startEmu(t, dgemu.Config{})
			dir := t.TempDir()
			out := filepath.Join(t.TempDir(), "published.jsonl")
			sp := openSpool(t, dir)
			metas := putN(t, sp, 0, 3)
			if mode == "during-upload" {
				srv.SetHandshakeDelay(time.Hour) // the first upload hangs until the kill
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestUploaderCrashChild$")
			cmd.Env = append(os.Environ(), "BATCH_CRASH_DIR="+dir, "BATCH_CRASH_URL="+srv.HTTPURL(),
				"BATCH_CRASH_MODE="+mode, "BATCH_CRASH_OUT="+out)
			stdout, _ := cmd.StdoutPipe()
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if mode == "during-upload" {
				if _, err := srv.WaitRequest(ctx, func(q dgemu.RequestInfo) bool { return !q.Done }); err != nil {
					t.Fatal(err)
				}
			} else {
				sc := bufio.NewScanner(stdout)
				for sc.Scan() && sc.Text() != "AT publish" {
				}
			}
			cmd.Process.Signal(syscall.SIGKILL)
			go io.Copy(io.Discard, stdout)
			cmd.Wait()
			srv.SetHandshakeDelay(0)

			// Restart: a new process would open the spool afresh.
			sp2 := openSpool(t, dir)
			r := newReceiver()
			c := newTestClient(t, srv.HTTPURL())
			u := NewUploader(sp2, c, UploaderConfig{Concurrency: 1, Logger: testLogger(t), RetryMin: 10 * time.Millisecond,
				Publish: func(x transcript.Utterance) error {
					if err := appendLine(out, x); err != nil {
						return err
					}
					return r.publish(x)
				}})
			runUploader(t, u)
			r.wait(t, 3, 20*time.Second)

			// Receiver side: every utterance in the published file exactly once, in order.
			lines := readLines(t, out)
			checkPublished(t, lines, metas)
			// Emulator side.
			ok := countStatus(srv, 200)
			switch mode {
			case "during-upload":
				// The killed request never answered; each entry has one 200.
				if ok != 3 {
					t.Fatalf("%d successful uploads, want 3", ok)
				}
			case "before-publish":
				// The child's upload of entry 0 succeeded and its response was saved:
				// the restart published it without a second upload.
				if ok != 3 || len(srv.Requests()) != 3 || u.Stats().Resumed != 1 {
					t.Fatalf("%d uploads (%d requests), resumed %d: want 3, 3, 1", ok, len(srv.Requests()), u.Stats().Resumed)
				}
			}
		})
	}
}

// TestUploaderCrashChild is the child half of TestUploaderCrash.
func TestUploaderCrashChild(t *testing.T) {
	dir := os.Getenv("BATCH_CRASH_DIR")
	if dir == "" {
		t.Skip("child process only")
	}
	mode, out := os.Getenv("BATCH_CRASH_MODE"), os.Getenv("BATCH_CRASH_OUT")
	sp, err := spool.Open(dir, spool.Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := NewClient(ClientConfig{URL: os.Getenv("BATCH_CRASH_URL"), APIKey: testKey})
	u := NewUploader(sp, c, UploaderConfig{Concurrency: 1, Publish: func(x transcript.Utterance) error {
		if mode == "before-publish" {
			fmt.Println("AT publish")
			select {} // wait for SIGKILL
		}
		return appendLine(out, x)
	}})
	u.Run(context.Background())
}

func appendLine(path string, u transcript.Utterance) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(u)
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	f.Close()
	return err
}

func readLines(t *testing.T, path string) []transcript.Utterance {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []transcript.Utterance
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var u transcript.Utterance
		if err := json.Unmarshal([]byte(l), &u); err != nil {
			t.Fatal(err)
		}
		out = append(out, u)
	}
	return out
}

// TestUploaderDiskFull: the spool sits on a full filesystem (a 256 KiB tmpfs topped up
// with a filler file), so saving responses fails with ENOSPC; every entry is still
// published once, in order, and nothing stored is lost. Needs root to mount.
func TestUploaderDiskFull(t *testing.T) {
	leaktest.Check(t)
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=256k,mode=0700"); err != nil {
		t.Skipf("cannot mount a small tmpfs here (%v)", err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, 0) })
	sp := openSpool(t, filepath.Join(mnt, "spool"))
	var metas []spool.Meta
	for i := 0; ; i++ {
		m, err := sp.Put(spool.Meta{Start: base.Add(time.Duration(i) * time.Minute), DeviceID: "kitchen"}, speech(time.Second))
		if err != nil {
			if !errors.Is(err, spool.ErrNoSpace) {
				t.Fatal(err)
			}
			break
		}
		metas = append(metas, m)
	}
	// Fill what is left so that not even a response fits.
	f, _ := os.Create(filepath.Join(mnt, "filler"))
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	f.Close()
	srv := startEmu(t, dgemu.Config{})
	r := newReceiver()
	u := newUploader(t, sp, newTestClient(t, srv.HTTPURL()), r, 2)
	runUploader(t, u)
	checkPublished(t, r.wait(t, len(metas), 20*time.Second), metas)
	if n := countStatus(srv, 200); n != len(metas) {
		t.Fatalf("%d uploads for %d entries", n, len(metas))
	}
	waitFor(t, "spool empty", 5*time.Second, func() bool { return sp.Stats().Entries == 0 })
	t.Logf("%d entries published from a full disk", len(metas))
}
