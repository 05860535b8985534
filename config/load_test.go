package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// testEnv is a minimal environment: no HARK_ variables from the machine running the tests,
// and a state directory of the test's own.
func testEnv(t *testing.T, extra ...string) []string {
	t.Helper()
	return append([]string{"STATE_DIRECTORY=" + t.TempDir()}, extra...)
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hark.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func loadString(t *testing.T, body string, env ...string) (*Loaded, error) {
	t.Helper()
	return Load(Options{File: writeFile(t, body), Environ: testEnv(t, env...)})
}

// badFiles are configuration files that must be refused, each with the key the error must
// name. Seeds for FuzzLoad too.
var badFiles = []struct {
	name, body, key string
}{
	{"unknown top-level key", "devise_id: x\n", "devise_id"},
	{"unknown capture key", "capture:\n  devcie: hw:1\n", "capture.devcie"},
	{"unknown vad key", "vad:\n  threshold: 3\n", "vad.threshold"},
	{"unknown deepgram key", "deepgram:\n  api_key: sk-123\n", "deepgram.api_key"},
	{"unknown mqtt key", "mqtt:\n  password: hunter2\n", "mqtt.password"},
	{"unknown spool key", "spool:\n  size: 10\n", "spool.size"},
	{"unknown log key", "log:\n  file: /tmp/x\n", "log.file"},
	{"unknown remote key", "remote:\n  allowed: [mqtt.broker]\n", "remote.allowed"},
	{"key under a leaf", "deepgram:\n  model:\n    name: nova-3\n", "deepgram.model"},
	{"section as scalar", "deepgram: nova-3\n", "deepgram"},
	{"section as list", "mqtt: [a, b]\n", "mqtt"},
	{"merge key", "base: &b {model: nova-2}\n", "base"},
	{"yaml merge", "deepgram:\n  <<: {model: nova-2}\n", "deepgram.<<"},
	{"int as string", "capture:\n  sample_rate: fast\n", "capture.sample_rate"},
	{"fraction for an integer", "vad:\n  preroll_ms: 650.5\n", "vad.preroll_ms"},
	{"number for a duration", "deepgram:\n  keepalive: 1.5\n", "deepgram.keepalive"},
	{"int as float", "capture:\n  ring_ms: 1.5\n", "capture.ring_ms"},
	{"bool as word", "capture:\n  realtime: sometimes\n", "capture.realtime"},
	{"float as string", "vad:\n  threshold_db: loud\n", "vad.threshold_db"},
	{"list as scalar", "deepgram:\n  keyterm: 3\n", "deepgram.keyterm"},
	{"list of mappings", "deepgram:\n  tag: [{a: b}]\n", "deepgram.tag"},
	{"map as list", "deepgram:\n  extra: [a]\n", "deepgram.extra"},
	{"duration without unit", "deepgram:\n  keepalive: 5\n", "deepgram.keepalive"},
	{"duration as mapping", "mqtt:\n  health_interval: {s: 1}\n", "mqtt.health_interval"},
	{"string as mapping", "device_id: {a: b}\n", "device_id"},
	{"bad device id", "device_id: kitchen/one\n", "device_id"},
	{"device id with wildcard", "device_id: \"+\"\n", "device_id"},
	{"long device id", "device_id: " + strings.Repeat("a", 65) + "\n", "device_id"},
	{"empty state dir", "state_dir: \"\"\n", ""}, // "" is filled in from the environment: accepted
	{"sample rate low", "capture:\n  sample_rate: 4000\n", "capture.sample_rate"},
	{"sample rate high", "capture:\n  sample_rate: 384000\n", "capture.sample_rate"},
	{"sample rate other than 16 kHz", "capture:\n  sample_rate: 48000\n", "capture.sample_rate"},
	{"backend", "capture:\n  backend: jack\n", "capture.backend"},
	{"ring low", "capture:\n  ring_ms: 100\n", "capture.ring_ms"},
	{"ring high", "capture:\n  ring_ms: 60001\n", "capture.ring_ms"},
	{"vad threshold", "vad:\n  threshold_db: 0\n", "vad.threshold_db"},
	{"vad preroll", "vad:\n  preroll_ms: 150\n", "vad.preroll_ms"},
	{"vad hangover", "vad:\n  hangover_ms: -100\n", "vad.hangover_ms"},
	{"deepgram url scheme", "deepgram:\n  url: https://api.deepgram.com/v1/listen\n", "deepgram.url"},
	{"deepgram url no host", "deepgram:\n  url: wss:///v1/listen\n", "deepgram.url"},
	{"deepgram url garbage", "deepgram:\n  url: \"::\"\n", "deepgram.url"},
	{"deepgram url credentials", "deepgram:\n  url: wss://user:pw@example.com/v1/listen\n", "deepgram.url"},
	{"prerecorded url scheme", "deepgram:\n  prerecorded_url: wss://x/v1/listen\n", "deepgram.prerecorded_url"},
	{"empty model", "deepgram:\n  model: \"\"\n", "deepgram.model"},
	{"empty language", "deepgram:\n  language: \"\"\n", "deepgram.language"},
	{"endpointing negative", "deepgram:\n  endpointing_ms: -1\n", "deepgram.endpointing_ms"},
	{"endpointing high", "deepgram:\n  endpointing_ms: 60001\n", "deepgram.endpointing_ms"},
	{"utterance_end without interim", "deepgram:\n  utterance_end_ms: 1000\n", "deepgram.utterance_end_ms"},
	{"utterance_end low", "deepgram:\n  interim_results: true\n  utterance_end_ms: 500\n", "deepgram.utterance_end_ms"},
	{"keywords with nova-3", "deepgram:\n  keywords: [hark]\n", "deepgram.keywords"},
	{"keywords with nova-3 variant", "deepgram:\n  model: nova-3-medical\n  keywords: [hark]\n", "deepgram.keywords"},
	{"keyterm with nova-2", "deepgram:\n  model: nova-2\n  keyterm: [hark]\n", "deepgram.keyterm"},
	{"extra encoding", "deepgram:\n  extra: {encoding: opus}\n", "deepgram.extra"},
	{"extra sample_rate", "deepgram:\n  extra: {sample_rate: \"8000\"}\n", "deepgram.extra"},
	{"keepalive high", "deepgram:\n  keepalive: 10s\n", "deepgram.keepalive"},
	{"keepalive low", "deepgram:\n  keepalive: 500ms\n", "deepgram.keepalive"},
	{"idle close low", "deepgram:\n  idle_close: 5s\n", "deepgram.idle_close"},
	{"connect timeout", "deepgram:\n  connect_timeout: 2m\n", "deepgram.connect_timeout"},
	{"result timeout", "deepgram:\n  result_timeout: 1s\n", "deepgram.result_timeout"},
	{"broker scheme", "mqtt:\n  broker: http://localhost:1883\n", "mqtt.broker"},
	{"broker no host", "mqtt:\n  broker: localhost:1883\n", "mqtt.broker"},
	{"broker credentials", "mqtt:\n  broker: tcp://u:secretpw@localhost:1883\n", "mqtt.broker"},
	{"broker list mixing TLS", "mqtt:\n  broker: mqtt://a,mqtts://b\n", "mqtt.broker"},
	{"broker list bad item", "mqtt:\n  broker: mqtt://a,tcp://u:secretpw@b\n", "mqtt.broker"},
	{"broker list ok", "mqtt:\n  broker: mqtt://a, mqtt://b:1884\n", ""},
	{"device id fleet", "device_id: fleet\n", "device_id"},
	{"device id group", "device_id: Group\n", "device_id"},
	{"groups ok", "mqtt:\n  groups: [kitchen, floor-1]\n", ""},
	{"group with slash", "mqtt:\n  groups: [a/b]\n", "mqtt.groups"},
	{"group wildcard", "mqtt:\n  groups: [\"+\"]\n", "mqtt.groups"},
	{"group twice", "mqtt:\n  groups: [a, a]\n", "mqtt.groups"},
	{"too many groups", "mqtt:\n  groups: [g0, g1, g2, g3, g4, g5, g6, g7, g8, g9, g10, g11, g12, g13, g14, g15, g16, g17, g18, g19, g20, g21, g22, g23, g24, g25, g26, g27, g28, g29, g30, g31, g32]\n", "mqtt.groups"},
	{"topic prefix wildcard", "mqtt:\n  topic_prefix: hark/#\n", "mqtt.topic_prefix"},
	{"topic prefix slash", "mqtt:\n  topic_prefix: /hark\n", "mqtt.topic_prefix"},
	{"topic prefix empty", "mqtt:\n  topic_prefix: \"\"\n", "mqtt.topic_prefix"},
	{"client id long", "mqtt:\n  client_id: " + strings.Repeat("c", 129) + "\n", "mqtt.client_id"},
	{"cert without key", "mqtt:\n  cert_file: /x.pem\n", "mqtt.cert_file"},
	{"queue max", "mqtt:\n  queue_max: 0\n", "mqtt.queue_max"},
	{"health interval", "mqtt:\n  health_interval: 100ms\n", "mqtt.health_interval"},
	{"discovery prefix", "mqtt:\n  discovery_prefix: \"\"\n", "mqtt.discovery_prefix"},
	{"spool bytes", "spool:\n  max_bytes: 1000\n", "spool.max_bytes"},
	{"spool age", "spool:\n  max_age: 10s\n", "spool.max_age"},
	{"spool concurrency", "spool:\n  concurrency: 9\n", "spool.concurrency"},
	{"log level", "log:\n  level: verbose\n", "log.level"},
	{"log format", "log:\n  format: xml\n", "log.format"},
	{"remote allow non-sensitive", "remote:\n  allow: [vad.threshold_db]\n", "remote.allow"},
	{"remote allow unknown", "remote:\n  allow: [nope]\n", "remote.allow"},
}

func TestBadFiles(t *testing.T) {
	for _, tc := range badFiles {
		t.Run(tc.name, func(t *testing.T) {
			l, err := loadString(t, tc.body)
			if tc.key == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted; effective:\n%s", l.Explain())
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v (%T) is not a *config.Error", err, err)
			}
			if ce.Key != tc.key {
				t.Fatalf("error names key %q, want %q: %v", ce.Key, tc.key, err)
			}
			if !strings.Contains(err.Error(), tc.key+": ") {
				t.Fatalf("message %q does not start with the key", err)
			}
			for _, secret := range []string{"secretpw", "sk-123", "hunter2"} {
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("error leaks a secret-looking value: %v", err)
				}
			}
		})
	}
}

