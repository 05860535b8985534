package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestDevicesCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main([]string{"devices", "--backend", "null"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "NULL Capture Device") || !strings.Contains(out.String(), "*") {
		t.Fatalf("output:\n%s", out.String())
	}
	out.Reset()
	errb.Reset()
	if code := Main([]string{"devices", "--backend", "bogus"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "not one of auto, alsa, pulseaudio, null") {
		t.Fatalf("bad backend: exit %d, stderr %q", code, errb.String())
	}
	if code := Main([]string{"devices", "extra"}, &out, &errb); code != 2 {
		t.Fatalf("extra argument: exit %d", code)
	}
}
