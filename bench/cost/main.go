// Command cost measures what hark costs to run: CPU time (user + system, the whole
// process, all threads) per second of audio and peak RSS, idle and streaming, next to the
// official Deepgram Go SDK client streaming the same file in the same run. `make bench-cost`
// builds the binaries and runs it; BENCHMARKS.md holds the figures and how to read them.
//
// Scenarios (each run starts every binary under test at the same time, so they share the
// machine's conditions; runs are repeated and reported as median and range):
//
//   - version: `hark version`, many times: start-up cost of every command;
//   - vad: `hark vad noise.wav --csv`: the VAD and gate alone, process start included;
//   - idle-file: `hark run` on 60 s of quiet room noise paced in real time, MQTT on
//     (a real mosquitto), the emulator as Deepgram; next to it the floor, this program
//     waking on hark's 100 ms timerfd schedule for as long and doing nothing else;
//   - idle-null: `hark run` capturing from miniaudio's null backend (silence) for -seconds;
//   - idle-pulse: `hark run` capturing the monitor of a PulseAudio null sink into which the
//     room noise is played, for -seconds;
//   - stream: `hark run` on the 10-sentence speech file in real time with MQTT, and
//     sdkstream (test/sdk/cmd/sdkstream: the SDK client writing every frame of the same file
//     in real time) at the same time, each against its own emulator.
//
// CPU comes from the kernel's accounting of each child (wait4 rusage: user + system time,
// peak RSS, context switches, page faults). "steady" is the CPU of the running daemon alone:
// the sum of /proc/PID/task/*/schedstat between 5 s after READY ("hark running") and just
// before the end, divided by that wall time, so start-up and shutdown are left out.
//
//	go run ./bench/cost -hark bin/hark -baseline /tmp/hark-old -runs 3
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/hark-audio/hark/internal/pace"
)

type options struct {
	hark, baseline, dgemu, sdk string
	inputs, script, logs       string
	runs, versionRuns          int
	seconds                    time.Duration
	scenarios                  map[string]bool
}

func main() {
	var o options
	var scen string
	flag.StringVar(&o.hark, "hark", "bin/hark", "hark binary under test")
	flag.StringVar(&o.baseline, "baseline", "", "a second hark binary measured side by side (e.g. the previous build)")
	flag.StringVar(&o.dgemu, "dgemu", "bin/dgemu", "emulator binary")
	flag.StringVar(&o.sdk, "sdk", "bin/sdkstream", "SDK streaming client (test/sdk/cmd/sdkstream)")
	flag.StringVar(&o.inputs, "inputs", "bin/bench-cost", "directory of the generated inputs")
	flag.StringVar(&o.script, "make-inputs", "bench/cost/make-inputs.sh", "input generator")
	flag.StringVar(&o.logs, "logs", "", "keep each hark run's log in this directory")
	flag.IntVar(&o.runs, "runs", 3, "repetitions of each scenario")
	flag.IntVar(&o.versionRuns, "version-runs", 100, "`hark version` runs per repetition")
	flag.DurationVar(&o.seconds, "seconds", 60*time.Second, "length of the device captures (idle-null, idle-pulse)")
	flag.StringVar(&scen, "scenarios", "version,vad,idle-file,idle-null,idle-pulse,stream", "scenarios to run")
	floor := flag.Duration("tick-floor", 0, "internal: only wake every 100 ms for this long (the floor measured next to idle-file)")
	flag.Parse()
	if *floor > 0 {
		if err := tickFloor(*floor); err != nil {
			fmt.Fprintln(os.Stderr, "bench-cost:", err)
			os.Exit(1)
		}
		return
	}
	o.scenarios = map[string]bool{}
	for _, s := range strings.Split(scen, ",") {
		o.scenarios[strings.TrimSpace(s)] = true
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench-cost:", err)
		os.Exit(1)
	}
}

// bin is one binary under test.
type bin struct{ label, path string }

