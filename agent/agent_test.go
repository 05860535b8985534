package agent

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hark-audio/hark/audio"
	"github.com/hark-audio/hark/config"
	"github.com/hark-audio/hark/dgemu"
	"github.com/hark-audio/hark/internal/leaktest"
	"github.com/hark-audio/hark/transcript"
)

// The end-to-end tests here drive the real agent: audio goes in through a stdin pipe that
// the test writes (so it controls exactly what is heard and when), the Deepgram emulator
// answers over real sockets, and results come out as JSON lines (or over a real broker in
// mqtt_test.go).

// demo is testdata/demo: the sample recording, its fixture and the measured positions.
type demo struct {
	samples []int16
	lines   []string
	spans   []span
}

type span struct {
	Text       string
	Start, End float64
}

func loadDemo(t testing.TB) *demo {
	t.Helper()
	dir := filepath.Join("..", "testdata", "demo")
	// The emulator's reference loader reads the same recording and positions (and checks
	// the recording is 16 kHz mono 16-bit).
	ref, err := dgemu.LoadReference(filepath.Join(dir, "sample.wav"), filepath.Join(dir, "sample.json"))
	if err != nil {
		t.Fatal(err)
	}
	d := &demo{samples: ref.Samples}
	for _, s := range ref.Spans {
		d.spans = append(d.spans, span{s.Text, s.Start, s.End})
	}
	b, err := os.ReadFile(filepath.Join(dir, "sample.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		d.lines = append(d.lines, strings.TrimSpace(l))
	}
	if len(d.spans) != len(d.lines) {
		t.Fatalf("sample.json has %d utterances, sample.txt %d", len(d.spans), len(d.lines))
	}
	return d
}

// pcm returns samples [from, to) seconds of the demo as linear16 bytes.
func (d *demo) pcm(from, to float64) []byte {
	a, b := int(from*audio.SampleRate), int(to*audio.SampleRate)
	b = min(b, len(d.samples))
	return audio.AppendPCM(nil, d.samples[a:b])
}

func silence(seconds float64) []byte { return make([]byte, int(seconds*audio.SampleRate)*2) }

// lineSink turns written bytes into complete lines on a channel (the agent's stdout).
type lineSink struct {
	mu    sync.Mutex
	buf   []byte
	lines chan string
}

func newLineSink() *lineSink { return &lineSink{lines: make(chan string, 1000)} }

func (s *lineSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf = append(s.buf, p...)
	for {
		i := strings.IndexByte(string(s.buf), '\n')
		if i < 0 {
			return len(p), nil
		}
		s.lines <- string(s.buf[:i])
		s.buf = s.buf[i+1:]
	}
}

// harness is one running agent with its own emulator, state directory and stdin pipe.
type harness struct {
	t      testing.TB
	emu    *dgemu.Server
	cfg    *config.Loaded
	agent  *Agent
	stdin  *io.PipeWriter
	out    *lineSink
	cancel context.CancelFunc
	done   chan error
	logs   *lockedBuf
}

type lockedBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newHarness writes a configuration (yaml is appended to the base one), loads it through
// config.Load like the daemon does, and builds the agent. start runs it.
func newHarness(t testing.TB, emu *dgemu.Server, yaml string) *harness {
	t.Helper()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	if err := os.WriteFile(keyFile, []byte("test-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := "device_id: testdev\nstate_dir: " + dir + "\n" +
		"capture:\n  input: \"-\"\n" +
		"deepgram:\n  url: " + emu.URL() + "\n  api_key_file: " + keyFile + "\n  keepalive: 1s\n" +
		"log:\n  level: debug\n"
	file := filepath.Join(dir, "hark.yaml")
	if err := os.WriteFile(file, []byte(mergeYAML(base, yaml)), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := config.Load(config.Options{File: file, Environ: []string{"HOME=" + dir}})
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuf{}
	pr, pw := io.Pipe()
	h := &harness{t: t, emu: emu, cfg: l, stdin: pw, out: newLineSink(), done: make(chan error, 1), logs: logs}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h.agent, err = New(Options{Loaded: l, Logger: log, Stdout: h.out, Stdin: pr, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", logs.String())
		}
	})
	return h
}

// mergeYAML appends extra top-level sections to base, merging sections that both define
// by concatenating their indented bodies (enough for these tests' flat configs).
func mergeYAML(base, extra string) string {
	if extra == "" {
		return base
	}
	sections := map[string][]string{}
	var order []string
	add := func(doc string) {
		cur := ""
		for _, line := range strings.Split(doc, "\n") {
			if line == "" {
				continue
			}
			if !strings.HasPrefix(line, " ") {
				k, _, _ := strings.Cut(line, ":")
				if _, ok := sections[k]; !ok {
					order = append(order, k)
				}
				if strings.HasSuffix(strings.TrimSpace(line), ":") {
					cur = k
					continue
				}
				sections[k] = []string{line}
				cur = ""
				continue
			}
			sections[cur] = append(sections[cur], line)
		}
	}
	add(base)
	add(extra)
	var b strings.Builder
	for _, k := range order {
		lines := sections[k]
		if len(lines) == 1 && !strings.HasPrefix(lines[0], " ") {
			b.WriteString(lines[0] + "\n")
			continue
		}
		b.WriteString(k + ":\n")
		for _, l := range lines {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func (h *harness) start() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- h.agent.Run(ctx) }()
	h.t.Cleanup(func() {
		cancel()
		h.stdin.Close()
		select {
		case <-h.done:
		case <-time.After(30 * time.Second):
			h.t.Error("agent did not stop within 30 s of cancellation")
		}
	})
}

// feed writes audio into the agent's stdin.
func (h *harness) feed(b []byte) {
	h.t.Helper()
	if _, err := h.stdin.Write(b); err != nil {
		h.t.Fatalf("feed: %v", err)
	}
}

// endInput closes stdin (end of input) and waits for the graceful stop.
func (h *harness) endInput() {
	h.t.Helper()
	h.stdin.Close()
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Fatalf("agent: %v", err)
		}
		h.done <- nil // for Cleanup
	case <-time.After(60 * time.Second):
		h.t.Fatal("agent did not stop within 60 s of the end of input")
	}
}

// next waits for the next published utterance.
func (h *harness) next(timeout time.Duration) transcript.Utterance {
	h.t.Helper()
	select {
	case l := <-h.out.lines:
		var u transcript.Utterance
		if err := json.Unmarshal([]byte(l), &u); err != nil {
			h.t.Fatalf("stdout line is not a transcript: %q: %v", l, err)
		}
		return u
	case <-time.After(timeout):
		h.t.Fatalf("no utterance within %s", timeout)
	}
	return transcript.Utterance{}
}

// rest returns every utterance still buffered (after the agent stopped).
func (h *harness) rest() []transcript.Utterance {
	var out []transcript.Utterance
	for {
		select {
		case l := <-h.out.lines:
			var u transcript.Utterance
			if err := json.Unmarshal([]byte(l), &u); err != nil {
				h.t.Fatalf("stdout line is not a transcript: %q: %v", l, err)
			}
			out = append(out, u)
		default:
			return out
		}
	}
}

// TestRunTranscribesAndMapsTimes streams the demo recording (four sentences separated by
// gated silences) and checks the JSON lines: texts in order, source live, and every
// utterance's capture times within 100 ms of the sentence's known position.
func TestRunTranscribesAndMapsTimes(t *testing.T) {
	leaktest.Check(t) // first, so it runs after every other cleanup (broker, emulator, agent)
	d := loadDemo(t)
	emu := dgemu.NewServer(dgemu.Config{Utterances: d.lines})
	// Paced like a microphone: the live service takes audio at about real time, and a
	// faster backlog is (rightly) routed to the spool instead.
	h := newHarness(t, emu, "capture:\n  realtime: true\n")
	h.start()
	// Each sentence (with 0.6 s of its own lead-in and tail) followed by 3 s of silence, so
	// the gate must close between sentences and the stream clock skips the silences.
	const lead, gap = 0.6, 3.0
	var want []span // known positions in the fed audio, seconds from its start
	pos := 0.0
	for _, sp := range d.spans {
		from, to := max(0, sp.Start-lead), sp.End+lead
		h.feed(d.pcm(from, to))
		want = append(want, span{sp.Text, pos + sp.Start - from, pos + sp.End - from})
		pos += to - from
		h.feed(silence(gap))
		pos += gap
	}
	h.endInput()
	got := h.rest()
	if len(got) != len(d.lines) {
		t.Fatalf("got %d utterances, want %d: %+v", len(got), len(d.lines), got)
	}
	// Frame times of a stdin input start when capture opens; the offsets between
	// utterances are what the mapping must preserve across gated silences.
	t0 := got[0].Start.Add(-time.Duration(want[0].Start * float64(time.Second)))
	for i, u := range got {
		if u.Text != d.lines[i] {
			t.Errorf("utterance %d text %q, want %q", i, u.Text, d.lines[i])
		}
		if u.Source != transcript.SourceLive || u.Seq != uint64(i+1) || u.DeviceID != "testdev" || u.RequestID == "" {
			t.Errorf("utterance %d: source %q seq %d device %q request_id %q", i, u.Source, u.Seq, u.DeviceID, u.RequestID)
		}
		wantStart := t0.Add(time.Duration(want[i].Start * float64(time.Second)))
		wantEnd := t0.Add(time.Duration(want[i].End * float64(time.Second)))
		if e := u.Start.Sub(wantStart); math.Abs(e.Seconds()) > 0.1 {
			t.Errorf("utterance %d starts %v from its known position", i, e)
		}
		if e := u.End.Sub(wantEnd); math.Abs(e.Seconds()) > 0.1 {
			t.Errorf("utterance %d ends %v from its known position", i, e)
		}
		if len(u.Words) == 0 || u.Words[0].Start.Before(u.Start) || u.Words[len(u.Words)-1].End.After(u.End.Add(time.Millisecond)) {
			t.Errorf("utterance %d words outside the utterance: %+v", i, u.Words)
		}
	}
	// Silence was gated: the emulator heard far less than the 16 s that went in.
	var heard float64
	for _, s := range emu.Sessions() {
		heard += s.AudioSeconds
		if s.EmptyBinary != 0 {
			t.Errorf("session %s got %d empty binary frames", s.RequestID, s.EmptyBinary)
		}
		if s.CloseStreams != 1 || !s.MetadataSent {
			t.Errorf("session %s: CloseStream %d, Metadata %v: want a graceful close", s.RequestID, s.CloseStreams, s.MetadataSent)
		}
	}
	if heard > pos-4*gap+4*1.5 || heard < pos-4*gap {
		t.Errorf("emulator heard %.1f s of the %.1f s fed; want the speech plus pre-roll and hangover only", heard, pos)
	}
	emu.Close()
}

// referenceEmulator starts an emulator whose transcripts are content-addressed: whichever
// path carries a piece of a demo sentence (live or spool), it gets that piece's words, so a
// test can check the words end to end. It is closed when the test ends.
func referenceEmulator(t testing.TB) *dgemu.Server { return referenceEmulatorWith(t, dgemu.Config{}) }

// feedSentence feeds sentence i of the demo with 0.6 s of lead-in and tail, then gap
// seconds of silence, and returns its known span in fed-audio seconds (from pos).
func (h *harness) feedSentence(d *demo, i int, pos *float64, gap float64) span {
	sp := d.spans[i]
	from, to := max(0, sp.Start-0.6), sp.End+0.6
	h.feed(d.pcm(from, to))
	known := span{sp.Text, *pos + sp.Start - from, *pos + sp.End - from}
	*pos += to - from
	h.feed(silence(gap))
	*pos += gap
	return known
}

// firstSentenceThenDrop runs an agent, streams the first demo sentence and waits for its
// live transcript, then arms the emulator to cut the TCP connection one second into the
// next sentence's speech (the pre-roll is 0.6 s).
func firstSentenceThenDrop(t *testing.T, d *demo, emu *dgemu.Server) (h *harness, first transcript.Utterance, known []span, pos *float64) {
	t.Helper()
	h = newHarness(t, emu, "capture:\n  realtime: true\n")
	h.start()
	pos = new(float64)
	known = append(known, h.feedSentence(d, 0, pos, 3))
	first = h.next(20 * time.Second)
	if first.Text != d.lines[0] || first.Source != transcript.SourceLive {
		t.Fatalf("first utterance %q from %s, want %q live", first.Text, first.Source, d.lines[0])
	}
	sessions := emu.Sessions()
	if len(sessions) != 1 {
		t.Fatalf("%d sessions, want 1", len(sessions))
	}
	emu.DropAfterAudio(sessions[0].AudioBytes + int64(1.6*audio.SampleRate*2))
	return h, first, known, pos
}

// TestDropMidUtteranceReplaysWhole cuts the TCP connection one second into the second
// sentence and refuses the next two reconnects (a short outage): the sentence is replayed
// whole on the new connection, from the first frame of its segment, and published once, live,
// whole, with its capture times; nothing goes to the spool.
func TestDropMidUtteranceReplaysWhole(t *testing.T) {
	leaktest.Check(t) // first, so it runs after every other cleanup (broker, emulator, agent)
	d := loadDemo(t)
	emu := referenceEmulator(t)
	h, first, known, pos := firstSentenceThenDrop(t, d, emu)
	emu.RefuseHandshakes(dgemu.Times(2, dgemu.Refusal{Status: 503})...)
	known = append(known, h.feedSentence(d, 1, pos, 4))
	known = append(known, h.feedSentence(d, 2, pos, 3))
	h.endInput()

	got := append([]transcript.Utterance{first}, h.rest()...)
	checkSentences(t, sortedByStart(got), d.lines[:3])
	t0 := first.Start.Add(-time.Duration(known[0].Start * float64(time.Second)))
	for i, u := range got {
		if u.Source != transcript.SourceLive {
			t.Errorf("utterance %d from %s, want live", i, u.Source)
		}
		at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
		if i < len(known) && (u.Start.Before(at(known[i].Start-0.2)) || u.End.After(at(known[i].End+0.2))) {
			t.Errorf("utterance %d at %s..%s, spoken at %.2f..%.2f", i, u.Start.Sub(t0), u.End.Sub(t0), known[i].Start, known[i].End)
		}
	}
	ss := emu.Sessions()
	if len(ss) != 2 || !ss[0].Dropped {
		t.Fatalf("sessions %+v", ss)
	}
	if got[1].RequestID != ss[1].RequestID {
		t.Errorf("second sentence from %s, want the second connection %s", got[1].RequestID, ss[1].RequestID)
	}
	if st := h.agent.uplink.Stats(); st.Replays != 1 || st.UnconfirmedSegments != 0 || len(emu.Requests()) != 0 {
		t.Errorf("replays %d, spooled %d, uploads %d", st.Replays, st.UnconfirmedSegments, len(emu.Requests()))
	}
	emu.Close()
}

// TestOutageSpoolsWholeUtterance cuts the connection one second into the second sentence
// and keeps the service away for longer than a segment may wait (a 429 asking for 10 s):
// the whole sentence goes to the spool and comes back through the pre-recorded endpoint,
// once, whole, with its original capture times and source "spool" — never half live and
// half spooled.
func TestOutageSpoolsWholeUtterance(t *testing.T) {
	leaktest.Check(t)
	d := loadDemo(t)
	emu := referenceEmulator(t)
	h, first, known, pos := firstSentenceThenDrop(t, d, emu)
	emu.RefuseHandshakes(dgemu.Refusal{Status: 429, RetryAfter: "10"})
	known = append(known, h.feedSentence(d, 1, pos, 3))
	known = append(known, h.feedSentence(d, 2, pos, 3))
	h.endInput()

	got := sortedByStart(append([]transcript.Utterance{first}, h.rest()...))
	checkSentences(t, got, d.lines[:3])
	if len(got) < 2 || got[1].Source != transcript.SourceSpool || got[1].RequestID == "" {
		t.Fatalf("second sentence %+v, want it from the spool", got)
	}
	t0 := first.Start.Add(-time.Duration(known[0].Start * float64(time.Second)))
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	if u := got[1]; u.Start.Before(at(known[1].Start-0.2)) || u.End.After(at(known[1].End+0.2)) {
		t.Errorf("spooled utterance at %s..%s, spoken at %.2f..%.2f", u.Start.Sub(t0), u.End.Sub(t0), known[1].Start, known[1].End)
	}
	// The whole segment went up once: one successful upload per spooled utterance.
	var posts int
	for _, r := range emu.Requests() {
		if r.Status == 200 {
			posts++
		}
	}
	if spooled := countSource(got, transcript.SourceSpool); posts != spooled {
		t.Errorf("%d successful uploads, %d spooled utterances published", posts, spooled)
	}
	emu.Close()
}

// TestQuietServiceOneConnection is the end-to-end check of a service that never answers
// silence: a multi-sentence file run in real time against an emulator that sends no
// results for wordless audio and leaves a Finalize with nothing pending unanswered, with a
// pause of 18 s in the middle (longer than the result timeout that used to tear such a
// stream down, shorter than the idle close). Every sentence is published once and whole,
// live, with no reconnect: the uplink's reconnect counter stays at zero and the emulator
// saw one connection.
func TestQuietServiceOneConnection(t *testing.T) {
	leaktest.Check(t)
	d := loadDemo(t)
	emu := referenceEmulatorWith(t, dgemu.Config{Quiet: dgemu.Modes["quiet"]})
	// The demo's four sentences with 18 s of silence inserted after the second: 33 s.
	wav := filepath.Join(t.TempDir(), "pause.wav")
	mid := (d.spans[1].End + d.spans[2].Start) / 2
	pcm := append(append(d.pcm(0, mid), silence(18)...), d.pcm(mid, 100)...)
	if err := os.WriteFile(wav, append(audio.WAVHeader(len(pcm)), pcm...), 0o600); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, emu, "capture:\n  input: "+wav+"\n  realtime: true\n")
	h.start()
	select {
	case err := <-h.done:
		if err != nil {
			t.Fatal(err)
		}
		h.done <- nil
	case <-time.After(120 * time.Second):
		t.Fatal("the file run did not end")
	}
	got := h.rest()
	checkSentences(t, got, d.lines)
	for i, u := range got {
		if u.Source != transcript.SourceLive {
			t.Errorf("utterance %d from %s", i, u.Source)
		}
	}
	st := h.agent.uplink.Stats()
	ss := emu.Sessions()
	var finalizeAnswers int
	for _, s := range ss {
		finalizeAnswers += s.FromFinalize
	}
	t.Logf("%d utterances, %d by the Finalize grace; %d sessions, reconnects %v, %d Finalizes, %d answered",
		len(got), st.GraceCompleted, len(ss), st.Reconnects, st.Finalizes, finalizeAnswers)
	if n := len(st.Reconnects); n != 0 || len(ss) != 1 {
		t.Errorf("reconnects %v, %d connections: want none and one", st.Reconnects, len(ss))
	}
	if ss[0].CloseStreams != 1 || !ss[0].MetadataSent || ss[0].CloseCode != 1000 {
		t.Errorf("the one connection ended with CloseStream %d, Metadata %v, close %d", ss[0].CloseStreams, ss[0].MetadataSent, ss[0].CloseCode)
	}
	if st.GraceCompleted == 0 {
		t.Error("no segment completed by the grace: the emulator was not quiet")
	}
	emu.Close()
}

func sortedByStart(us []transcript.Utterance) []transcript.Utterance {
	out := append([]transcript.Utterance(nil), us...)
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

// TestMuteSurvivesRestart: the mute setting is persisted under the state directory and a
// new agent on the same directory starts muted, so nothing is sent after a reboot.
func TestMuteSurvivesRestart(t *testing.T) {
	emu := dgemu.NewServer(dgemu.Config{})
	defer emu.Close()
	h := newHarness(t, emu, "")
	if err := h.agent.SetMuted(true); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(filepath.Join(h.cfg.Config.StateDir, mutedFile))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("mute file: %v %v", info, err)
	}
	h2, err := New(Options{Loaded: h.cfg, Stdout: io.Discard, Stdin: strings.NewReader("")})
	if err != nil {
		t.Fatal(err)
	}
	if err := h2.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := h2.st.get(); !st.Muted {
		t.Errorf("restarted agent state %+v, want muted", st)
	}
	if len(emu.Sessions()) != 0 {
		t.Errorf("a muted agent opened %d streams", len(emu.Sessions()))
	}
}

// TestReloadAppliesLiveKeys: a reload (SIGHUP) applies VAD and Deepgram options live, lists
// what needs a restart, and a bad file keeps the running configuration.
func TestReloadAppliesLiveKeys(t *testing.T) {
	emu := dgemu.NewServer(dgemu.Config{})
	defer emu.Close()
	h := newHarness(t, emu, "")
	file := h.cfg.File
	orig, _ := os.ReadFile(file)
	os.WriteFile(file, append(orig, []byte("vad:\n  threshold_db: 7\n")...), 0o600)
	// The harness config already has a vad-free base, so appending a section is valid YAML.
	if err := h.agent.Reload(config.Options{File: file, Environ: []string{"HOME=" + h.cfg.Config.StateDir}}); err != nil {
		t.Fatal(err)
	}
	if got := h.agent.cfg().VAD.ThresholdDB; got != 7 {
		t.Errorf("after reload vad.threshold_db = %v, want 7", got)
	}
	if c := h.agent.vadNext.Swap(nil); c == nil {
		t.Error("the VAD change was not handed to the audio loop")
	} else if c.ThresholdDB != 7 {
		t.Errorf("audio loop was handed %+v", c)
	}
	os.WriteFile(file, append(orig, []byte("vad:\n  threshold_db: 700\n")...), 0o600)
	err := h.agent.Reload(config.Options{File: file, Environ: []string{"HOME=" + h.cfg.Config.StateDir}})
	if err == nil || !strings.Contains(err.Error(), "vad.threshold_db") {
		t.Errorf("bad reload: %v, want an error naming vad.threshold_db", err)
	}
	if got := h.agent.cfg().VAD.ThresholdDB; got != 7 {
		t.Errorf("a failed reload changed the running configuration (threshold %v)", got)
	}
}

// TestFastInputLosesNothing feeds two minutes of speech (the demo eight times) as fast as
// possible to a service that accepts audio at 1.25x real time. The live stream cannot keep
// up; every sentence must still be transcribed, live or through the spool, and no frame
// may be dropped on the way (a file input waits for the uplink rather than losing audio).
func TestFastInputLosesNothing(t *testing.T) {
	leaktest.Check(t)
	d := loadDemo(t)
	var lines []string
	for range 8 {
		lines = append(lines, d.lines...)
	}
	emu := dgemu.NewServer(dgemu.Config{Utterances: lines, RealtimeLimit: 1.25})
	defer emu.Close()
	h := newHarness(t, emu, "capture:\n  realtime: false\n")
	h.start()
	for range 8 {
		h.feed(d.pcm(0, 100))
	}
	h.endInput()
	got := h.rest()
	dur := float64(len(d.samples)) / audio.SampleRate
	t0 := got[0].Start.Add(-time.Duration(d.spans[0].Start * float64(time.Second)))
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	for k := range 8 {
		for i, sp := range d.spans {
			a, b := at(float64(k)*dur+sp.Start), at(float64(k)*dur+sp.End)
			covered := false
			for _, u := range got {
				if u.Start.Before(b) && u.End.After(a) {
					covered = true
				}
			}
			if !covered {
				t.Errorf("copy %d sentence %d (%.1f s) was lost", k, i, float64(k)*dur+sp.Start)
			}
		}
	}
	if st := h.agent.uplink.Stats(); st.InputDropped != 0 {
		t.Errorf("%d frames dropped between the gate and the uplink", st.InputDropped)
	}
	t.Logf("%d utterances, %d through the spool", len(got), countSource(got, transcript.SourceSpool))
}

func countSource(us []transcript.Utterance, s transcript.Source) (n int) {
	for _, u := range us {
		if u.Source == s {
			n++
		}
	}
	return n
}

// statusNotifier records what the agent tells systemd. A second READY panics (close of a
// closed channel).
type statusNotifier struct {
	status   chan string
	ready    chan struct{}
	progress atomic.Int64
}

func (n *statusNotifier) Ready()          { close(n.ready) }
func (n *statusNotifier) Status(s string) { n.status <- s }
func (n *statusNotifier) Stopping()       {}
func (n *statusNotifier) Progress()       { n.progress.Add(1) }

// TestWaitsForMissingMicrophone: a microphone that cannot be opened at start (here: the
// PulseAudio backend with no server) is retried, not fatal. Waiting is a running state:
// STATUS says "waiting for device" and why, READY is sent (start-up, and the boot, must
// not wait for a USB microphone), the retry loop keeps the watchdog fed, and a stop while
// waiting is a clean exit.
func TestWaitsForMissingMicrophone(t *testing.T) {
	leaktest.Check(t)
	dir := t.TempDir()
	// No server at this address, and no autospawn of one.
	clientConf := filepath.Join(dir, "client.conf")
	os.WriteFile(clientConf, []byte("autospawn = no\n"), 0o600)
	t.Setenv("PULSE_SERVER", "unix:"+filepath.Join(dir, "no-server"))
	t.Setenv("PULSE_CLIENTCONFIG", clientConf)
	emu := dgemu.NewServer(dgemu.Config{})
	defer emu.Close()
	h := newHarness(t, emu, "capture:\n  input: \"\"\n  backend: pulseaudio\n")
	n := &statusNotifier{status: make(chan string, 100), ready: make(chan struct{})}
	h.agent.opts.Notifier = n
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.agent.Run(ctx) }()
	deadline := time.After(30 * time.Second)
	for waiting := false; !waiting; {
		select {
		case s := <-n.status:
			waiting = strings.HasPrefix(s, "waiting for device") && strings.Contains(s, "capture unavailable")
		case <-deadline:
			t.Fatal("the state never said it was waiting for the device")
		}
	}
	select {
	case <-n.ready:
	case <-deadline:
		t.Fatal("READY not sent while waiting for the device: the unit would stay activating")
	}
	// The heartbeat beats once a second: two more beats prove the loop reports progress
	// while it waits, not only at its first attempt.
	for p0 := n.progress.Load(); n.progress.Load() < p0+2; {
		select {
		case <-deadline:
			t.Fatal("no watchdog progress while waiting for the device")
		case <-time.After(50 * time.Millisecond):
		}
	}
	if st := h.agent.st.get(); st.Pipeline != "waiting_for_device" {
		t.Errorf("state pipeline %q, want waiting_for_device", st.Pipeline)
	}
	if st := h.agent.st.get(); st.Capture.State != "unavailable" || st.Capture.LastError == "" {
		t.Errorf("state %+v, want capture unavailable with the reason", st)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("stop while waiting: %v, want a clean exit", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancellation while waiting for the device")
	}
	if len(emu.Sessions()) != 0 {
		t.Error("a stream was opened without audio")
	}
}

// TestFileStopFitsBudgetAndNeverRespools: a file (here stdin) input that ends while its
// speech sits in the spool, Deepgram unreachable, stops within the stop budget instead of
// waiting out a 30 s drain (under systemd that overran TimeoutStopSec, the SIGKILL
// restarted hark and the input was replayed); and the replay, a second run over the same
// spool, does not spool the same audio again.
func TestFileStopFitsBudgetAndNeverRespools(t *testing.T) {
	leaktest.Check(t)
	d := loadDemo(t)
	emu := dgemu.NewServer(dgemu.Config{})
	emu.Close() // its address now refuses connections: live and pre-recorded are down
	spoolDir := filepath.Join(t.TempDir(), "spool")
	run := func() (time.Duration, *harness) {
		h := newHarness(t, emu, "capture:\n  realtime: true\nspool:\n  dir: "+spoolDir+"\n")
		h.agent.opts.StopBudget = 3 * time.Second
		h.start()
		pos := 0.0
		h.feedSentence(d, 0, &pos, 1.5)
		t0 := time.Now()
		h.endInput()
		return time.Since(t0), h
	}
	took, h := run()
	first := h.agent.spool.Stats().Entries
	if first == 0 {
		t.Fatalf("nothing spooled with Deepgram unreachable:\n%s", h.logs.String())
	}
	// The budget is 3 s; the old drain alone waited 30 s. The margin is for a loaded machine.
	if took > 15*time.Second {
		t.Errorf("stop took %s with a 3 s budget", took.Round(time.Millisecond))
	}
	t.Logf("stopped %s after the end of input, %d entries spooled", took.Round(time.Millisecond), first)

	_, h = run()
	if got := h.agent.spool.Stats().Entries; got != first {
		t.Errorf("replaying the same audio: %d spool entries, want %d (spooled twice)", got, first)
	}
	if !strings.Contains(h.logs.String(), "already in the spool") {
		t.Errorf("the replay did not say the audio was already spooled:\n%s", h.logs.String())
	}
}

// TestContentTag: the tag depends on the samples only, and is found again in the IDs
// spoolSegment makes (and in no other shape of ID).
func TestContentTag(t *testing.T) {
	a, b := []int16{1, 2, 3, -4}, []int16{1, 2, 3, -5}
	if contentTag(a) != contentTag(append([]int16(nil), a...)) || contentTag(a) == contentTag(b) {
		t.Fatal("the tag does not follow the samples")
	}
	tag := contentTag(a)
	for id, want := range map[string]string{
		"20261204T173938.598Z-" + tag:       tag,
		"20261204T173938.598Z-5210c2ad":     "", // Put's own random suffix
		"20261204T173938.598Z-zz" + tag[2:]: "", // not hex
		tag:                                 "", // no start
		"x-" + tag + "0":                    "", // too long
	} {
		got, ok := contentTagOf(id)
		if got != want || ok != (want != "") {
			t.Errorf("contentTagOf(%q) = %q, %v; want %q", id, got, ok, want)
		}
	}
}
