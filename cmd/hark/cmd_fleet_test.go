package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hark-audio/hark/config"
	"github.com/hark-audio/hark/dgemu"
	"github.com/hark-audio/hark/mqttlink/brokertest"
)

// fleetDevice starts `hark run` with the null capture backend as device id, in groups,
// and returns its state directory.
func fleetDevice(t *testing.T, broker *brokertest.Broker, emu *dgemu.Server, id string, groups string) string {
	t.Helper()
	dir := t.TempDir()
	key := filepath.Join(dir, "key")
	os.WriteFile(key, []byte("k"), 0o600)
	file := filepath.Join(dir, "hark.yaml")
	body := "device_id: " + id + "\nstate_dir: " + dir + "\ncapture:\n  backend: \"null\"\n" +
		"deepgram:\n  url: " + emu.URL() + "\n  api_key_file: " + key + "\n" +
		"remote:\n  enabled: true\n" +
		"mqtt:\n  broker: " + broker.URL() + "\n  topic_prefix: fleettest\n  health_interval: 1s\n  groups: [" + groups + "]\n"
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd, _, _ := harkProcess(t, nil, "run", "--config", file)
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	return dir
}

// TestFleetCommand runs `hark fleet` against three real hark daemons on mosquitto: the
// table, a change sent to a group (answered and persisted by its members only), a change
// to all that every device refuses (exit 1 with each reason), a sensitive key refused,
// get of one key, mute, a device that does not exist (no answer, exit 1), watch, usage.
func TestFleetCommand(t *testing.T) {
	broker := brokertest.Start(t)
	emu := dgemu.NewServer(dgemu.Config{})
	defer emu.Close()
	dirs := map[string]string{
		"k1": fleetDevice(t, broker, emu, "k1", "kitchen"),
		"k2": fleetDevice(t, broker, emu, "k2", "kitchen, floor1"),
		"g1": fleetDevice(t, broker, emu, "g1", "garage"),
	}
	cfg := filepath.Join(t.TempDir(), "fleet.yaml")
	os.WriteFile(cfg, []byte("mqtt:\n  broker: "+broker.URL()+"\n  topic_prefix: fleettest\n"), 0o600)
	t.Setenv("HARK_CONFIG", cfg)

	// ls: wait until all three have published their health (they start in parallel).
	var ls struct {
		Broker  string `json:"broker"`
		Devices []struct {
			Device       string   `json:"device"`
			Availability string   `json:"availability"`
			Uplink       string   `json:"uplink"`
			HealthAt     string   `json:"health_at"`
			RSS          int64    `json:"rss_bytes"`
			Groups       []string `json:"groups"`
		} `json:"devices"`
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, out, errOut := runHark("fleet", "ls", "--json")
		if code != 0 {
			t.Fatalf("fleet ls: exit %d: %s", code, errOut)
		}
		ls.Devices = nil
		if err := json.Unmarshal([]byte(out), &ls); err != nil {
			t.Fatalf("fleet ls --json: %v\n%s", err, out)
		}
		ready := 0
		for _, d := range ls.Devices {
			if d.Availability == "online" && d.HealthAt != "" && d.RSS > 0 && d.Uplink != "" {
				ready++
			}
		}
		if ready == 3 && len(ls.Devices) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fleet ls never showed 3 devices online with health: %s", out)
		}
		time.Sleep(200 * time.Millisecond) // polling the retained state, which has no change signal
	}
	if ls.Broker != broker.URL() {
		t.Errorf("ls broker %q, want %s", ls.Broker, broker.URL())
	}
	code, out, _ := runHark("fleet", "ls")
	if code != 0 || !strings.Contains(out, "DEVICE") || !strings.Contains(out, "3 devices, 3 online") || !strings.Contains(out, "k2") {
		t.Fatalf("fleet ls: exit %d\n%s", code, out)
	}

	// A group change: answered by its two members, persisted in their state directories.
	code, out, errOut := runHark("fleet", "set", "--group", "kitchen", "vad.threshold_db=7.5", "--json")
	var res struct {
		Answers []struct {
			Device, Status, Error string
		} `json:"answers"`
		Failed int `json:"failed"`
	}
	if err := json.Unmarshal([]byte(out), &res); code != 0 || err != nil || len(res.Answers) != 2 || res.Failed != 0 {
		t.Fatalf("fleet set --group kitchen: exit %d, %v\n%s\n%s", code, err, out, errOut)
	}
	for _, a := range res.Answers {
		if a.Status != "ok" || (a.Device != "k1" && a.Device != "k2") {
			t.Fatalf("answer %+v", a)
		}
		b, err := os.ReadFile(filepath.Join(dirs[a.Device], config.RemoteFileName))
		if err != nil || !strings.Contains(string(b), "threshold_db: 7.5") {
			t.Fatalf("%s: persisted %q, %v", a.Device, b, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dirs["g1"], config.RemoteFileName)); err == nil {
		t.Fatal("g1 is not in the group but persisted the change")
	}

	// get of one key, across the fleet.
	code, out, errOut = runHark("fleet", "get", "--all", "vad.threshold_db")
	if code != 0 || strings.Count(out, " ok ") != 3 || strings.Count(out, "7.5") != 2 {
		t.Fatalf("fleet get --all vad.threshold_db: exit %d\n%s\n%s", code, out, errOut)
	}

	// Refused everywhere, with the reason, exit 1: a bad value, then a sensitive key.
	code, out, errOut = runHark("fleet", "set", "--all", "vad.threshold_db=-3")
	if code != 1 || strings.Count(out, " error ") != 3 || !strings.Contains(out, "vad.threshold_db") || !strings.Contains(errOut, "3 of 3 devices failed") {
		t.Fatalf("fleet set of a bad value: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, _ = runHark("fleet", "set", "--device", "g1", "mqtt.broker=mqtt://elsewhere")
	if code != 1 || !strings.Contains(out, "remote.allow") {
		t.Fatalf("fleet set of a sensitive key: exit %d\n%s", code, out)
	}

	code, out, errOut = runHark("fleet", "mute", "--device", "g1", "on")
	if code != 0 || !strings.Contains(out, "g1") || !strings.Contains(out, `{"muted":true}`) {
		t.Fatalf("fleet mute: exit %d\n%s\n%s", code, out, errOut)
	}

	code, out, _ = runHark("fleet", "get", "--device", "ghost", "--timeout", "500ms")
	if code != 1 || !strings.Contains(out, "ghost") || !strings.Contains(out, "no answer") {
		t.Fatalf("fleet get of a missing device: exit %d\n%s", code, out)
	}

	// watch: follows the events of every device (k1 muted and unmuted until watch shows
	// it; it has no "subscribed" signal to wait for).
	watchOut := &syncBuffer{}
	var watchErr bytes.Buffer
	done := make(chan int)
	go func() { done <- Main([]string{"fleet", "watch", "--json", "--for", "8s"}, watchOut, &watchErr) }()
	seen := false
	for i := 0; !seen && i < 20; i++ {
		runHark("fleet", "mute", "--device", "k1", []string{"on", "off"}[i%2])
		seen = strings.Contains(watchOut.String(), `"device":"k1","kind":"event"`)
	}
	if c := <-done; c != 0 {
		t.Fatalf("watch exit %d: %s", c, watchErr.String())
	}
	if !seen || !strings.Contains(watchOut.String(), `muted`) {
		t.Fatalf("watch did not show k1's mute events:\n%s", watchOut.String())
	}

	// Usage.
	if code, out, _ := runHark("fleet", "--help"); code != 0 || !strings.Contains(out, "watch") {
		t.Fatalf("fleet --help: exit %d\n%s", code, out)
	}
	if code, out, _ := runHark("fleet", "set", "--help"); code != 0 || !strings.Contains(out, "--timeout") && !strings.Contains(out, "-timeout") {
		t.Fatalf("fleet set --help: exit %d\n%s", code, out)
	}
	for _, args := range [][]string{{"fleet", "set", "a=1"}, {"fleet", "mute", "--all", "maybe"}, {"fleet", "get", "--all", "--device", "x"}, {"fleet", "frob"}} {
		if code, _, _ := runHark(args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

func TestParseSetArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // JSON, or "error"
	}{
		{[]string{"vad.threshold_db=7"}, `{"vad":{"threshold_db":7}}`},
		{[]string{"deepgram.keyterm=[a, b]", "deepgram.model=nova-3", "mqtt.discovery=false"}, `{"deepgram":{"keyterm":["a","b"],"model":"nova-3"},"mqtt":{"discovery":false}}`},
		{[]string{"deepgram.extra={tag: x=y}"}, `{"deepgram":{"extra":{"tag":"x=y"}}}`},
		{[]string{"capture.device="}, `{"capture":{"device":""}}`},
		{[]string{`{"vad": {"threshold_db": 6}}`}, `{"vad":{"threshold_db":6}}`},
		{[]string{`{"vad": `}, "error"},
		{[]string{"novalue"}, "error"},
		{[]string{"=1"}, "error"},
		{[]string{"a=1", "a=2"}, "error"},
		{[]string{"a=1", "a.b=2"}, "error"},
		{[]string{"a=[1"}, "error"},
		{nil, "error"},
	} {
		m, err := parseSetArgs(tc.args)
		got := "error"
		if err == nil {
			b, _ := json.Marshal(m)
			got = string(b)
		}
		if got != tc.want {
			t.Errorf("parseSetArgs(%q) = %s (%v), want %s", tc.args, got, err, tc.want)
		}
	}
}