func run(o options) error {
	gen := exec.Command(o.script, o.inputs)
	gen.Stdout, gen.Stderr = os.Stderr, os.Stderr
	if err := gen.Run(); err != nil {
		return fmt.Errorf("make inputs: %w", err)
	}
	bins := []bin{{"hark", o.hark}}
	if o.baseline != "" {
		bins = append([]bin{{"baseline", o.baseline}}, bins...)
	}
	for _, b := range bins {
		if _, err := os.Stat(b.path); err != nil {
			return err
		}
	}
	work, err := os.MkdirTemp("", "hark-bench-cost-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	env := &bench{o: o, work: work, in: o.inputs}

	needBroker := o.scenarios["idle-file"] || o.scenarios["stream"]
	if needBroker {
		stop, err := env.startBroker()
		if err != nil {
			return err
		}
		defer stop()
	}
	if o.scenarios["idle-pulse"] {
		stop, err := env.startPulse()
		if err != nil {
			fmt.Fprintln(os.Stderr, "idle-pulse skipped:", err)
			delete(o.scenarios, "idle-pulse")
		} else {
			defer stop()
		}
	}
	fmt.Fprintf(os.Stderr, "machine: %d CPUs, load %s\n", runtime.NumCPU(), loadavg())

	res := map[string][]sample{} // key: scenario/label
	add := func(s sample) { res[s.scenario+"/"+s.label] = append(res[s.scenario+"/"+s.label], s) }
	for r := 1; r <= o.runs; r++ {
		fmt.Fprintf(os.Stderr, "run %d of %d (load %s)\n", r, o.runs, loadavg())
		if o.scenarios["version"] {
			for _, b := range bins {
				s, err := env.version(b)
				if err != nil {
					return err
				}
				add(s)
			}
		}
		if o.scenarios["vad"] {
			for _, b := range bins {
				s, err := env.vad(b)
				if err != nil {
					return err
				}
				add(s)
			}
		}
		for _, sc := range []string{"idle-file", "idle-null", "idle-pulse", "stream"} {
			if !o.scenarios[sc] {
				continue
			}
			ss, err := env.daemons(sc, bins)
			if err != nil {
				return fmt.Errorf("%s: %w", sc, err)
			}
			for _, s := range ss {
				fmt.Fprintf(os.Stderr, "  %-10s %-8s %s\n", s.scenario, s.label, s.line())
				add(s)
			}
		}
	}
	report(os.Stdout, o, bins, res)
	return nil
}

// sample is one measured process (or, for version, the mean of many).
type sample struct {
	scenario, label string
	cpu             time.Duration // user + system
	audio           float64       // seconds of audio (or runs, for version)
	maxRSSKB        int64
	csw             int64 // voluntary + involuntary context switches
	minflt          int64
	steadyCPU       time.Duration
	steadyWall      time.Duration
	note            string
}

func (s sample) perAudio() float64 { return float64(s.cpu) / 1e6 / s.audio } // ms per audio second
func (s sample) steady() float64 {
	if s.steadyWall <= 0 {
		return -1
	}
	return float64(s.steadyCPU) / float64(s.steadyWall) * 1e3 // ms per second
}

func (s sample) line() string {
	if s.scenario == "version" {
		return fmt.Sprintf("%.2f ms CPU per run, %d page faults, peak RSS %.1f MB", s.perAudio(), s.minflt, float64(s.maxRSSKB)/1024)
	}
	steady := ""
	if s.steadyWall > 0 {
		steady = fmt.Sprintf(" (steady %.3f)", s.steady())
	}
	return fmt.Sprintf("%.3f ms CPU per audio s%s, peak RSS %.1f MB, %.1f context switches per s %s",
		s.perAudio(), steady, float64(s.maxRSSKB)/1024, float64(s.csw)/s.audio, s.note)
}

type bench struct {
	o          options
	work, in   string
	brokerPort int
	pulseEnv   []string
	seq        int

	countMu sync.Mutex
	counts  map[string]int // transcripts published per device id
}

func (b *bench) dir(name string) string {
	b.seq++
	d := filepath.Join(b.work, fmt.Sprintf("%s-%d", name, b.seq))
	if err := os.MkdirAll(d, 0o755); err != nil {
		panic(err)
	}
	return d
}

func rusage(ps *os.ProcessState) *syscall.Rusage {
	ru, _ := ps.SysUsage().(*syscall.Rusage)
	if ru == nil {
		return &syscall.Rusage{}
	}
	return ru
}

func cpuOf(ru *syscall.Rusage) time.Duration {
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// version runs `hark version` o.versionRuns times and reports the mean per run.
func (b *bench) version(bn bin) (sample, error) {
	s := sample{scenario: "version", label: bn.label, audio: float64(b.o.versionRuns)}
	for i := 0; i < b.o.versionRuns; i++ {
		cmd := exec.Command(bn.path, "version")
		if err := cmd.Run(); err != nil {
			return s, fmt.Errorf("%s version: %w", bn.path, err)
		}
		ru := rusage(cmd.ProcessState)
		s.cpu += cpuOf(ru)
		s.minflt += ru.Minflt
		s.maxRSSKB = max(s.maxRSSKB, ru.Maxrss)
	}
	s.minflt /= int64(b.o.versionRuns)
	fmt.Fprintf(os.Stderr, "  %-10s %-8s %s\n", s.scenario, s.label, s.line())
	return s, nil
}

// vad runs `hark vad noise.wav --csv`: the daemon's analysis without pacing or I/O.
func (b *bench) vad(bn bin) (sample, error) {
	s := sample{scenario: "vad", label: bn.label}
	const n = 5
	for i := 0; i < n; i++ {
		cmd := exec.Command(bn.path, "vad", filepath.Join(b.in, "noise.wav"), "--csv")
		if err := cmd.Run(); err != nil {
			return s, fmt.Errorf("%s vad: %w", bn.path, err)
		}
		ru := rusage(cmd.ProcessState)
		s.cpu += cpuOf(ru)
		s.csw += ru.Nvcsw + ru.Nivcsw
		s.maxRSSKB = max(s.maxRSSKB, ru.Maxrss)
	}
	s.audio = n * wavSeconds(filepath.Join(b.in, "noise.wav"))
	fmt.Fprintf(os.Stderr, "  %-10s %-8s %s\n", s.scenario, s.label, s.line())
	return s, nil
}

// daemons runs one scenario with every binary at once (plus the SDK client for stream).
func (b *bench) daemons(sc string, bins []bin) ([]sample, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	out := make([]sample, len(bins)+1)
	errs := make([]error, len(bins)+1)
	var stops []func()
	defer func() {
		for _, s := range stops {
			s()
		}
	}()
	for i, bn := range bins {
		url, stop, err := b.startEmulator()
		if err != nil {
			return nil, err
		}
		stops = append(stops, stop)
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = b.harkRun(ctx, sc, bn, url, fmt.Sprintf("bench-%s-%d", bn.label, b.seq))
		}()
	}
	n := len(bins)
	if sc == "idle-file" {
		// The floor: a process that does nothing but wake on the same 100 ms schedule.
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			out[i], errs[i] = b.floorRun(ctx, time.Duration(wavSeconds(filepath.Join(b.in, "noise.wav"))*float64(time.Second)))
		}(n)
		n++
	}
	if sc == "stream" {
		url, stop, err := b.startEmulator()
		if err != nil {
			return nil, err
		}
		stops = append(stops, stop)
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			out[i], errs[i] = b.sdkRun(ctx, url)
		}(n)
		n++
	}
	wg.Wait()
	return out[:n], errors.Join(errs...)
}

