package agent

import (
	"context"
	"encoding/binary"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hark-audio/hark/audio"
	"github.com/hark-audio/hark/dgemu"
	"github.com/hark-audio/hark/internal/leaktest"
	"github.com/hark-audio/hark/internal/logging"
	"github.com/hark-audio/hark/mqttlink/brokertest"
	"github.com/hark-audio/hark/transcript"
	"github.com/hark-audio/hark/uplink/live"
	"github.com/hark-audio/hark/uplink/spool"
)

// Issue 12 item 1: a corrupt mute state file fails closed. The agent starts muted, the
// state and health say why, nothing is streamed, and an operator's unmute clears it.
func TestCorruptMuteFileStartsMuted(t *testing.T) {
	leaktest.Check(t)
	d := loadDemo(t)
	emu := referenceEmulator(t)
	h := newHarness(t, emu, "")
	if err := os.WriteFile(filepath.Join(h.cfg.Config.StateDir, mutedFile), []byte(`{"muted":tru`), 0o600); err != nil {
		t.Fatal(err)
	}
	h.start()
	pos := 0.0
	h.feedSentence(d, 0, &pos, 3)
	waitFor(t, 10*time.Second, "muted with a reason", func() bool {
		s := h.agent.st.get()
		return s.Muted && strings.Contains(s.MuteReason, "unreadable")
	})
	if hm := h.agent.Health(); hm["muted"] != true || !strings.Contains(hm["mute_reason"].(string), "unreadable") {
		t.Errorf("health muted %v reason %v", hm["muted"], hm["mute_reason"])
	}
	if n := len(emu.Sessions()); n != 0 {
		t.Fatalf("a fail-closed agent opened %d streams", n)
	}
	// The operator unmutes: the reason goes, the file is rewritten, speech is sent again.
	if err := h.agent.SetMuted(false); err != nil {
		t.Fatal(err)
	}
	if s := h.agent.st.get(); s.Muted || s.MuteReason != "" {
		t.Fatalf("after unmute: %+v", s)
	}
	if b, _ := os.ReadFile(filepath.Join(h.cfg.Config.StateDir, mutedFile)); !strings.Contains(string(b), `"muted":false`) {
		t.Fatalf("mute file after unmute: %q", b)
	}
	h.feedSentence(d, 1, &pos, 3)
	if u := h.next(20 * time.Second); u.Text != d.lines[1] {
		t.Fatalf("after unmute got %q, want %q", u.Text, d.lines[1])
	}
	h.endInput()
	emu.Close()
}

