package mqttlink

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hark-audio/hark/mqttlink/brokertest"
)

func TestInstanceID(t *testing.T) {
	valid := regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	seen := map[string]string{}
	for _, pd := range [][2]string{
		{"hark", "kitchen"}, {"site1", "kitchen"}, {"site2", "kitchen"}, {"site/1", "kitchen"}, {"site-1", "kitchen"},
		{"hark", "site1_kitchen"}, {"site1", "kitchen_2"}, {"site1_kitchen", "2"}, {"a b", "x"}, {"a+b", "x"}, {"home/hark", "pi"},
	} {
		id := InstanceID(pd[0], pd[1])
		if !valid.MatchString(id) {
			t.Errorf("InstanceID(%q, %q) = %q: not a valid Home Assistant node id", pd[0], pd[1], id)
		}
		if prev, dup := seen[id]; dup {
			t.Errorf("InstanceID(%q, %q) = %q, the same as for %s", pd[0], pd[1], id, prev)
		}
		seen[id] = pd[0] + "/" + pd[1]
	}
	if got := InstanceID("hark", "kitchen"); got != "kitchen" {
		t.Errorf("default prefix: %q, want the device id (the ids hark always had)", got)
	}
	if got := InstanceID("site1", "kitchen"); !strings.HasPrefix(got, "site1_kitchen_") {
		t.Errorf("other prefix: %q, want it readable", got)
	}
}

// TestSameDeviceIDTwoPrefixes: kitchen under hark/ and kitchen under site2/ are two devices:
// with the default client ids both stay connected (each on its first connection after the
// other connected and delivered), and their Home Assistant entities do not overwrite each
// other (distinct discovery topics, unique_ids and device identifiers).
func TestSameDeviceIDTwoPrefixes(t *testing.T) {
	checkLeaks(t)
	b := brokertest.Start(t)
	oa, ob := testOptions(t, b.URL()), testOptions(t, b.URL())
	oa.TopicPrefix, ob.TopicPrefix = "hark", "site2"
	oa.DeviceID, ob.DeviceID = "kitchen", "kitchen"
	oa.Discovery, ob.Discovery = true, true
	s := subscribe(t, b.URL(), map[string]byte{"+/kitchen/transcript": 1}, subOpts{})
	hs := subscribe(t, b.URL(), map[string]byte{"homeassistant/#": 1}, subOpts{})
	a := startClient(t, oa)
	awaitConn(t, a)
	bc := startClient(t, ob)
	awaitConn(t, bc)
	// With a shared client id the broker cut a off when bc connected: a could then only
	// deliver on a second connection.
	for i, c := range []*Client{a, bc} {
		if err := c.PublishTranscript(utterance(uint64(i + 1))); err != nil {
			t.Fatal(err)
		}
		s.nextOn(t, c.Base()+"/transcript")
	}
	if sa, sb := a.Stats(), bc.Stats(); sa.Connects != 1 || sb.Connects != 1 {
		t.Fatalf("connections: %d and %d, want 1 each (client ids %q and %q)", sa.Connects, sb.Connects, a.o.ClientID, bc.o.ClientID)
	}
	// Discovery goes out on its own path after each connection: wait until the broker has
	// passed every topic on (a snapshot taken at once raced it), then read what it retains.
	// Topics that collide never add up to the count, and the wait fails.
	for seen := map[string]bool{}; len(seen) < len(a.disc)+len(bc.disc); {
		seen[hs.next(t).topic] = true
	}
	disc := retainedSnapshot(t, b.URL(), "homeassistant/#", subOpts{})
	if len(disc) != len(a.disc)+len(bc.disc) {
		t.Fatalf("%d discovery topics retained, want %d (%d each): entities overwrite each other", len(disc), len(a.disc)+len(bc.disc), len(a.disc))
	}
	uids, devs := map[string]bool{}, map[string]bool{}
	for topic, m := range disc {
		var cfg struct {
			UniqueID string `json:"unique_id"`
			Device   struct {
				Identifiers []string `json:"identifiers"`
			} `json:"device"`
		}
		if err := json.Unmarshal([]byte(m.payload), &cfg); err != nil {
			t.Fatalf("%s: %v", topic, err)
		}
		if uids[cfg.UniqueID] {
			t.Errorf("unique_id %q used twice", cfg.UniqueID)
		}
		uids[cfg.UniqueID] = true
		devs[strings.Join(cfg.Device.Identifiers, ",")] = true
	}
	if len(devs) != 2 {
		t.Errorf("device identifiers %v, want two devices", devs)
	}
}

// TestClientIDTakenOver: two clients configured with the same client id knock each other
// off the broker; paho only says "EOF", so the pattern (connections cut right after they
// are made, again and again) is recognised and said once, in words, and in the stats.
func TestClientIDTakenOver(t *testing.T) {
	checkLeaks(t)
	b := brokertest.Start(t)
	logs := []*logBuffer{{}, {}}
	var clients []*Client
	for i := range 2 {
		o := testOptions(t, b.URL())
		o.ClientID = "hark-same"
		o.Logger = testLoggerTo(logs[i])
		clients = append(clients, startClient(t, o))
	}
	const said = "another client is probably connected with the same client id"
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(logs[0].String()+logs[1].String(), said) {
		if time.Now().After(deadline) {
			t.Fatalf("the takeover was never recognised:\n%s\n%s", logs[0].String(), logs[1].String())
		}
		time.Sleep(20 * time.Millisecond) // polling the clients' logs
	}
	for i, c := range clients {
		l := logs[i].String()
		if strings.Contains(l, said) && !strings.Contains(c.Stats().LastError, said) {
			t.Errorf("client %d: stats last_error %q", i, c.Stats().LastError)
		}
		if n := strings.Count(l, `level=WARN msg="connection to broker lost`); n > 2 {
			t.Errorf("client %d logged %d connection losses at WARN; the storm should be logged once:\n%s", i, n, l)
		}
	}
	t.Logf("client 0 log:\n%s", logs[0].String())
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	for _, c := range clients {
		c.Close(ctx)
	}
}
