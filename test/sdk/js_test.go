package sdk

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hark-audio/hark/dgemu"
)

// The official JS SDK (@deepgram/sdk, pinned in js/package.json, installed by `npm ci` in
// `make test-sdk`) against the emulator: js/run.mjs uses the SDK as an application would
// and reports events as JSON lines; this test runs the emulator in-process, injects faults
// between the lines it waits for, and judges. Node is required: a missing node_modules is
// a failure that says to run `make test-sdk`, not a skip.

// jsEvent is one line from run.mjs.
type jsEvent struct {
	Ev           string   `json:"ev,omitempty"`
	Type         string   `json:"type,omitempty"`
	IsFinal      bool     `json:"is_final,omitempty"`
	FromFinalize bool     `json:"from_finalize,omitempty"`
	Transcript   *string  `json:"transcript,omitempty"`
	RequestID    string   `json:"request_id,omitempty"`
	Duration     float64  `json:"duration,omitempty"`
	Models       []string `json:"models,omitempty"`
	Code         *int     `json:"code,omitempty"`
	Reason       string   `json:"reason,omitempty"`
	Message      string   `json:"message,omitempty"`
	Status       int      `json:"status,omitempty"`
	Utterances   []string `json:"utterances,omitempty"`
	ExpiresIn    float64  `json:"expires_in,omitempty"`
	HasToken     bool     `json:"has_token,omitempty"`
	Body         any      `json:"body,omitempty"`
}

// jsRun is one run of run.mjs.
type jsRun struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	events chan jsEvent
	seen   []jsEvent
	done   chan error
}

func startJS(t *testing.T, scenario string, srv *dgemu.Server, secret string) *jsRun {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed: run `make test-sdk` (scripts/install-test-deps.sh installs it)")
	}
	dir, _ := filepath.Abs("js")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@deepgram", "sdk", "package.json")); err != nil {
		t.Fatal("test/sdk/js/node_modules is missing: run `make test-sdk` (npm ci)")
	}
	wav, _ := filepath.Abs(filepath.Join("..", "..", "testdata", "demo", "sample.wav"))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	cmd := exec.CommandContext(ctx, node, "run.mjs", scenario, srv.Addr(), wav)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "DGEMU_TEST_KEY="+secret, "DEEPGRAM_API_KEY=", "DEEPGRAM_ACCESS_TOKEN=")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &jsRun{t: t, cmd: cmd, stdin: stdin, events: make(chan jsEvent, 10000), done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var ev jsEvent
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				ev = jsEvent{Ev: "unparsable", Message: sc.Text()}
			}
			r.events <- ev
		}
		close(r.events)
		r.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		stdin.Close()
		cancel()
		<-r.done
		if t.Failed() {
			t.Logf("run.mjs %s stderr:\n%s", scenario, stderr.String())
		}
	})
	return r
}

// until reads events until one satisfies ok (and returns it), failing on a fatal event or
// the end of the script.
func (r *jsRun) until(what string, ok func(jsEvent) bool) jsEvent {
	r.t.Helper()
	timeout := time.After(45 * time.Second)
	for {
		select {
		case ev, open := <-r.events:
			if !open {
				r.t.Fatalf("run.mjs ended before %s; saw %s", what, r.summary())
			}
			r.seen = append(r.seen, ev)
			if ev.Ev == "fatal" {
				r.t.Fatalf("run.mjs failed before %s: %s", what, ev.Message)
			}
			if ok(ev) {
				return ev
			}
		case <-timeout:
			r.t.Fatalf("no %s from run.mjs; saw %s", what, r.summary())
		}
	}
}

// proceed tells run.mjs to go on past its next wait.
func (r *jsRun) proceed() {
	r.t.Helper()
	if _, err := io.WriteString(r.stdin, "go\n"); err != nil {
		r.t.Fatalf("write to run.mjs: %v", err)
	}
}

func (r *jsRun) summary() string {
	var b strings.Builder
	for _, ev := range r.seen {
		if ev.Ev == "message" && ev.Type == "Results" && !ev.IsFinal {
			continue
		}
		j, _ := json.Marshal(ev)
		fmt.Fprintf(&b, "\n  %s", j)
	}
	return b.String()
}