// waitFor polls cond (state the agent publishes without an event to wait on) until it
// holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// spoolOne puts one demo sentence into the spool directory of h, as a previous run that
// could not stream it would have, and returns its text.
func spoolOne(t *testing.T, h *harness, d *demo, i int) string {
	t.Helper()
	sp, err := spool.Open(h.cfg.Config.Spool.Dir, spool.Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := d.spans[i]
	samples := d.samples[int((s.Start-0.5)*audio.SampleRate):int((s.End+0.5)*audio.SampleRate)]
	if _, err := sp.Put(spool.Meta{Start: time.Now().Add(-time.Minute), DeviceID: "testdev",
		Options: batchOptions(h.cfg.Config.Deepgram), Reason: "test"}, samples); err != nil {
		t.Fatal(err)
	}
	return d.lines[i]
}

func writeMuted(t *testing.T, h *harness) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(h.cfg.Config.StateDir, mutedFile), []byte(`{"muted":true}`), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Issue 12 item 2: muting holds the spool. Speech spooled before the mute is not uploaded
// (nor published) while muted; the state says the uploads are held; unmuting releases it.
func TestMuteHoldsSpool(t *testing.T) {
	leaktest.Check(t)
	d := loadDemo(t)
	emu := referenceEmulator(t)
	h := newHarness(t, emu, "")
	want := spoolOne(t, h, d, 1)
	writeMuted(t, h)
	h.start()
	waitFor(t, 10*time.Second, "spool uploads held", func() bool {
		s := h.agent.st.get()
		return s.Spool.Uploads == "held" && s.Spool.Entries == 1
	})
	if n := len(emu.Requests()); n != 0 {
		t.Fatalf("%d uploads while muted", n)
	}
	if err := h.agent.SetMuted(false); err != nil {
		t.Fatal(err)
	}
	if u := h.next(20 * time.Second); u.Text != want || u.Source != transcript.SourceSpool {
		t.Fatalf("after unmute got %q from %s, want %q from the spool", u.Text, u.Source, want)
	}
	h.endInput()
	emu.Close()
}

// Issue 12 item 2: a mute request with discard_spool drops what the spool holds, uploads
// nothing and says how much it dropped.
func TestMuteDiscardSpool(t *testing.T) {
	leaktest.Check(t)
	d := loadDemo(t)
	emu := referenceEmulator(t)
	h := newHarness(t, emu, "")
	spoolOne(t, h, d, 1)
	spoolOne(t, h, d, 2)
	writeMuted(t, h)
	h.start()
	waitFor(t, 10*time.Second, "spool uploads held", func() bool { return h.agent.st.get().Spool.Uploads == "held" })
	data, err := h.agent.handleRequest(context.Background(), "mute", []byte(`{"muted": true, "discard_spool": true}`))
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := data.(map[string]any); m["muted"] != true || m["discarded"] != 2 {
		t.Fatalf("response %v", data)
	}
	if st := h.agent.spool.Stats(); st.Entries != 0 {
		t.Fatalf("spool after discard: %+v", st)
	}
	if err := h.agent.SetMuted(false); err != nil {
		t.Fatal(err)
	}
	h.endInput()
	if n := len(emu.Requests()); n != 0 {
		t.Fatalf("%d uploads of discarded speech", n)
	}
	if us := h.rest(); len(us) != 0 {
		t.Fatalf("discarded speech published: %+v", us)
	}
	emu.Close()
}

// Issue 12 item 2, the live gap: audio handed to the live uplink before a mute, still
// waiting for a connection, is not sent when the connection opens after the mute; it goes
// to the spool, held.
func TestMuteWithholdsQueuedLiveAudio(t *testing.T) {
	leaktest.Check(t)
	d := loadDemo(t)
	emu := referenceEmulator(t)
	// The stream opens 4 s after it is asked for: speech begins ~0.6 s in, the mute comes
	// ~2 s in, the connection ~4.6 s in, before the segment's 5 s wait for one ends.
	emu.SetHandshakeDelay(4 * time.Second)
	h := newHarness(t, emu, "capture:\n  realtime: true\n")
	h.start()
	h.feed(d.pcm(0, 2.0))
	// Capture reads ahead of its real-time pacing: wait for the gate to open the segment
	// (the uplink starts dialling then), and mute with the segment open.
	waitFor(t, 10*time.Second, "speech", func() bool { return h.agent.st.get().Speech })
	if err := h.agent.SetMuted(true); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := emu.WaitSession(ctx, func(dgemu.SessionInfo) bool { return true }); err != nil {
		t.Fatalf("no stream opened: %v", err)
	}
	h.feed(silence(1))
	h.endInput() // CloseStream goes behind any queued audio: what was queued has been sent
	for _, s := range emu.Sessions() {
		if s.AudioBytes != 0 {
			t.Fatalf("%d bytes of audio sent after the mute", s.AudioBytes)
		}
	}
	sp, err := spool.Open(h.cfg.Config.Spool.Dir, spool.Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(sp.Pending()); n != 1 || len(emu.Requests()) != 0 {
		t.Fatalf("%d spool entries, %d uploads; want the withheld segment held in the spool", n, len(emu.Requests()))
	}
	emu.Close()
}

// Issue 12 item 8: a full disk logs the lost speech once, then counts it (the Repeater),
// not two ERROR lines per utterance.
func TestFullDiskLoggedOnce(t *testing.T) {
	d := loadDemo(t)
	emu := dgemu.NewServer(dgemu.Config{})
	defer emu.Close()
	h := newHarness(t, emu, "")
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=64k,mode=0700"); err != nil {
		t.Skipf("cannot mount a small tmpfs here (%v): the full-disk path is not exercised", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, 0) })
	sp, err := spool.Open(dir, spool.Limits{}, h.agent.opts.Logger)
	if err != nil {
		t.Fatal(err)
	}
	h.agent.spool = sp
	const n = 5
	for i := range n {
		var frames []audio.Frame
		for k := range 30 { // 3 s: more than the filesystem holds
			at := 16000*i + k*audio.FrameSamples
			frames = append(frames, audio.Frame{Seq: uint64(k), Time: time.Now(), Samples: d.samples[at : at+audio.FrameSamples]})
		}
		h.agent.spoolSegment(live.Segment{Start: frames[0].Time, Frames: frames, Reason: "test"})
	}
	if got := h.agent.counters.spoolErrors.Load(); got != n {
		t.Fatalf("spool errors counted %d, want %d", got, n)
	}
	if lines := strings.Count(h.logs.String(), "level=ERROR"); lines != 1 {
		t.Fatalf("%d ERROR lines for %d failed writes, want 1:\n%s", lines, n, h.logs.String())
	}
}

