package mqttlink

import (
	"strings"
	"testing"

	"github.com/hark-audio/hark/mqttlink/brokertest"
)

func TestParseBroker(t *testing.T) {
	for _, tc := range []struct {
		in, url string
		tls     bool
		err     string
	}{
		{"mqtt://127.0.0.1", "mqtt://127.0.0.1:1883", false, ""},
		{"tcp://broker.lan", "tcp://broker.lan:1883", false, ""},
		{"mqtts://broker.example", "mqtts://broker.example:8883", true, ""},
		{"ssl://broker.example", "ssl://broker.example:8883", true, ""},
		{"MQTT://Host:1884", "mqtt://Host:1884", false, ""},
		{"mqtt://[::1]", "mqtt://[::1]:1883", false, ""},
		{"mqtt://host/", "mqtt://host:1883", false, ""},
		{"ws://host/mqtt", "ws://host:80/mqtt", false, ""},
		{"wss://host:9001/mqtt?x=1", "wss://host:9001/mqtt?x=1", true, ""},
		{" mqtt://host ", "mqtt://host:1883", false, ""},
		{"localhost:1883", "", false, "not a broker URL"},
		{"localhost", "", false, "not a broker URL"},
		{"", "", false, "not a broker URL"},
		{"ftp://host", "", false, `scheme "ftp" is not one of`},
		{"mqtt://", "", false, "no host name"},
		{"mqtt://host:", "", false, "port is empty"},
		{"mqtt://host:0", "", false, "not a number from 1 to 65535"},
		{"mqtt://host:99999", "", false, "not a number from 1 to 65535"},
		{"mqtt://host:http", "", false, "not a broker URL"},
		{"mqtt://host/hark/kitchen", "", false, "must not have a path"},
		{"mqtt://u:secret@host", "", false, "must not carry credentials"},
	} {
		b, err := ParseBroker(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseBroker(%q) = %+v, %v; want an error containing %q", tc.in, b, err, tc.err)
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Errorf("ParseBroker(%q): error repeats the password: %v", tc.in, err)
			}
			continue
		}
		if err != nil || b.URL != tc.url || b.TLS != tc.tls {
			t.Errorf("ParseBroker(%q) = %+v, %v; want %q tls=%v", tc.in, b, err, tc.url, tc.tls)
		}
	}
}

// TestMQTTScheme: an mqtt:// URL (as mosquitto_pub -L takes it) connects.
func TestMQTTScheme(t *testing.T) {
	checkLeaks(t)
	b := brokertest.Start(t)
	o := testOptions(t, "mqtt://"+b.Addr())
	awaitConn(t, startClient(t, o))
}
