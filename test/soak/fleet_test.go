// Package soak holds long, opt-in runs of many hark processes (`make soak-fleet`); they are
// skipped unless SOAK_FLEET is set, so `go test ./...` only compiles them.
package soak

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/hark-audio/hark/audio"
	"github.com/hark-audio/hark/config"
	"github.com/hark-audio/hark/dgemu"
	"github.com/hark-audio/hark/mqttlink/brokertest"
)

// TestFleetSoak runs SOAK_DEVICES (default 100) hark processes on one mosquitto and one
// emulator limited to 50 concurrent live streams, each hearing quiet room noise with
// occasional speech (sentences of the demo recording, which the emulator transcribes from
// its reference), and checks, as SOAK_RUN selects (comma-separated; default all):
//
//	config:   one `hark fleet set --all` is acknowledged by every device and persisted;
//	restart:  the broker restarts while devices speak: every device comes back (peak
//	          connections accepted per second from mosquitto's log), no transcript is
//	          lost or repeated;
//	overload: every device speaks at once, twice the stream limit: each utterance is
//	          published exactly once, live or through the spool.
//
// It reports per-process CPU and RSS and the broker's message rate (t.Log and
// SOAK_REPORT, a file). SOAK_HARK_BIN and SOAK_DGEMU_BIN name the binaries (default: built here).
func TestFleetSoak(t *testing.T) {
	if os.Getenv("SOAK_FLEET") == "" {
		t.Skip("fleet soak is opt-in: make soak-fleet (SOAK_FLEET=1)")
	}
	n := envInt("SOAK_DEVICES", 100)
	parts := map[string]bool{}
	for _, p := range strings.Split(os.Getenv("SOAK_RUN"), ",") {
		if p = strings.TrimSpace(p); p != "" {
			parts[p] = true
		}
	}
	run := func(p string) bool { return len(parts) == 0 || parts[p] }
	root, _ := filepath.Abs(filepath.Join("..", ".."))
	harkBin, dgemuBin := binary(t, root, "SOAK_HARK_BIN", "hark"), binary(t, root, "SOAK_DGEMU_BIN", "dgemu")
	rep := &report{t: t}
	defer rep.write(os.Getenv("SOAK_REPORT"))
	rep.add("devices: %d hark processes (%s), one mosquitto, dgemu --max-streams 50", n, harkBin)

	broker := brokertest.StartConfig(t, brokertest.Config{Extra: "sys_interval 1\nmax_queued_messages 100000\n"})
	emuURL := startEmulator(t, dgemuBin, root)
	demo := loadDemo(t, root)
	col := newCollector(t, broker.URL())

	keyFile := filepath.Join(t.TempDir(), "key")
	os.WriteFile(keyFile, []byte("soak-key\n"), 0o600)
	devs := make([]*device, n)
	start := time.Now()
	for i := range devs {
		devs[i] = startDevice(t, harkBin, fmt.Sprintf("soak%03d", i), i, broker.URL(), emuURL, keyFile, demo)
	}
	col.waitOnline(t, devs, start, 5*time.Minute)
	rep.add("all %d online %.1f s after start", n, time.Since(start).Seconds())

	// Idle with occasional speech: a tenth of the devices speak, spread over the window.
	window := time.Duration(envInt("SOAK_WINDOW_S", 60)) * time.Second
	cpu0, at0 := cpuTimes(devs), time.Now()
	msg0 := col.sys()
	for i := 0; i < n; i += 10 {
		devs[i].say(demo, i%len(demo.lines))
		time.Sleep(window / time.Duration(n/10+1)) // spreading speech over the window, not waiting for it
	}
	if rest := window - time.Since(at0); rest > 0 {
		time.Sleep(rest) // the measurement window itself
	}
	cpu1, at1 := cpuTimes(devs), time.Now()
	msg1 := col.sys()
	rep.resources(devs, cpu0, cpu1, at1.Sub(at0), msg0, msg1)
	col.waitTranscripts(t, devs, 3*time.Minute)

	if run("config") {
		cfg := filepath.Join(t.TempDir(), "fleet.yaml")
		os.WriteFile(cfg, []byte("mqtt:\n  broker: "+broker.URL()+"\n"), 0o600)
		t0 := time.Now()
		cmd := exec.Command("nice", "-n", "10", harkBin, "fleet", "set", "--all", "--json", "--timeout", "120s", "--config", cfg, "deepgram.keyterm=[hark, soak]")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		var res struct {
			Answers []struct{ Device, Status, Error string }
			Failed  int
		}
		json.Unmarshal(out.Bytes(), &res)
		ok := 0
		for _, a := range res.Answers {
			if a.Status == "ok" {
				ok++
			}
		}
		rep.add("config: `hark fleet set --all deepgram.keyterm=[hark, soak]`: %d of %d ok, %d failed, in %.2f s (exit %v)", ok, n, res.Failed, time.Since(t0).Seconds(), err)
		if err != nil || ok != n {
			t.Errorf("fleet set --all: exit %v, %d ok of %d\n%s", err, ok, n, errb.String())
		}
		persisted := 0
		for _, d := range devs {
			b, _ := os.ReadFile(filepath.Join(d.dir, config.RemoteFileName))
			if strings.Contains(string(b), "soak") {
				persisted++
			}
		}
		rep.add("config: persisted by %d of %d", persisted, n)
		if persisted != n {
			t.Errorf("persisted by %d of %d", persisted, n)
		}
	}

	if run("restart") {
		// Speech before, during and after a 10 s outage of the broker.
		for i := 1; i < n; i += 4 {
			devs[i].say(demo, 0)
		}
		outage := time.Now()
		broker.Stop(t)
		for i := 2; i < n; i += 4 {
			devs[i].say(demo, 1)
		}
		time.Sleep(10 * time.Second) // the outage's length is the scenario, not a wait for an event
		logBefore := len(broker.Log())
		broker.Restart(t)
		back := time.Now()
		col.waitOnline(t, devs, back, 5*time.Minute)
		rep.add("restart: broker down %.1f s; all %d online again %.1f s after it restarted", back.Sub(outage).Seconds(), n, time.Since(back).Seconds())
		for i := 3; i < n; i += 4 {
			devs[i].say(demo, 2)
		}
		col.waitTranscripts(t, devs, 5*time.Minute)
		peak, secs := connectionsPerSecond(broker.Log()[logBefore:])
		rep.add("restart: connections accepted per second after the restart (mosquitto log): peak %d, per second %v", peak, secs)
	}

	if run("overload") {
		t0 := time.Now()
		for i := range devs {
			devs[i].say(demo, 3)
		}
		col.waitTranscripts(t, devs, 10*time.Minute)
		rep.add("overload: %d devices speaking at once against 50 streams: all published in %.1f s", n, time.Since(t0).Seconds())
	}

	lost, repeated, live, spool := col.check(devs)
	rep.add("transcripts: %d spoken, %d published (%d live, %d spool), %d lost, %d repeated", spokenTotal(devs), live+spool, live, spool, lost, repeated)
	if lost+repeated > 0 {
		t.Errorf("%d transcripts lost, %d repeated", lost, repeated)
	}
	if h := col.refusals(t, broker.URL()); h >= 0 {
		rep.add("stream refusals (429), sum of uplink.refusals in each device's last health message (every 10 s, so a lower bound): %.0f", h)
	}
	for _, d := range devs {
		d.stop()
	}
}

