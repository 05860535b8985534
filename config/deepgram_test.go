package config

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// Issue 11, item 8: deepgram.extra cannot get around remote.allow, override an option
// hark sets, or send audio or results elsewhere; from the file, the environment or MQTT.
func TestDeepgramExtraSafety(t *testing.T) {
	for name, body := range map[string]string{
		"callback":        "deepgram:\n  extra:\n    callback: https://attacker.example/collect\n",
		"callback_method": "deepgram:\n  extra:\n    callback_method: PUT\n",
		"model override":  "deepgram:\n  extra:\n    model: nova-2\n",
		"language":        "deepgram:\n  extra:\n    language: fr\n",
		"encoding":        "deepgram:\n  extra:\n    encoding: mulaw\n",
		"upper case":      "deepgram:\n  extra:\n    Callback: https://x.example\n",
	} {
		if _, err := Load(Options{File: writeFile(t, body), Environ: testEnv(t), NoRemote: true}); err == nil || !strings.Contains(err.Error(), "deepgram.extra") {
			t.Errorf("%s: file accepted (%v)", name, err)
		}
	}
	if _, err := Load(Options{Environ: testEnv(t, `HARK_DEEPGRAM_EXTRA={"callback": "https://attacker.example/collect"}`), NoRemote: true}); err == nil {
		t.Error("callback accepted from the environment")
	}
	// An option hark has no key for is fine.
	if _, err := Load(Options{File: writeFile(t, "deepgram:\n  extra:\n    mip_opt_out: \"true\"\n"), Environ: testEnv(t), NoRemote: true}); err != nil {
		t.Fatal(err)
	}
	// Remotely, deepgram.extra needs remote.allow, whatever the value.
	l, err := loadState(t, "device_id: pi\n", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = l.ApplyRemote([]byte(`{"deepgram":{"extra":{"callback":"https://attacker.example/collect"}}}`))
	if err == nil || !strings.Contains(err.Error(), "deepgram.extra") {
		t.Fatalf("remote callback: %v", err)
	}
	_, _, err = l.ApplyRemote([]byte(`{"deepgram":{"extra":{"mip_opt_out":"true"}}}`))
	var ce *Error
	if !errors.As(err, &ce) || ce.Key != "deepgram.extra" || !strings.Contains(ce.Msg, "remote.allow") {
		t.Fatalf("remote extra without remote.allow: %v", err)
	}
	l, err = loadState(t, "device_id: pi\nremote:\n  allow: [deepgram.extra]\n", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.ApplyRemote([]byte(`{"deepgram":{"extra":{"mip_opt_out":"true"}}}`)); err != nil {
		t.Fatalf("allowed remote extra: %v", err)
	}
	if _, _, err := l.ApplyRemote([]byte(`{"deepgram":{"extra":{"callback":"https://attacker.example/collect"}}}`)); err == nil {
		t.Fatal("allowed remote extra with callback accepted")
	}
}

// Item 13: credentials in the pre-recorded URL are refused like in the live URL, and
// auth= query values are redacted in configuration output.
func TestDeepgramURLCredentials(t *testing.T) {
	_, err := Load(Options{File: writeFile(t, "deepgram:\n  prerecorded_url: https://user:pw@proxy.example/v1/listen\n"), Environ: testEnv(t), NoRemote: true})
	if err == nil || !strings.Contains(err.Error(), "deepgram.prerecorded_url") || strings.Contains(err.Error(), "pw@") {
		t.Fatalf("userinfo in prerecorded_url: %v", err)
	}
	l, err := Load(Options{File: writeFile(t, "deepgram:\n  url: wss://proxy.example/v1/listen?auth=SEKRIT1\n  prerecorded_url: https://proxy.example/v1/listen?auth=SEKRIT2\n"),
		Environ: testEnv(t), NoRemote: true})
	if err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{"explain": l.Explain(), "json": string(l.Config.JSON()), "yaml": string(l.Config.YAML())} {
		if strings.Contains(out, "SEKRIT") {
			t.Errorf("%s shows the auth= value:\n%s", name, out)
		}
	}
}

// Item 3: the token file is a configuration key, sensitive remotely.
func TestDeepgramTokenFileKey(t *testing.T) {
	l, err := loadState(t, "device_id: pi\ndeepgram:\n  token_file: /run/hark/deepgram-token\n", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if l.Config.Deepgram.TokenFile != "/run/hark/deepgram-token" {
		t.Fatalf("token_file %q", l.Config.Deepgram.TokenFile)
	}
	if _, _, err := l.ApplyRemote([]byte(`{"deepgram":{"token_file":"/tmp/x"}}`)); err == nil {
		t.Fatal("token_file changed remotely without remote.allow")
	}
}

// The credential: a token (file, else the systemd credential deepgram-token) wins over
// the API key; a configured token file that cannot be read is an error naming the file,
// never a value.
func TestDeepgramCredential(t *testing.T) {
	dir := t.TempDir()
	write := func(name, v string) string {
		p := dir + "/" + name
		if err := os.WriteFile(p, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := write("key", "KEY123\n")
	tok := write("tok", "eyJhbGciOiJIUzI1NiJ9.e30.sig\n")
	creds := t.TempDir()
	if err := os.WriteFile(creds+"/deepgram-token", []byte("eyJ.x.y"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		d       Deepgram
		env     []string
		apiKey  string
		file    string
		errLike string
	}{
		"api key file":     {Deepgram{APIKeyFile: key}, []string{}, "KEY123", "", ""},
		"env key":          {Deepgram{}, []string{"DEEPGRAM_API_KEY=ENVKEY"}, "ENVKEY", "", ""},
		"token file wins":  {Deepgram{APIKeyFile: key, TokenFile: tok}, []string{}, "", tok, ""},
		"token credential": {Deepgram{APIKeyFile: key}, []string{"CREDENTIALS_DIRECTORY=" + creds}, "", creds + "/deepgram-token", ""},
		"missing token":    {Deepgram{TokenFile: dir + "/nope"}, []string{}, "", "", "nope"},
		"empty token":      {Deepgram{TokenFile: write("empty", "\n")}, []string{}, "", "", "empty"},
		"nothing":          {Deepgram{}, []string{}, "", "", "no Deepgram API key or token"},
	} {
		got, err := DeepgramCredential(tc.d, tc.env)
		if tc.errLike != "" {
			if err == nil || !strings.Contains(err.Error(), tc.errLike) {
				t.Errorf("%s: err %v", name, err)
			}
			continue
		}
		if err != nil || got.APIKey != tc.apiKey || got.TokenFile != tc.file || strings.Contains(got.From, "KEY123") || strings.Contains(got.From, "ENVKEY") {
			t.Errorf("%s: %+v %v", name, got, err)
		}
	}
}
