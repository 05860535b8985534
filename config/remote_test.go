package config

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// loadState loads body with the given state directory (so the remote layer is read).
func loadState(t *testing.T, body, state string, env ...string) (*Loaded, error) {
	t.Helper()
	return Load(Options{File: writeFile(t, body), Environ: append([]string{"STATE_DIRECTORY=" + state}, env...)})
}

func TestApplyRemoteAndReapplyAtBoot(t *testing.T) {
	state := t.TempDir()
	body := "device_id: pi\ndeepgram:\n  model: nova-3\n"
	l, err := loadState(t, body, state)
	if err != nil {
		t.Fatal(err)
	}
	next, changed, err := l.ApplyRemote([]byte(`{"vad": {"threshold_db": 15}, "deepgram": {"keyterm": ["hark", "pi"], "smart_format": true}}`))
	if err != nil {
		t.Fatal(err)
	}
	// smart_format was already true: not a change.
	if want := []string{"deepgram.keyterm", "vad.threshold_db"}; !slices.Equal(changed, want) {
		t.Fatalf("changed %v, want %v", changed, want)
	}
	if l.Config.VAD.ThresholdDB == 15 {
		t.Fatal("ApplyRemote modified the receiver")
	}
	if next.Config.VAD.ThresholdDB != 15 || next.Source("vad.threshold_db") != SourceRemote || next.Source("device_id") != "file "+l.File {
		t.Fatalf("next: %v %q", next.Config.VAD.ThresholdDB, next.Source("vad.threshold_db"))
	}
	if err := next.SaveRemote(); err != nil {
		t.Fatal(err)
	}
	// A second change keeps the first (the persisted layer accumulates).
	next2, changed, err := next.ApplyRemote([]byte("mqtt:\n  health_interval: 30s\n"))
	if err != nil || !slices.Equal(changed, []string{"mqtt.health_interval"}) {
		t.Fatalf("second change: %v %v", changed, err)
	}
	if err := next2.SaveRemote(); err != nil {
		t.Fatal(err)
	}
	if got := next2.RemoteKeys(); !slices.Equal(got, []string{"deepgram.keyterm", "deepgram.smart_format", "mqtt.health_interval", "vad.threshold_db"}) {
		t.Fatalf("remote keys %v", got)
	}

	p := filepath.Join(state, RemoteFileName)
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(state)
	if len(entries) != 1 {
		t.Fatalf("stray files in the state directory: %v", entries)
	}

	// Boot: the persisted layer is applied after file and environment.
	boot, err := loadState(t, body, state, "HARK_VAD_THRESHOLD_DB=9")
	if err != nil {
		t.Fatal(err)
	}
	if boot.Config.VAD.ThresholdDB != 15 || boot.Source("vad.threshold_db") != SourceRemote {
		t.Fatalf("remote layer not re-applied over env: %v from %s", boot.Config.VAD.ThresholdDB, boot.Source("vad.threshold_db"))
	}
	if !slices.Equal(boot.Config.Deepgram.Keyterm, []string{"hark", "pi"}) || boot.Config.MQTT.HealthInterval.String() != "30s" {
		t.Fatalf("boot config %+v", boot.Config.Deepgram)
	}
	if len(Changed(next2.Config, boot.Config)) != 0 {
		t.Fatalf("boot differs from what was applied: %v", Changed(next2.Config, boot.Config))
	}
	if len(boot.Warnings) != 0 {
		t.Fatalf("warnings %q", boot.Warnings)
	}
	// NoRemote skips it.
	nr, err := Load(Options{File: boot.File, Environ: []string{"STATE_DIRECTORY=" + state}, NoRemote: true})
	if err != nil || nr.Config.VAD.ThresholdDB == 15 {
		t.Fatalf("NoRemote: %v", err)
	}
}

