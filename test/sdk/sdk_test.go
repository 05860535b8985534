// Package sdk checks hark's Deepgram emulator against the official Deepgram Go SDK: if the
// SDK's live and pre-recorded clients work unchanged against dgemu, the emulator speaks the
// service's protocol (handshake, auth, message shapes, close). It is a separate module so
// the SDK and its dependencies stay out of hark's go.mod.
package sdk

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	prerecorded "github.com/deepgram/deepgram-go-sdk/v3/pkg/api/listen/v1/rest"
	msginterfaces "github.com/deepgram/deepgram-go-sdk/v3/pkg/api/listen/v1/websocket/interfaces"
	interfaces "github.com/deepgram/deepgram-go-sdk/v3/pkg/client/interfaces"
	listen "github.com/deepgram/deepgram-go-sdk/v3/pkg/client/listen"

	"github.com/hark-audio/hark/audio"
	"github.com/hark-audio/hark/dgemu"
)

const key = "sdk-test-key"

// The SDK's listen.Init is not called: it runs flag.Parse on the test binary's flags. Its
// klog output stays at verbosity 0 (silent) without it.

func demo(t *testing.T) (pcm []byte, lines []string) {
	t.Helper()
	dir := filepath.Join("..", "..", "testdata", "demo")
	f, err := os.Open(filepath.Join(dir, "sample.wav"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	wr, err := audio.NewWAVReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(wr); err != nil {
		t.Fatal(err)
	}
	txt, err := os.ReadFile(filepath.Join(dir, "sample.txt"))
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), strings.Split(strings.TrimSpace(string(txt)), "\n")
}

// recorder is the SDK's callback interface, forwarding to channels.
type recorder struct {
	mu       sync.Mutex
	finals   []string
	interims int
	fromFin  int
	speechSt int
	uttEnds  int
	metadata chan *msginterfaces.MetadataResponse
	closed   chan struct{}
	closeOne sync.Once
	errs     []string
	requests []string
}

func newRecorder() *recorder {
	return &recorder{metadata: make(chan *msginterfaces.MetadataResponse, 4), closed: make(chan struct{})}
}

func (r *recorder) Open(*msginterfaces.OpenResponse) error { return nil }
func (r *recorder) Message(m *msginterfaces.MessageResponse) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests = append(r.requests, m.Metadata.RequestID)
	if !m.IsFinal {
		r.interims++
		return nil
	}
	if m.FromFinalize {
		r.fromFin++
	}
	if len(m.Channel.Alternatives) > 0 && m.Channel.Alternatives[0].Transcript != "" {
		r.finals = append(r.finals, m.Channel.Alternatives[0].Transcript)
	}
	return nil
}
func (r *recorder) Metadata(md *msginterfaces.MetadataResponse) error { r.metadata <- md; return nil }
func (r *recorder) SpeechStarted(*msginterfaces.SpeechStartedResponse) error {
	r.mu.Lock()
	r.speechSt++
	r.mu.Unlock()
	return nil
}
func (r *recorder) UtteranceEnd(*msginterfaces.UtteranceEndResponse) error {
	r.mu.Lock()
	r.uttEnds++
	r.mu.Unlock()
	return nil
}
func (r *recorder) Close(*msginterfaces.CloseResponse) error {
	r.closeOne.Do(func() { close(r.closed) })
	return nil
}
func (r *recorder) Error(e *msginterfaces.ErrorResponse) error {
	r.mu.Lock()
	r.errs = append(r.errs, e.ErrMsg+": "+e.Description)
	r.mu.Unlock()
	return nil
}
func (r *recorder) UnhandledEvent(b []byte) error {
	r.mu.Lock()
	r.errs = append(r.errs, "unhandled: "+string(b))
	r.mu.Unlock()
	return nil
}

func liveOptions() *interfaces.LiveTranscriptionOptions {
	return &interfaces.LiveTranscriptionOptions{
		Model: "nova-3", Language: "en", Encoding: "linear16", SampleRate: 16000, Channels: 1,
		Punctuate: true, InterimResults: true, UtteranceEndMs: "1000", VadEvents: true,
		Endpointing: "300",
	}
}

