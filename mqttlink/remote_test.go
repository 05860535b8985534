package mqttlink

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hark-audio/hark/mqttlink/brokertest"
)

// TestRequestsOverBroker sends the table of request payloads through a real broker and
// checks each response on <base>/response/<op>.
func TestRequestsOverBroker(t *testing.T) {
	checkLeaks(t)
	b := brokertest.Start(t)
	o := testOptions(t, b.URL())
	base := o.TopicPrefix + "/" + o.DeviceID
	c := startClient(t, o)
	awaitConn(t, c)
	s := subscribe(t, b.URL(), map[string]byte{base + "/response/#": 1}, subOpts{})
	n := 0
	for _, tc := range requestCases {
		if tc.op == "" || strings.ContainsAny(tc.op, "\xff+#") || len(tc.op) > maxOpBytes || tc.retained || tc.payload == "" {
			continue // not a topic one can publish to, see TestRetainedRequestRefused, or TestEmptyMessageIgnored
		}
		t.Run(tc.name, func(t *testing.T) {
			s.publish(t, base+"/request/"+tc.op, 1, tc.retained, tc.payload)
			m := s.nextOn(t, base+"/response/"+tc.op)
			if m.qos != 1 || m.retained {
				t.Fatalf("response delivered with qos %d retained %v", m.qos, m.retained)
			}
			checkResponse(t, []byte(m.payload), tc.status, tc.errHas, tc.tx)
		})
		n++
	}
	if st := c.Stats(); st.Requests != uint64(n) {
		t.Fatalf("Requests = %d, want %d", st.Requests, n)
	}
}

// TestRetainedRequestRefused: a retained request would be replayed at every connection
// (undoing later changes), so one that arrives with the retain flag is refused, with its
// transaction and the command that clears it, and the handler never sees it. MQTT 3.1.1
// flags only messages replayed at subscription: a retained request published while the
// device is connected is delivered without the flag and runs once (the limit docs/mqtt.md
// states), then is refused at the next connection; once cleared, nothing comes back.
func TestRetainedRequestRefused(t *testing.T) {
	checkLeaks(t)
	b := brokertest.Start(t)
	o := testOptions(t, b.URL())
	base := o.TopicPrefix + "/" + o.DeviceID
	s := subscribe(t, b.URL(), map[string]byte{base + "/response/#": 1}, subOpts{})
	s.publish(t, base+"/request/mute", 1, true, `{"transaction":"old","muted":true}`)
	calls := make(chan string, 10)
	o.Handler = func(_ context.Context, op string, body []byte) (any, error) { calls <- string(body); return nil, nil }
	c := startClient(t, o)
	checkResponse(t, []byte(s.nextOn(t, base+"/response/mute").payload), "error",
		"retained request refused: it would run again at every reconnection. Send requests with retain off, and clear this one: mosquitto_pub -r -n -t '"+base+"/request/mute'", `"old"`)

	// Published retained while connected: delivered live, without the flag, so it runs.
	s.publish(t, base+"/request/echo", 1, true, `{"transaction":"live"}`)
	checkResponse(t, []byte(s.nextOn(t, base+"/response/echo").payload), "ok", "", `"live"`)
	if got := <-calls; got != `{"transaction":"live"}` {
		t.Fatalf("handler got %q", got)
	}
	// At the next connection the broker replays it with the flag: refused.
	closeClient(t, c)
	c = startClient(t, o)
	for range 2 {
		m := s.next(t)
		switch m.topic {
		case base + "/response/mute":
			checkResponse(t, []byte(m.payload), "error", "retained request refused", `"old"`)
		case base + "/response/echo":
			checkResponse(t, []byte(m.payload), "error", "mosquitto_pub -r -n -t '"+base+"/request/echo'", `"live"`)
		default:
			t.Fatalf("unexpected %s %s", m.topic, m.payload)
		}
	}
	// Cleared as the answer says: the next connection brings no request.
	s.publish(t, base+"/request/mute", 1, true, "")
	s.publish(t, base+"/request/echo", 1, true, "")
	closeClient(t, c)
	c = startClient(t, o)
	awaitConn(t, c)
	s.publish(t, base+"/request/echo", 1, false, `{"transaction":"after"}`)
	checkResponse(t, []byte(s.nextOn(t, base+"/response/echo").payload), "ok", "", `"after"`)
	if got := <-calls; got != `{"transaction":"after"}` {
		t.Fatalf("handler got %q after clearing", got)
	}
	select {
	case got := <-calls:
		t.Fatalf("handler called for %q", got)
	default:
	}
}

