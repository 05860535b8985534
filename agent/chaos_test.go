package agent

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hark-audio/hark/dgemu"
	"github.com/hark-audio/hark/internal/leaktest"
	"github.com/hark-audio/hark/transcript"
)

// chaosSeed is 1 unless HARK_CHAOS_SEED says otherwise (to explore other fault orders).
func chaosSeed() uint64 {
	if v, err := strconv.ParseUint(os.Getenv("HARK_CHAOS_SEED"), 10, 64); err == nil {
		return v
	}
	return 1
}

// emulatorModes are the ways the service behaves that the agent is tested under: the
// plain emulator, each named quiet mode of dgemu (silence unanswered, Finalize unanswered
// or answered late and empty with speech_final false, periodic empty finals, jitter on
// every result, all at once), and the service's ingestion limit of 1.25x real time.
func emulatorModes() map[string]dgemu.Config {
	modes := map[string]dgemu.Config{}
	for name, q := range dgemu.Modes {
		if name == "" {
			name = "plain"
		}
		modes[name] = dgemu.Config{Quiet: q}
	}
	modes["ingest-limit"] = dgemu.Config{RealtimeLimit: 1.25}
	return modes
}

// TestFaultsLoseAndRepeatNoWord streams twelve sentences in real time through the whole
// agent while the service misbehaves throughout — connections cut, NET-0000 closes,
// refused handshakes, failing pre-recorded requests — under every emulator mode. Whatever
// path each sentence takes (live, replayed on a new connection, or the spool), what is
// published must be what was said: every sentence exactly once, in one transcript, whole.
// The emulator recognises speech by its audio (a reference recording), so the check is
// word for word, and a sentence cut in two would come back as two partial transcripts.
//
// The modes stream side by side (real time, little CPU; go test would run only GOMAXPROCS
// parallel subtests at once), then each is checked in its own subtest.
func TestFaultsLoseAndRepeatNoWord(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 60 s of audio in real time")
	}
	leaktest.Check(t)
	d := loadDemo(t)
	type run struct {
		emu    *dgemu.Server
		h      *harness
		faults []string
		err    error
		got    []transcript.Utterance
	}
	modes := emulatorModes()
	names := slices.Sorted(maps.Keys(modes))
	runs := map[string]*run{}
	var want []string
	for range 3 {
		want = append(want, d.lines...)
	}
	var wg sync.WaitGroup
	for _, name := range names {
		r := &run{emu: referenceEmulatorWith(t, modes[name])}
		r.h = newHarness(t, r.emu, "capture:\n  realtime: true\n")
		r.h.start()
		runs[name] = r
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.faults, r.err = chaosRun(r.h, r.emu, d)
		}()
	}
	wg.Wait()
	for _, name := range names {
		r := runs[name]
		t.Run(name, func(t *testing.T) {
			if r.err != nil {
				t.Fatal(r.err)
			}
			got := sortedByStart(r.h.rest())
			live := countSource(got, transcript.SourceLive)
			st := r.h.agent.uplink.Stats()
			t.Logf("%d utterances (%d live, %d from the spool), %d streams, %d replays, faults %v",
				len(got), live, len(got)-live, len(r.emu.Sessions()), st.Replays, r.faults)
			if t.Failed() || !checkSentencesOK(got, want) {
				t.Logf("agent log:\n%s", r.h.logs.String())
			}
			checkSentences(t, got, want)
		})
	}
}

// chaosRun feeds the demo three times (with 1.5 s pauses) while injecting faults, ends the
// input and waits for the agent to stop. It runs on its own goroutine, so it reports errors
// instead of failing the test.
func chaosRun(h *harness, emu *dgemu.Server, d *demo) ([]string, error) {
	stop := make(chan struct{})
	var faults []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		rng := rand.New(rand.NewPCG(chaosSeed(), 2)) // fixed seed: the same faults, in the same order
		for {
			t := time.NewTimer(time.Duration(1500+rng.IntN(2500)) * time.Millisecond) // pacing the faults
			select {
			case <-stop:
				t.Stop()
				return
			case <-t.C:
			}
			// Mostly lost connections (each one a replay, or a spooled sentence when the
			// service stays away), sometimes refusals and failing uploads.
			switch rng.IntN(8) {
			case 0, 1, 2:
				emu.DropSessions()
				faults = append(faults, "drop")
			case 3, 4:
				emu.FailNET0000()
				faults = append(faults, "net-0000")
			case 5:
				n := 1 + rng.IntN(2)
				emu.RefuseHandshakes(dgemu.Times(n, dgemu.Refusal{Status: 503})...)
				faults = append(faults, fmt.Sprintf("503x%d", n))
			case 6:
				emu.RefuseHandshakes(dgemu.Refusal{Status: 429, RetryAfter: "1"})
				faults = append(faults, "429")
			case 7:
				n := 1 + rng.IntN(2)
				emu.FailRequests(dgemu.Times(n, dgemu.Refusal{Status: 503})...)
				faults = append(faults, fmt.Sprintf("rest-503x%d", n))
			}
		}
	}()
	var err error
	for range 3 {
		for _, sp := range d.spans {
			// As feedSentence: 0.6 s of lead-in and tail, then 1.5 s of silence.
			from, to := max(0, sp.Start-0.6), sp.End+0.6
			if _, err = h.stdin.Write(append(d.pcm(from, to), silence(1.5)...)); err != nil {
				break
			}
		}
	}
	close(stop)
	<-done
	h.stdin.Close()
	select {
	case aerr := <-h.done:
		h.done <- nil // for Cleanup
		if err == nil {
			err = aerr
		}
	case <-time.After(90 * time.Second):
		err = errors.Join(err, errors.New("agent did not stop within 90 s of the end of input"))
	}
	return faults, err
}

// checkSentencesOK reports whether the utterances' texts are exactly the sentences.
func checkSentencesOK(got []transcript.Utterance, want []string) bool {
	var texts []string
	for _, u := range got {
		texts = append(texts, u.Text)
	}
	return slices.Equal(texts, want)
}

// checkSentences fails unless the utterances, in capture order, are exactly the sentences
// said: one transcript each, whole, none repeated or lost.
func checkSentences(t *testing.T, got []transcript.Utterance, want []string) {
	t.Helper()
	var texts []string
	for _, u := range got {
		texts = append(texts, u.Text)
	}
	if !slices.Equal(texts, want) {
		t0 := got[0].Start
		for _, u := range got {
			t.Logf("%-5s %7.3f..%7.3f %q", u.Source, u.Start.Sub(t0).Seconds(), u.End.Sub(t0).Seconds(), u.Text)
		}
		t.Errorf("published utterances differ from the sentences said:\n got %q\nwant %q", texts, want)
	}
	// Word by word too (the text could hide a word published twice inside one utterance).
	var words []string
	for _, u := range got {
		for _, w := range u.Words {
			words = append(words, w.Punctuated)
		}
	}
	if g, w := strings.Join(words, " "), strings.Join(want, " "); g != w {
		t.Errorf("published words differ from the words said:\n got %q\nwant %q", g, w)
	}
}

// referenceEmulatorWith is referenceEmulator with a configuration (modes, limits).
func referenceEmulatorWith(t testing.TB, cfg dgemu.Config) *dgemu.Server {
	t.Helper()
	dir := filepath.Join("..", "testdata", "demo")
	ref, err := dgemu.LoadReference(filepath.Join(dir, "sample.wav"), filepath.Join(dir, "sample.json"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Reference = ref
	emu := dgemu.NewServer(cfg)
	t.Cleanup(emu.Close)
	return emu
}
