// Package systemd holds hark's systemd unit; this test checks it: `systemd-analyze verify`
// finds nothing to complain about, `systemd-analyze security --offline=yes` scores it at
// most 1.5, and the settings hark's code and packaging depend on are present.
package systemd

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hark-audio/hark/agent"
)

const unitFile = "hark.service"

// maxExposure is the highest acceptable `systemd-analyze security` score.
const maxExposure = 1.5

// parseUnit returns section → key → values (repeated keys keep every value).
func parseUnit(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if strings.HasPrefix(line, "[") {
			section = strings.Trim(line, "[]")
			out[section] = map[string][]string{}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("bad line %q", line)
		}
		out[section][k] = append(out[section][k], v)
	}
	return out
}

func TestUnitSettings(t *testing.T) {
	u := parseUnit(t, unitFile)
	s := u["Service"]
	one := func(k string) string {
		t.Helper()
		if len(s[k]) != 1 {
			t.Fatalf("%s: %q, want exactly one value", k, s[k])
		}
		return s[k][0]
	}
	want := map[string]string{
		"Type":                   "notify", // hark sends READY=1 (internal/service)
		"NotifyAccess":           "main",
		"ExecStart":              "/usr/bin/hark run --config /etc/hark/hark.yaml",
		"ExecReload":             "/bin/kill -HUP $MAINPID",
		"Restart":                "on-failure",
		"User":                   "hark",
		"StateDirectory":         "hark",
		"ConfigurationDirectory": "hark",
		"DevicePolicy":           "closed",
		"DeviceAllow":            "char-alsa rw",
		"UMask":                  "0077",
		"NoNewPrivileges":        "yes",
		"ProtectSystem":          "strict",
		"RestrictRealtime":       "yes",
		"MemoryDenyWriteExecute": "yes",
	}
	for k, v := range want {
		if got := one(k); got != v {
			t.Errorf("%s=%s, want %s", k, got, v)
		}
	}
	if ws := one("WatchdogSec"); ws == "" || ws == "0" || ws == "infinity" {
		t.Errorf("WatchdogSec=%q: the progress watchdog needs one", ws)
	}
	// hark's own stop budget fits the stop timeout with room for the exit (a stop that
	// overran it was SIGKILLed and, with a file input, restarted and replayed); start-up
	// does not wait for a microphone, so a hanging start may fail.
	stop, err := time.ParseDuration(one("TimeoutStopSec"))
	if err != nil || stop < agent.StopBudget+3*time.Second {
		t.Errorf("TimeoutStopSec=%s: want at least agent.StopBudget (%s) + 3 s", one("TimeoutStopSec"), agent.StopBudget)
	}
	if ts := one("TimeoutStartSec"); ts == "infinity" || ts == "0" {
		t.Errorf("TimeoutStartSec=%s: READY does not wait for a device, so the start must be bounded", ts)
	}
	// The credentials the daemon reads (config.Secret's credential names), from the
	// placeholder files the package installs.
	creds := s["LoadCredential"]
	for _, c := range []string{"deepgram-api-key:/etc/hark/credentials/deepgram-api-key", "mqtt-password:/etc/hark/credentials/mqtt-password"} {
		if !slices.Contains(creds, c) {
			t.Errorf("LoadCredential=%s missing (have %q)", c, creds)
		}
	}
	for _, c := range creds {
		name, path, _ := strings.Cut(c, ":")
		if b, err := os.ReadFile(filepath.Join("..", "packaging", "credentials", filepath.Base(path))); err != nil {
			t.Errorf("credential %s: the package ships no placeholder for %s: %v", name, path, err)
		} else if strings.TrimSpace(string(b)) != "" {
			t.Errorf("placeholder for %s is not empty", name)
		}
	}
	// miniaudio creates its capture thread with an explicit scheduling policy: denying
	// @resources (sched_setscheduler) would make pthread_create fail.
	for _, f := range s["SystemCallFilter"] {
		if strings.HasPrefix(f, "~") && strings.Contains(f, "@resources") {
			t.Errorf("SystemCallFilter=%s breaks miniaudio's thread creation", f)
		}
	}
	// Audio access comes from the hark user's membership of `audio`; PrivateUsers= would
	// hide that group inside the service.
	if v := s["PrivateUsers"]; len(v) > 0 && v[len(v)-1] != "no" {
		t.Errorf("PrivateUsers=%s", v)
	}
	if got := u["Install"]["WantedBy"]; !slices.Equal(got, []string{"multi-user.target"}) {
		t.Errorf("WantedBy=%q", got)
	}
}

func systemdAnalyze(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("systemd-analyze not installed (scripts/install-test-deps.sh installs it)")
		}
		t.Skip("systemd-analyze not installed")
	}
	return p
}

func TestUnitVerify(t *testing.T) {
	sa := systemdAnalyze(t)
	// verify insists that ExecStart's binary exists: check a copy pointing at one that does.
	b, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	exe, err := exec.LookPath("true")
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(t.TempDir(), unitFile)
	body := strings.Replace(string(b), "ExecStart=/usr/bin/hark ", "ExecStart="+exe+" ", 1)
	if err := os.WriteFile(copyPath, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", "--man=no", copyPath).CombinedOutput()
	// verify exits 0 on unknown keys and unparsable values, only printing them: any output
	// is a failure.
	if err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

var exposureRE = regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)

func TestUnitSecurityScore(t *testing.T) {
	sa := systemdAnalyze(t)
	out, err := exec.Command(sa, "security", "--offline=yes", "--no-pager", unitFile).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := exposureRE.FindSubmatch(out)
	if m == nil {
		t.Fatalf("no score in:\n%s", out)
	}
	score, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("exposure %.1f", score)
	if score > maxExposure {
		var bad []string
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, "✗") {
				bad = append(bad, l)
			}
		}
		t.Fatalf("exposure %.1f > %.1f; open items:\n%s", score, maxExposure, strings.Join(bad, "\n"))
	}
}