// TestEmptyMessageIgnored: a zero-byte message on a request topic (what clearing a
// retained request sends to subscribers) is not a request: no handler call, no response.
func TestEmptyMessageIgnored(t *testing.T) {
	checkLeaks(t)
	b := brokertest.Start(t)
	o := testOptions(t, b.URL())
	base := o.TopicPrefix + "/" + o.DeviceID
	calls := make(chan string, 10)
	o.Handler = func(_ context.Context, op string, body []byte) (any, error) { calls <- string(body); return nil, nil }
	c := startClient(t, o)
	awaitConn(t, c)
	s := subscribe(t, b.URL(), map[string]byte{base + "/response/#": 1}, subOpts{})
	s.publish(t, base+"/request/mute", 1, false, "")
	s.publish(t, base+"/request/mute", 1, true, "")
	s.publish(t, base+"/request/mute", 1, false, "ON")
	checkResponse(t, []byte(s.nextOn(t, base+"/response/mute").payload), "ok", "", "")
	if got := <-calls; got != "ON" {
		t.Fatalf("first request handled: %q, want the one after the empty messages", got)
	}
	if st := c.Stats(); st.Requests != 1 {
		t.Fatalf("requests counted: %d", st.Requests)
	}
}

// TestRequestOrderAndBusy: requests run one at a time in arrival order; when the queue is
// full the excess is answered "busy" with its transaction.
func TestRequestOrderAndBusy(t *testing.T) {
	checkLeaks(t)
	b := brokertest.Start(t)
	o := testOptions(t, b.URL())
	base := o.TopicPrefix + "/" + o.DeviceID
	entered := make(chan struct{})
	release := make(chan struct{})
	var order []string
	var running atomic.Int32
	o.Handler = func(ctx context.Context, op string, body []byte) (any, error) {
		if running.Add(1) != 1 {
			t.Error("handler ran concurrently")
		}
		defer running.Add(-1)
		var req struct{ N int }
		json.Unmarshal(body, &req)
		if req.N == 0 {
			close(entered)
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		order = append(order, fmt.Sprint(req.N))
		return map[string]int{"n": req.N}, nil
	}
	c := startClient(t, o)
	awaitConn(t, c)
	s := subscribe(t, b.URL(), map[string]byte{base + "/response/#": 1}, subOpts{})
	s.publish(t, base+"/request/slow", 1, false, `{"transaction":0,"n":0}`)
	<-entered
	// The handler is blocked: requestQueue more fit, the next is refused.
	for i := 1; i <= requestQueue+1; i++ {
		s.publish(t, base+"/request/slow", 1, false, fmt.Sprintf(`{"transaction":%d,"n":%d}`, i, i))
	}
	m := s.nextOn(t, base+"/response/slow")
	checkResponse(t, []byte(m.payload), "error", "busy", fmt.Sprint(requestQueue+1))
	close(release)
	for i := 0; i <= requestQueue; i++ {
		m := s.nextOn(t, base+"/response/slow")
		checkResponse(t, []byte(m.payload), "ok", "", fmt.Sprint(i))
	}
	if st := c.Stats(); st.RequestsBusy != 1 || st.Requests != requestQueue+2 {
		t.Fatalf("stats %+v", st)
	}
	closeClient(t, c)
	if got := strings.Join(order, ","); got != "0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16" {
		t.Fatalf("handled in order %s", got)
	}
}

// TestLastWill: a client process that dies without a word (SIGKILL) leaves availability
// "offline", retained, by its last will.
func TestLastWill(t *testing.T) {
	if url := os.Getenv("HARK_MQTTLINK_LWT_CHILD"); url != "" {
		lwtChild(url)
		return
	}
	checkLeaks(t)
	b := brokertest.Start(t)
	device := fmt.Sprintf("lwt%d", time.Now().UnixNano())
	base := "harktest/" + device
	s := subscribe(t, b.URL(), map[string]byte{base + "/availability": 1}, subOpts{})

	cmd := exec.Command(os.Args[0], "-test.run=^TestLastWill$")
	cmd.Env = append(os.Environ(), "HARK_MQTTLINK_LWT_CHILD="+b.URL(), "HARK_MQTTLINK_LWT_DEVICE="+device,
		"HARK_MQTTLINK_LWT_QUEUE="+t.TempDir())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "connected" {
				ready <- nil
				return
			}
		}
		ready <- fmt.Errorf("child ended without connecting: %v", sc.Err())
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitFor):
		cmd.Process.Kill()
		t.Fatal("child did not connect")
	}
	if m := s.nextOn(t, base+"/availability"); m.payload != "online" {
		t.Fatalf("child availability %+v", m)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if m := s.nextOn(t, base+"/availability"); m.payload != "offline" {
		t.Fatalf("after SIGKILL: %+v", m)
	}
	got := retainedSnapshot(t, b.URL(), base+"/availability", subOpts{})
	if m := got[base+"/availability"]; m.payload != "offline" || !m.retained {
		t.Fatalf("fresh subscriber sees %+v, want retained offline", m)
	}
}