// Issue 12 item 4: a spool that cannot be written at start does not stop live
// transcription: the agent runs, the state and health say the spool is unavailable, and
// it is retried until it works.
func TestUnwritableSpoolStartsDegraded(t *testing.T) {
	leaktest.Check(t)
	d := loadDemo(t)
	emu := referenceEmulator(t)
	h := newHarness(t, emu, "capture:\n  realtime: true\n")
	dir := h.cfg.Config.Spool.Dir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_RDONLY, "size=1m,mode=0700"); err != nil {
		t.Skipf("cannot mount a read-only tmpfs here (%v): the unwritable-spool path is not exercised", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, 0) })
	h.start()
	waitFor(t, 10*time.Second, "spool unavailable in the state", func() bool {
		s := h.agent.st.get()
		return s.Pipeline == "running" && s.Spool.State == "unavailable" && s.Spool.LastError != ""
	})
	if sp, _ := h.agent.Health()["spool"].(spool.Stats); sp.Unavailable == "" {
		t.Errorf("health spool %+v, want unavailable with a reason", sp)
	}
	pos := 0.0
	h.feedSentence(d, 0, &pos, 3)
	if u := h.next(20 * time.Second); u.Text != d.lines[0] || u.Source != transcript.SourceLive {
		t.Fatalf("live transcript %q from %s, want %q", u.Text, u.Source, d.lines[0])
	}
	// The disk comes back: the retry finds it.
	if err := syscall.Mount("", dir, "", syscall.MS_REMOUNT, "size=1m,mode=0700"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "spool available again", func() bool { return h.agent.st.get().Spool.State == "" })
	h.endInput()
	emu.Close()
}

// Issue 12 item 11: health counters say what they name. With every stream refused,
// nothing reaches the socket: audio_sent_s stays 0, while audio_speech_s counts the speech
// the gate passed.
func TestHealthAudioSentIsWhatWasSent(t *testing.T) {
	leaktest.Check(t)
	d := loadDemo(t)
	emu := referenceEmulator(t)
	emu.RefuseHandshakes(dgemu.Times(1000, dgemu.Refusal{Status: 401})...)
	emu.FailRequests(dgemu.Times(1000, dgemu.Refusal{Status: 401})...)
	h := newHarness(t, emu, "")
	h.agent.opts.StopBudget = 5 * time.Second // the spool cannot drain: do not wait for it
	h.start()
	pos := 0.0
	h.feedSentence(d, 0, &pos, 3)
	h.endInput()
	hm := h.agent.Health()
	if hm["audio_sent_s"] != 0.0 {
		t.Errorf("audio_sent_s %v with every stream refused, want 0", hm["audio_sent_s"])
	}
	if s, _ := hm["audio_speech_s"].(float64); s < 2 {
		t.Errorf("audio_speech_s %v, want the sentence's seconds", hm["audio_speech_s"])
	}
	for _, s := range emu.Sessions() {
		if s.AudioBytes != 0 {
			t.Fatalf("the emulator got audio on a refused stream")
		}
	}
	emu.Close()
}

