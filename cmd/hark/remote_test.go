package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/hark-audio/hark/dgemu"
	"github.com/hark-audio/hark/mqttlink/brokertest"
)

// TestReloadAndRemoteChangeInOrder: a SIGHUP reload and an MQTT config/set sent at the same
// moment, over and over, to a running hark: after each pair the running configuration holds
// both the file's new value and the remote one. Each used to read, modify and adopt the
// configuration on its own, so one could overwrite the other.
func TestReloadAndRemoteChangeInOrder(t *testing.T) {
	broker := brokertest.Start(t)
	emu := dgemu.NewServer(dgemu.Config{})
	defer emu.Close()
	dir := t.TempDir()
	key := filepath.Join(dir, "key")
	os.WriteFile(key, []byte("k"), 0o600)
	file := filepath.Join(dir, "hark.yaml")
	writeConfig := func(tag string) {
		body := "device_id: order\nstate_dir: " + dir + "\ncapture:\n  backend: \"null\"\n" +
			"deepgram:\n  url: " + emu.URL() + "\n  api_key_file: " + key + "\n  tag: [" + tag + "]\n" +
			"mqtt:\n  broker: " + broker.URL() + "\n"
		if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig("file-0")

	base := "hark/order"
	msgs := make(chan mqtt.Message, 1000)
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker.URL()).SetClientID("order-watcher").
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) { msgs <- m }))
	if tok := c.Connect(); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer c.Disconnect(100)
	if tok := c.SubscribeMultiple(map[string]byte{base + "/response/#": 1, base + "/event": 1, base + "/state": 1}, nil); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	next := func(what string, ok func(mqtt.Message) bool) mqtt.Message {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			select {
			case m := <-msgs:
				if ok(m) {
					return m
				}
			case <-deadline:
				t.Fatalf("no %s within 30 s", what)
			}
		}
	}
	field := func(m mqtt.Message, path string) any {
		var v any
		json.Unmarshal(m.Payload(), &v)
		for _, k := range strings.Split(path, ".") {
			mm, _ := v.(map[string]any)
			v = mm[k]
		}
		return v
	}
	cmd, _, _ := harkProcess(t, nil, "run", "--config", file)
	next("running state", func(m mqtt.Message) bool { return m.Topic() == base+"/state" && field(m, "pipeline") == "running" })

	for i := 1; i <= 25; i++ {
		writeConfig(fmt.Sprintf("file-%d", i))
		cmd.Process.Signal(syscall.SIGHUP)
		c.Publish(base+"/request/config/set", 1, false, fmt.Sprintf(`{"transaction":%d,"config":{"deepgram":{"keyterm":["remote-%d"]}}}`, i, i))
		gotReload, gotResponse := false, false
		for !gotReload || !gotResponse {
			m := next("reload event and config/set response", func(m mqtt.Message) bool {
				return m.Topic() == base+"/response/config/set" || m.Topic() == base+"/event" && field(m, "type") == "config_changed" && field(m, "source") == "reload"
			})
			if m.Topic() == base+"/event" {
				gotReload = true
				continue
			}
			if field(m, "status") != "ok" || field(m, "transaction") != float64(i) {
				t.Fatalf("config/set %d answered %s", i, m.Payload())
			}
			gotResponse = true
		}
		c.Publish(base+"/request/config/get", 1, false, fmt.Sprintf(`{"transaction":"get-%d"}`, i))
		m := next("config/get response", func(m mqtt.Message) bool { return m.Topic() == base+"/response/config/get" })
		tag := fmt.Sprint(field(m, "data.config.deepgram.tag"))
		keyterm := fmt.Sprint(field(m, "data.config.deepgram.keyterm"))
		if tag != fmt.Sprintf("[file-%d]", i) || keyterm != fmt.Sprintf("[remote-%d]", i) {
			t.Fatalf("round %d: running configuration has tag %s and keyterm %s: a change was lost", i, tag, keyterm)
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("hark exited with %v", err)
	}
}