type report struct {
	t     *testing.T
	lines []string
}

func (r *report) add(format string, a ...any) {
	l := fmt.Sprintf(format, a...)
	r.lines = append(r.lines, l)
	r.t.Log(l)
}

func (r *report) write(path string) {
	if path != "" {
		os.WriteFile(path, []byte(strings.Join(r.lines, "\n")+"\n"), 0o644)
	}
}

func (r *report) resources(devs []*device, c0, c1 []time.Duration, wall time.Duration, m0, m1 [2]float64) {
	var pct []float64
	var rss []float64
	for i, d := range devs {
		pct = append(pct, 100*float64(c1[i]-c0[i])/float64(wall))
		rss = append(rss, float64(rssBytes(d.cmd.Process.Pid))/(1<<20))
	}
	sort.Float64s(pct)
	sort.Float64s(rss)
	sum := 0.0
	for _, p := range pct {
		sum += p
	}
	r.add("resources over %.0f s of quiet with occasional speech: CPU per process median %.2f%% (min %.2f, max %.2f) of one core, all %d together %.1f%%; RSS median %.1f MiB (min %.1f, max %.1f)",
		wall.Seconds(), pct[len(pct)/2], pct[0], pct[len(pct)-1], len(devs), sum, rss[len(rss)/2], rss[0], rss[len(rss)-1])
	r.add("broker: %.1f messages/s received, %.1f messages/s sent (mosquitto $SYS/broker/messages/{received,sent} over the window)",
		(m1[0]-m0[0])/wall.Seconds(), (m1[1]-m0[1])/wall.Seconds())
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func binary(t *testing.T, root, env, name string) string {
	if p := os.Getenv(env); p != "" {
		abs, _ := filepath.Abs(p)
		return abs
	}
	out := filepath.Join(t.TempDir(), name)
	cmd := exec.Command("go", "build", "-o", out, "./cmd/"+name)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", name, err, b)
	}
	return out
}