// Issue 12 item 7: the journal holds a segment only until it is settled. After a run whose
// utterances were published live and spooled, no journal file is left (a leftover would be
// transcribed again at the next start).
func TestJournalEmptyAfterSettled(t *testing.T) {
	leaktest.Check(t)
	d := loadDemo(t)
	emu := referenceEmulator(t)
	h, first, _, pos := firstSentenceThenDrop(t, d, emu)
	emu.RefuseHandshakes(dgemu.Refusal{Status: 429, RetryAfter: "10"})
	h.feedSentence(d, 1, pos, 3) // goes to the spool
	h.endInput()
	got := append([]transcript.Utterance{first}, h.rest()...)
	checkSentences(t, sortedByStart(got), d.lines[:2])
	left, _ := filepath.Glob(filepath.Join(h.cfg.Config.Spool.Dir, journalDir, "*"))
	if len(left) != 0 {
		t.Fatalf("journal files left after a clean run: %v", left)
	}
	emu.Close()
}

// parseJournal reads files a crash left: any bytes, never a panic, and what it returns is
// a run of whole, increasing frames.
func FuzzParseJournal(f *testing.F) {
	j := []byte(journalMagic + `"/tmp/in.wav"` + "\n")
	for i := range 3 {
		j = binary.LittleEndian.AppendUint64(j, uint64(time.Now().UnixNano()))
		j = binary.LittleEndian.AppendUint64(j, uint64(i))
		j = binary.LittleEndian.AppendUint32(j, 4)
		j = append(j, 1, 0, 2, 0, 3, 0, 4, 0)
	}
	f.Add(j)
	f.Add(j[:len(j)-3])
	f.Add([]byte(journalMagic))
	f.Add([]byte(journalMagic + `""` + "\n"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, frames := parseJournal(b)
		for i, fr := range frames {
			if len(fr.Samples) == 0 || i > 0 && fr.Seq <= frames[i-1].Seq {
				t.Fatalf("frame %d: %+v", i, fr)
			}
		}
	})
}