// payloadFor builds {"a": {"b": value}} for key a.b.
func payloadFor(key string, value any) []byte {
	var v = value
	parts := strings.Split(key, ".")
	for i := len(parts) - 1; i >= 0; i-- {
		v = map[string]any{parts[i]: v}
	}
	b, _ := json.Marshal(v)
	return b
}

func TestRemotePolicy(t *testing.T) {
	state := t.TempDir()
	l, err := loadState(t, "device_id: pi\n", state)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range SensitiveKeys {
		_, _, err := l.ApplyRemote(payloadFor(key, "x"))
		var ce *Error
		if !errors.As(err, &ce) || ce.Key != key || !strings.Contains(ce.Msg, "remote.allow") {
			t.Errorf("%s: got %v", key, err)
		}
	}
	for _, payload := range []string{`{"remote": {"enabled": false}}`, `{"remote": {"allow": ["mqtt.broker"]}}`} {
		_, _, err := l.ApplyRemote([]byte(payload))
		var ce *Error
		if !errors.As(err, &ce) || !strings.HasPrefix(ce.Key, "remote.") {
			t.Errorf("%s: got %v", payload, err)
		}
	}
	cases := []struct{ payload, key string }{
		{`{"nope": 1}`, "nope"},
		{`{"vad": {"threshold_db": 99}}`, "vad.threshold_db"},
		{`{"vad": {"threshold_db": "x"}}`, "vad.threshold_db"},
		{`{"deepgram": {"keywords": ["a"]}}`, "deepgram.keywords"},
		{`{"deepgram": {"utterance_end_ms": 1000}}`, "deepgram.utterance_end_ms"},
		{`{"deepgram": 3}`, "deepgram"},
		{`{"log": {"level": "loud"}}`, "log.level"},
	}
	for _, tc := range cases {
		_, _, err := l.ApplyRemote([]byte(tc.payload))
		var ce *Error
		if !errors.As(err, &ce) || ce.Key != tc.key {
			t.Errorf("%s: got %v, want key %s", tc.payload, err, tc.key)
		}
	}
	for _, empty := range []string{``, `{}`, `{"vad": null}`, `# nothing`} {
		if _, _, err := l.ApplyRemote([]byte(empty)); err == nil {
			t.Errorf("%q accepted", empty)
		}
	}
	if _, _, err := l.ApplyRemote([]byte(`{"vad": [`)); err == nil {
		t.Error("unparsable payload accepted")
	}
	// Several keys: one bad key refuses the whole change.
	_, _, err = l.ApplyRemote([]byte(`{"vad": {"threshold_db": 12}, "mqtt": {"broker": "tcp://evil:1883"}}`))
	var ce *Error
	if !errors.As(err, &ce) || ce.Key != "mqtt.broker" {
		t.Fatalf("got %v", err)
	}
	// A key valid alone but invalid with the rest of the configuration.
	_, _, err = l.ApplyRemote([]byte(`{"deepgram": {"model": "nova-2", "keyterm": ["x"]}}`))
	if !errors.As(err, &ce) || ce.Key != "deepgram.keyterm" {
		t.Fatalf("got %v", err)
	}
	// Both keys changed together are fine.
	if _, _, err := l.ApplyRemote([]byte(`{"deepgram": {"model": "nova-2", "keywords": ["x"]}}`)); err != nil {
		t.Fatal(err)
	}
}