func TestErrorSourceNamesFileAndLine(t *testing.T) {
	p := writeFile(t, "device_id: ok\ncapture:\n  ring_ms: fast\n")
	_, err := Load(Options{File: p, Environ: testEnv(t)})
	var ce *Error
	if !errors.As(err, &ce) || ce.Source != "file "+p+" line 3" {
		t.Fatalf("got %v (source %q)", err, ce.Source)
	}
	// A validation error (found after decoding) still names where the value came from.
	p = writeFile(t, "capture:\n  ring_ms: 10\n")
	_, err = Load(Options{File: p, Environ: testEnv(t)})
	if !errors.As(err, &ce) || ce.Key != "capture.ring_ms" || ce.Source != "file "+p {
		t.Fatalf("got %v", err)
	}
}

func TestParseErrors(t *testing.T) {
	for _, body := range []string{"capture: [\n", "\tdevice_id: x\n", "a: b: c\n"} {
		_, err := loadString(t, body)
		var ce *Error
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), "cannot parse") {
			t.Errorf("%q: got %v", body, err)
		}
	}
	if _, err := Load(Options{File: filepath.Join(t.TempDir(), "missing.yaml"), Environ: testEnv(t)}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestGoodFile(t *testing.T) {
	body := `# comments and empty sections are fine
device_id: kitchen
capture:
  backend: alsa
  device: "hw:1"
vad:
deepgram:
  model: nova-2
  keywords: [hark, "Deepgram:2"]
  interim_results: true
  utterance_end_ms: 1000
  endpointing_ms: 0
  keepalive: 5s
  idle_close: 0s
  extra: {dictation: "true"}
mqtt:
  broker: tcp://localhost:1883
  topic_prefix: home/hark
log:
  level: debug
  format: json
remote:
  allow: [mqtt.broker]
`
	p := writeFile(t, body)
	l, err := Load(Options{File: p, Environ: testEnv(t)})
	if err != nil {
		t.Fatal(err)
	}
	c := l.Config
	if c.DeviceID != "kitchen" || c.Capture.Backend != "alsa" || c.Capture.Device != "hw:1" ||
		c.Deepgram.Model != "nova-2" || !slices.Equal(c.Deepgram.Keywords, []string{"hark", "Deepgram:2"}) ||
		c.Deepgram.UtteranceEndMS != 1000 || c.Deepgram.EndpointingMS != 0 || c.Deepgram.KeepAlive.D() != 5*time.Second ||
		c.Deepgram.IdleClose != 0 || c.Deepgram.Extra["dictation"] != "true" ||
		c.MQTT.Broker != "tcp://localhost:1883" || c.MQTT.TopicPrefix != "home/hark" ||
		c.Log.Level != "debug" || c.Log.Format != "json" || !slices.Equal(c.Remote.Allow, []string{"mqtt.broker"}) {
		t.Fatalf("decoded %+v", c)
	}
	// Untouched keys keep their defaults and derived values.
	d := Default()
	if c.VAD != d.VAD || c.Deepgram.URL != d.Deepgram.URL || c.Spool.MaxBytes != d.Spool.MaxBytes {
		t.Fatal("defaults lost")
	}
	if c.MQTT.ClientID != "hark-home-hark_kitchen_3c379d" || c.Deepgram.PrerecordedURL != "https://api.deepgram.com/v1/listen" {
		t.Fatalf("derived: client %q prerecorded %q", c.MQTT.ClientID, c.Deepgram.PrerecordedURL)
	}
	if got := l.Source("deepgram.model"); got != "file "+p {
		t.Fatalf("source %q", got)
	}
	if got := l.Source("deepgram.url"); got != SourceDefault {
		t.Fatalf("source %q", got)
	}
	if len(l.Warnings) != 0 {
		t.Fatalf("warnings %q", l.Warnings)
	}
	// JSON is YAML: the same file as JSON loads the same.
	lj, err := loadString(t, `{"device_id": "kitchen", "deepgram": {"model": "nova-2", "keywords": ["hark"]}}`)
	if err != nil || lj.Config.Deepgram.Model != "nova-2" {
		t.Fatalf("json file: %v", err)
	}
}

func TestEmptyFileAndNoFile(t *testing.T) {
	for _, body := range []string{"", "# only a comment\n", "---\n"} {
		l, err := loadString(t, body)
		if err != nil {
			t.Fatalf("%q: %v", body, err)
		}
		for k, src := range l.Sources { // derived values name their own source
			if !strings.HasPrefix(src, "derived (") {
				t.Fatalf("%q: %s credited to %s", body, k, src)
			}
		}
	}
	l, err := Load(Options{Environ: testEnv(t, "HARK_DEVICE_ID=x")})
	if err != nil || l.File != "" || l.Config.DeviceID != "x" {
		t.Fatalf("no file: %v", err)
	}
}

func TestDerivedDefaults(t *testing.T) {
	state := t.TempDir()
	l, err := Load(Options{Environ: []string{"STATE_DIRECTORY=" + state + ":/var/lib/other"}, NoRemote: true})
	if err != nil {
		t.Fatal(err)
	}
	if l.Config.StateDir != state || l.Config.Spool.Dir != filepath.Join(state, "spool") {
		t.Fatalf("state %q spool %q", l.Config.StateDir, l.Config.Spool.Dir)
	}
	l, err = Load(Options{Environ: []string{"XDG_STATE_HOME=/x"}, NoRemote: true})
	if err != nil || l.Config.StateDir != "/x/hark" {
		t.Fatalf("xdg: %v %q", err, l.Config.StateDir)
	}
	l, err = Load(Options{Environ: []string{"HOME=/home/u"}, NoRemote: true})
	if err != nil || l.Config.StateDir != "/home/u/.local/state/hark" {
		t.Fatalf("home: %v %q", err, l.Config.StateDir)
	}
	if got := PrerecordedURL("ws://127.0.0.1:8080/v1/listen"); got != "http://127.0.0.1:8080/v1/listen" {
		t.Fatal(got)
	}
	for in, want := range map[string]string{"pi4.lan": "pi4", "my host": "my-host", "": "hark", "...": "hark"} {
		if got := sanitizeID(in); got != want {
			t.Errorf("sanitizeID(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEnvOverrides(t *testing.T) {
	p := writeFile(t, "deepgram:\n  model: nova-2\n  keywords: [a]\n")
	env := testEnv(t,
		"HARK_DEEPGRAM_MODEL=nova-2-general",
		"HARK_VAD_THRESHOLD_DB=12.5",
		"HARK_DEEPGRAM_KEYWORDS=[x, y]",
		"HARK_CAPTURE_REALTIME=false",
		"HARK_DEEPGRAM_KEEPALIVE=3s",
		"HARK_MQTT_BROKER=tcp://broker:1883",
		"HARK_DEVICE_ID=007", // YAML would read an int; a string field takes the text
		"HARK_MQTT_PASSWORD=hunter2",
		"HARK_CONFIG=/etc/hark/hark.yaml",
		"HARK_NO_SUCH_KEY=1",
		"DEEPGRAM_API_KEY=sk-not-config",
		"NOT_HARK_DEVICE_ID=y",
	)
	l, err := Load(Options{File: p, Environ: env})
	if err != nil {
		t.Fatal(err)
	}
	c := l.Config
	if c.Deepgram.Model != "nova-2-general" || c.VAD.ThresholdDB != 12.5 || !slices.Equal(c.Deepgram.Keywords, []string{"x", "y"}) ||
		c.Capture.Realtime || c.Deepgram.KeepAlive.D() != 3*time.Second || c.MQTT.Broker != "tcp://broker:1883" || c.DeviceID != "007" {
		t.Fatalf("env not applied: %+v", c)
	}
	for key, src := range map[string]string{
		"deepgram.model": "env HARK_DEEPGRAM_MODEL", "vad.threshold_db": "env HARK_VAD_THRESHOLD_DB",
		"deepgram.keywords": "env HARK_DEEPGRAM_KEYWORDS", "device_id": "env HARK_DEVICE_ID",
	} {
		if got := l.Source(key); got != src {
			t.Errorf("source of %s = %q, want %q", key, got, src)
		}
	}
	// Only the unknown HARK_ variable warns; reserved ones are silent, and no warning
	// carries a value.
	if len(l.Warnings) != 1 || !strings.Contains(l.Warnings[0], "HARK_NO_SUCH_KEY") {
		t.Fatalf("warnings %q", l.Warnings)
	}
	if strings.Contains(l.Explain(), "hunter2") || strings.Contains(l.Explain(), "sk-not-config") {
		t.Fatal("a secret from the environment reached the configuration")
	}

	// A bad environment value names the key and the variable.
	for kv, key := range map[string]string{
		"HARK_CAPTURE_RING_MS=lots": "capture.ring_ms", "HARK_CAPTURE_RING_MS=5": "capture.ring_ms",
		"HARK_DEEPGRAM_TAG={a: b}": "deepgram.tag", "HARK_MQTT_BROKER=ftp://x": "mqtt.broker",
	} {
		_, err := Load(Options{File: p, Environ: testEnv(t, kv)})
		var ce *Error
		name, _, _ := strings.Cut(kv, "=")
		if !errors.As(err, &ce) || ce.Key != key || ce.Source != "env "+name {
			t.Errorf("%s: got %v", kv, err)
		}
	}
	// "null" is the text, not YAML's null: HARK_CAPTURE_BACKEND=null selects the null
	// backend (it used to decode to "" and fail validation).
	// Likewise "-" (stdin) is the text, not a YAML list.
	l, err = Load(Options{Environ: testEnv(t, "HARK_CAPTURE_BACKEND=null", "HARK_CAPTURE_INPUT=-")})
	if err != nil || l.Config.Capture.Backend != "null" || l.Config.Capture.Input != "-" {
		t.Fatalf("HARK_CAPTURE_BACKEND=null HARK_CAPTURE_INPUT=-: backend %q, input %q, %v", l.Config.Capture.Backend, l.Config.Capture.Input, err)
	}
	// An empty value is the empty string, not "unset".
	_, err = Load(Options{Environ: testEnv(t, "HARK_DEEPGRAM_MODEL=")})
	var ce *Error
	if !errors.As(err, &ce) || ce.Key != "deepgram.model" {
		t.Fatalf("empty env value: %v", err)
	}
}

func TestEnvNameCoversEveryKey(t *testing.T) {
	seen := map[string]string{}
	for _, k := range Keys() {
		n := EnvName(k)
		if prev, dup := seen[n]; dup {
			t.Fatalf("%s and %s share %s", prev, k, n)
		}
		seen[n] = k
		if envReserved[n] {
			t.Fatalf("%s maps to reserved %s", k, n)
		}
	}
	if EnvName("deepgram.api_key_file") != "HARK_DEEPGRAM_API_KEY_FILE" {
		t.Fatal(EnvName("deepgram.api_key_file"))
	}
}

func TestKeysConcurrent(t *testing.T) {
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() { defer wg.Done(); _ = Keys(); _ = Changed(Default(), Default()) }()
	}
	wg.Wait()
}

func TestChanged(t *testing.T) {
	a := Default()
	if got := Changed(a, a); len(got) != 0 {
		t.Fatalf("identical: %v", got)
	}
	b := a
	b.VAD.ThresholdDB += 1
	b.Deepgram.Keyterm = []string{"x"}
	b.MQTT.HealthInterval = Duration(time.Hour)
	b.Deepgram.Extra = map[string]string{"a": "b"}
	want := []string{"deepgram.extra", "deepgram.keyterm", "mqtt.health_interval", "vad.threshold_db"}
	if got := Changed(a, b); !slices.Equal(got, want) {
		t.Fatalf("Changed = %v, want %v", got, want)
	}
	// nil and empty lists differ in DeepEqual but mean the same; they should not count as a
	// change that restarts a stream.
	c := a
	c.Deepgram.Keyterm = []string{}
	if got := Changed(a, c); len(got) != 0 {
		t.Fatalf("nil vs empty list reported as changed: %v", got)
	}
}

func TestKeysMatchSchema(t *testing.T) {
	keys := Keys()
	if !slices.IsSorted(keys) {
		t.Fatal("Keys not sorted")
	}
	for _, k := range append(append([]string{}, SensitiveKeys...), "vad.threshold_db", "remote.allow", "log.level") {
		if !slices.Contains(keys, k) {
			t.Errorf("key %q missing from Keys()", k)
		}
	}
	// Every key has a YAML and JSON name that agree, so MQTT (JSON) and the file (YAML)
	// use the same names.
	var walk func(t2 reflect.Type)
	walk = func(t2 reflect.Type) {
		for i := 0; i < t2.NumField(); i++ {
			f := t2.Field(i)
			y, j := strings.Split(f.Tag.Get("yaml"), ",")[0], strings.Split(f.Tag.Get("json"), ",")[0]
			if y != j {
				t.Errorf("%s.%s: yaml %q json %q", t2.Name(), f.Name, y, j)
			}
			if isSection(f.Type) {
				walk(f.Type)
			}
		}
	}
	walk(reflect.TypeOf(Config{}))
}

func TestDefaultsValid(t *testing.T) {
	c := Default()
	c.DeviceID, c.StateDir, c.MQTT.ClientID = "x", "/tmp/x", "hark-x"
	c.Deepgram.PrerecordedURL = PrerecordedURL(c.Deepgram.URL)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestEnvEveryKey: every key can be set from the environment with text of its own type,
// and takes exactly that value (a new kind of key must get a parsing rule).
func TestEnvEveryKey(t *testing.T) {
	for _, l := range leaves() {
		var text string
		var want any
		switch {
		case l.typ == durationType:
			text, want = "7s", Duration(7*time.Second)
		case l.typ.Kind() == reflect.String:
			text, want = " odd #value: [x] ", " odd #value: [x] "
		case l.typ.Kind() == reflect.Bool:
			text, want = "on", true
		case l.typ.Kind() == reflect.Int:
			text, want = "1234", 1234
		case l.typ.Kind() == reflect.Int64:
			text, want = "1234", int64(1234)
		case l.typ.Kind() == reflect.Float64:
			text, want = "-1.5", -1.5
		case l.typ.Kind() == reflect.Slice:
			text, want = "a b, c,,", []string{"a b", "c"}
		case l.typ.Kind() == reflect.Map:
			text, want = "k=v, x = y=z", map[string]string{"k": "v", "x": "y=z"}
		default:
			t.Fatalf("%s: no test value for %s", l.path, l.typ)
		}
		c := Default()
		set := map[string]string{}
		if _, err := applyEnv(&c, []string{EnvName(l.path) + "=" + text}, set); err != nil {
			t.Errorf("%s=%q: %v", EnvName(l.path), text, err)
			continue
		}
		if got := leafValue(&c, l).Interface(); !reflect.DeepEqual(got, want) {
			t.Errorf("%s=%q: got %#v, want %#v", EnvName(l.path), text, got, want)
		}
	}
}

// TestEnvTypedByKey: environment values are read as the type of their key, not as YAML
// (issue: "-" became a list, "null" an empty string, "kitchen #2" lost its comment part).
func TestEnvTypedByKey(t *testing.T) {
	l, err := Load(Options{Environ: testEnv(t, "HARK_CAPTURE_INPUT=-", "HARK_CAPTURE_BACKEND=null",
		"HARK_MQTT_USERNAME=user #2", "HARK_DEEPGRAM_KEYTERM=hark, kitchen lights", "HARK_DEEPGRAM_EXTRA=a=1,b=x y",
		"HARK_DEEPGRAM_TAG=[one, two]", "HARK_CAPTURE_REALTIME=off", "HARK_DEEPGRAM_EXTRA=a=1,b=x y")})
	if err != nil {
		t.Fatal(err)
	}
	c := l.Config
	if c.Capture.Input != "-" || c.Capture.Backend != "null" || c.MQTT.Username != "user #2" || c.Capture.Realtime ||
		!slices.Equal(c.Deepgram.Keyterm, []string{"hark", "kitchen lights"}) || !slices.Equal(c.Deepgram.Tag, []string{"one", "two"}) ||
		len(c.Deepgram.Extra) != 2 || c.Deepgram.Extra["b"] != "x y" {
		t.Fatalf("environment applied as %+v %+v %+v", c.Capture, c.MQTT, c.Deepgram)
	}
	for kv, want := range map[string]string{
		"HARK_DEVICE_ID=kitchen #2":         `device_id: "kitchen #2" must be`,
		"HARK_DEEPGRAM_KEEPALIVE=5":         `deepgram.keepalive: expected a duration such as "30s", got "5" (env HARK_DEEPGRAM_KEEPALIVE)`,
		"HARK_CAPTURE_REALTIME=maybe":       `capture.realtime: expected true or false, got "maybe" (env HARK_CAPTURE_REALTIME)`,
		"HARK_VAD_THRESHOLD_DB=NaN":         `vad.threshold_db: expected a number, got "NaN" (env HARK_VAD_THRESHOLD_DB)`,
		"HARK_SPOOL_MAX_BYTES=1e9":          `spool.max_bytes: expected an integer, got "1e9" (env HARK_SPOOL_MAX_BYTES)`,
		"HARK_DEEPGRAM_EXTRA=novalue":       `deepgram.extra: expected key=value pairs`,
		"HARK_MQTT_TOPIC_PREFIX=site #1":    `(env HARK_MQTT_TOPIC_PREFIX)`,
		"HARK_DEEPGRAM_KEYTERM=[unclosed, ": `deepgram.keyterm: expected a list of strings`,
	} {
		_, err := Load(Options{Environ: testEnv(t, kv)})
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), strings.SplitN(kv, "=", 2)[0]) {
			t.Errorf("%s: error %v, want one containing %q and the variable", kv, err, want)
		}
	}
}
