package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzLoad feeds arbitrary bytes as the configuration file: Load must never panic, every
// error must be a *config.Error, and whatever it accepts must validate.
func FuzzLoad(f *testing.F) {
	for _, tc := range badFiles {
		f.Add([]byte(tc.body))
	}
	for _, s := range []string{"", "---\n", "device_id: pi\n", "{}", "[]", "a: &x [1]\nb: *x\n",
		"deepgram:\n  extra: {a: b}\n  keyterm: [x]\n", "vad: &v {threshold_db: 5}\n", "capture: *nope\n",
		"vad: &a {threshold_db: *a}\n", "deepgram: {tag: &a [x, *a]}\n"} {
		f.Add([]byte(s))
	}
	if b, err := os.ReadFile("../packaging/hark.yaml"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		p := filepath.Join(dir, "hark.yaml")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		l, err := Load(Options{File: p, Environ: []string{"STATE_DIRECTORY=" + dir}})
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v (%T) is not a *config.Error", err, err)
			}
			return
		}
		if err := l.Config.Validate(); err != nil {
			t.Fatalf("accepted an invalid configuration: %v", err)
		}
		_ = l.Explain()
		_ = l.Config.JSON()
	})
}

// FuzzApplyRemote feeds arbitrary payloads as a remote config/set: ApplyRemote must never
// panic, every error must be a *config.Error, and an accepted change must survive being
// persisted and re-applied at the next start unchanged.
func FuzzApplyRemote(f *testing.F) {
	for _, s := range []string{
		`{"vad": {"threshold_db": 15}}`, `{"deepgram": {"keyterm": ["hark"]}}`, `{"mqtt": {"broker": "tcp://x:1"}}`,
		`{"remote": {"enabled": false}}`, `{"deepgram": {"extra": {"a": "b"}}}`, `{"log": {"level": "debug"}}`,
		`{"deepgram": {"model": "nova-2", "keywords": ["x"]}}`, `{"vad": null}`, `{}`, ``, `[1]`, `"x"`,
		"vad: &v {threshold_db: 12}\nlog: {level: debug}\n", "a: &x 3\nvad: {threshold_db: *x}\n",
		"deepgram: {keyterm: &k [a]}\nmqtt: {username: x}\n", `{"deepgram": {"keepalive": "5s"}}`,
		"deepgram: {tag: !!binary aGVsbG8=}\n", "deepgram: {tag: &k [a], keyterm: *k}\n",
		"vad: {hangover_ms: &h 500}\nlog: {level: info}\n", "deepgram: {tag: &a [x, *a]}\n",
		"deepgram: {tag: [&a [x,x,x,x,x,x,x,x,x], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a], &c [*b,*b,*b,*b,*b,*b,*b,*b,*b], &d [*c,*c,*c,*c,*c,*c,*c,*c,*c], [*d,*d,*d,*d,*d,*d,*d,*d,*d]]}\n", "log: {level: !!str debug}\n",
	} {
		f.Add([]byte(s))
	}
	body := []byte("device_id: pi\nremote:\n  allow: [mqtt.broker, mqtt.username]\n")
	f.Fuzz(func(t *testing.T, payload []byte) {
		dir := t.TempDir()
		p := filepath.Join(dir, "hark.yaml")
		if err := os.WriteFile(p, body, 0o600); err != nil {
			t.Fatal(err)
		}
		opts := Options{File: p, Environ: []string{"STATE_DIRECTORY=" + dir}}
		l, err := Load(opts)
		if err != nil {
			t.Fatal(err)
		}
		next, changed, err := l.ApplyRemote(payload)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v (%T) is not a *config.Error", err, err)
			}
			return
		}
		if err := next.Config.Validate(); err != nil {
			t.Fatalf("accepted an invalid configuration: %v", err)
		}
		for _, k := range changed {
			if strings.HasPrefix(k, "remote.") {
				t.Fatalf("remote changed local-only key %s", k)
			}
		}
		if err := next.SaveRemote(); err != nil {
			t.Fatalf("persist: %v", err)
		}
		boot, err := Load(opts)
		if err != nil {
			t.Fatalf("boot after persisting %q: %v", payload, err)
		}
		if len(boot.Warnings) != 0 {
			t.Fatalf("boot after persisting %q warned: %q", payload, boot.Warnings)
		}
		if d := Changed(next.Config, boot.Config); len(d) != 0 {
			t.Fatalf("persisted %q re-applied differently at boot: %v", payload, d)
		}
	})
}

// FuzzEnv feeds arbitrary text to every HARK_ variable: applying it must never panic, an
// error must be a *config.Error naming the key and the variable, a string key must take
// the text verbatim, and a list or mapping must come out non-nil.
func FuzzEnv(f *testing.F) {
	for _, s := range []string{"-", "null", "kitchen #2", "007", "", " ", "true", "off", "3s", "12.5", "NaN", "1e400",
		"a, b", "[a, b]", "{a: b}", "a=1,b=2", "=", "a=", "[", "{", "[1, [2]]", "{a: [b]}", "&x [*x]", "~", "'q'", "\"q\""} {
		for i := range Keys() {
			f.Add(uint8(i), s)
		}
	}
	f.Fuzz(func(t *testing.T, i uint8, val string) {
		ls := leaves()
		l := ls[int(i)%len(ls)]
		name := EnvName(l.path)
		c := Default()
		set := map[string]string{}
		_, err := applyEnv(&c, []string{name + "=" + val}, set)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) || ce.Key != l.path || ce.Source != "env "+name || !strings.Contains(err.Error(), name) {
				t.Fatalf("%s=%q: error %v does not name the key and the variable", name, val, err)
			}
			return
		}
		got := leafValue(&c, l)
		switch got.Kind() {
		case reflect.String:
			if got.String() != val {
				t.Fatalf("%s=%q: the string key holds %q", name, val, got.String())
			}
		case reflect.Slice, reflect.Map:
			if got.IsNil() {
				t.Fatalf("%s=%q: nil %s", name, val, got.Kind())
			}
		}
		if set[l.path] != "env "+name {
			t.Fatalf("%s=%q: source %q", name, val, set[l.path])
		}
		_ = c.Validate()
	})
}
