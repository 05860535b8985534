package main

import (
	"strings"
	"testing"

	"github.com/hark-audio/hark/internal/pulsetest"
)

func TestDevicesCommand(t *testing.T) {
	code, out, errOut := runHark("devices", "--backend", "null")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if rows := deviceRows(out); len(rows) != 1 || !strings.HasPrefix(rows[0], "*") || !strings.Contains(rows[0], "NULL Capture Device") {
		t.Fatalf("output:\n%s", out)
	}
	if code, _, errOut := runHark("devices", "--backend", "bogus"); code != 1 || !strings.Contains(errOut, "not one of auto, alsa, pulseaudio, null") {
		t.Fatalf("bad backend: exit %d, stderr %q", code, errOut)
	}
	if code, _, _ := runHark("devices", "extra"); code != 2 {
		t.Fatalf("extra argument: exit %d", code)
	}
}

// deviceRows returns the table rows of `hark devices` (without header and footer).
func deviceRows(out string) []string {
	lines := strings.Split(out, "\n")
	var rows []string
	for _, l := range lines[1:] {
		if strings.TrimSpace(l) == "" {
			break
		}
		rows = append(rows, l)
	}
	return rows
}

// TestDevicesDefaultFirst lists a real PulseAudio server's sources: the default is first and
// marked, sources before monitors of outputs, one mark only (auto lists ALSA too, whose
// default is not the one "" picks), and ALSA plugin pseudo-devices only with --all.
func TestDevicesDefaultFirst(t *testing.T) {
	p := pulsetest.Start(t)
	if err := p.Run("pactl", "load-module", "module-null-source", "source_name=mic1"); err != nil {
		t.Fatal(err)
	}
	for _, def := range []string{"mic1", "vsink.monitor"} {
		if err := p.Run("pactl", "set-default-source", def); err != nil {
			t.Fatal(err)
		}
		code, out, errOut := runHark("devices", "--backend", "pulseaudio")
		rows := deviceRows(out)
		if code != 0 || len(rows) < 2 || !strings.HasPrefix(rows[0], "*") || !strings.Contains(rows[0], " "+def+" ") ||
			!strings.Contains(out, "(marked *)") {
			t.Fatalf("default %s: exit %d, stderr %q, output:\n%s", def, code, errOut, out)
		}
		mic, monitor := -1, -1
		for i, r := range rows {
			if strings.Contains(r, " mic1 ") {
				mic = i
			}
			if strings.Contains(r, " vsink.monitor ") {
				monitor = i
				if !strings.Contains(r, "(monitor of an output)") {
					t.Errorf("monitor not said: %q", r)
				}
			}
		}
		if def == "mic1" && !(mic == 0 && monitor > mic) {
			t.Errorf("default mic1: order mic1 %d, monitor %d:\n%s", mic, monitor, out)
		}
	}

	code, out, _ := runHark("devices")
	if code != 0 || strings.Count(out, "\n*") != 1 {
		t.Errorf("auto: exit %d, want exactly one default marked:\n%s", code, out)
	}
	code, all, errOut := runHark("devices", "--backend", "alsa", "--all")
	if code != 0 {
		t.Logf("ALSA lists nothing here (exit %d: %s); plugin filtering not checked", code, errOut)
		return
	}
	code, some, errOut := runHark("devices", "--backend", "alsa")
	var plugins []string
	for _, r := range deviceRows(all) {
		f := strings.Fields(strings.TrimPrefix(r, "*")) // backend, id, name...
		if id := f[1]; !strings.Contains(some, " "+id+" ") {
			plugins = append(plugins, id)
		}
	}
	for _, id := range plugins {
		if strings.HasPrefix(id, ":") || strings.Contains(id, "CARD=") || id == "default" {
			t.Errorf("sound card device %s hidden without --all", id)
		}
	}
	hiddenOut := some + errOut
	for _, id := range []string{"null", "lavrate", "speexrate", "jack", "oss", "upmix"} {
		if strings.Contains(all, " "+id+" ") && strings.Contains(some, " "+id+" ") {
			t.Errorf("ALSA plugin %s listed without --all:\n%s", id, some)
		}
	}
	if len(plugins) > 0 && !strings.Contains(hiddenOut, "not shown") {
		t.Errorf("hidden plugins not mentioned (exit %d):\n%s", code, hiddenOut)
	}
	t.Logf("ALSA: %d plugin devices hidden without --all: %v", len(plugins), plugins)
}