// TestLiveSDK streams the demo sample through the SDK's live client with each auth form the
// SDK can produce, and checks transcripts, Metadata and the server's close.
func TestLiveSDK(t *testing.T) {
	pcm, lines := demo(t)
	// The bearer form needs a token the server issued (as POST /v1/auth/grant would):
	// the service refuses an API key under Bearer.
	var bearerToken string
	forms := []struct {
		name string
		opts func(host string) *interfaces.ClientOptions
		key  string
		auth string
	}{
		{"token", func(h string) *interfaces.ClientOptions { return &interfaces.ClientOptions{Host: h} }, key, "token"},
		{"bearer", func(h string) *interfaces.ClientOptions {
			return &interfaces.ClientOptions{Host: h, AccessToken: bearerToken}
		}, "", "bearer"},
		{"subprotocol", func(h string) *interfaces.ClientOptions {
			return &interfaces.ClientOptions{Host: h, WSHeaderProcessor: func(hd http.Header) {
				hd.Del("Authorization")
				hd.Set("Sec-WebSocket-Protocol", "token, "+key)
			}}
		}, key, "subprotocol"},
	}
	for _, form := range forms {
		t.Run(form.name, func(t *testing.T) {
			srv := dgemu.NewServer(dgemu.Config{APIKey: key, Utterances: lines})
			defer srv.Close()
			bearerToken = srv.IssueToken(time.Minute)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			rec := newRecorder()
			// The SDK takes "ws://host:port" as Host to dial without TLS.
			dg, err := listen.NewWSUsingCallback(ctx, form.key, form.opts("ws://"+srv.Addr()), liveOptions(), rec)
			if err != nil {
				t.Fatalf("NewWSUsingCallback: %v", err)
			}
			if !dg.Connect() {
				t.Fatal("SDK could not connect to the emulator")
			}
			for off := 0; off < len(pcm); off += 3200 {
				if _, err := dg.Write(pcm[off:min(off+3200, len(pcm))]); err != nil {
					t.Fatalf("Write: %v", err)
				}
			}
			// KeepAlive and Finalize as the SDK sends them.
			if err := dg.KeepAlive(); err != nil {
				t.Fatal(err)
			}
			if _, err := srv.WaitSession(ctx, func(si dgemu.SessionInfo) bool { return si.KeepAlives == 1 }); err != nil {
				t.Fatal(err)
			}
			if err := dg.Finalize(); err != nil {
				t.Fatal(err)
			}
			// The SDK's Stop sends CloseStream but holds its connection lock (which its reader
			// needs) through two 100 ms sleeps and then closes the socket, so it never reads
			// the last Results or the Metadata: the "close right after CloseStream" bug. A
			// client that wants them sends CloseStream itself and reads until the close.
			if err := dg.WriteJSON(map[string]string{"type": "CloseStream"}); err != nil {
				t.Fatal(err)
			}
			var md *msginterfaces.MetadataResponse
			select {
			case md = <-rec.metadata:
			case <-ctx.Done():
				t.Fatal("no Metadata")
			}
			select {
			case <-rec.closed:
			case <-ctx.Done():
				t.Fatal("the SDK did not report the close")
			}
			dg.Stop()
			si, err := srv.WaitSession(ctx, func(si dgemu.SessionInfo) bool { return si.Closed })
			if err != nil {
				t.Fatal(err)
			}
			if si.AuthMethod != form.auth || si.CloseCode != 1000 || si.CloseStreams < 1 || si.KeepAlives != 1 || si.Finalizes != 1 {
				t.Errorf("session: auth %q close %d closestreams %d keepalives %d finalizes %d", si.AuthMethod, si.CloseCode, si.CloseStreams, si.KeepAlives, si.Finalizes)
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			if strings.Join(rec.finals, "|") != strings.Join(lines, "|") {
				t.Errorf("finals %q, want %q", rec.finals, lines)
			}
			if rec.fromFin != 1 {
				t.Errorf("%d from_finalize finals, want 1", rec.fromFin)
			}
			if rec.interims == 0 || rec.speechSt != len(lines) || rec.uttEnds != len(lines)-1 {
				// The last sentence ends 0.99 s before the end of the file: less than
				// utterance_end_ms, so no UtteranceEnd for it.
				t.Errorf("interims %d, SpeechStarted %d, UtteranceEnd %d", rec.interims, rec.speechSt, rec.uttEnds)
			}
			if want := float64(len(pcm)/2) / 16000; md.Duration < want-0.001 || md.Duration > want+0.001 || md.RequestID != si.RequestID || md.Sha256 == "" || md.Channels != 1 {
				t.Errorf("Metadata %+v", md)
			}
			for _, e := range rec.errs {
				t.Errorf("SDK reported: %s", e)
			}
			for _, id := range rec.requests {
				if id != si.RequestID {
					t.Errorf("Results request_id %q, session %q", id, si.RequestID)
					break
				}
			}
		})
	}
}

// TestLiveSDKRefused checks that the SDK's connect fails cleanly on a refused handshake.
func TestLiveSDKRefused(t *testing.T) {
	srv := dgemu.NewServer(dgemu.Config{APIKey: key})
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dg, err := listen.NewWSUsingCallback(ctx, "wrong-key", &interfaces.ClientOptions{Host: "ws://" + srv.Addr()}, liveOptions(), newRecorder())
	if err != nil {
		t.Fatal(err)
	}
	// ConnectWithCancel with one attempt: the SDK's default retries sleep between tries.
	if dg.ConnectWithCancel(ctx, cancel, 1) {
		t.Fatal("connected with a wrong key")
	}
}

// TestPrerecordedSDK posts the demo sample with the SDK's pre-recorded client.
func TestPrerecordedSDK(t *testing.T) {
	_, lines := demo(t)
	srv := dgemu.NewServer(dgemu.Config{APIKey: key, Utterances: lines})
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := listen.NewREST(key, &interfaces.ClientOptions{Host: "http://" + srv.Addr()})
	dg := prerecorded.New(c)
	opts := &interfaces.PreRecordedTranscriptionOptions{Model: "nova-3", Punctuate: true, Utterances: true, Language: "en"}
	res, err := dg.FromFile(ctx, filepath.Join("..", "..", "testdata", "demo", "sample.wav"), opts)
	if err != nil {
		t.Fatalf("FromFile: %v", err)
	}
	alt := res.Results.Channels[0].Alternatives[0]
	if alt.Transcript != strings.Join(lines, " ") {
		t.Errorf("transcript %q", alt.Transcript)
	}
	if res.Results.Utterances == nil || len(res.Results.Utterances) != len(lines) {
		t.Fatalf("utterances %+v", res.Results.Utterances)
	}
	for i, u := range res.Results.Utterances {
		if u.Transcript != lines[i] {
			t.Errorf("utterance %d %q", i, u.Transcript)
		}
	}
	if res.Metadata == nil || res.Metadata.Duration < 15 || res.Metadata.Channels != 1 {
		t.Errorf("metadata %+v", res.Metadata)
	}
	ri := srv.Requests()[0]
	if ri.Status != 200 {
		t.Errorf("request %+v", ri)
	}

	// An injected 429 reaches the SDK as a status error carrying the body.
	srv.FailRequests(dgemu.Refusal{Status: 429, RetryAfter: "1"})
	_, err = dg.FromFile(ctx, filepath.Join("..", "..", "testdata", "demo", "sample.wav"), opts)
	var se *interfaces.StatusError
	if err == nil {
		t.Fatal("429 not reported")
	}
	if e, ok := err.(*interfaces.StatusError); ok {
		se = e
	}
	if se == nil || se.Resp == nil || se.Resp.StatusCode != 429 {
		t.Errorf("error %T %v", err, err)
	}
}
