package main

import (
	"bytes"
	"encoding/json"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hark-audio/hark/audio"
	"github.com/hark-audio/hark/dgemu"
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