func startEmulator(t *testing.T, bin, root string) string {
	ready := filepath.Join(t.TempDir(), "url")
	cmd := exec.Command("nice", "-n", "5", bin, "--addr", "127.0.0.1:0", "--max-streams", "50",
		"--reference", filepath.Join(root, "testdata", "demo", "sample.wav"), "--ready-file", ready)
	var logb bytes.Buffer
	cmd.Stderr = &logb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(ready); err == nil {
			return strings.TrimSpace(string(b))
		}
		if time.Now().After(deadline) {
			t.Fatalf("dgemu did not start: %s", logb.String())
		}
		time.Sleep(50 * time.Millisecond) // polling the ready file, dgemu's readiness signal
	}
}

type demo struct {
	samples []int16
	spans   []dgemu.ReferenceSpan
	lines   []string
	noise   []byte // one second of quiet room noise, about -60 dBFS
}

func loadDemo(t *testing.T, root string) *demo {
	dir := filepath.Join(root, "testdata", "demo")
	ref, err := dgemu.LoadReference(filepath.Join(dir, "sample.wav"), filepath.Join(dir, "sample.json"))
	if err != nil {
		t.Fatal(err)
	}
	d := &demo{samples: ref.Samples, spans: ref.Spans}
	for _, s := range ref.Spans {
		d.lines = append(d.lines, s.Text)
	}
	r := rand.New(rand.NewPCG(1, 2))
	noise := make([]int16, audio.SampleRate)
	for i := range noise {
		noise[i] = int16(r.IntN(61) - 30)
	}
	d.noise = audio.AppendPCM(nil, noise)
	return d
}

// sentence is sentence i with 0.6 s of lead-in and tail.
func (d *demo) sentence(i int) []byte {
	sp := d.spans[i]
	a, b := int(max(0, sp.Start-0.6)*audio.SampleRate), int((sp.End+0.6)*audio.SampleRate)
	return audio.AppendPCM(nil, d.samples[a:min(b, len(d.samples))])
}

type device struct {
	id    string
	dir   string
	cmd   *exec.Cmd
	speak chan int
	done  chan struct{}

	mu     sync.Mutex
	spoken []string
}