func finalTexts(evs []jsEvent) []string {
	var out []string
	for _, ev := range evs {
		if ev.Ev == "message" && ev.Type == "Results" && ev.IsFinal && ev.Transcript != nil && *ev.Transcript != "" {
			out = append(out, *ev.Transcript)
		}
	}
	return out
}

// TestJSLive streams the demo through the SDK's listen.v1 socket with an API key: every
// sentence comes back as a final, then Metadata and a 1000 close, and the emulator saw the
// SDK's Token header, its KeepAlive-free stream, Finalize and CloseStream.
func TestJSLive(t *testing.T) {
	_, lines := demo(t)
	srv := dgemu.NewServer(dgemu.Config{APIKey: key, Utterances: lines})
	defer srv.Close()
	r := startJS(t, "live", srv, key)
	md := r.until("Metadata", func(ev jsEvent) bool { return ev.Ev == "message" && ev.Type == "Metadata" })
	cl := r.until("close", func(ev jsEvent) bool { return ev.Ev == "close" })
	r.proceed()
	r.until("done", func(ev jsEvent) bool { return ev.Ev == "done" })
	if got := finalTexts(r.seen); strings.Join(got, "|") != strings.Join(lines, "|") {
		t.Errorf("finals %q, want %q", got, lines)
	}
	if md.Duration < 15 || len(md.Models) != 1 || md.RequestID == "" {
		t.Errorf("Metadata %+v", md)
	}
	if cl.Code == nil || *cl.Code != 1000 {
		t.Errorf("close %+v", cl)
	}
	si, err := srv.WaitSession(context.Background(), func(si dgemu.SessionInfo) bool { return si.Closed })
	if err != nil {
		t.Fatal(err)
	}
	if si.AuthMethod != dgemu.AuthToken || si.Finalizes != 1 || si.CloseStreams != 1 || si.CloseCode != 1000 || si.UtteranceEnds == 0 || si.SpeechStarteds == 0 {
		t.Errorf("session: auth %q finalizes %d closestreams %d close %d utterance ends %d speech started %d",
			si.AuthMethod, si.Finalizes, si.CloseStreams, si.CloseCode, si.UtteranceEnds, si.SpeechStarteds)
	}
	if len(srv.Sessions()) != 1 {
		t.Errorf("%d sessions: the SDK reconnected after a normal close", len(srv.Sessions()))
	}
}

// TestJSLiveToken gets a token from the emulator's grant endpoint through the SDK's
// auth.v1.tokens.grant and streams with it (Bearer).
func TestJSLiveToken(t *testing.T) {
	_, lines := demo(t)
	srv := dgemu.NewServer(dgemu.Config{APIKey: key, Utterances: lines})
	defer srv.Close()
	r := startJS(t, "live-token", srv, key)
	g := r.until("grant", func(ev jsEvent) bool { return ev.Ev == "grant" })
	if g.ExpiresIn != 60 || !g.HasToken {
		t.Errorf("grant %+v", g)
	}
	r.until("close", func(ev jsEvent) bool { return ev.Ev == "close" })
	r.proceed()
	r.until("done", func(ev jsEvent) bool { return ev.Ev == "done" })
	if got := finalTexts(r.seen); len(got) == 0 || got[0] != lines[0] {
		t.Errorf("finals %q", got)
	}
	ss := srv.Sessions()
	if len(ss) != 1 || ss[0].AuthMethod != dgemu.AuthBearer {
		t.Errorf("sessions %+v", ss)
	}
}

// TestJSRefused: a wrong key is refused at the handshake (401). The SDK reports the status
// in an error event, rejects waitForOpen, and does not retry a 401.
func TestJSRefused(t *testing.T) {
	srv := dgemu.NewServer(dgemu.Config{APIKey: key})
	defer srv.Close()
	r := startJS(t, "refused", srv, key)
	e := r.until("waitForOpen rejected", func(ev jsEvent) bool { return ev.Ev == "waitForOpen-rejected" || ev.Ev == "opened-unexpectedly" })
	if e.Ev != "waitForOpen-rejected" || !strings.Contains(e.Message, "401") {
		t.Fatalf("%+v", e)
	}
	r.proceed()
	r.until("done", func(ev jsEvent) bool { return ev.Ev == "done" })
	var errs int
	for _, ev := range r.seen {
		if ev.Ev == "error" && strings.Contains(ev.Message, "401") {
			errs++
		}
	}
	if errs == 0 {
		t.Errorf("no error event with the 401: %s", r.summary())
	}
	if n := len(srv.Sessions()); n != 0 {
		t.Errorf("%d sessions opened with a wrong key", n)
	}
	t.Logf("JS SDK after a refused handshake: %s", r.summary())
}