// Issue 12 item 7, the recovery rules: a journal is put into the spool once (a copy already
// spooled is not doubled), a torn tail is dropped, and a journal of the file input this run
// reads again from its start is dropped (the replay hears it again).
func TestRecoverJournalRules(t *testing.T) {
	d := loadDemo(t)
	emu := dgemu.NewServer(dgemu.Config{})
	defer emu.Close()
	h := newHarness(t, emu, "")
	cfg := h.cfg.Config
	sp, err := spool.Open(cfg.Spool.Dir, spool.Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := h.agent
	a.spool, a.spooledTags = sp, map[string]bool{}
	write := func(input string, from int, torn bool) time.Time {
		j := newJournal(cfg.Spool.Dir, input, logging.NewRepeater(a.log, "test", 0))
		t0 := time.Now().Add(time.Duration(from) * time.Minute)
		for k := range 20 {
			at := from*16000 + k*audio.FrameSamples
			j.frame(audio.Frame{Seq: uint64(k), Time: t0.Add(time.Duration(k) * audio.FrameDuration),
				Samples: d.samples[at : at+audio.FrameSamples]}, k == 0)
		}
		j.end()
		if torn {
			f, _ := os.OpenFile(journalPath(j.dir, t0), os.O_WRONLY|os.O_APPEND, 0)
			f.Write([]byte{1, 2, 3})
			f.Close()
		}
		return t0
	}
	write("", 1, true)                 // microphone, torn tail: recovered
	write("-", 2, false)               // stdin: recovered
	write(cfg.Capture.Input, 3, false) // "-" here too: stdin is never replayed
	write("/srv/in.wav", 4, false)     // another file: recovered
	a.recoverJournal(cfg)
	if n := len(sp.Pending()); n != 4 {
		t.Fatalf("%d entries recovered, want 4", n)
	}
	for _, e := range sp.Pending() {
		if e.Meta.Samples != 20*audio.FrameSamples {
			t.Errorf("entry %s has %d samples, want the 20 whole frames", e.Meta.ID, e.Meta.Samples)
		}
	}
	// The same audio journaled again (a kill after it was spooled, before the journal
	// was removed): not doubled.
	write("", 1, false)
	a.recoverJournal(cfg)
	if n := len(sp.Pending()); n != 4 {
		t.Fatalf("%d entries after recovering a copy of spooled audio, want 4", n)
	}
	// A journal of the file this run reads again is dropped.
	cfg.Capture.Input = "/srv/in.wav"
	write("/srv/in.wav", 5, false)
	a.recoverJournal(cfg)
	if n := len(sp.Pending()); n != 4 {
		t.Fatalf("%d entries: the replayed file's journal was recovered too", n)
	}
	if left, _ := filepath.Glob(filepath.Join(cfg.Spool.Dir, journalDir, "*")); len(left) != 0 {
		t.Fatalf("journal files left: %v", left)
	}
}

// BenchmarkJournalFrame is the cost the journal adds to each forwarded (speech) frame: one
// write(2) of 3.2 KB to the page cache, no fsync. Silence costs nothing.
func BenchmarkJournalFrame(b *testing.B) {
	j := newJournal(b.TempDir(), "", logging.NewRepeater(slog.New(slog.DiscardHandler), "bench", 0))
	f := audio.Frame{Time: time.Now(), Samples: make([]int16, audio.FrameSamples)}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		f.Seq = uint64(i)
		j.frame(f, i%100 == 0) // a new segment every 10 s of speech
	}
	j.end()
}

// Issue 12 items 1 and 2 through the broker: a device that starts muted on a corrupt mute
// file publishes why in its state, holds the spool ("uploads": "held"), and a mute request
// with discard_spool drops the held speech and clears the reason.
func TestMQTTMuteFailClosedHoldAndDiscard(t *testing.T) {
	leaktest.Check(t)
	broker := brokertest.Start(t)
	d := loadDemo(t)
	emu := referenceEmulator(t)
	defer emu.Close()
	h := newHarness(t, emu, "mqtt:\n  broker: "+broker.URL()+"\n")
	spoolOne(t, h, d, 1)
	if err := os.WriteFile(filepath.Join(h.cfg.Config.StateDir, mutedFile), []byte(`{"muted":tru`), 0o600); err != nil {
		t.Fatal(err)
	}
	base := "hark/testdev"
	w := watch(t, broker.URL(), base+"/#")
	h.start()
	w.await(base+"/state", func(m msg) bool {
		return jsonField(m.payload, "muted") == true && jsonField(m.payload, "mute_reason") != nil &&
			jsonField(m.payload, "spool.uploads") == "held" && jsonField(m.payload, "spool.entries") == 1.0
	}, 20*time.Second)
	w.publish(base+"/request/mute", `{"transaction": "d1", "muted": true, "discard_spool": true}`)
	r := w.await(base+"/response/mute", nil, 10*time.Second)
	if jsonField(r.payload, "status") != "ok" || jsonField(r.payload, "data.discarded") != 1.0 {
		t.Fatalf("discard answered %s", r.payload)
	}
	w.await(base+"/state", func(m msg) bool {
		return jsonField(m.payload, "mute_reason") == nil && jsonField(m.payload, "spool.entries") == 0.0
	}, 10*time.Second)
	w.publish(base+"/request/mute", `{"muted": false, "discard_spool": true}`)
	if r := w.await(base+"/response/mute", nil, 10*time.Second); jsonField(r.payload, "status") != "error" {
		t.Fatalf("discard_spool with an unmute accepted: %s", r.payload)
	}
	h.endInput()
	if n := len(emu.Requests()); n != 0 {
		t.Fatalf("%d uploads of held or discarded speech", n)
	}
}