func startDevice(t *testing.T, bin, id string, i int, broker, emuURL, keyFile string, d *demo) *device {
	dir := t.TempDir()
	cfg := "device_id: " + id + "\nstate_dir: " + dir + "\n" +
		"capture:\n  input: \"-\"\n  realtime: true\n" +
		"deepgram:\n  url: " + emuURL + "\n  api_key_file: " + keyFile + "\n  idle_close: 10s\n" +
		"remote:\n  enabled: true\n" +
		"mqtt:\n  broker: " + broker + "\n  health_interval: 10s\n" + groups(i) +
		"log:\n  level: warn\n"
	file := filepath.Join(dir, "hark.yaml")
	os.WriteFile(file, []byte(cfg), 0o600)
	dev := &device{id: id, dir: dir, speak: make(chan int, 16), done: make(chan struct{})}
	dev.cmd = exec.Command("nice", "-n", "10", bin, "run", "--config", file)
	dev.cmd.Stdout = io.Discard
	logf, _ := os.Create(filepath.Join(dir, "hark.log"))
	dev.cmd.Stderr = logf
	stdin, err := dev.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := dev.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dev.stop()
		dev.cmd.Process.Kill()
		dev.cmd.Wait()
		logf.Close()
	})
	// The feeder: quiet noise, and a sentence when asked. Writes block on the pipe while
	// hark reads in real time, which paces them.
	go func() {
		defer stdin.Close()
		for {
			var b []byte
			select {
			case <-dev.done:
				return
			case s := <-dev.speak:
				b = d.sentence(s)
			default:
				b = d.noise
			}
			if _, err := stdin.Write(b); err != nil {
				return
			}
		}
	}()
	return dev
}

// groups puts device i in one of ten groups; SOAK_GROUPS=0 leaves the key out, for a
// baseline build that predates it.
func groups(i int) string {
	if os.Getenv("SOAK_GROUPS") == "0" {
		return ""
	}
	return "  groups: [g" + strconv.Itoa(i%10) + "]\n"
}

func (d *device) say(dm *demo, i int) {
	d.mu.Lock()
	d.spoken = append(d.spoken, dm.lines[i])
	d.mu.Unlock()
	d.speak <- i
}

func (d *device) stop() {
	select {
	case <-d.done:
	default:
		close(d.done)
	}
}

func spokenTotal(devs []*device) int {
	n := 0
	for _, d := range devs {
		d.mu.Lock()
		n += len(d.spoken)
		d.mu.Unlock()
	}
	return n
}

// cpuTimes reads each process's user+system CPU time from /proc.
func cpuTimes(devs []*device) []time.Duration {
	out := make([]time.Duration, len(devs))
	for i, d := range devs {
		// The hark process is nice's child... nice execs, so the pid is hark's.
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", d.cmd.Process.Pid))
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		out[i] = time.Duration(ut+st) * time.Second / 100 // USER_HZ
	}
	return out
}

func rssBytes(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

var newConn = regexp.MustCompile(`^(\d\d:\d\d:\d\d): New connection from`)

// connectionsPerSecond counts mosquitto's "New connection from" lines per second.
func connectionsPerSecond(log string) (int, []int) {
	counts := map[string]int{}
	var order []string
	for _, l := range strings.Split(log, "\n") {
		if m := newConn.FindStringSubmatch(l); m != nil {
			if counts[m[1]] == 0 {
				order = append(order, m[1])
			}
			counts[m[1]]++
		}
	}
	peak := 0
	var secs []int
	for _, s := range order {
		secs = append(secs, counts[s])
		peak = max(peak, counts[s])
	}
	return peak, secs
}

// collector is the controller: a persistent session on the broker that records every
// transcript and availability change, and the broker's $SYS message counters.
type collector struct {
	c mqtt.Client

	mu       sync.Mutex
	online   map[string]time.Time // last "online" seen per device
	got      map[string][]utt
	received float64
	sent     float64
	health   map[string]float64 // uplink.refusals per device
	changed  chan struct{}
}

type utt struct {
	Text   string `json:"text"`
	Seq    int64  `json:"seq"`
	Source string `json:"source"`
}

func newCollector(t *testing.T, url string) *collector {
	col := &collector{online: map[string]time.Time{}, got: map[string][]utt{}, health: map[string]float64{}, changed: make(chan struct{}, 1)}
	o := mqtt.NewClientOptions().AddBroker(url).SetClientID("soak-controller").SetCleanSession(false).
		SetAutoReconnect(true).SetMaxReconnectInterval(time.Second).SetOrderMatters(false).
		SetDefaultPublishHandler(col.onMessage).
		SetOnConnectHandler(func(c mqtt.Client) {
			c.SubscribeMultiple(map[string]byte{"hark/+/transcript": 1, "hark/+/availability": 1, "hark/+/health": 0,
				"$SYS/broker/messages/received": 0, "$SYS/broker/messages/sent": 0}, nil)
		})
	col.c = mqtt.NewClient(o)
	if tok := col.c.Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatalf("controller connect: %v", tok.Error())
	}
	t.Cleanup(func() { col.c.Disconnect(100) })
	return col
}

