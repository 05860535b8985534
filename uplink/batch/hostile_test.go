package batch

import (
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hark-audio/hark/dgemu"
	"github.com/hark-audio/hark/internal/leaktest"
	"github.com/hark-audio/hark/uplink/spool"
)

// Issue 11, item 1: a model/language pair the service does not serve is answered with 400
// "Bad Request" (not INVALID_QUERY_PARAMETER). That is about the request, not the audio:
// uploads pause, the spool is kept whole, and the reason is in the stats.
func TestUploaderConfig400Pauses(t *testing.T) {
	leaktest.Check(t)
	srv := startEmu(t, dgemu.Config{})
	c := newTestClient(t, srv.HTTPURL())
	sp := openSpool(t, t.TempDir())
	r := newReceiver()
	var mu sync.Mutex
	var changes []Stats
	u := NewUploader(sp, c, UploaderConfig{Concurrency: 2, Logger: testLogger(t), Publish: r.publish,
		RetryMin: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond, PausedRetry: time.Hour,
		OnChange: func(st Stats) { mu.Lock(); changes = append(changes, st); mu.Unlock() }})
	// Spooled while the configuration (changed remotely, say) named a pair the service
	// does not serve.
	for i := range 4 {
		if _, err := sp.Put(spool.Meta{Start: base.Add(time.Duration(i) * time.Minute), DeviceID: "kitchen",
			Options: map[string][]string{"model": {"nova-2-meeting"}, "language": {"fr"}}}, speech(time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	runUploader(t, u)
	waitFor(t, "paused", 10*time.Second, func() bool { return u.Stats().State == StatePaused })
	st := u.Stats()
	if st.LastClass != "config" || !strings.Contains(st.LastError, "No such model/language/tier combination found") {
		t.Fatalf("stats %+v", st)
	}
	if ss := sp.Stats(); ss.Entries != 4 || ss.Failed != 0 {
		t.Fatalf("spool %+v: entries were dropped or moved aside", ss)
	}
	// At most the uploads already in flight (Concurrency) were refused, then it paused.
	if n := countStatus(srv, 400); n < 1 || n > 2 {
		t.Fatalf("%d refused uploads, want 1 or 2 (then paused)", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(changes) == 0 || changes[len(changes)-1].State != StatePaused {
		t.Errorf("OnChange saw %+v", changes)
	}
}

// Items 2, 11: a 200 that is not a transcription (a callback acknowledgement, not JSON)
// is counted per entry; the entry waits its own backoff between attempts, even while new
// entries arrive and Kick is called, and after MaxUnusable answers it is moved aside with
// the reason. The entries after it are published, in order.
func TestUploaderUnusableAnswersMovedAside(t *testing.T) {
	leaktest.Check(t)
	srv := startEmu(t, dgemu.Config{})
	c := newTestClient(t, srv.HTTPURL())
	dir := t.TempDir()
	sp := openSpool(t, dir)
	r := newReceiver()
	u := NewUploader(sp, c, UploaderConfig{Concurrency: 1, Logger: testLogger(t), Publish: r.publish,
		RetryMin: 30 * time.Millisecond, RetryMax: 60 * time.Millisecond, PausedRetry: time.Hour, MaxUnusable: 3})
	srv.AnswerRequests(
		dgemu.Answer{Body: []byte(`{"request_id":"8f2a64b3-ff27-4b4d-9a3b-46d6ee9f7c4c"}`)},
		dgemu.Answer{Body: []byte(`<html>captive portal</html>`)},
		dgemu.Answer{Body: []byte(`{"metadata":{"request_id":"r","duration":1},"results":{"channels":[]}}`)},
	)
	metas := putN(t, sp, 0, 3)
	runUploader(t, u)
	for i := 0; i < 20; i++ {
		u.Kick() // must not make the entry skip its backoff
	}
	more := putN(t, sp, 3, 1)
	got := r.wait(t, 3, 20*time.Second)
	checkPublished(t, got, append(metas[1:], more...))
	waitFor(t, "moved aside", 5*time.Second, func() bool { return u.Stats().MovedAside == 1 })
	reason, err := os.ReadFile(filepath.Join(dir, "failed", metas[0].ID+".reason.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(reason), "3 unusable answers") || !strings.Contains(string(reason), "results.channels is empty") {
		t.Fatalf("reason file:\n%s", reason)
	}
	// 3 answers for the first entry, 1 upload each for the others.
	if n := len(srv.Requests()); n != 3+3 {
		t.Fatalf("%d uploads, want 6", n)
	}
	waitFor(t, "stats", 5*time.Second, func() bool { st := u.Stats(); return st.Published == 3 && st.State == StateIdle })
	if st := u.Stats(); st.Unusable != 3 || st.LastError != "" {
		t.Fatalf("stats %+v", st)
	}
}

// Item 2: with callback in the options, the service answers 200 {request_id} (the
// emulator too); the client reports an unusable answer that says why, not a transient
// failure retried for ever.
func TestCallbackAnswerUnusable(t *testing.T) {
	srv := startEmu(t, dgemu.Config{})
	c := NewClient(ClientConfig{URL: srv.HTTPURL(), APIKey: testKey, Logger: testLogger(t),
		Options: url.Values{"model": {"nova-3"}, "callback": {"https://collector.invalid/x"}}})
	t.Cleanup(c.CloseIdleConnections)
	_, err := c.TranscribeFile(context.Background(), wavFile(t, speech(time.Second)), nil, nil)
	if !errors.Is(err, ErrBadResponse) || Classify(err) != ClassUnusable || !strings.Contains(err.Error(), "callback") {
		t.Fatalf("err %v (class %v)", err, Classify(err))
	}
}

// Item 10: a 200 with a huge body is not read whole. The emulator streams 256 MiB; the
// client stops at the limit derived from the file's audio and allocates a small fraction.
func TestHugeAnswerBounded(t *testing.T) {
	srv := startEmu(t, dgemu.Config{})
	c := newTestClient(t, srv.HTTPURL())
	srv.AnswerRequests(dgemu.Answer{
		Body:      []byte(`{"metadata":{"request_id":"r","duration":1},"results":{"channels":[{"alternatives":[{"transcript":"`),
		FillBytes: 256 << 20, FillByte: 'a',
		Tail: []byte(`","confidence":1,"words":[]}]}]}}`),
	})
	path := wavFile(t, speech(time.Second))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := c.TranscribeFile(context.Background(), path, nil, nil)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrBadResponse) || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("err %v", err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Fatalf("allocated %d MiB for a refused 256 MiB answer", alloc>>20)
	}
}

// Items 9 and 13: server text that echoes the key, and URLs that carry credentials, never
// reach an error, the stats or the log.
func TestSecretsNotEchoed(t *testing.T) {
	leaktest.Check(t)
	srv := startEmu(t, dgemu.Config{})
	var logs strings.Builder
	c := NewClient(ClientConfig{URL: srv.HTTPURL() + "?proxy_token=PROXYSECRET9", APIKey: testKey, Logger: slogTo(&logs),
		RetryWaitMin: time.Millisecond, RetryWaitMax: 5 * time.Millisecond, Options: url.Values{"model": {"nova-3"}}})
	t.Cleanup(c.CloseIdleConnections)
	srv.FailRequests(dgemu.Refusal{Status: 401, Message: "Invalid credentials. Header was: Authorization: Token " + testKey})
	sp := openSpool(t, t.TempDir())
	r := newReceiver()
	u := NewUploader(sp, c, UploaderConfig{Logger: slogTo(&logs), Publish: r.publish, PausedRetry: time.Hour})
	putN(t, sp, 0, 1)
	runUploader(t, u)
	waitFor(t, "paused", 10*time.Second, func() bool { return u.Stats().State == StatePaused })
	if st := u.Stats(); strings.Contains(st.LastError, testKey) || !strings.Contains(st.LastError, "Invalid credentials") {
		t.Errorf("last error %q", st.LastError)
	}
	// The endpoint's own query was kept (item 13) and its token is not shown anywhere.
	if q := srv.Requests()[0].Query; q.Get("proxy_token") != "PROXYSECRET9" || q.Get("model") != "nova-3" {
		t.Errorf("query sent %v", q)
	}
	// A network error quotes the URL: its credentials are hidden.
	dead := NewClient(ClientConfig{URL: "http://" + freePort(t) + "/v1/listen?token=PROXYSECRET9", APIKey: testKey,
		Logger: slogTo(&logs), RetryMax: -1})
	_, err := dead.TranscribeFile(context.Background(), wavFile(t, speech(time.Second)), nil, nil)
	var ne *NetError
	if !errors.As(err, &ne) || strings.Contains(err.Error(), "PROXYSECRET9") {
		t.Errorf("network error %v", err)
	}
	for _, secret := range []string{testKey, "PROXYSECRET9"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("%q in the log:\n%s", secret, logs.String())
		}
	}
}

// Item 3: a token file is read for every upload and sent as Bearer.
func TestTokenFileBearer(t *testing.T) {
	srv := startEmu(t, dgemu.Config{})
	tf := filepath.Join(t.TempDir(), "token")
	c := NewClient(ClientConfig{URL: srv.HTTPURL(), TokenFile: tf, Logger: testLogger(t),
		Options: url.Values{"model": {"nova-3"}}})
	t.Cleanup(c.CloseIdleConnections)
	path := wavFile(t, speech(time.Second))
	if _, err := c.TranscribeFile(context.Background(), path, nil, nil); err == nil || !strings.Contains(err.Error(), "token file") {
		t.Fatalf("missing token file: %v", err)
	}
	writeFile(t, tf, []byte(srv.IssueToken(-time.Second)+"\n"))
	_, err := c.TranscribeFile(context.Background(), path, nil, nil)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 401 {
		t.Fatalf("expired token: %v", err)
	}
	// The refresher replaced the file: the next upload uses the new token.
	tok := srv.IssueToken(time.Minute)
	writeFile(t, tf, []byte(tok+"\n"))
	if _, err := c.TranscribeFile(context.Background(), path, nil, nil); err != nil {
		t.Fatalf("fresh token: %v", err)
	}
	if strings.Contains(err.Error(), tok) {
		t.Fatal("token in an error")
	}
}
