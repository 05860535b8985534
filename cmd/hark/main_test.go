package main

import (
	"strings"
	"testing"
)

// TestHelpEveryCommand: `hark CMD --help` (and -h, and `hark help CMD`) prints the command's
// usage once, on stdout, and exits 0; a bad flag prints the error and the usage once on
// stderr and exits 2.
func TestHelpEveryCommand(t *testing.T) {
	names := []string{"config check"}
	for _, c := range commands() {
		names = append(names, c.name)
	}
	for _, name := range names {
		args := strings.Fields(name)
		for _, form := range [][]string{append(args[:len(args):len(args)], "--help"), append(args[:len(args):len(args)], "-h"), {"help", name}} {
			if form[0] == "help" && len(args) > 1 {
				continue
			}
			code, out, errOut := runHark(form...)
			want := "usage: hark " + args[0]
			if code != 0 || strings.Count(out, want) != 1 || errOut != "" {
				t.Errorf("hark %s: exit %d, %d usage lines on stdout, stderr %q\n%s", strings.Join(form, " "), code, strings.Count(out, want), errOut, out)
			}
			if strings.Contains(out, "-help") {
				t.Errorf("hark %s: the usage lists the help flag itself:\n%s", strings.Join(form, " "), out)
			}
		}
		if name == "version" || name == "config" {
			continue // no flags of their own beyond help
		}
		code, out, errOut := runHark(append(args[:len(args):len(args)], "--no-such-flag")...)
		if code != 2 || out != "" || strings.Count(errOut, "usage: hark "+args[0]) != 1 || !strings.Contains(errOut, "no-such-flag") {
			t.Errorf("hark %s --no-such-flag: exit %d, stdout %q, stderr %q", name, code, out, errOut)
		}
	}
	code, out, _ := runHark("--help")
	if code != 0 || !strings.Contains(out, "commands:") {
		t.Errorf("hark --help: exit %d, stdout %q", code, out)
	}
	if code, _, errOut := runHark(); code != 2 || !strings.Contains(errOut, "commands:") {
		t.Errorf("hark without a command: exit %d, stderr %q", code, errOut)
	}
}

// TestVersionFlag: `hark --version` is `hark version`.
func TestVersionFlag(t *testing.T) {
	_, want, _ := runHark("version")
	for _, form := range []string{"--version", "-version"} {
		code, out, errOut := runHark(form)
		if code != 0 || out != want || errOut != "" || !strings.HasPrefix(out, "hark ") {
			t.Errorf("hark %s: exit %d, stdout %q (want %q), stderr %q", form, code, out, want, errOut)
		}
	}
	if code, _, _ := runHark("version", "extra"); code != 2 {
		t.Errorf("hark version extra: exit %d, want 2", code)
	}
}
