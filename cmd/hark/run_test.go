package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
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
	"github.com/hark-audio/hark/transcript"
)

// TestMain lets a test run the real command in a child process: with HARK_TEST_MAIN set,
// the test binary is hark itself (same code as cmd/hark, so signals, exit codes and stdio
// are the real ones).
func TestMain(m *testing.M) {
	if os.Getenv("HARK_TEST_MAIN") == "1" {
		os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// harkProcess starts `hark ARGS...` as a child process.
func harkProcess(t *testing.T, env []string, args ...string) (*exec.Cmd, *bufio.Scanner, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), "HARK_TEST_MAIN=1"), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		if t.Failed() {
			t.Logf("hark stderr:\n%s", stderr.String())
		}
	})
	return cmd, bufio.NewScanner(stdout), &stderr
}

func demoLines(t *testing.T) []string {
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "demo", "sample.txt"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func writeRunConfig(t *testing.T, emu *dgemu.Server, extra string) string {
	t.Helper()
	dir := t.TempDir()
	key := filepath.Join(dir, "key")
	os.WriteFile(key, []byte("k"), 0o600)
	wav, _ := filepath.Abs(filepath.Join("..", "..", "testdata", "demo", "sample.wav"))
	cfg := "device_id: e2e\nstate_dir: " + dir + "\ncapture:\n  input: " + wav + "\n" +
		"deepgram:\n  url: " + emu.URL() + "\n  api_key_file: " + key + "\n" + extra
	p := filepath.Join(dir, "hark.yaml")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRunSIGTERMMidUtterance sends SIGTERM to a real hark process while the second
// sentence is being streamed: the graceful stop must still deliver that sentence's final
// transcript (CloseStream behind the queued audio, read until Metadata), then exit 0.
func TestRunSIGTERMMidUtterance(t *testing.T) {
	lines := demoLines(t)
	emu := dgemu.NewServer(dgemu.Config{Utterances: lines})
	defer emu.Close()
	cmd, out, stderr := harkProcess(t, nil, "run", "--config", writeRunConfig(t, emu, ""))

	results := make(chan transcript.Utterance, 10)
	go func() {
		defer close(results)
		for out.Scan() {
			var u transcript.Utterance
			if err := json.Unmarshal(out.Bytes(), &u); err != nil {
				t.Errorf("stdout line is not a transcript: %q", out.Text())
				continue
			}
			results <- u
		}
	}()
	select {
	case u := <-results:
		if u.Text != lines[0] {
			t.Fatalf("first utterance %q, want %q", u.Text, lines[0])
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no first utterance within 30 s")
	}
	// The second sentence spans 4.56–6.88 s of the file; wait until the service has heard
	// past 5.2 s of audio (stream seconds never exceed file seconds), i.e. mid-sentence.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := emu.WaitSession(ctx, func(s dgemu.SessionInfo) bool { return s.AudioSeconds >= 5.2 }); err != nil {
		t.Fatalf("the service never heard the second sentence: %v", err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var rest []transcript.Utterance
	for u := range results {
		rest = append(rest, u)
	}
	err := cmd.Wait()
	if err != nil {
		t.Fatalf("hark exited with %v after SIGTERM, want status 0", err)
	}
	if len(rest) != 1 || rest[0].Text != lines[1] {
		t.Fatalf("after SIGTERM got %+v, want exactly the second sentence %q", rest, lines[1])
	}
	s := emu.Sessions()
	if len(s) != 1 || s[0].CloseStreams != 1 || !s[0].MetadataSent || s[0].CloseCode != 1000 {
		t.Errorf("session did not end gracefully: %+v", s)
	}
	if !strings.Contains(stderr.String(), "hark stopped") {
		t.Errorf("no 'hark stopped' in the log")
	}
}

// TestRunBadConfig: a bad configuration stops hark before anything starts, with a
// non-zero status and a message naming the key.
func TestRunBadConfig(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ yaml, key string }{
		{"vad:\n  threshold_db: 99\n", "vad.threshold_db"},
		{"capture:\n  colour: blue\n", "capture.colour"},
		{"deepgram:\n  keepalive: 30\n", "deepgram.keepalive"},
		{"mqtt:\n  broker: localhost\n", "mqtt.broker"},
	} {
		p := filepath.Join(dir, "bad.yaml")
		os.WriteFile(p, []byte(c.yaml), 0o600)
		var stdout, stderr bytes.Buffer
		code := Main([]string{"run", "--config", p}, &stdout, &stderr)
		if code == 0 || !strings.Contains(stderr.String(), c.key) {
			t.Errorf("%q: exit %d, stderr %q: want non-zero naming %s", c.yaml, code, stderr.String(), c.key)
		}
	}
}

// TestRunNoKey: without any API key hark says where to put one, and the message never
// contains a secret-looking value.
func TestRunNoKey(t *testing.T) {
	emu := dgemu.NewServer(dgemu.Config{})
	defer emu.Close()
	dir := t.TempDir()
	p := filepath.Join(dir, "hark.yaml")
	os.WriteFile(p, []byte("state_dir: "+dir+"\ndeepgram:\n  url: "+emu.URL()+"\n"), 0o600)
	cmd, _, stderr := harkProcess(t, []string{"DEEPGRAM_API_KEY=", "CREDENTIALS_DIRECTORY="}, "run", "--config", p)
	err := cmd.Wait()
	if err == nil || !strings.Contains(stderr.String(), "DEEPGRAM_API_KEY") {
		t.Fatalf("exit %v, stderr %q: want a failure explaining where the key comes from", err, stderr.String())
	}
}

// journalStderr is a real file standing in for the stream systemd connects to the journal:
// JOURNAL_STREAM names its device and inode, as systemd does.
func journalStderr(t *testing.T) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "journal"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	fi, _ := f.Stat()
	st := fi.Sys().(*syscall.Stat_t)
	t.Setenv("JOURNAL_STREAM", fmt.Sprintf("%d:%d", st.Dev, st.Ino))
	return f
}

// TestRunFatalErrorAtErrPriority: under the journal, the error that ends hark carries the
// err priority prefix, so `journalctl -u hark -p err` (or -p warning) shows why it died;
// without it journald filed these lines at info.
func TestRunFatalErrorAtErrPriority(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("vad:\n  threshold_db: 99\n"), 0o600)
	nokey := filepath.Join(dir, "nokey.yaml")
	os.WriteFile(nokey, []byte("state_dir: "+dir+"\ncapture:\n  backend: \"null\"\n"), 0o600)
	t.Setenv("DEEPGRAM_API_KEY", "")
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	for _, c := range []struct{ file, want string }{
		{bad, "<3>hark: invalid configuration"},
		{nokey, "<3>hark: no Deepgram API key"},
	} {
		f := journalStderr(t)
		if code := Main([]string{"run", "--config", c.file}, io.Discard, f); code != exConfig {
			t.Errorf("%s: exit %d, want %d", c.want, code, exConfig)
		}
		b, _ := os.ReadFile(f.Name())
		if !strings.Contains(string(b), c.want) {
			t.Errorf("journal got %q, want a line starting %q", b, c.want)
		}
	}
}

// TestRunUnreadableCredential: a systemd credential that is there but cannot be read is
// reported as that (naming the credential and the reason), not as a missing key, and is
// a configuration error (exit 78).
func TestRunUnreadableCredential(t *testing.T) {
	emu := dgemu.NewServer(dgemu.Config{})
	defer emu.Close()
	dir := t.TempDir()
	creds := filepath.Join(dir, "creds")
	// Tests run as root, which reads any mode: a directory is what cannot be read here.
	os.MkdirAll(filepath.Join(creds, "deepgram-api-key"), 0o700)
	p := filepath.Join(dir, "hark.yaml")
	os.WriteFile(p, []byte("state_dir: "+dir+"\ndeepgram:\n  url: "+emu.URL()+"\n"), 0o600)
	cmd, _, stderr := harkProcess(t, []string{"DEEPGRAM_API_KEY=", "CREDENTIALS_DIRECTORY=" + creds}, "run", "--config", p)
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != exConfig {
		t.Errorf("exit %d, want %d", code, exConfig)
	}
	msg := stderr.String()
	if strings.Contains(msg, "no Deepgram API key") || !strings.Contains(msg, "systemd credential deepgram-api-key") ||
		!strings.Contains(msg, "is a directory") {
		t.Errorf("stderr %q: want the credential named with why it could not be read", msg)
	}
}

// TestRunWatchdogAbort: systemd's watchdog ends a stalled hark with SIGABRT. hark logs why
// at err (no dump of every goroutine) and exits 70 (EX_SOFTWARE), not Go's status 2.
func TestRunWatchdogAbort(t *testing.T) {
	emu := dgemu.NewServer(dgemu.Config{Utterances: demoLines(t)})
	defer emu.Close()
	cmd, out, stderr := harkProcess(t, nil, "run", "--config", writeRunConfig(t, emu, ""))
	// Running: the first transcript arrived.
	first := make(chan bool, 1)
	go func() {
		first <- out.Scan()
		for out.Scan() {
		}
	}()
	select {
	case ok := <-first:
		if !ok {
			t.Fatal("hark ended before its first transcript")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no first transcript within 30 s")
	}
	if err := cmd.Process.Signal(syscall.SIGABRT); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != exSoftware {
		t.Errorf("exit %d after SIGABRT, want %d", code, exSoftware)
	}
	msg := stderr.String()
	if strings.Contains(msg, "goroutine 1 [") {
		t.Errorf("a goroutine dump was written (%d lines)", strings.Count(msg, "\n"))
	}
	if !strings.Contains(msg, "level=ERROR") || !strings.Contains(msg, "watchdog") {
		t.Errorf("no error saying the watchdog stopped hark:\n%s", msg)
	}
}
