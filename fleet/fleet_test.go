package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hark-audio/hark/mqttlink"
	"github.com/hark-audio/hark/mqttlink/brokertest"
)

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		filter, topic string
		want          bool
	}{
		{"a/+/b", "a/x/b", true}, {"a/+/b", "a/x/c", false}, {"a/#", "a/x/y", true},
		{"a/+", "a/x/y", false}, {"a/b", "a/b", true}, {"a/+/b", "a/b", false},
	} {
		if got := match(tc.filter, tc.topic); got != tc.want {
			t.Errorf("match(%q, %q) = %v", tc.filter, tc.topic, got)
		}
	}
}

func TestTargetCheck(t *testing.T) {
	for _, tc := range []struct {
		t  Target
		ok bool
	}{
		{Target{Device: "k"}, true}, {Target{Group: "g"}, true}, {Target{All: true}, true},
		{Target{}, false}, {Target{Device: "k", All: true}, false}, {Target{Device: "a/b"}, false},
		{Target{Group: "#"}, false}, {Target{Device: "fleet"}, false},
	} {
		if err := tc.t.check(); (err == nil) != tc.ok {
			t.Errorf("%+v: %v", tc.t, err)
		}
	}
}

// fakeDevice is a real mqttlink client (what the daemon uses) answering requests with
// handler, its retained config listing groups.
func fakeDevice(t *testing.T, url, id string, groups []string, handler mqttlink.Handler) *mqttlink.Client {
	t.Helper()
	c, err := mqttlink.New(mqttlink.Options{Broker: url, TopicPrefix: "ft", DeviceID: id, Groups: groups,
		QueueDir: t.TempDir(), Handler: handler, ConnectRetryInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(map[string]any{"mqtt": map[string]any{"groups": groups}})
	c.SetConfig(cfg)
	c.PublishHealth(map[string]any{"at": "2026-12-05T08:00:00.000Z", "version": "v-" + id, "cpu_pct": 1.5, "rss_bytes": 1 << 20,
		"mqtt": map[string]any{"broker": url, "queue_entries": 2}})
	c.SetState(map[string]any{"pipeline": "running", "uplink": map[string]any{"state": "idle"}, "spool": map[string]any{"entries": 3}})
	c.Start(context.Background())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c.Close(ctx)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.AwaitConnection(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestListAndRequest: the table from the retained topics, and a request to a group
// answered by its members only, with an error answer, a silent member reported as no
// answer, and answers to other transactions ignored.
func TestListAndRequest(t *testing.T) {
	b := brokertest.Start(t)
	ok := func(_ context.Context, op string, body []byte) (any, error) { return map[string]string{"op": op}, nil }
	bad := func(context.Context, string, []byte) (any, error) {
		return nil, errors.New("vad.threshold_db: out of range")
	}
	block := make(chan struct{})
	defer close(block)
	silent := func(ctx context.Context, _ string, _ []byte) (any, error) {
		select {
		case <-block:
		case <-ctx.Done():
		}
		return nil, nil
	}
	a := fakeDevice(t, b.URL(), "a", []string{"kitchen"}, ok)
	fakeDevice(t, b.URL(), "b", []string{"kitchen", "floor1"}, bad)
	fakeDevice(t, b.URL(), "c", []string{"garage"}, ok)
	fakeDevice(t, b.URL(), "d", []string{"kitchen"}, silent)
	ctx := context.Background()
	conn, err := Connect(ctx, Options{Broker: b.URL(), TopicPrefix: "ft", Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	// The retained health and state are sent after "online": wait for them in the table.
	var devs []Device
	deadline := time.Now().Add(20 * time.Second)
	for {
		if devs, err = conn.List(ctx); err != nil {
			t.Fatal(err)
		}
		if len(devs) == 4 && devs[0].Version != "" && devs[3].Version != "" && devs[0].Pipeline != "" && devs[3].Pipeline != "" && len(devs[3].Groups) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("table never complete: %+v", devs)
		}
		time.Sleep(50 * time.Millisecond) // retained messages have no change signal
	}
	if d := devs[0]; d.ID != "a" || !d.Online() || d.Version != "v-a" || d.Uplink != "idle" || d.Spool != 3 || d.Queue != 2 || d.CPUPercent != 1.5 || d.RSSBytes != 1<<20 || d.Broker != b.URL() {
		t.Fatalf("row a: %+v", d)
	}
	if a.Stats().Requests != 0 {
		t.Fatal("listing sent a request")
	}

	answers, err := conn.Request(ctx, Target{Group: "kitchen"}, "mute", map[string]any{"muted": true}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	g, _ := json.Marshal(answers)
	got := string(g)
	want := `[{"device":"a","status":"ok","data":{"op":"mute"}},{"device":"b","status":"error","error":"vad.threshold_db: out of range"},{"device":"d","status":"no_answer"}]`
	if got != want {
		t.Fatalf("answers\n got %s\nwant %s", got, want)
	}
	// --all reaches c too; d still blocks (its request queue holds the first request).
	answers, err = conn.Request(ctx, Target{All: true}, "config/get", nil, 2*time.Second)
	if err != nil || len(answers) != 4 || answers[2].Device != "c" || answers[2].Status != "ok" {
		t.Fatalf("all: %v, %v", answers, err)
	}
	// A device that does not exist: no answer.
	answers, err = conn.Request(ctx, Target{Device: "zz"}, "config/get", nil, 300*time.Millisecond)
	if err != nil || len(answers) != 1 || answers[0].Status != "no_answer" {
		t.Fatalf("missing device: %v, %v", answers, err)
	}
}

// FuzzParseInto: retained payloads from any device (another version, or anyone able to
// publish under the prefix) never panic the table, whatever the topic leaf.
func FuzzParseInto(f *testing.F) {
	for _, s := range []string{`{"pipeline":"running","uplink":{"state":"idle"},"spool":{"entries":3}}`,
		`{"at":"2026-12-05T08:00:00.000Z","cpu_pct":1.5,"mqtt":{"broker":"mqtt://u:p@h"}}`, `online`, `{"mqtt":{"groups":["a"]}}`, `{"mqtt":{"groups":"a"}}`, ``} {
		f.Add("health", s)
		f.Add("config", s)
	}
	f.Fuzz(func(t *testing.T, leaf, payload string) {
		var d Device
		parseInto(&d, leaf, []byte(payload))
		if strings.Contains(d.Broker, ":p@") {
			t.Fatalf("broker credentials shown: %q", d.Broker)
		}
	})
}