// harkRun runs one `hark run` and measures it.
func (b *bench) harkRun(ctx context.Context, sc string, bn bin, dgURL, device string) (sample, error) {
	s := sample{scenario: sc, label: bn.label}
	dir := b.dir(sc + "-" + bn.label)
	cfg := fmt.Sprintf("device_id: %s\nstate_dir: %s\ndeepgram:\n  url: %s\n", device, dir, dgURL)
	var file string
	switch sc {
	case "idle-file":
		file = filepath.Join(b.in, "noise.wav")
	case "stream":
		file = filepath.Join(b.in, "speech.wav")
	case "idle-null":
		cfg += "capture:\n  backend: \"null\"\n"
	case "idle-pulse":
		cfg += "capture:\n  backend: pulseaudio\n"
	}
	if file != "" {
		cfg += fmt.Sprintf("capture:\n  input: %s\n  realtime: true\n", file)
	}
	if b.brokerPort != 0 && (sc == "idle-file" || sc == "stream") {
		cfg += fmt.Sprintf("mqtt:\n  broker: tcp://127.0.0.1:%d\n  topic_prefix: bench\n", b.brokerPort)
	}
	cfgFile := filepath.Join(dir, "hark.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		return s, err
	}
	cmd := exec.CommandContext(ctx, bn.path, "run", "--config", cfgFile)
	cmd.Env = append(os.Environ(), "DEEPGRAM_API_KEY=bench-key")
	if sc == "idle-pulse" {
		cmd.Env = append(cmd.Env, b.pulseEnv...)
	}
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return s, err
	}
	if err := cmd.Start(); err != nil {
		return s, err
	}
	var logTail []string
	var keep io.WriteCloser
	if b.o.logs != "" {
		if err := os.MkdirAll(b.o.logs, 0o755); err != nil {
			return s, err
		}
		if keep, err = os.Create(filepath.Join(b.o.logs, filepath.Base(dir)+".log")); err != nil {
			return s, err
		}
		defer keep.Close()
	}
	ready := make(chan struct{})
	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			l := sc.Text()
			if keep != nil {
				fmt.Fprintln(keep, l)
			}
			if strings.Contains(l, "hark running") {
				once.Do(func() { close(ready) })
			}
			if len(logTail) < 40 {
				logTail = append(logTail, l)
			}
		}
	}()
	pid := cmd.Process.Pid
	began := time.Now()
	// A device is captured for o.seconds from READY; a file run ends by itself.
	length := b.o.seconds
	if file != "" {
		length = time.Duration(wavSeconds(file) * float64(time.Second))
	}
	var t1, t2 time.Duration
	var w1, w2 time.Time
	select {
	case <-ready:
		time.Sleep(5 * time.Second)
		t1, w1 = taskCPU(pid), time.Now()
		time.Sleep(length - 7*time.Second)
		t2, w2 = taskCPU(pid), time.Now()
		if file == "" {
			time.Sleep(2 * time.Second)
			_ = cmd.Process.Signal(syscall.SIGTERM)
		}
	case <-logDone:
	case <-ctx.Done():
	}
	<-logDone
	err = cmd.Wait()
	if err != nil {
		return s, fmt.Errorf("%s run: %w\n%s", bn.path, err, strings.Join(logTail, "\n"))
	}
	ru := rusage(cmd.ProcessState)
	s.cpu, s.maxRSSKB, s.csw, s.minflt = cpuOf(ru), ru.Maxrss, ru.Nvcsw+ru.Nivcsw, ru.Minflt
	// Per second of audio: the file's length, or for a device the whole time the process
	// ran (start-up and stop included, as in the CPU).
	s.audio = length.Seconds()
	if file == "" {
		s.audio = time.Since(began).Seconds()
	}
	if t2 > 0 {
		s.steadyCPU, s.steadyWall = t2-t1, w2.Sub(w1)
	}
	if sc == "stream" {
		s.note = fmt.Sprintf("(%d transcripts)", b.transcripts(device))
	}
	return s, nil
}

