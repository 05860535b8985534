package mqttlink

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/hark-audio/hark/mqttlink/brokertest"
)

// TestStaleRetainedCleared: the retained topics a device published and no longer publishes
// are cleared at its next connection (Home Assistant removes an entity whose discovery
// config is emptied): all discovery configs when discovery is turned off, and everything
// under the old names when the device is renamed. The record survives a restart (it is a
// file in the state directory).
func TestStaleRetainedCleared(t *testing.T) {
	checkLeaks(t)
	b := brokertest.Start(t)
	record := filepath.Join(t.TempDir(), "mqtt-announced.json")
	o := testOptions(t, b.URL())
	o.Discovery, o.AnnouncedFile = true, record
	node := "hark_" + InstanceID(o.TopicPrefix, o.DeviceID)
	base := o.TopicPrefix + "/" + o.DeviceID
	c := startClient(t, o)
	awaitConn(t, c)
	c.SetState(map[string]string{"pipeline": "running"})
	discovered := func(node string) map[string]msg {
		return retainedSnapshot(t, b.URL(), "homeassistant/+/"+node+"/+/config", subOpts{})
	}
	waitRetained := func(filter string, ok func(map[string]msg) bool) map[string]msg {
		t.Helper()
		for range 200 { // the client publishes asynchronously after connecting
			if got := retainedSnapshot(t, b.URL(), filter, subOpts{}); ok(got) {
				return got
			}
		}
		t.Fatalf("retained messages under %s never reached the expected state", filter)
		return nil
	}
	waitRetained("homeassistant/+/"+node+"/+/config", func(m map[string]msg) bool { return len(m) == len(c.disc) })
	waitRetained(base+"/state", func(m map[string]msg) bool { return len(m) == 1 })
	closeClient(t, c)

	// Discovery turned off: every entity's config is emptied, the device's own topics stay.
	o.Discovery = false
	c = startClient(t, o)
	awaitConn(t, c)
	c.SetState(map[string]string{"pipeline": "running"})
	waitRetained("homeassistant/#", func(m map[string]msg) bool { return len(m) == 0 })
	if got := retainedSnapshot(t, b.URL(), base+"/#", subOpts{}); got[base+"/availability"].payload != "online" {
		t.Fatalf("the device's own retained topics went too: %v", got)
	}
	closeClient(t, c)

	// Back on, under a new device id: the old device's topics are cleared, the new one's
	// entities announced.
	o.Discovery, o.DeviceID = true, o.DeviceID+"-renamed"
	c = startClient(t, o)
	awaitConn(t, c)
	newNode := "hark_" + InstanceID(o.TopicPrefix, o.DeviceID)
	waitRetained("homeassistant/+/"+newNode+"/+/config", func(m map[string]msg) bool { return len(m) == len(c.disc) })
	waitRetained(base+"/#", func(m map[string]msg) bool { return len(m) == 0 })
	if n := len(discovered(node)); n != 0 {
		t.Fatalf("%d discovery configs of the old name remain", n)
	}
	closeClient(t, c)
	if got, err := readAnnounced(record); err != nil || len(got) != len(c.disc)+4 || !strings.Contains(strings.Join(got, " "), newNode) {
		t.Fatalf("record %v, %v", got, err)
	}
}
