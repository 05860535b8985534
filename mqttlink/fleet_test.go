package mqttlink

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hark-audio/hark/mqttlink/brokertest"
)

func TestParseBrokers(t *testing.T) {
	for _, tc := range []struct {
		in   string
		urls []string
		err  string
	}{
		{"mqtt://a", []string{"mqtt://a:1883"}, ""},
		{"mqtt://a:1884, tcp://b ,", []string{"mqtt://a:1884", "tcp://b:1883"}, ""},
		{"mqtts://a,ssl://b:8884", []string{"mqtts://a:8883", "ssl://b:8884"}, ""},
		{"mqtt://a,mqtts://b", nil, "mixes TLS and plain"},
		{"mqtt://a,localhost:1883", nil, "URL 2 of 2: not a broker URL"},
		{"mqtt://a,mqtt://a:1883", nil, "URL 2 of 2 repeats mqtt://a:1883"},
		{"mqtt://a,mqtt://u:secret@b", nil, "must not carry credentials"},
		{" , ", nil, "not a broker URL"},
		{"tcp://::1", nil, "not an IPv6 address"},
	} {
		bs, err := ParseBrokers(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "secret") {
				t.Errorf("ParseBrokers(%q) = %v, %v; want error with %q", tc.in, bs, err, tc.err)
			}
			continue
		}
		if err != nil || len(bs) != len(tc.urls) {
			t.Errorf("ParseBrokers(%q) = %v, %v", tc.in, bs, err)
			continue
		}
		for i, b := range bs {
			if b.URL != tc.urls[i] {
				t.Errorf("ParseBrokers(%q)[%d] = %s, want %s", tc.in, i, b.URL, tc.urls[i])
			}
		}
	}
	var many []string
	for i := range MaxBrokers + 1 {
		many = append(many, "mqtt://h"+string(rune('a'+i)))
	}
	if _, err := ParseBrokers(strings.Join(many, ",")); err == nil || !strings.Contains(err.Error(), "more than the limit") {
		t.Errorf("%d URLs: %v", len(many), err)
	}
}

func TestReservedID(t *testing.T) {
	for id, want := range map[string]bool{"fleet": true, "group": true, "Fleet": true, "fleets": false, "kitchen": false} {
		if ReservedID(id) != want {
			t.Errorf("ReservedID(%q) = %v", id, !want)
		}
	}
	o := testOptions(t, "mqtt://127.0.0.1")
	o.DeviceID = "group"
	if _, err := New(o); err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Errorf("New with device id group: %v", err)
	}
}

// TestFleetAndGroupRequests: a device takes requests sent to the whole fleet and to its
// groups (not to other groups), answers each on its own response topic with the request's
// transaction, refuses a retained one with the topic to clear, and ignores zero-byte
// messages there.
func TestFleetAndGroupRequests(t *testing.T) {
	checkLeaks(t)
	b := brokertest.Start(t)
	o := testOptions(t, b.URL())
	o.Groups = []string{"kitchen", "floor1"}
	base := o.TopicPrefix + "/" + o.DeviceID
	calls := make(chan string, 10)
	o.Handler = func(_ context.Context, op string, body []byte) (any, error) {
		calls <- op + " " + string(body)
		return map[string]string{"op": op}, nil
	}
	c := startClient(t, o)
	awaitConn(t, c)
	s := subscribe(t, b.URL(), map[string]byte{base + "/response/#": 1}, subOpts{})

	s.publish(t, o.TopicPrefix+"/fleet/request/config/get", 1, false, `{"transaction":"f1"}`)
	checkResponse(t, []byte(s.nextOn(t, base+"/response/config/get").payload), "ok", "", `"f1"`)
	if got := <-calls; got != `config/get {"transaction":"f1"}` {
		t.Fatalf("fleet request handled as %q", got)
	}
	s.publish(t, o.TopicPrefix+"/group/garage/request/mute", 1, false, `{"transaction":"other"}`)
	s.publish(t, o.TopicPrefix+"/group/floor1/request/mute", 1, false, "")
	s.publish(t, o.TopicPrefix+"/group/floor1/request/mute", 1, false, `{"transaction":"g1","muted":true}`)
	checkResponse(t, []byte(s.nextOn(t, base+"/response/mute").payload), "ok", "", `"g1"`)
	if got := <-calls; got != `mute {"transaction":"g1","muted":true}` {
		t.Fatalf("group request handled as %q (another group's, or the empty message, got through)", got)
	}
	// Retained on a group topic: refused at the next connection, naming that topic.
	topic := o.TopicPrefix + "/group/kitchen/request/mute"
	s.publish(t, topic, 1, true, `{"transaction":"r1","muted":true}`)
	checkResponse(t, []byte(s.nextOn(t, base+"/response/mute").payload), "ok", "", `"r1"`)
	<-calls
	closeClient(t, c)
	c = startClient(t, o)
	checkResponse(t, []byte(s.nextOn(t, base+"/response/mute").payload), "error", "mosquitto_pub -r -n -t '"+topic+"'", `"r1"`)
	s.publish(t, topic, 1, true, "")
	select {
	case got := <-calls:
		t.Fatalf("retained group request reached the handler: %q", got)
	default:
	}
	if st := c.Stats(); st.Requests != 1 {
		t.Fatalf("requests counted after restart: %d, want 1 (the refused retained one)", st.Requests)
	}
}

