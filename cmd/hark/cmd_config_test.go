package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("STATE_DIRECTORY", dir)
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	t.Setenv("DEEPGRAM_API_KEY", "sk-test-secret")
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("device_id: pi\nmqtt:\n  broker: tcp://u:pw123@localhost:1883\n"), 0o600)

	// The packaged configuration is valid.
	var out, errb bytes.Buffer
	if code := Main([]string{"config", "check", "--config", "../../packaging/hark.yaml"}, &out, &errb); code != 0 {
		t.Fatalf("packaged config: exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), `capture.backend`) || !strings.Contains(out.String(), `"alsa"`) {
		t.Fatalf("output:\n%s", out.String())
	}

	// A bad broker URL with credentials: exit 1 naming the key, password not echoed.
	out.Reset()
	errb.Reset()
	if code := Main([]string{"config", "check", "--config", good}, &out, &errb); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if !strings.Contains(errb.String(), "mqtt.broker") || strings.Contains(errb.String()+out.String(), "pw123") {
		t.Fatalf("stderr %q", errb.String())
	}

	os.WriteFile(good, []byte("device_id: pi\ndeepgram:\n  model: nova-2\n"), 0o600)
	out.Reset()
	errb.Reset()
	if code := Main([]string{"config", "check", "--config", good}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	s := out.String()
	for _, want := range []string{"deepgram.model", "# file " + good, "# default", "deepgram API key: from environment DEEPGRAM_API_KEY", "deepgram.keyterm           []"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "sk-test-secret") {
		t.Fatal("secret printed")
	}

	// -q prints nothing on success; --state-dir applies the service's remote layer.
	state := t.TempDir()
	os.WriteFile(filepath.Join(state, "remote-config.yaml"), []byte("vad:\n  hangover_ms: 900\n"), 0o600)
	out.Reset()
	if code := Main([]string{"config", "check", "-q", "--config", good, "--state-dir", state}, &out, &errb); code != 0 || out.Len() != 0 {
		t.Fatalf("-q: exit %d, output %q", code, out.String())
	}
	out.Reset()
	Main([]string{"config", "check", "--config", good, "--state-dir", state}, &out, &errb)
	if !strings.Contains(out.String(), "900") || !strings.Contains(out.String(), "# remote") {
		t.Fatalf("remote layer not shown:\n%s", out.String())
	}

	if code := Main([]string{"config", "check", "extra"}, &out, &errb); code != 2 {
		t.Fatalf("extra argument: exit %d", code)
	}
	if code := Main([]string{"config"}, &out, &errb); code != 2 {
		t.Fatalf("no subcommand: exit %d", code)
	}
}

// TestConfigCheckEnvironment: `hark config check` reads HARK_* variables as the type of the
// key they set, shows where each value came from, and a bad one fails naming the variable.
func TestConfigCheckEnvironment(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("STATE_DIRECTORY", dir)
	t.Setenv("HARK_CONFIG", "")
	t.Setenv("HARK_CAPTURE_INPUT", "-")
	t.Setenv("HARK_CAPTURE_BACKEND", "null")
	t.Setenv("HARK_DEEPGRAM_KEYTERM", "hark, kitchen lights")
	t.Setenv("HARK_MQTT_USERNAME", "user #2")
	code, out, errOut := runHark("config", "check")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		`capture\.input +"-" +# env HARK_CAPTURE_INPUT\n`, `capture\.backend +"null" +# env HARK_CAPTURE_BACKEND\n`,
		`deepgram\.keyterm +\["hark","kitchen lights"\] +# env`, `mqtt\.username +"user #2" +# env`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("output does not match %q:\n%s", want, out)
		}
	}
	t.Setenv("HARK_DEVICE_ID", "kitchen #2")
	code, out, errOut = runHark("config", "check")
	if code != 1 || !strings.Contains(errOut, "HARK_DEVICE_ID") || !strings.Contains(errOut, `"kitchen #2"`) || out != "" {
		t.Errorf("device id with '#': exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	t.Setenv("HARK_DEVICE_ID", "kitchen-2")
	t.Setenv("HARK_DEEPGRAM_KEEPALIVE", "5")
	code, _, errOut = runHark("config", "check")
	if code != 1 || !strings.Contains(errOut, "HARK_DEEPGRAM_KEEPALIVE") || !strings.Contains(errOut, "deepgram.keepalive") {
		t.Errorf("duration without a unit: exit %d, stderr %q", code, errOut)
	}
}

// TestSampleRateOnly16k: capture.sample_rate other than 16000 is refused with a message
// that says why (it used to be accepted, shown as coming from the file, and ignored), from
// the file, the environment and over MQTT alike (same validation).
func TestSampleRateOnly16k(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("STATE_DIRECTORY", dir)
	t.Setenv("HARK_CONFIG", "")
	p := filepath.Join(dir, "hark.yaml")
	os.WriteFile(p, []byte("capture:\n  sample_rate: 48000\n"), 0o600)
	code, out, errOut := runHark("config", "check", "--config", p)
	if code != 1 || out != "" || !strings.Contains(errOut, "capture.sample_rate: 48000 is not supported: hark captures at 16000 Hz") {
		t.Errorf("sample_rate 48000 in the file: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut := runHark("run", "--config", p); code != exConfig || !strings.Contains(errOut, "capture.sample_rate") {
		t.Errorf("hark run with sample_rate 48000: exit %d, stderr %q", code, errOut)
	}
	os.WriteFile(p, []byte("capture:\n  sample_rate: 16000\n"), 0o600)
	if code, out, errOut := runHark("config", "check", "--config", p); code != 0 || !regexp.MustCompile(`capture\.sample_rate +16000 +# file`).MatchString(out) {
		t.Errorf("sample_rate 16000: exit %d, stderr %q", code, errOut)
	}
	t.Setenv("HARK_CAPTURE_SAMPLE_RATE", "44100")
	if code, _, errOut := runHark("config", "check", "--config", p); code != 1 || !strings.Contains(errOut, "(env HARK_CAPTURE_SAMPLE_RATE)") {
		t.Errorf("HARK_CAPTURE_SAMPLE_RATE=44100: exit %d, stderr %q", code, errOut)
	}
}
