package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hark-audio/hark/internal/leaktest"
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