// TestFailoverBetweenBrokers: with two broker URLs the client connects to the first, moves
// to the second when the first dies, says which one it is on (Stats().Broker), and
// delivers transcripts queued meanwhile.
func TestFailoverBetweenBrokers(t *testing.T) {
	checkLeaks(t)
	b1, b2 := brokertest.Start(t), brokertest.Start(t)
	o := testOptions(t, b1.URL()+","+b2.URL())
	base := o.TopicPrefix + "/" + o.DeviceID
	c := startClient(t, o)
	awaitConn(t, c)
	if st := c.Stats(); st.Broker != b1.URL() || st.ConnectAttempts < 1 {
		t.Fatalf("connected to %q after %d attempts, want %s", st.Broker, st.ConnectAttempts, b1.URL())
	}
	s2 := subscribe(t, b2.URL(), map[string]byte{base + "/transcript": 1, base + "/availability": 1}, subOpts{})
	b1.Kill(t)
	for i := uint64(1); i <= 5; i++ {
		if err := c.PublishTranscript(utterance(i)); err != nil {
			t.Fatal(err)
		}
	}
	collectSeqs(t, s2, base+"/transcript", 1, seqRange(1, 5))
	deadline := time.Now().Add(waitFor)
	for c.Stats().Broker != b2.URL() {
		if time.Now().After(deadline) {
			t.Fatalf("Stats().Broker = %q after the failover, want %s", c.Stats().Broker, b2.URL())
		}
		time.Sleep(10 * time.Millisecond) // the stats have no change signal
	}
	if m := s2.nextOn(t, base+"/availability"); m.payload != "online" {
		t.Fatalf("availability on the second broker: %q", m.payload)
	}
}

// FuzzParseBrokers: whatever the list, ParseBrokers never panics, never repeats a
// credential in its error, and what it accepts is non-empty, bounded, duplicate-free and
// all TLS or all plain, each URL accepted again by ParseBroker as it is.
func FuzzParseBrokers(f *testing.F) {
	for _, s := range []string{"mqtt://a", "mqtt://a,mqtts://b", "mqtt://u:pw-secret@a,mqtt://b", " , ,", "ws://h/p?x=1,ws://h/q", "tcp://[::1]:1,tcp://[::1]:2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		bs, err := ParseBrokers(s)
		if err != nil {
			if strings.Contains(s, "pw-secret") && strings.Contains(err.Error(), "pw-secret") {
				t.Fatalf("error repeats the credential: %v", err)
			}
			return
		}
		if len(bs) == 0 || len(bs) > MaxBrokers {
			t.Fatalf("%d brokers accepted", len(bs))
		}
		seen := map[string]bool{}
		for _, b := range bs {
			if b.TLS != bs[0].TLS || seen[b.URL] {
				t.Fatalf("accepted %v", bs)
			}
			seen[b.URL] = true
			again, err := ParseBroker(b.URL)
			if err != nil || again != b {
				t.Fatalf("%s parses again as %v, %v", b.URL, again, err)
			}
		}
	})
}