// floorRun measures this program's -tick-floor mode for d: the cost of waking every 100 ms
// and nothing else, in the machine's current conditions.
func (b *bench) floorRun(ctx context.Context, d time.Duration) (sample, error) {
	s := sample{scenario: "idle-file", label: "floor", audio: d.Seconds()}
	self, err := os.Executable()
	if err != nil {
		return s, err
	}
	cmd := exec.CommandContext(ctx, self, "-tick-floor", d.String())
	if err := cmd.Run(); err != nil {
		return s, fmt.Errorf("tick floor: %w", err)
	}
	ru := rusage(cmd.ProcessState)
	s.cpu, s.maxRSSKB, s.csw, s.minflt = cpuOf(ru), ru.Maxrss, ru.Nvcsw+ru.Nivcsw, ru.Minflt
	return s, nil
}

// tickFloor wakes every 100 ms for d on the ticker hark paces file input with, doing
// nothing else.
func tickFloor(d time.Duration) error {
	runtime.GOMAXPROCS(1) // as hark run
	start := time.Now()
	t, err := pace.New(start.Add(100*time.Millisecond), 100*time.Millisecond)
	if err != nil {
		return err
	}
	defer t.Stop()
	for n := uint64(0); n < uint64(d/(100*time.Millisecond)); {
		k, err := t.Wait()
		if err != nil {
			return err
		}
		n += k
	}
	return nil
}

// sdkRun streams the speech file through the SDK client.
func (b *bench) sdkRun(ctx context.Context, dgURL string) (sample, error) {
	s := sample{scenario: "stream", label: "sdk"}
	file := filepath.Join(b.in, "speech.wav")
	u := strings.TrimSuffix(dgURL, "/v1/listen")
	cmd := exec.CommandContext(ctx, b.o.sdk, "--url", u, "--file", file)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return s, err
	}
	pid := cmd.Process.Pid
	length := time.Duration(wavSeconds(file) * float64(time.Second))
	time.Sleep(5 * time.Second)
	t1, w1 := taskCPU(pid), time.Now()
	time.Sleep(length - 7*time.Second)
	t2, w2 := taskCPU(pid), time.Now()
	if err := cmd.Wait(); err != nil {
		return s, fmt.Errorf("sdkstream: %w\n%s", err, stderr.String())
	}
	ru := rusage(cmd.ProcessState)
	s.cpu, s.maxRSSKB, s.csw, s.minflt = cpuOf(ru), ru.Maxrss, ru.Nvcsw+ru.Nivcsw, ru.Minflt
	s.audio = length.Seconds()
	s.steadyCPU, s.steadyWall = t2-t1, w2.Sub(w1)
	finals := 0
	if i := strings.Index(stderr.String(), "frames sent, "); i >= 0 {
		fmt.Sscanf(stderr.String()[i+len("frames sent, "):], "%d", &finals)
	}
	s.note = fmt.Sprintf("(%d finals)", finals)
	return s, nil
}