// TestJSClose1011: the server ends a stream with 1011 (NET-0000) after Metadata. The
// SDK's reconnecting socket reports the close with its code and reason, opens a new
// stream by itself, and the rest of the audio is transcribed on it; after CloseStream it
// closes with 1000 and does not reconnect again.
func TestJSClose1011(t *testing.T) {
	_, lines := demo(t)
	srv := dgemu.NewServer(dgemu.Config{APIKey: key, Utterances: lines})
	defer srv.Close()
	r := startJS(t, "close1011", srv, key)
	r.until("first part sent", func(ev jsEvent) bool { return ev.Ev == "sent-first-part" })
	if _, err := srv.WaitSession(context.Background(), func(si dgemu.SessionInfo) bool { return si.AudioSeconds >= 2 }); err != nil {
		t.Fatal(err)
	}
	if n := srv.FailNET0000(); n != 1 {
		t.Fatalf("closed %d sessions", n)
	}
	cl := r.until("the 1011 close", func(ev jsEvent) bool { return ev.Ev == "close" })
	if cl.Code == nil || *cl.Code != 1011 || !strings.Contains(cl.Reason, "net0000") {
		t.Errorf("close event %+v, want 1011 with the NET-0000 reason", cl)
	}
	r.proceed()
	r.until("reopened", func(ev jsEvent) bool { return ev.Ev == "reopened" })
	last := r.until("the final close", func(ev jsEvent) bool { return ev.Ev == "close" })
	r.proceed()
	r.until("done", func(ev jsEvent) bool { return ev.Ev == "done" })
	if last.Code == nil || *last.Code != 1000 {
		t.Errorf("final close %+v", last)
	}
	ss := srv.Sessions()
	if len(ss) != 2 || ss[0].CloseCode != 1011 || ss[1].CloseCode != 1000 || ss[1].AudioSeconds < 5 {
		t.Fatalf("sessions: %d (%+v)", len(ss), ss)
	}
	var mds int
	for _, ev := range r.seen {
		if ev.Ev == "message" && ev.Type == "Metadata" {
			mds++
		}
	}
	if mds != 2 {
		t.Errorf("%d Metadata messages, want one per stream", mds)
	}
	t.Logf("JS SDK around a 1011: %s", r.summary())
}

// TestJSPrerecorded transcribes the demo file with utterances=true through
// listen.v1.media.transcribeFile, and an unsupported model/language pair is refused with
// the service's 400 body.
func TestJSPrerecorded(t *testing.T) {
	_, lines := demo(t)
	srv := dgemu.NewServer(dgemu.Config{APIKey: key, Utterances: lines})
	defer srv.Close()
	r := startJS(t, "prerecorded", srv, key)
	p := r.until("result", func(ev jsEvent) bool { return ev.Ev == "prerecorded" })
	if strings.Join(p.Utterances, "|") != strings.Join(lines, "|") || p.Transcript == nil || *p.Transcript != strings.Join(lines, " ") || p.Duration < 15 {
		t.Errorf("pre-recorded %+v", p)
	}
	r2 := startJS(t, "prerecorded-bad-model", srv, key)
	e := r2.until("error", func(ev jsEvent) bool { return ev.Ev == "prerecorded-error" || ev.Ev == "prerecorded-accepted" })
	body, _ := json.Marshal(e.Body)
	if e.Status != 400 || !strings.Contains(string(body), `"err_code":"Bad Request"`) || !strings.Contains(string(body), "No such model/language/tier combination found") {
		t.Errorf("bad pair: %+v %s", e, body)
	}
}
