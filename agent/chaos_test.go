package agent

import (
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hark-audio/hark/dgemu"
	"github.com/hark-audio/hark/internal/leaktest"
)

// chaosSeed is 1 unless HARK_CHAOS_SEED says otherwise (to explore other fault orders).
func chaosSeed() uint64 {
	if v, err := strconv.ParseUint(os.Getenv("HARK_CHAOS_SEED"), 10, 64); err == nil {
		return v
	}
	return 1
}

// TestFaultsLoseAndRepeatNoWord streams twelve sentences in real time while the service
// misbehaves throughout: connections cut, NET-0000 closes, refused handshakes, failing
// pre-recorded requests. Whatever path each piece of speech takes (live, spool, or split
// between them), the words published, in capture order, must be exactly the words spoken:
// none lost, none repeated. The emulator recognises speech by its audio (a reference
// recording), so the check is word for word.
func TestFaultsLoseAndRepeatNoWord(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 50 s of audio in real time")
	}
	leaktest.Check(t)
	d := loadDemo(t)
	emu := referenceEmulator(t)
	h := newHarness(t, emu, "capture:\n  realtime: true\n")
	h.start()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(chaosSeed(), 2)) // fixed seed: the same faults, in the same order
		for i := 0; ; i++ {
			t := time.NewTimer(time.Duration(1500+rng.IntN(2500)) * time.Millisecond) // pacing the faults
			select {
			case <-stop:
				t.Stop()
				return
			case <-t.C:
			}
			switch rng.IntN(5) {
			case 0:
				emu.DropSessions()
			case 1:
				emu.FailNET0000()
			case 2:
				emu.RefuseHandshakes(dgemu.Times(1+rng.IntN(2), dgemu.Refusal{Status: 503})...)
			case 3:
				emu.RefuseHandshakes(dgemu.Refusal{Status: 429, RetryAfter: "1"})
			case 4:
				emu.FailRequests(dgemu.Times(1+rng.IntN(2), dgemu.Refusal{Status: 503})...)
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
	var words []string
	live, spool := 0, 0
	for _, u := range got {
		for _, w := range u.Words {
			words = append(words, w.Punctuated)
		}
		if u.Source == "live" {
			live++
		} else {
			spool++
		}
	}
	t.Logf("%d utterances (%d live, %d from the spool), %d streams opened", len(got), live, spool, len(emu.Sessions()))
	if g, w := strings.Join(words, " "), strings.Join(want, " "); g != w {
		t0 := got[0].Start
		for _, u := range got {
			t.Logf("%-5s %7.3f..%7.3f %q", u.Source, u.Start.Sub(t0).Seconds(), u.End.Sub(t0).Seconds(), u.Text)
		}
		t.Errorf("published words differ from what was said:\n got %q\nwant %q", g, w)
	}
}