func (c *collector) onMessage(_ mqtt.Client, m mqtt.Message) {
	parts := strings.Split(m.Topic(), "/")
	c.mu.Lock()
	defer c.mu.Unlock()
	defer func() {
		select {
		case c.changed <- struct{}{}:
		default:
		}
	}()
	switch {
	case m.Topic() == "$SYS/broker/messages/received":
		c.received, _ = strconv.ParseFloat(string(m.Payload()), 64)
	case m.Topic() == "$SYS/broker/messages/sent":
		c.sent, _ = strconv.ParseFloat(string(m.Payload()), 64)
	case len(parts) == 3 && parts[2] == "availability":
		if string(m.Payload()) == "online" {
			c.online[parts[1]] = time.Now()
		}
	case len(parts) == 3 && parts[2] == "transcript":
		var u utt
		if json.Unmarshal(m.Payload(), &u) == nil {
			c.got[parts[1]] = append(c.got[parts[1]], u)
		}
	case len(parts) == 3 && parts[2] == "health":
		var h struct {
			Uplink struct {
				Refusals float64 `json:"refusals"`
			} `json:"uplink"`
		}
		if json.Unmarshal(m.Payload(), &h) == nil {
			c.health[parts[1]] = h.Uplink.Refusals
		}
	}
}

func (c *collector) sys() [2]float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return [2]float64{c.received, c.sent}
}

func (c *collector) wait(t *testing.T, what string, timeout time.Duration, done func() (bool, string)) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		ok, state := done()
		if ok {
			return
		}
		select {
		case <-c.changed:
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("%s not reached within %s: %s", what, timeout, state)
		}
	}
}

// waitOnline waits until every device said "online" after since (the retained message
// replayed at subscription counts when it was published after since: it is delivered now).
func (c *collector) waitOnline(t *testing.T, devs []*device, since time.Time, timeout time.Duration) {
	c.wait(t, "all devices online", timeout, func() (bool, string) {
		c.mu.Lock()
		defer c.mu.Unlock()
		var missing []string
		for _, d := range devs {
			if !c.online[d.id].After(since) {
				missing = append(missing, d.id)
			}
		}
		return len(missing) == 0, fmt.Sprintf("%d not online: %v", len(missing), missing[:min(len(missing), 10)])
	})
}

// waitTranscripts waits until every device published at least as many transcripts as it
// was given sentences.
func (c *collector) waitTranscripts(t *testing.T, devs []*device, timeout time.Duration) {
	c.wait(t, "every sentence transcribed", timeout, func() (bool, string) {
		c.mu.Lock()
		defer c.mu.Unlock()
		short := 0
		for _, d := range devs {
			d.mu.Lock()
			if len(c.got[d.id]) < len(d.spoken) {
				short++
			}
			d.mu.Unlock()
		}
		return short == 0, fmt.Sprintf("%d devices still short of transcripts", short)
	})
}

// check compares what each device published with what it heard: a sentence missing is
// lost, one more than spoken (or a seq seen twice) repeated.
func (c *collector) check(devs []*device) (lost, repeated, live, spool int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range devs {
		d.mu.Lock()
		want := slices.Clone(d.spoken)
		d.mu.Unlock()
		seqs := map[int64]bool{}
		count := map[string]int{}
		for _, u := range c.got[d.id] {
			if seqs[u.Seq] {
				repeated++
				continue
			}
			seqs[u.Seq] = true
			count[u.Text]++
			if u.Source == "spool" {
				spool++
			} else {
				live++
			}
		}
		for _, w := range want {
			if count[w] > 0 {
				count[w]--
			} else {
				lost++
			}
		}
		for _, extra := range count {
			repeated += extra
		}
	}
	return lost, repeated, live, spool
}

func (c *collector) refusals(t *testing.T, _ string) float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	sum := 0.0
	for _, v := range c.health {
		sum += v
	}
	return sum
}
