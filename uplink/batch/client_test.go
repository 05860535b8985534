package batch

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hark-audio/hark/audio"
	"github.com/hark-audio/hark/dgemu"
	"github.com/hark-audio/hark/internal/leaktest"
)

func wavFile(t *testing.T, s []int16) string { return wavFileB(t, s) }

func wavFileB(t testing.TB, s []int16) string {
	p := filepath.Join(t.TempDir(), "a.wav")
	b := audio.WAVHeader(2 * len(s))
	b = audio.AppendPCM(b, s)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTranscribeFile(t *testing.T) {
	leaktest.Check(t)
	srv := startEmu(t, dgemu.Config{Utterances: []string{"Hello from the spool."}})
	c := newTestClient(t, srv.HTTPURL())
	path := wavFile(t, speech(1500*time.Millisecond))
	fi, _ := os.Stat(path)
	var last, calls atomic.Int64
	r, err := c.TranscribeFile(context.Background(), path, map[string][]string{"language": {"en"}}, func(sent, total int64) {
		if total != fi.Size() || sent > total {
			t.Errorf("progress %d/%d", sent, total)
		}
		last.Store(sent)
		calls.Add(1)
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.Transcript() != "hello from the spool" || r.Metadata.RequestID == "" || len(r.Raw) == 0 {
		t.Fatalf("response %+v", r)
	}
	if last.Load() != fi.Size() || calls.Load() == 0 {
		t.Fatalf("progress ended at %d of %d", last.Load(), fi.Size())
	}
	w := r.Best().Words
	if len(w) != 4 || w[0].Start < 0.15 || w[3].End > 1.95 {
		t.Fatalf("words %+v", w)
	}
	reqs := srv.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	// The emulator refuses chunked uploads with 411, so a 200 also proves Content-Length.
	q := reqs[0]
	if q.ContentType != "audio/wav" || q.BodyBytes != fi.Size() || q.Query.Get("model") != "nova-3" || q.Query.Get("language") != "en" || q.RequestID != r.Metadata.RequestID {
		t.Fatalf("request %+v", q)
	}
}

func TestTranscribeRetriesTransient(t *testing.T) {
	leaktest.Check(t)
	srv := startEmu(t, dgemu.Config{})
	c := newTestClient(t, srv.HTTPURL())
	path := wavFile(t, speech(time.Second))
	srv.FailRequests(dgemu.Refusal{Status: 503, RetryAfter: "1"}, dgemu.Refusal{Status: 429, RetryAfter: "3600"},
		dgemu.Refusal{Status: 408})
	r, err := c.TranscribeFile(context.Background(), path, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(r.Transcript(), "speech") {
		t.Fatalf("transcript %q", r.Transcript())
	}
	// Three failures (RetryMax) then the success; the 3600 s Retry-After was capped (else this test
	// would not end). Each attempt re-opened the file and sent all of it.
	reqs := srv.Requests()
	if len(reqs) != 4 || reqs[3].Status != 200 || reqs[3].BodyBytes != int64(44+2*len(speech(time.Second))) {
		t.Fatalf("requests %+v", reqs)
	}
}

func TestTranscribeGivesUp(t *testing.T) {
	leaktest.Check(t)
	srv := startEmu(t, dgemu.Config{})
	c := newTestClient(t, srv.HTTPURL())
	path := wavFile(t, speech(time.Second))
	srv.FailRequests(dgemu.Refusal{Status: 502}, dgemu.Refusal{Status: 500}, dgemu.Refusal{Status: 504}, dgemu.Refusal{Status: 503})
	_, err := c.TranscribeFile(context.Background(), path, nil, nil)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 503 || ae.Attempts != 4 || ae.Code != "SERVICE_UNAVAILABLE" || ae.RequestID == "" {
		t.Fatalf("err %#v", err)
	}
	if Classify(err) != ClassTransient || len(srv.Requests()) != 4 {
		t.Fatalf("class %v, %d requests", Classify(err), len(srv.Requests()))
	}
	if strings.Contains(err.Error(), testKey) {
		t.Fatal("key in error")
	}
}

func TestTranscribeNoRetryOn4xx(t *testing.T) {
	leaktest.Check(t)
	srv := startEmu(t, dgemu.Config{})
	c := newTestClient(t, srv.HTTPURL())
	path := wavFile(t, speech(time.Second))
	for _, tc := range []struct {
		status int
		class  Class
	}{{400, ClassConfig}, {401, ClassAuth}, {402, ClassAuth}, {403, ClassAuth}, {413, ClassBadAudio}, {415, ClassBadAudio}} {
		before := len(srv.Requests())
		srv.FailRequests(dgemu.Refusal{Status: tc.status})
		_, err := c.TranscribeFile(context.Background(), path, nil, nil)
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != tc.status || ae.Message == "" {
			t.Fatalf("%d: err %v", tc.status, err)
		}
		if n := len(srv.Requests()) - before; n != 1 {
			t.Errorf("%d: %d requests, want 1 (no retry)", tc.status, n)
		}
		if Classify(err) != tc.class {
			t.Errorf("%d: class %v want %v", tc.status, Classify(err), tc.class)
		}
	}
}

func TestTranscribeBadKeyAndCorruptAudio(t *testing.T) {
	leaktest.Check(t)
	srv := startEmu(t, dgemu.Config{})
	bad := NewClient(ClientConfig{URL: srv.HTTPURL(), APIKey: "wrong-key", Logger: testLogger(t)})
	t.Cleanup(bad.CloseIdleConnections)
	path := wavFile(t, speech(time.Second))
	_, err := bad.TranscribeFile(context.Background(), path, nil, nil)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 401 || Classify(err) != ClassAuth || strings.Contains(err.Error(), "wrong-key") {
		t.Fatalf("bad key: %v", err)
	}
	// A file whose RIFF header is intact but whose fmt chunk is garbage: the emulator,
	// like the service, answers 400 "corrupt or unsupported data".
	c := newTestClient(t, srv.HTTPURL())
	b, _ := os.ReadFile(path)
	copy(b[12:36], strings.Repeat("\xff", 24))
	writeFile(t, path, b)
	_, err = c.TranscribeFile(context.Background(), path, nil, nil)
	if !errors.As(err, &ae) || ae.Status != 400 || Classify(err) != ClassBadAudio || !strings.Contains(ae.Message, "corrupt") {
		t.Fatalf("corrupt: %v", err)
	}
}

func TestTranscribeNetworkErrors(t *testing.T) {
	leaktest.Check(t)
	path := wavFile(t, speech(time.Second))
	c := newTestClient(t, "http://"+freePort(t)+"/v1/listen")
	_, err := c.TranscribeFile(context.Background(), path, nil, nil)
	var ne *NetError
	if !errors.As(err, &ne) || ne.Timeout || ne.Attempts != 4 || Classify(err) != ClassTransient {
		t.Fatalf("refused: %#v", err)
	}

	// A server that takes longer than the (file-sized) attempt timeout.
	srv := startEmu(t, dgemu.Config{})
	srv.SetHandshakeDelay(time.Minute)
	tc := NewClient(ClientConfig{URL: srv.HTTPURL(), APIKey: testKey, Logger: testLogger(t), RetryMax: -1,
		TimeoutBase: 100 * time.Millisecond, AssumedBandwidth: 1 << 40, ProcessingFactor: 1e-9})
	t.Cleanup(tc.CloseIdleConnections)
	_, err = tc.TranscribeFile(context.Background(), path, nil, nil)
	if !errors.As(err, &ne) || !ne.Timeout || !IsTimeout(err) {
		t.Fatalf("timeout: %#v", err)
	}
	srv.SetHandshakeDelay(0)

	// The caller's context ends the call, between attempts or during one.
	ctx, cancel := context.WithCancel(context.Background())
	srv.SetHandshakeDelay(time.Minute)
	go func() {
		srv.WaitRequest(ctx, func(r dgemu.RequestInfo) bool { return !r.Done })
		cancel()
	}()
	_, err = newTestClient(t, srv.HTTPURL()).TranscribeFile(ctx, path, nil, nil)
	if Classify(err) != ClassCanceled {
		t.Fatalf("canceled: %v", err)
	}
	srv.SetHandshakeDelay(0)
}

func TestTimeoutSizedToFile(t *testing.T) {
	c := NewClient(ClientConfig{})
	small := c.timeout(32000, time.Second)
	large := c.timeout(64<<20, 35*time.Minute)
	if small < 30*time.Second || small > 33*time.Second {
		t.Fatalf("small file timeout %v", small)
	}
	// 64 MiB at 16 KiB/s is 4096 s, plus half of 35 min of processing.
	if want := 30*time.Second + 4096*time.Second + 1050*time.Second; large != want {
		t.Fatalf("large file timeout %v want %v", large, want)
	}
}

func TestLoggerAdapterQuiet(t *testing.T) {
	// retryablehttp's own lines go to Debug only and never carry the key.
	var buf strings.Builder
	log := slogTo(&buf)
	srv := startEmu(t, dgemu.Config{})
	srv.FailRequests(dgemu.Refusal{Status: 503})
	c := NewClient(ClientConfig{URL: srv.HTTPURL(), APIKey: testKey, Logger: log, RetryWaitMin: time.Millisecond})
	t.Cleanup(c.CloseIdleConnections)
	if _, err := c.TranscribeFile(context.Background(), wavFile(t, speech(time.Second)), nil, nil); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.Contains(out, testKey) || strings.Contains(out, "level=ERROR") || strings.Contains(out, "level=WARN") {
		t.Fatalf("log:\n%s", out)
	}
	if !strings.Contains(out, "retrying request") {
		t.Fatalf("retryablehttp lines missing:\n%s", out)
	}
	_ = http.StatusOK
}
