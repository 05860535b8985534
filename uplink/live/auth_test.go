package live

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hark-audio/hark/dgemu"
)

// Issue 11, item 3: with a token file the stream authenticates with "Bearer <JWT>", read
// afresh for every connection: an expired token is refused (and never logged), and the
// connection after the refresher replaced the file succeeds.
func TestTokenFileBearer(t *testing.T) {
	tf := filepath.Join(t.TempDir(), "token")
	var srv *dgemu.Server
	h := newHarness(t, dgemu.Config{Utterances: []string{"Hello there."}}, func(c *Config) {
		c.APIKey = ""
		c.TokenFile = tf
		c.RefusedRetry = 100 * time.Millisecond
	})
	srv = h.srv
	expired := srv.IssueToken(-time.Second)
	if err := os.WriteFile(tf, []byte(expired+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	feedSegment(h.u, h.g.utter(3, 10, 7))
	h.r.wait(t, "refused", func(r *rec) bool { return len(r.evs("stream_refused")) > 0 })
	fresh := srv.IssueToken(time.Minute)
	if err := os.WriteFile(tf, []byte(fresh+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The refused retry is due after RefusedRetry of wall-clock time: speech after that
	// opens a stream (earlier speech goes to the spool).
	opened := false
	for i := 0; i < 50 && !opened; i++ {
		feedSegment(h.u, h.g.utter(3, 10, 7))
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		_, err := srv.WaitSession(ctx, func(si dgemu.SessionInfo) bool { return si.AuthMethod == dgemu.AuthBearer })
		cancel()
		opened = err == nil
	}
	if !opened {
		t.Fatalf("no stream opened with the fresh token: %s", summarize(srv.Sessions()))
	}
	for _, ev := range h.r.eventsOf("stream_refused") {
		if strings.Contains(fmt.Sprint(ev.Attrs), expired) {
			t.Fatal("token in an event")
		}
	}
}
