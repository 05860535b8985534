package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/hark-audio/hark/internal/leaktest"
	"github.com/hark-audio/hark/uplink/batch"
)

// Issue 11, item 1: a model/language pair the service does not serve (here set in the file;
// a remote change does the same) is refused with 400 "Bad Request". The live stream is
// refused, the speech is spooled, and the spool uploads pause with the service's reason in
// the state, the STATUS line and health, keeping every entry (before: all went to failed/).
func TestConfig400PausesSpoolUploads(t *testing.T) {
	leaktest.Check(t)
	d := loadDemo(t)
	emu := referenceEmulator(t)
	h := newHarness(t, emu, "capture:\n  realtime: false\ndeepgram:\n  model: nova-2-meeting\n  language: fr\n")
	h.start()
	pos := 0.0
	h.feedSentence(d, 0, &pos, 1)
	deadline := time.Now().Add(30 * time.Second)
	for h.agent.st.get().Spool.Uploads != string(batch.StatePaused) {
		if time.Now().After(deadline) {
			t.Fatalf("spool uploads never paused; state %+v", h.agent.st.get())
		}
		time.Sleep(10 * time.Millisecond) // pacing the poll: the state has no change feed here
	}
	s := h.agent.st.get()
	if !strings.Contains(s.Spool.LastError, "No such model/language/tier combination found") {
		t.Errorf("state spool %+v", s.Spool)
	}
	if line := statusLine(s); !strings.Contains(line, "spool uploads paused") {
		t.Errorf("STATUS %q", line)
	}
	us, _ := h.agent.Health()["uploader"].(batch.Stats)
	if us.State != batch.StatePaused || us.LastClass != "config" {
		t.Errorf("health uploader %+v", us)
	}
	if st := h.agent.spool.Stats(); st.Failed != 0 || st.Entries == 0 {
		t.Errorf("spool %+v: entries moved aside or lost", st)
	}
}