// taskCPU is the CPU time of every thread of pid so far (ns precision, unlike
// /proc/PID/stat's clock ticks).
func taskCPU(pid int) time.Duration {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	var sum time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) > 0 {
			ns, _ := strconv.ParseInt(f[0], 10, 64)
			sum += time.Duration(ns)
		}
	}
	return sum
}

func wavSeconds(path string) float64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return float64(fi.Size()-44) / 32000 // 16 kHz mono 16-bit, canonical header (sox writes one)
}

// ---- peers: mosquitto, the emulator, PulseAudio ----

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func waitPort(addr string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening after %s: %w", addr, limit, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (b *bench) startBroker() (func(), error) {
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
			if _, e := os.Stat(p); e == nil {
				bin, err = p, nil
			}
		}
	}
	if err != nil {
		return nil, errors.New("mosquitto not found (scripts/install-test-deps.sh installs it)")
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := b.dir("mosquitto")
	conf := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n", port)), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-c", conf)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	if err := waitPort(fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, err
	}
	b.brokerPort = port
	// A subscriber counts the transcripts each device published (a sanity check of the runs).
	// In-process rather than mosquitto_sub, which is not a test dependency (the run
	// reported 0 transcripts where it was missing) and whose stdout to a file is
	// block-buffered while the count is read.
	b.counts = map[string]int{}
	sub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(fmt.Sprintf("tcp://127.0.0.1:%d", port)).
		SetClientID("bench-cost-counter").SetAutoReconnect(false))
	if tok := sub.Connect(); tok.Wait() && tok.Error() != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("transcript counter: %w", tok.Error())
	}
	tok := sub.Subscribe("bench/+/transcript", 1, func(_ mqtt.Client, m mqtt.Message) {
		b.countMu.Lock()
		b.counts[strings.Split(m.Topic(), "/")[1]]++
		b.countMu.Unlock()
	})
	if tok.Wait() && tok.Error() != nil {
		sub.Disconnect(0)
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("transcript counter: %w", tok.Error())
	}
	return func() {
		sub.Disconnect(0)
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}, nil
}

// transcripts counts the transcripts device published so far.
func (b *bench) transcripts(device string) int {
	b.countMu.Lock()
	defer b.countMu.Unlock()
	return b.counts[device]
}

