package agent

import (
	"fmt"
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
func TestFaultsLoseAndRepeatNoWord(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 60 s of audio in real time per emulator mode")
	}
	leaktest.Check(t)
	d := loadDemo(t)
	for name, ecfg := range emulatorModes() {
		t.Run(name, func(t *testing.T) {
			t.Parallel() // real time, little CPU: the modes run side by side
			emu := referenceEmulatorWith(t, ecfg)
			h := newHarness(t, emu, "capture:\n  realtime: true\n")
			h.start()

			stop := make(chan struct{})
			var wg sync.WaitGroup
			var faults []string
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(chaosSeed(), 2)) // fixed seed: the same faults, in the same order
				for {
					t := time.NewTimer(time.Duration(1500+rng.IntN(2500)) * time.Millisecond) // pacing the faults
					select {
					case <-stop:
						t.Stop()
						return
					case <-t.C:
					}
					// Mostly lost connections (each one a replay, or a spooled sentence when
					// the service stays away), sometimes refusals and failing uploads.
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
			pos := 0.0
			var want []string
			for range 3 {
				for i := range d.spans {
					h.feedSentence(d, i, &pos, 1.5)
					want = append(want, d.lines[i])
				}
			}
			close(stop)
			wg.Wait()
			h.endInput()

			got := sortedByStart(h.rest())
			live, spool := 0, 0
			var texts []string
			for _, u := range got {
				texts = append(texts, u.Text)
				if u.Source == transcript.SourceLive {
					live++
				} else {
					spool++
				}
			}
			st := h.agent.uplink.Stats()
			t.Logf("%d utterances (%d live, %d from the spool), %d streams, %d replays, faults %v",
				len(got), live, spool, len(emu.Sessions()), st.Replays, faults)
			checkSentences(t, got, want)
		})
	}
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
