package agent

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/hark-audio/hark/config"
)

// goInternals matches what Go's decoders say ("json: cannot unmarshal string into Go struct
// field .muted of type bool"), which a request's sender should never read.
var goInternals = regexp.MustCompile(`Go struct|Go value|unmarshal|json:|yaml:|reflect|\*[a-z]+\.[A-Z]`)

// FuzzHandleRequest drives the agent's remote request handler (config/get, config/set,
// mute) with arbitrary payloads: it must never panic, a refused change must leave the
// running configuration as it was, and an accepted one must be valid and persisted.
func FuzzHandleRequest(f *testing.F) {
	for _, s := range []string{
		`{"config":{"vad":{"threshold_db":12}}}`,
		`{"transaction":"t","config":{"deepgram":{"language":"de","keyterm":["hark"]}}}`,
		`{"config":{"vad":{"bogus":1}}}`,
		`{"config":{"deepgram":{"url":"ws://elsewhere/"}}}`,
		`{"config":{"log":{"level":"debug"}}}`,
		`{"config":null}`, `{"config":[1]}`, `{"muted":true}`, `{"muted":"yes"}`, `{}`, `[]`, `null`, ``, `{`,
		`{"config":{"vad":&a {"threshold_db":5}}}`,
		`ON`, `off`, `true`, `"ON"`, `{"muted":"ON"}`, `{"muted":[1]}`, `{"muted":{"x":1}}`, `{"config":"x"}`,
		`{"config":{"vad":{"preroll_ms":1.5}}}`, `{"config":{"log":{"level":["x"]}}}`,
		`{"muted":true,"discard_spool":true}`, `{"muted":false,"discard_spool":true}`, `{"muted":true,"discard_spool":"x"}`,
		`{"config":{"mqtt":{"queue_max":1}}}`,
	} {
		for _, op := range []string{"config/set", "mute", "config/get"} {
			f.Add(op, []byte(s))
		}
	}
	dir := f.TempDir()
	l, err := config.Load(config.Options{Environ: []string{"HOME=" + dir, "HARK_STATE_DIR=" + dir}})
	if err != nil {
		f.Fatal(err)
	}
	a, err := New(Options{Loaded: l, Stdout: io.Discard})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, op string, body []byte) {
		before := a.cfg()
		data, err := a.handleRequest(context.Background(), op, body)
		after := a.cfg()
		if err != nil {
			if goInternals.MatchString(err.Error()) {
				t.Fatalf("%s %q: the error exposes Go internals: %v", op, body, err)
			}
			if len(config.Changed(before, after)) != 0 {
				t.Fatalf("%s %q failed (%v) but changed %v", op, body, err, config.Changed(before, after))
			}
			return
		}
		if data == nil {
			t.Fatalf("%s %q: ok without data", op, body)
		}
		if err := after.Validate(); err != nil {
			t.Fatalf("%s %q accepted an invalid configuration: %v", op, body, err)
		}
		if op == "config/set" {
			if _, err := os.Stat(filepath.Join(dir, config.RemoteFileName)); err != nil {
				t.Fatalf("accepted change not persisted: %v", err)
			}
		}
		a.vadNext.Store(nil) // what the audio loop would have consumed
	})
}
