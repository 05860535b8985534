package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hark-audio/hark/audio"
	"github.com/hark-audio/hark/dgemu"
	"github.com/hark-audio/hark/internal/audiotest"
)

// transcribeEnv starts an emulator and writes a config and key file pointing at it.
func transcribeEnv(t *testing.T, key string) (*dgemu.Server, string) {
	t.Helper()
	srv, err := dgemu.Listen(dgemu.Config{APIKey: "right-key", Utterances: []string{"Turn on the kitchen lights."}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	os.WriteFile(keyFile, []byte(key+"\n"), 0o600)
	cfg := filepath.Join(dir, "hark.yaml")
	os.WriteFile(cfg, []byte("state_dir: "+dir+"\ndeepgram:\n  url: "+srv.URL()+"\n  api_key_file: "+keyFile+"\n"), 0o600)
	return srv, cfg
}

func toneWAV(t *testing.T, rate, channels, bits int) string {
	n := rate * 3 / 2
	var b []byte
	for i := range n {
		v := 0.0
		if i > rate/5 && i < n-rate/5 {
			v = 0.3 * math.Sin(2*math.Pi*300*float64(i)/float64(rate))
		}
		for range channels {
			switch bits {
			case 16:
				b = append(b, byte(int16(v*32767)), byte(int16(v*32767)>>8))
			case 8:
				b = append(b, byte(128+int(v*127)))
			}
		}
	}
	h := audio.WAVHeaderFormat(len(b), rate, channels)
	if bits == 8 {
		h[32], h[34] = byte(channels), 8 // block align, bits per sample
		h[28], h[29], h[30], h[31] = byte(rate*channels), byte(rate*channels>>8), byte(rate*channels>>16), 0
	}
	p := filepath.Join(t.TempDir(), "in.wav")
	os.WriteFile(p, append(h, b...), 0o600)
	return p
}

func runHark(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestTranscribeCommand(t *testing.T) {
	srv, cfg := transcribeEnv(t, "right-key")
	// A 44.1 kHz stereo WAV is sent as is.
	code, out, errOut := runHark("transcribe", toneWAV(t, 44100, 2, 16), "--config", cfg)
	if code != 0 || strings.TrimSpace(out) != "Turn on the kitchen lights." {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// 8-bit mono, --json, --language after the file.
	code, out, errOut = runHark("transcribe", toneWAV(t, 8000, 1, 8), "--json", "--language", "de", "--config", cfg)
	var resp struct {
		Metadata struct {
			RequestID string  `json:"request_id"`
			Duration  float64 `json:"duration"`
		} `json:"metadata"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &resp) != nil || resp.Metadata.RequestID == "" || resp.Metadata.Duration < 1.4 {
		t.Fatalf("--json: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	reqs := srv.Requests()
	if q := reqs[len(reqs)-1]; q.Query.Get("language") != "de" || q.Query.Get("model") != "nova-3" || q.ContentType != "audio/wav" || q.Query.Get("encoding") != "" {
		t.Fatalf("request %+v", q)
	}
	// Raw linear16 with flags.
	raw := filepath.Join(t.TempDir(), "in.raw")
	var pcm []int16
	for i := range 24000 {
		if i > 3200 && i < 20800 {
			pcm = append(pcm, int16(9000*math.Sin(float64(i)/5)))
		} else {
			pcm = append(pcm, 0)
		}
	}
	os.WriteFile(raw, audio.AppendPCM(nil, pcm), 0o600)
	code, out, errOut = runHark("transcribe", raw, "--raw", "--sample-rate", "16000", "--channels", "1", "--config", cfg)
	if code != 0 || !strings.HasPrefix(out, "speech") {
		t.Fatalf("--raw: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	reqs = srv.Requests()
	if q := reqs[len(reqs)-1]; q.Query.Get("encoding") != "linear16" || q.Query.Get("sample_rate") != "16000" || q.ContentType != "application/octet-stream" {
		t.Fatalf("raw request %+v", q)
	}
}

func TestTranscribeFailureClasses(t *testing.T) {
	srv, cfg := transcribeEnv(t, "right-key")
	wav := toneWAV(t, 16000, 1, 16)
	for _, tc := range []struct {
		name   string
		faults []dgemu.Refusal
		code   int
		msg    string
	}{
		{"401", []dgemu.Refusal{{Status: 401}}, 10, "credential was refused"},
		{"402", []dgemu.Refusal{{Status: 402}}, 11, "no credits"},
		{"403", []dgemu.Refusal{{Status: 403}}, 12, "may not use"},
		{"400 option", []dgemu.Refusal{{Status: 400}}, 13, "rejected the request (check model"},
		{"400 model/language", []dgemu.Refusal{{Status: 400, Code: "Bad Request", Message: "No such model/language/tier combination found."}}, 13, "rejected the request (check model"},
		{"400 corrupt", []dgemu.Refusal{{Status: 400, Code: "Bad Request", Message: "failed to process audio: corrupt or unsupported data"}}, 13, "could not decode the audio"},
		{"413", []dgemu.Refusal{{Status: 413}}, 14, "too large"},
		{"429", dgemu.Times(4, dgemu.Refusal{Status: 429, RetryAfter: "0"}), 15, "rate limited"},
		{"408", dgemu.Times(4, dgemu.Refusal{Status: 408}), 18, "timed out receiving"},
		{"503", dgemu.Times(4, dgemu.Refusal{Status: 503, RetryAfter: "0"}), 16, "server error"},
	} {
		srv.FailRequests(tc.faults...)
		code, out, errOut := runHark("transcribe", wav, "--config", cfg)
		if code != tc.code || !strings.Contains(errOut, tc.msg) || out != "" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", tc.name, code, out, errOut)
		}
		if strings.Contains(errOut, "right-key") {
			t.Errorf("%s: key in output", tc.name)
		}
	}

	// A real wrong key (not an injected refusal).
	_, badCfg := transcribeEnv(t, "wrong-key")
	if code, _, errOut := runHark("transcribe", wav, "--config", badCfg); code != 10 || strings.Contains(errOut, "wrong-key") {
		t.Errorf("bad key: exit %d, %q", code, errOut)
	}

	// Local problems: missing file, not a WAV, empty.
	notWAV := filepath.Join(t.TempDir(), "x.wav")
	os.WriteFile(notWAV, []byte("hello, not audio"), 0o600)
	for _, p := range []string{filepath.Join(t.TempDir(), "missing.wav"), notWAV} {
		if code, _, errOut := runHark("transcribe", p, "--config", cfg); code != 3 {
			t.Errorf("%s: exit %d, %q", p, code, errOut)
		}
	}
	// Usage.
	if code, _, _ := runHark("transcribe", "--config", cfg); code != 2 {
		t.Errorf("no file: exit %d", code)
	}
	// No key anywhere.
	dir := t.TempDir()
	noKey := filepath.Join(dir, "nokey.yaml")
	os.WriteFile(noKey, []byte("state_dir: "+dir+"\ndeepgram:\n  url: "+srv.URL()+"\n"), 0o600)
	t.Setenv("DEEPGRAM_API_KEY", "")
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	if code, _, errOut := runHark("transcribe", wav, "--config", noKey); code != 1 || !strings.Contains(errOut, "no Deepgram API key") {
		t.Errorf("no key: exit %d, %q", code, errOut)
	}
	// Network unreachable: nothing listens there.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	keyFile := filepath.Join(dir, "key")
	os.WriteFile(keyFile, []byte("right-key"), 0o600)
	down := filepath.Join(dir, "down.yaml")
	os.WriteFile(down, []byte("state_dir: "+dir+"\ndeepgram:\n  url: ws://"+addr+"/v1/listen\n  api_key_file: "+keyFile+"\n"), 0o600)
	if testing.Short() {
		return
	}
	if code, _, errOut := runHark("transcribe", wav, "--config", down); code != 17 || !strings.Contains(errOut, "cannot reach Deepgram") {
		t.Errorf("network: exit %d, %q", code, errOut)
	}
}

// TestTranscribeNoLeak: the command leaves no goroutine behind (idle keep-alive
// connections are closed), which matters when Main runs inside a test process.
func TestTranscribeNoLeak(t *testing.T) {
	_, cfg := transcribeEnv(t, "right-key")
	wav := toneWAV(t, 16000, 1, 16)
	before := runtime.NumGoroutine()
	if code, _, errOut := runHark("transcribe", wav, "--config", cfg); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond) // pacing the poll
	}
}

// TestTranscribeCompressedFormats: FLAC, MP3, Ogg (Vorbis, Opus), M4A, WebM... files made
// by the real encoders are sent to the pre-recorded endpoint as they are (same bytes), with
// the media type of their container, recognised by contents: a FLAC file named .wav is
// FLAC. Only WAV is parsed locally; headerless audio without --raw is refused locally.
func TestTranscribeCompressedFormats(t *testing.T) {
	srv, cfg := transcribeEnv(t, "right-key")
	srv.SetUtterances(slices.Repeat([]string{"Turn on the kitchen lights."}, 20))
	dir := t.TempDir()
	wav := toneWAV(t, 16000, 1, 16)
	sent := 0
	check := func(path, ctype string) {
		t.Helper()
		code, out, errOut := runHark("transcribe", path, "--config", cfg)
		if code != 0 || strings.TrimSpace(out) != "Turn on the kitchen lights." {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", filepath.Base(path), code, out, errOut)
			return
		}
		fi, _ := os.Stat(path)
		reqs := srv.Requests()
		if q := reqs[len(reqs)-1]; q.ContentType != ctype || q.BodyBytes != fi.Size() || q.Query.Get("encoding") != "" {
			t.Errorf("%s: sent as %q, %d of %d bytes, encoding %q", filepath.Base(path), q.ContentType, q.BodyBytes, fi.Size(), q.Query.Get("encoding"))
		}
		sent++
	}
	for i, f := range audiotest.Formats {
		if p := audiotest.Encode(t, wav, f, dir, fmt.Sprintf("speech%d", i)); p != "" {
			check(p, f.ContentType)
		}
	}
	// The contents decide, not the name.
	if p := audiotest.Encode(t, wav, audiotest.Formats[0], dir, "flac-named"); p != "" {
		named := filepath.Join(dir, "really-flac.wav")
		os.Rename(p, named)
		check(named, "audio/flac")
	}
	if sent < 3 {
		t.Fatalf("only %d formats could be made here (sox, lame and opus-tools are test dependencies)", sent)
	}
	raw := filepath.Join(dir, "speech.pcm")
	os.WriteFile(raw, audio.AppendPCM(nil, make([]int16, 16000)), 0o600)
	if code, _, errOut := runHark("transcribe", raw, "--config", cfg); code != 3 || !strings.Contains(errOut, "not an audio file hark recognises (WAV, FLAC, MP3") || !strings.Contains(errOut, "--raw") {
		t.Errorf("headerless audio without --raw: exit %d, stderr %q", code, errOut)
	}
}

// TestIsTerminal: a terminal is what answers the terminal ioctl; /dev/null is a character
// device but no terminal, so the upload progress must not be drawn there.
func TestIsTerminal(t *testing.T) {
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	if isTerminal(null) {
		t.Error("/dev/null taken for a terminal")
	}
	f, _ := os.Create(filepath.Join(t.TempDir(), "log"))
	defer f.Close()
	if isTerminal(f) || isTerminal(&bytes.Buffer{}) {
		t.Error("a file or a buffer taken for a terminal")
	}
	_, slave := openPTY(t)
	if !isTerminal(slave) {
		t.Error("a pseudo-terminal not taken for a terminal")
	}
}

// openPTY opens a pseudo-terminal pair (master, slave), closed when the test ends.
func openPTY(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Skipf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Skipf("ptsname: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("open the pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// TestTranscribeProgressOnTerminal: a large upload draws its progress when stderr is a
// terminal (a real hark process on a pseudo-terminal), and not when it is a pipe.
func TestTranscribeProgressOnTerminal(t *testing.T) {
	_, cfg := transcribeEnv(t, "right-key")
	big := filepath.Join(t.TempDir(), "long.wav")
	pcm := make([]int16, 16000*40) // 1.28 MB: above the 1 MB the progress is drawn from
	for i := 16000; i < 16000*3; i++ {
		pcm[i] = int16(9000 * math.Sin(float64(i)/5))
	}
	os.WriteFile(big, append(audio.WAVHeader(2*len(pcm)), audio.AppendPCM(nil, pcm)...), 0o600)

	master, slave := openPTY(t)
	cmd := exec.Command(os.Args[0], "transcribe", big, "--config", cfg)
	cmd.Env = append(os.Environ(), "HARK_TEST_MAIN=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, slave
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close() // the child holds its own copy; the master sees EOF (EIO) when it exits
	term, _ := io.ReadAll(master)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("hark transcribe: %v, terminal: %q", err, term)
	}
	if !bytes.Contains(term, []byte("uploading")) || !bytes.Contains(term, []byte("100%")) {
		t.Errorf("no progress on the terminal: %q", term)
	}

	code, _, errOut := runHark("transcribe", big, "--config", cfg) // stderr is a buffer
	if code != 0 || strings.Contains(errOut, "uploading") {
		t.Errorf("not a terminal: exit %d, stderr %q", code, errOut)
	}
}