// startEmulator starts a fresh emulator (its fixture hands sentences out in order, so each
// client gets its own) and returns its live URL.
func (b *bench) startEmulator() (string, func(), error) {
	dir := b.dir("dgemu")
	ready := filepath.Join(dir, "url")
	cmd := exec.Command(b.o.dgemu, "--addr", "127.0.0.1:0", "--ready-file", ready,
		"--fixture", filepath.Join(b.in, "speech.txt"))
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if u, err := os.ReadFile(ready); err == nil && len(u) > 0 {
			return strings.TrimSpace(string(u)), stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, errors.New("emulator did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startPulse starts a private PulseAudio server with a null sink whose monitor is the
// default source, and plays the room noise into the sink (a null sink's monitor delivers
// audio only while something plays into it).
func (b *bench) startPulse() (func(), error) {
	for _, t := range []string{"pulseaudio", "pactl", "pacat"} {
		if _, err := exec.LookPath(t); err != nil {
			return nil, fmt.Errorf("%s not installed", t)
		}
	}
	dir, err := os.MkdirTemp("", "hark-pulse-") // short: unix socket paths are limited
	if err != nil {
		return nil, err
	}
	env := []string{"XDG_RUNTIME_DIR=" + dir, "PULSE_SERVER=unix:" + filepath.Join(dir, "pulse", "native")}
	runP := func(name string, args ...string) error {
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %w: %s", name, err, out)
		}
		return nil
	}
	if err := runP("pulseaudio", "--daemonize=yes", "--exit-idle-time=-1", "-n",
		"--load=module-native-protocol-unix", "--load=module-null-sink sink_name=vsink"); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := runP("pactl", "set-default-source", "vsink.monitor"); err != nil {
		runP("pulseaudio", "--kill")
		os.RemoveAll(dir)
		return nil, err
	}
	stopPlay := make(chan struct{})
	playDone := make(chan struct{})
	go func() {
		defer close(playDone)
		for {
			f, err := os.Open(filepath.Join(b.in, "noise.raw"))
			if err != nil {
				return
			}
			cmd := exec.Command("pacat", "--playback", "--device=vsink", "--raw", "--format=s16le",
				"--rate=16000", "--channels=1", "--latency-msec=100")
			cmd.Env, cmd.Stdin = append(os.Environ(), env...), f
			if cmd.Start() != nil {
				f.Close()
				return
			}
			done := make(chan struct{})
			go func() { cmd.Wait(); close(done) }()
			select {
			case <-done:
				f.Close()
			case <-stopPlay:
				cmd.Process.Kill()
				<-done
				f.Close()
				return
			}
		}
	}()
	b.pulseEnv = env
	return func() {
		close(stopPlay)
		<-playDone
		runP("pulseaudio", "--kill")
		os.RemoveAll(dir)
	}, nil
}

// ---- report ----

func report(w io.Writer, o options, bins []bin, res map[string][]sample) {
	fmt.Fprintf(w, "\n## hark cost (%d runs; median, [min, max])\n\n", o.runs)
	fmt.Fprintf(w, "| scenario | binary | CPU per audio s (whole process) | steady | peak RSS | context switches per s |\n|---|---|---|---|---|---|\n")
	labels := []string{}
	for _, b := range bins {
		labels = append(labels, b.label)
	}
	labels = append(labels, "floor", "sdk")
	for _, sc := range []string{"version", "vad", "idle-file", "idle-null", "idle-pulse", "stream"} {
		for _, l := range labels {
			ss := res[sc+"/"+l]
			if len(ss) == 0 {
				continue
			}
			cpu := stats(ss, sample.perAudio)
			unit := "ms"
			if sc == "version" {
				unit = "ms per run"
			}
			st := stats(ss, sample.steady)
			rss := stats(ss, func(s sample) float64 { return float64(s.maxRSSKB) / 1024 })
			csw := stats(ss, func(s sample) float64 { return float64(s.csw) / s.audio })
			steady := "-"
			if st[0] >= 0 {
				steady = fmtStats(st, "ms")
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", sc, l, fmtStats(cpu, unit), steady, fmtStats(rss, "MB"), fmtStats(csw, ""))
		}
	}
	// Ratios against the SDK client, run by run (same run, same conditions).
	if sdk := res["stream/sdk"]; len(sdk) > 0 {
		fmt.Fprintf(w, "\nstream, ratio to the SDK client in the same run (CPU per audio second; peak RSS):\n\n")
		for _, l := range labels[:len(labels)-2] {
			hs := res["stream/"+l]
			var cr, rr []float64
			for i := range min(len(hs), len(sdk)) {
				cr = append(cr, hs[i].perAudio()/sdk[i].perAudio())
				rr = append(rr, float64(hs[i].maxRSSKB)/float64(sdk[i].maxRSSKB))
			}
			if len(cr) > 0 {
				fmt.Fprintf(w, "- %s: CPU %s x, RSS %s x\n", l, fmtStats(spread(cr), ""), fmtStats(spread(rr), ""))
			}
		}
	}
}

func stats(ss []sample, f func(sample) float64) [3]float64 {
	v := make([]float64, len(ss))
	for i, s := range ss {
		v[i] = f(s)
	}
	return spread(v)
}

// spread is median, min, max.
func spread(v []float64) [3]float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return [3]float64{med, v[0], v[len(v)-1]}
}

func fmtStats(s [3]float64, unit string) string {
	f := func(x float64) string {
		switch {
		case x >= 100:
			return strconv.FormatFloat(x, 'f', 0, 64)
		case x >= 10:
			return strconv.FormatFloat(x, 'f', 1, 64)
		case x >= 1:
			return strconv.FormatFloat(x, 'f', 2, 64)
		}
		return strconv.FormatFloat(x, 'f', 3, 64)
	}
	return strings.TrimSpace(fmt.Sprintf("%s [%s, %s] %s", f(s[0]), f(s[1]), f(s[2]), unit))
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