func TestRemoteAllowAndDisable(t *testing.T) {
	state := t.TempDir()
	allow := "remote:\n  allow: [mqtt.broker, deepgram.url]\n"
	l, err := loadState(t, allow, state)
	if err != nil {
		t.Fatal(err)
	}
	next, changed, err := l.ApplyRemote([]byte(`{"mqtt": {"broker": "tcp://other:1883"}}`))
	if err != nil || !slices.Equal(changed, []string{"mqtt.broker"}) {
		t.Fatalf("allowed key refused: %v", err)
	}
	if err := next.SaveRemote(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.ApplyRemote([]byte(`{"mqtt": {"username": "u"}}`)); err == nil {
		t.Fatal("a sensitive key not in remote.allow was accepted")
	}
	// The file no longer allows it: the persisted value is dropped at boot with a warning.
	boot, err := loadState(t, "device_id: pi\n", state)
	if err != nil {
		t.Fatal(err)
	}
	if boot.Config.MQTT.Broker != "" || len(boot.Warnings) != 1 || !strings.Contains(boot.Warnings[0], "mqtt.broker") {
		t.Fatalf("broker %q warnings %q", boot.Config.MQTT.Broker, boot.Warnings)
	}
	// Disabled remote configuration refuses everything.
	off, err := loadState(t, "remote:\n  enabled: false\n", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = off.ApplyRemote([]byte(`{"vad": {"threshold_db": 12}}`))
	var ce *Error
	if !errors.As(err, &ce) || ce.Key != "remote.enabled" {
		t.Fatalf("got %v", err)
	}
}

func TestCorruptPersistedRemote(t *testing.T) {
	state := t.TempDir()
	p := filepath.Join(state, RemoteFileName)
	for _, body := range []string{"vad: [\n", "nope: 1\n", "vad:\n  threshold_db: 99\n"} {
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		l, err := loadState(t, "", state)
		if err != nil {
			t.Fatalf("%q: a bad persisted file must not stop hark: %v", body, err)
		}
		if len(l.Warnings) != 1 || l.Config.VAD != Default().VAD {
			t.Fatalf("%q: warnings %q", body, l.Warnings)
		}
	}
	// One bad key does not drop the good ones.
	os.WriteFile(p, []byte("vad:\n  threshold_db: 99\n  hangover_ms: 700\n"), 0o600)
	l, err := loadState(t, "", state)
	if err != nil || l.Config.VAD.HangoverMS != 700 || len(l.Warnings) != 1 {
		t.Fatalf("%v %+v %q", err, l.Config.VAD, l.Warnings)
	}
}

func TestSecret(t *testing.T) {
	dir := t.TempDir()
	creds := filepath.Join(dir, "creds")
	os.Mkdir(creds, 0o700)
	file := filepath.Join(dir, "key")
	os.WriteFile(file, []byte("from-file\n"), 0o600)
	os.WriteFile(filepath.Join(creds, "deepgram-api-key"), []byte("  from-cred \n"), 0o600)
	env := []string{"CREDENTIALS_DIRECTORY=" + creds, "DEEPGRAM_API_KEY=from-env"}

	check := func(name, file string, env []string, wantV, wantFrom string) {
		t.Helper()
		v, from, err := Secret(file, "deepgram-api-key", "DEEPGRAM_API_KEY", env)
		if err != nil || v != wantV || from != wantFrom {
			t.Errorf("%s: got %q from %q (%v), want %q from %q", name, v, from, err, wantV, wantFrom)
		}
		if v != "" && strings.Contains(from, v) {
			t.Errorf("%s: the description %q contains the secret", name, from)
		}
	}
	check("file first", file, env, "from-file", "file "+file)
	check("credential next", "", env, "from-cred", "systemd credential deepgram-api-key")
	check("env last", "", []string{"DEEPGRAM_API_KEY=from-env"}, "from-env", "environment DEEPGRAM_API_KEY")
	check("absent", "", []string{"CREDENTIALS_DIRECTORY=" + creds + "/none"}, "", "")
	check("empty env", "", []string{"DEEPGRAM_API_KEY="}, "", "")

	// The package installs empty placeholder credential files so the unit starts without
	// them; an empty (or whitespace-only) credential counts as absent and the environment
	// is still consulted.
	os.WriteFile(filepath.Join(creds, "deepgram-api-key"), []byte("\n"), 0o600)
	check("empty credential", "", env, "from-env", "environment DEEPGRAM_API_KEY")
	check("empty credential alone", "", env[:1], "", "")
	// Likewise an empty explicit file.
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	check("empty file", empty, env, "from-env", "environment DEEPGRAM_API_KEY")

	// A named file that cannot be read is an error that names the file, not the content.
	_, _, err := Secret(filepath.Join(dir, "missing"), "deepgram-api-key", "DEEPGRAM_API_KEY", env)
	if err == nil || !strings.Contains(err.Error(), "missing") || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	// A credential that is there but cannot be read is that error, naming the credential
	// and the reason, not "no key" (nor a silent fall-through to the environment). Root
	// reads any mode, so the unreadable credential here is a directory.
	bad := filepath.Join(dir, "bad-creds")
	os.MkdirAll(filepath.Join(bad, "deepgram-api-key"), 0o700)
	_, _, err = Secret("", "deepgram-api-key", "DEEPGRAM_API_KEY", []string{"CREDENTIALS_DIRECTORY=" + bad, "DEEPGRAM_API_KEY=from-env"})
	if err == nil || !strings.Contains(err.Error(), "systemd credential deepgram-api-key") || !strings.Contains(err.Error(), "is a directory") {
		t.Fatalf("unreadable credential: %v", err)
	}
	// nil environ reads the process environment.
	t.Setenv("HARK_TEST_SECRET", "proc-env")
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	if v, _, _ := Secret("", "x", "HARK_TEST_SECRET", nil); v != "proc-env" {
		t.Fatalf("process env: %q", v)
	}
}

func TestExplain(t *testing.T) {
	p := writeFile(t, "deepgram:\n  url: wss://api.example.com/v1/listen?token=abc123\nmqtt:\n  broker: tcp://localhost:1883\n")
	l, err := Load(Options{File: p, Environ: testEnv(t, "HARK_DEEPGRAM_MODEL=nova-3-general")})
	if err != nil {
		t.Fatal(err)
	}
	out := l.Explain()
	if strings.Contains(out, "abc123") {
		t.Fatalf("token in URL not redacted:\n%s", out)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		_, src, _ := strings.Cut(line, "# ")
		got[f[0]] = src
	}
	if len(got) != len(Keys()) {
		t.Fatalf("%d lines for %d keys", len(got), len(Keys()))
	}
	for k, want := range map[string]string{"deepgram.url": "file " + p, "mqtt.broker": "file " + p,
		"deepgram.model": "env HARK_DEEPGRAM_MODEL", "vad.threshold_db": "default"} {
		if got[k] != want {
			t.Errorf("%s: source %q, want %q", k, got[k], want)
		}
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"tcp://localhost:1883":                "tcp://localhost:1883",
		"tcp://user:pw@host:1883":             "tcp://REDACTED@host:1883",
		"wss://h/v1/listen?model=x&token=abc": "wss://h/v1/listen?model=x&token=REDACTED",
		"wss://h/v1/listen?api_key=abc":       "wss://h/v1/listen?api_key=REDACTED",
		"wss://h/v1/listen?password=abc&x=1":  "wss://h/v1/listen?password=REDACTED&x=1",
		"::not a url@with-at":                 "<redacted>",
		"":                                    "",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
	c := Default()
	c.MQTT.Broker = "tcp://u:secret@h:1883"
	if strings.Contains(string(c.JSON()), "secret") || strings.Contains(string(c.YAML()), "secret") {
		t.Fatal("credential in broker URL published")
	}
}

// TestConfigJSONNoNull: the retained <base>/config payload shows an unset list or mapping
// as [] or {}, as `hark config check` does, not null.
func TestConfigJSONNoNull(t *testing.T) {
	b := Default().JSON()
	if strings.Contains(string(b), "null") {
		t.Fatalf("config JSON has null: %s", b)
	}
	var v struct {
		Deepgram struct {
			Keyterm []string          `json:"keyterm"`
			Extra   map[string]string `json:"extra"`
		} `json:"deepgram"`
	}
	if err := json.Unmarshal(b, &v); err != nil || v.Deepgram.Keyterm == nil || v.Deepgram.Extra == nil {
		t.Fatalf("%v %s", err, b)
	}
}
