package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hark-audio/hark/dgemu"
)

// TestConfigCheckRefusesWhatRunCannotUse: every broker setting `hark config check`
// refuses, `hark run` refuses with the same message (status 78), and what the check accepts
// the daemon can dial: `mqtt://127.0.0.1` gets mosquitto_pub's default port instead of
// failing for ever with "missing port in address".
func TestConfigCheckRefusesWhatRunCannotUse(t *testing.T) {
	emu := dgemu.NewServer(dgemu.Config{})
	defer emu.Close()
	dir := t.TempDir()
	t.Setenv("STATE_DIRECTORY", dir)
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	t.Setenv("DEEPGRAM_API_KEY", "k")
	pem := filepath.Join(dir, "not-a-cert.pem")
	os.WriteFile(pem, []byte("hello"), 0o600)
	for _, c := range []struct{ mqtt, want string }{
		{`broker: "mqtt://127.0.0.1:"`, "mqtt.broker"},
		{"broker: localhost:1883", "mqtt.broker"},
		{"broker: mqtt://broker/hark/kitchen", "mqtt.broker"},
		{"broker: mqtt://broker:70000", "mqtt.broker"},
		{"broker: mqtt://u:pw-1234@broker", "mqtt.broker"},
		{"broker: mqtt://broker\n  ca_file: " + pem, "mqtt.ca_file"},
		{"broker: mqtts://broker\n  ca_file: " + filepath.Join(dir, "missing.pem"), "missing.pem"},
		{"broker: mqtts://broker\n  ca_file: " + pem, "holds no PEM certificate"},
		{"broker: mqtt://broker\n  password_file: " + filepath.Join(dir, "no-password"), "mqtt.password_file"},
	} {
		p := filepath.Join(dir, "hark.yaml")
		os.WriteFile(p, []byte("device_id: bt\ncapture:\n  input: \"-\"\ndeepgram:\n  url: "+emu.URL()+"\nmqtt:\n  "+c.mqtt+"\n"), 0o600)
		code, out, checkErr := runHark("config", "check", "--config", p)
		if code != 1 || out != "" || !strings.Contains(checkErr, c.want) || strings.Contains(checkErr, "pw-1234") {
			t.Errorf("config check with %q: exit %d, %d bytes on stdout, stderr %q; want 1 naming %s", c.mqtt, code, len(out), checkErr, c.want)
			continue
		}
		code, _, runErr := runHark("run", "--config", p)
		if code != exConfig || runErr != checkErr {
			t.Errorf("run with %q: exit %d, stderr %q; want %d and the check's %q", c.mqtt, code, runErr, exConfig, checkErr)
		}
	}

	// Accepted, and dialled on the default port: either a broker answers on 1883 or the
	// connection is refused there; never "missing port".
	p := filepath.Join(dir, "ok.yaml")
	os.WriteFile(p, []byte("device_id: bt\ncapture:\n  input: \"-\"\ndeepgram:\n  url: "+emu.URL()+"\nmqtt:\n  broker: mqtt://127.0.0.1\n"), 0o600)
	if code, _, errOut := runHark("config", "check", "-q", "--config", p); code != 0 {
		t.Fatalf("config check of mqtt://127.0.0.1: exit %d: %s", code, errOut)
	}
	cmd := exec.Command(os.Args[0], "run", "--config", p)
	cmd.Env = append(os.Environ(), "HARK_TEST_MAIN=1", "STATE_DIRECTORY="+dir)
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(stderr.String(), "127.0.0.1:1883") && !strings.Contains(stderr.String(), "connected to broker") {
		if time.Now().After(deadline) || strings.Contains(stderr.String(), "missing port") {
			t.Fatalf("hark did not dial 127.0.0.1:1883:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond) // polling the child's log
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("hark exited with %v after SIGTERM", err)
	}
}

// syncBuffer is a buffer a child process writes into while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
