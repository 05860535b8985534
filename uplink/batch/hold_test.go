package batch

import (
	"testing"
	"time"

	"github.com/hark-audio/hark/dgemu"
	"github.com/hark-audio/hark/internal/leaktest"
)

// TestUploaderHold (issue 12 item 2): a held uploader uploads and publishes nothing, says
// "held" (also when the spool is empty), and drains everything in order once released.
func TestUploaderHold(t *testing.T) {
	leaktest.Check(t)
	srv, err := dgemu.Listen(dgemu.Config{APIKey: testKey})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	sp := openSpool(t, t.TempDir())
	r := newReceiver()
	u := newUploader(t, sp, newTestClient(t, srv.HTTPURL()), r, 2)
	u.Hold(true)
	runUploader(t, u)
	metas := putN(t, sp, 0, 3)
	waitFor(t, "held", 5*time.Second, func() bool { return u.Stats().State == StateHeld })
	if n := len(srv.Requests()); n != 0 || len(sp.Pending()) != 3 {
		t.Fatalf("held: %d uploads, %d pending", n, len(sp.Pending()))
	}
	u.Hold(false)
	checkPublished(t, r.wait(t, 3, 20*time.Second), metas)
	waitFor(t, "idle", 5*time.Second, func() bool { return u.Stats().State == StateIdle })
	u.Hold(true) // nothing spooled: the state still says held, at once
	waitFor(t, "held while idle", 5*time.Second, func() bool { return u.Stats().State == StateHeld })
}
