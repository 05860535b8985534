package mqttlink

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hark-audio/hark/mqttlink/brokertest"
)

// Issue 12 item 8: a request flood while the handler is busy is logged once, then
// counted (the project's Repeater), not one WARN line per refused request.
func TestBusyFloodLoggedOnce(t *testing.T) {
	checkLeaks(t)
	b := brokertest.Start(t)
	o := testOptions(t, b.URL())
	lb := &logBuffer{}
	o.Logger = testLoggerTo(lb)
	base := o.TopicPrefix + "/" + o.DeviceID
	entered, release := make(chan struct{}), make(chan struct{})
	o.Handler = func(ctx context.Context, op string, body []byte) (any, error) {
		if strings.Contains(string(body), `"n":0}`) {
			close(entered)
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return nil, nil
	}
	c := startClient(t, o)
	awaitConn(t, c)
	s := subscribe(t, b.URL(), map[string]byte{base + "/response/#": 1}, subOpts{})
	s.publish(t, base+"/request/slow", 1, false, `{"transaction":0,"n":0}`)
	<-entered
	const flood = 200
	for i := 1; i <= requestQueue+flood; i++ {
		s.publish(t, base+"/request/slow", 1, false, fmt.Sprintf(`{"transaction":%d,"n":%d}`, i, i))
	}
	for i := 0; i < flood; i++ { // every refused request is answered "busy"
		s.nextOn(t, base+"/response/slow")
	}
	close(release)
	for i := 0; i <= requestQueue; i++ {
		s.nextOn(t, base+"/response/slow")
	}
	if st := c.Stats(); st.RequestsBusy != flood {
		t.Fatalf("requests_busy %d, want %d", st.RequestsBusy, flood)
	}
	closeClient(t, c)
	if n := strings.Count(lb.String(), "handler busy"); n < 1 || n > 2 {
		t.Fatalf("%d log lines about the busy handler for %d refusals, want the first and a recovery:\n%s", n, flood, lb.String())
	}
}

// Issue 12 item 9: corrupt entries of the disk queue are not dropped silently: the log
// says which file was dropped and why.
func TestCorruptQueueEntryLogged(t *testing.T) {
	checkLeaks(t)
	b := brokertest.Start(t)
	o := testOptions(t, b.URL())
	lb := &logBuffer{}
	o.Logger = testLoggerTo(lb)
	for seq, body := range map[uint64]string{1: `{"seq":1,"text":"kept"}`, 2: `{"torn`, 3: `{"seq":3}`} {
		if err := os.WriteFile(filepath.Join(o.QueueDir, fmt.Sprintf("%020d%s", seq, queueSuffix)), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	base := o.TopicPrefix + "/" + o.DeviceID
	s := subscribe(t, b.URL(), map[string]byte{base + "/transcript": 1}, subOpts{})
	c := startClient(t, o)
	awaitConn(t, c)
	if m := s.nextOn(t, base+"/transcript"); !strings.Contains(m.payload, `"kept"`) {
		t.Fatalf("first transcript %q", m.payload)
	}
	s.nextOn(t, base+"/transcript") // seq 3: the corrupt one between was dropped
	closeClient(t, c)
	logs := lb.String()
	if !strings.Contains(logs, "00000000000000000002.json") || !strings.Contains(logs, "level=WARN") {
		t.Fatalf("the dropped entry is not named in the log:\n%s", logs)
	}
}
