package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/hark-audio/hark/internal/redact"
)

// Redact hides credentials a URL might carry (user info, credential-like query values
// such as token=, auth=, api_key=), so a URL can be shown in logs, errors and MQTT
// payloads. It is redact.URL, the one rule hark uses everywhere.
func Redact(raw string) string { return redact.URL(raw) }

// Redacted returns a copy safe to display or publish. The configuration holds no secret
// values (only paths to files holding them), but URLs may embed credentials.
func (c Config) Redacted() Config {
	c.Deepgram.URL = Redact(c.Deepgram.URL)
	c.Deepgram.PrerecordedURL = Redact(c.Deepgram.PrerecordedURL)
	c.MQTT.Broker = redactBrokers(c.MQTT.Broker)
	return c
}

// JSON is the redacted configuration as JSON (the retained <base>/config payload). An unset
// list or mapping is [] or {}, as `hark config check` shows it, never null.
func (c Config) JSON() []byte {
	r := c.Redacted()
	for _, lf := range leaves() {
		switch v := leafValue(&r, lf); {
		case v.Kind() == reflect.Slice && v.IsNil():
			v.Set(reflect.MakeSlice(v.Type(), 0, 0))
		case v.Kind() == reflect.Map && v.IsNil():
			v.Set(reflect.MakeMap(v.Type()))
		}
	}
	b, _ := json.Marshal(r)
	return b
}

// YAML is the redacted configuration as YAML.
func (c Config) YAML() []byte {
	b, _ := yaml.Marshal(c.Redacted())
	return b
}

// Explain renders the effective configuration, redacted, one key per line with where its
// value came from: what `hark config check` prints.
func (l *Loaded) Explain() string {
	var b strings.Builder
	r := l.Config.Redacted()
	width := 0
	for _, lf := range leaves() {
		width = max(width, len(lf.path))
	}
	for _, lf := range leaves() {
		rv := leafValue(&r, lf)
		v := rv.Interface()
		js, _ := json.Marshal(v)
		switch {
		case rv.Kind() == reflect.Slice && rv.Len() == 0:
			js = []byte("[]") // not "null": an unset list is an empty one
		case rv.Kind() == reflect.Map && rv.Len() == 0:
			js = []byte("{}")
		}
		if d, ok := v.(Duration); ok {
			js = []byte(d.String())
		}
		fmt.Fprintf(&b, "%-*s  %-40s  # %s\n", width, lf.path, string(js), l.Source(lf.path))
	}
	return b.String()
}

// Secret resolution, in order: an explicit file, a systemd credential, an environment
// variable. The value never leaves this function in an error.
//
// It returns the secret, a description of where it came from (never the value), and an
// error only when a named file cannot be read. An absent secret is "" with no error; an
// empty file or credential is absent.
func Secret(file, credName, envName string, environ []string) (value, from string, err error) {
	getenv := func(k string) (string, bool) {
		if environ == nil {
			return os.LookupEnv(k)
		}
		for _, kv := range environ {
			if n, v, ok := strings.Cut(kv, "="); ok && n == k {
				return v, true
			}
		}
		return "", false
	}
	read := func(p string) (string, error) {
		b, err := os.ReadFile(p)
		if err != nil {
			return "", err
		}
		return strings.TrimSpace(string(b)), nil
	}
	// An empty (or whitespace-only) file counts as absent: the package installs empty
	// placeholder credentials so that LoadCredential= (which fails the unit on a missing
	// file in systemd 252) always finds one.
	if file != "" {
		v, err := read(file)
		if err != nil {
			return "", "", fmt.Errorf("read secret file %s: %w", file, unwrapPathErr(err))
		}
		if v != "" {
			return v, "file " + file, nil
		}
	}
	if dir, ok := getenv("CREDENTIALS_DIRECTORY"); ok && dir != "" {
		p := filepath.Join(dir, credName)
		v, err := read(p)
		switch {
		case err == nil && v != "":
			return v, "systemd credential " + credName, nil
		case err != nil && !errors.Is(err, fs.ErrNotExist):
			// There but unreadable: say so, rather than "no key" and a hunt for a file
			// that exists. The message has the name and the reason, never the content.
			return "", "", fmt.Errorf("read systemd credential %s (%s): %w", credName, p, unwrapPathErr(err))
		}
	}
	if v, ok := getenv(envName); ok && v != "" {
		return v, "environment " + envName, nil
	}
	return "", "", nil
}

func unwrapPathErr(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// DeepgramAuth is how hark authenticates to Deepgram.
type DeepgramAuth struct {
	// APIKey is sent as "Token <key>" when no token is configured.
	APIKey string
	// TokenFile holds a short-lived JWT sent as "Bearer <JWT>" (re-read at every use).
	TokenFile string
	// From says where the credential came from (never its value).
	From string
}

// ErrNoDeepgramAuth means neither a token nor an API key was found.
var ErrNoDeepgramAuth = errors.New("no Deepgram API key or token: set deepgram.api_key_file (or the systemd credential deepgram-api-key, or DEEPGRAM_API_KEY), or deepgram.token_file (or the credential deepgram-token)")

// DeepgramCredential resolves the Deepgram credential: a token first (deepgram.token_file,
// else the systemd credential deepgram-token), read now to fail early and again at every
// connection; else the API key (deepgram.api_key_file, the credential deepgram-api-key,
// $DEEPGRAM_API_KEY; see Secret). Values never appear in the error.
func DeepgramCredential(d Deepgram, environ []string) (DeepgramAuth, error) {
	tokenFile, from := d.TokenFile, "file "+d.TokenFile
	if tokenFile == "" {
		if dir, ok := lookupEnv(environ, "CREDENTIALS_DIRECTORY"); ok && dir != "" {
			p := filepath.Join(dir, "deepgram-token")
			if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) != "" {
				tokenFile, from = p, "systemd credential deepgram-token"
			}
		}
	}
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return DeepgramAuth{}, fmt.Errorf("read deepgram token file %s: %w", tokenFile, unwrapPathErr(err))
		}
		if strings.TrimSpace(string(b)) == "" {
			return DeepgramAuth{}, fmt.Errorf("deepgram token file %s is empty", tokenFile)
		}
		return DeepgramAuth{TokenFile: tokenFile, From: "token, " + from}, nil
	}
	key, keyFrom, err := Secret(d.APIKeyFile, "deepgram-api-key", "DEEPGRAM_API_KEY", environ)
	if err != nil {
		return DeepgramAuth{}, err
	}
	if key == "" {
		return DeepgramAuth{}, ErrNoDeepgramAuth
	}
	return DeepgramAuth{APIKey: key, From: "api key, " + keyFrom}, nil
}

func lookupEnv(environ []string, k string) (string, bool) {
	if environ == nil {
		return os.LookupEnv(k)
	}
	for _, kv := range environ {
		if n, v, ok := strings.Cut(kv, "="); ok && n == k {
			return v, true
		}
	}
	return "", false
}