// lwtChild runs in the re-executed test binary: connect, say so, wait to be killed.
func lwtChild(url string) {
	c, err := New(Options{Broker: url, TopicPrefix: "harktest", DeviceID: os.Getenv("HARK_MQTTLINK_LWT_DEVICE"),
		QueueDir: os.Getenv("HARK_MQTTLINK_LWT_QUEUE"), ConnectRetryInterval: 100 * time.Millisecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	c.Start(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := c.AwaitConnection(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Println("connected")
	<-ctx.Done() // killed long before
	os.Exit(3)
}

// TestDiscovery checks the discovery payloads and that they are sent again when Home
// Assistant announces itself online.
func TestDiscovery(t *testing.T) {
	checkLeaks(t)
	b := brokertest.Start(t)
	o := testOptions(t, b.URL())
	o.Discovery = true
	base := o.TopicPrefix + "/" + o.DeviceID
	node := "hark_" + InstanceID(o.TopicPrefix, o.DeviceID)
	s := subscribe(t, b.URL(), map[string]byte{"homeassistant/+/" + node + "/+/config": 1}, subOpts{})
	c := startClient(t, o)
	awaitConn(t, c)

	first := map[string]map[string]any{}
	for len(first) < len(c.disc) {
		m := s.next(t)
		var cfg map[string]any
		if err := json.Unmarshal([]byte(m.payload), &cfg); err != nil {
			t.Fatalf("%s: %v", m.topic, err)
		}
		first[m.topic] = cfg
	}
	for topic, cfg := range first {
		dev, _ := cfg["device"].(map[string]any)
		if ids, _ := dev["identifiers"].([]any); len(ids) != 1 || ids[0] != node || dev["sw_version"] != "1.2.3-test" {
			t.Errorf("%s: device block %v", topic, dev)
		}
		if cfg["availability_topic"] != base+"/availability" || cfg["payload_available"] != "online" ||
			cfg["payload_not_available"] != "offline" {
			t.Errorf("%s: availability %v", topic, cfg)
		}
		if uid, _ := cfg["unique_id"].(string); !strings.HasPrefix(uid, node+"_") || !strings.HasSuffix(topic, "/"+strings.TrimPrefix(uid, node+"_")+"/config") {
			t.Errorf("%s: unique_id %q", topic, uid)
		}
	}
	sw := first["homeassistant/switch/"+node+"/mute/config"]
	if sw["command_topic"] != base+"/request/mute" || sw["payload_on"] != "ON" || sw["payload_off"] != "OFF" ||
		sw["state_topic"] != base+"/state" || !strings.Contains(fmt.Sprint(sw["value_template"]), "value_json.muted") {
		t.Errorf("mute switch %v", sw)
	}
	if bs := first["homeassistant/binary_sensor/"+node+"/speech/config"]; bs["state_topic"] != base+"/state" ||
		!strings.Contains(fmt.Sprint(bs["value_template"]), "value_json.speech") {
		t.Errorf("speech sensor %v", bs)
	}
	if lv := first["homeassistant/sensor/"+node+"/level/config"]; lv["state_topic"] != base+"/health" ||
		lv["unit_of_measurement"] != "dBFS" || !strings.Contains(fmt.Sprint(lv["value_template"]), "level_dbfs") {
		t.Errorf("level sensor %v", lv)
	}
	if tr := first["homeassistant/sensor/"+node+"/transcript/config"]; tr["state_topic"] != base+"/transcript" ||
		!strings.Contains(fmt.Sprint(tr["value_template"]), "[:250]") || tr["json_attributes_topic"] != base+"/transcript" {
		t.Errorf("transcript sensor %v", tr)
	}

	s.publish(t, "homeassistant/status", 1, false, "online")
	again := map[string]bool{}
	for len(again) < len(c.disc) {
		again[s.next(t).topic] = true
	}
	for topic := range first {
		if !again[topic] {
			t.Errorf("%s not re-sent after homeassistant/status online", topic)
		}
	}
}

// TestMuteCommandFromHA: what HA's switch publishes is handled as a "mute" request.
func TestMuteCommandFromHA(t *testing.T) {
	checkLeaks(t)
	b := brokertest.Start(t)
	o := testOptions(t, b.URL())
	o.Discovery = true
	base := o.TopicPrefix + "/" + o.DeviceID
	got := make(chan string, 1)
	o.Handler = func(_ context.Context, op string, body []byte) (any, error) {
		got <- op + " " + string(body)
		return map[string]bool{"muted": true}, nil
	}
	c := startClient(t, o)
	awaitConn(t, c)
	var sw map[string]any
	json.Unmarshal(c.disc[0].payload, &sw)
	s := subscribe(t, b.URL(), map[string]byte{base + "/response/mute": 1}, subOpts{})
	s.publish(t, sw["command_topic"].(string), 1, false, sw["payload_on"].(string))
	select {
	case g := <-got:
		if g != "mute ON" {
			t.Fatalf("handler got %q", g)
		}
	case <-time.After(waitFor):
		t.Fatal("mute command not handled")
	}
	checkResponse(t, []byte(s.nextOn(t, base+"/response/mute").payload), "ok", "", "")
}
