package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hark-audio/hark/dgemu"
)

func TestQuietFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want dgemu.Quiet
		err  string
	}{
		{nil, dgemu.Quiet{}, ""},
		{[]string{"--mode", "quiet"}, dgemu.Modes["quiet"], ""},
		{[]string{"--mode", "quiet", "--results-jitter", "300ms", "--late-finalize"},
			dgemu.Quiet{NoWordlessResults: true, UnansweredFinalize: true, LateFinalize: true, ResultsJitter: 300 * time.Millisecond}, ""},
		{[]string{"--no-wordless-results", "--unanswered-finalize", "--finalize-not-speech-final", "--empty-final-every", "2s"},
			dgemu.Quiet{NoWordlessResults: true, UnansweredFinalize: true, FinalizeNotSpeechFinal: true, EmptyFinalEvery: 2 * time.Second}, ""},
		{[]string{"--mode", "loud"}, dgemu.Quiet{}, `unknown --mode "loud"`},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		get := quietFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		q, err := get()
		if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%v: err %v, want %q", tc.args, err, tc.err)
			continue
		}
		if err == nil && q != tc.want {
			t.Errorf("%v: %+v, want %+v", tc.args, q, tc.want)
		}
	}
	// An unknown mode stops the command with a usage error.
	var errb bytes.Buffer
	if code := Main(context.Background(), []string{"--addr", "127.0.0.1:0", "--mode", "loud"}, io.Discard, &errb); code != 2 ||
		!strings.Contains(errb.String(), "unknown --mode") {
		t.Errorf("exit %d: %s", code, errb.String())
	}
}
