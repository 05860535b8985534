package mqttlink

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hark-audio/hark/mqttlink/brokertest"
)

func payload(i int) []byte { return []byte(fmt.Sprintf(`{"seq":%d}`, i)) }

func drain(t *testing.T, q *diskQueue) []string {
	t.Helper()
	var got []string
	for {
		e, ok := q.Peek()
		if !ok {
			return got
		}
		got = append(got, string(e.data))
		q.Remove(e.seq)
	}
}

func TestQueueOrderAndReopen(t *testing.T) {
	dir := t.TempDir()
	q, err := openQueue(dir, 10)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 4; i++ {
		if _, err := q.Append(payload(i)); err != nil {
			t.Fatal(err)
		}
	}
	// Peek without Remove keeps the head (a message in flight stays queued).
	e1, _ := q.Peek()
	e2, _ := q.Peek()
	if e1.seq != e2.seq || string(e1.data) != `{"seq":1}` {
		t.Fatalf("peek not stable: %v %v", e1, e2)
	}
	q.Remove(e1.seq)

	// A "restart": a new queue on the same directory sees 2..4 and appends after them.
	q2, err := openQueue(dir, 10)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q2.Append(payload(5)); err != nil {
		t.Fatal(err)
	}
	got := drain(t, q2)
	want := []string{`{"seq":2}`, `{"seq":3}`, `{"seq":4}`, `{"seq":5}`}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if st := q2.Stats(); st.entries != 0 || st.bytes != 0 {
		t.Fatalf("stats after drain: %+v", st)
	}
}

func TestDiskQueueBound(t *testing.T) {
	q, err := openQueue(t.TempDir(), 3)
	if err != nil {
		t.Fatal(err)
	}
	evicted := 0
	for i := 1; i <= 5; i++ {
		n, err := q.Append(payload(i))
		if err != nil {
			t.Fatal(err)
		}
		evicted += n
	}
	if st := q.Stats(); evicted != 2 || st.dropped != 2 || st.entries != 3 {
		t.Fatalf("evicted %d, stats %+v; want 2 dropped, 3 entries", evicted, st)
	}
	got := drain(t, q)
	if fmt.Sprint(got) != fmt.Sprint([]string{`{"seq":3}`, `{"seq":4}`, `{"seq":5}`}) {
		t.Fatalf("got %v", got)
	}
}

func TestQueueInFlightEvicted(t *testing.T) {
	q, _ := openQueue(t.TempDir(), 2)
	q.Append(payload(1))
	q.Append(payload(2))
	head, _ := q.Peek()
	q.Append(payload(3)) // evicts the entry "in flight"
	q.Remove(head.seq)   // its late acknowledgement must not remove anything else
	if got := drain(t, q); fmt.Sprint(got) != fmt.Sprint([]string{`{"seq":2}`, `{"seq":3}`}) {
		t.Fatalf("got %v", got)
	}
}

func TestQueueOpenCleansAndTrims(t *testing.T) {
	dir := t.TempDir()
	q, _ := openQueue(dir, 10)
	for i := 1; i <= 4; i++ {
		q.Append(payload(i))
	}
	// A torn append (temporary file), a corrupt entry and a foreign file.
	os.WriteFile(filepath.Join(dir, queueTmpPrefix+"00000000000000000099"), []byte(`{"x"`), 0o600)
	os.WriteFile(q.path(2), []byte(`{"torn`), 0o600)
	os.WriteFile(filepath.Join(dir, "README"), []byte("not ours"), 0o600)

	q2, err := openQueue(dir, 2) // a smaller queue_max than before: keep the newest two
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, queueTmpPrefix+"00000000000000000099")); !os.IsNotExist(err) {
		t.Fatalf("temporary file not removed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "README")); err != nil {
		t.Fatalf("foreign file touched: %v", err)
	}
	if st := q2.Stats(); st.dropped != 2 || st.entries != 2 {
		t.Fatalf("stats %+v, want 2 dropped and 2 entries", st)
	}
	if got := drain(t, q2); fmt.Sprint(got) != fmt.Sprint([]string{`{"seq":3}`, `{"seq":4}`}) {
		t.Fatalf("got %v", got)
	}

	// Corrupt entries are skipped and counted.
	q3, _ := openQueue(t.TempDir(), 10)
	q3.Append(payload(1))
	q3.Append(payload(2))
	os.WriteFile(q3.path(1), []byte("garbage"), 0o600)
	if got := drain(t, q3); fmt.Sprint(got) != fmt.Sprint([]string{`{"seq":2}`}) {
		t.Fatalf("got %v", got)
	}
	if st := q3.Stats(); st.corrupt != 1 {
		t.Fatalf("corrupt = %d, want 1", st.corrupt)
	}
}

func BenchmarkQueueAppendRemove(b *testing.B) {
	q, err := openQueue(b.TempDir(), 1000)
	if err != nil {
		b.Fatal(err)
	}
	data := make([]byte, 2048)
	copy(data, `{"text":"`)
	for i := 9; i < len(data)-2; i++ {
		data[i] = 'a'
	}
	copy(data[len(data)-2:], `"}`)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := q.Append(data); err != nil {
			b.Fatal(err)
		}
		e, _ := q.Peek()
		q.Remove(e.seq)
	}
}

// TestPublishTranscriptDoesNotWaitForDisk: PublishTranscript runs on the live uplink's
// event loop, so it hands the transcript over and returns while the disk write is still
// under way; the transcript is sent only once it is on disk, and a full hand-off (a disk
// that stopped keeping up) refuses instead of blocking for ever.
func TestPublishTranscriptDoesNotWaitForDisk(t *testing.T) {
	checkLeaks(t)
	b := brokertest.Start(t)
	o := testOptions(t, b.URL())
	base := o.TopicPrefix + "/" + o.DeviceID
	s := subscribe(t, b.URL(), map[string]byte{base + "/transcript": 1}, subOpts{})
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	writing := make(chan struct{}, 1)
	c.queue.hand.beforeWrite = func() {
		select {
		case writing <- struct{}{}:
		default:
		}
		<-release
	}
	c.queue.hand.wait = 50 * time.Millisecond
	c.Start(context.Background())
	t.Cleanup(func() { closeClient(t, c) })
	awaitConn(t, c)

	done := make(chan error, 1)
	go func() { done <- c.PublishTranscript(utterance(1)) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitFor):
		t.Fatal("PublishTranscript waited for the disk")
	}
	<-writing // the writer holds transcript 1, blocked in its disk write
	if ents, _ := os.ReadDir(o.QueueDir); len(ents) != 0 {
		t.Fatalf("%d queue files while the write is held", len(ents))
	}
	if st := c.Stats(); st.QueueEntries != 1 || st.Delivered != 0 {
		t.Fatalf("while the write is held: %+v", st)
	}
	// Fill the hand-off: beyond handoffMax waiting, Push refuses (after its bounded wait).
	for i := 2; i <= handoffMax; i++ {
		if err := c.PublishTranscript(utterance(uint64(i))); err != nil {
			t.Fatalf("transcript %d: %v", i, err)
		}
	}
	if err := c.PublishTranscript(utterance(handoffMax + 1)); !errors.Is(err, ErrQueueBusy) {
		t.Fatalf("full hand-off: %v, want ErrQueueBusy", err)
	}
	if st := c.Stats(); st.QueueRefused != 1 {
		t.Fatalf("refusal not counted: %+v", st)
	}
	close(release)
	collectSeqs(t, s, base+"/transcript", 1, seqRange(1, handoffMax))
}

// TestCloseWritesHandedOver: transcripts handed over but not yet written when Close runs
// are written by Close (for the next start to deliver): a graceful stop loses nothing,
// whether the client was started or not, and whatever its writer was doing.
func TestCloseWritesHandedOver(t *testing.T) {
	checkLeaks(t)
	b := brokertest.Start(t)
	b.Stop(t)
	for _, started := range []bool{false, true} {
		o := testOptions(t, b.URL())
		c, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		release := make(chan struct{})
		held := make(chan struct{}, 1)
		c.queue.hand.beforeWrite = func() {
			select {
			case held <- struct{}{}:
			default:
			}
			<-release
		}
		if started {
			c.Start(context.Background())
		}
		for i := uint64(1); i <= 5; i++ {
			if err := c.PublishTranscript(utterance(i)); err != nil {
				t.Fatal(err)
			}
		}
		closed := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), waitFor)
			defer cancel()
			closed <- c.Close(ctx)
		}()
		<-held // a write is under way (the writer's, or Close's own when not started)
		close(release)
		if err := <-closed; err != nil {
			t.Fatalf("started=%v: Close: %v", started, err)
		}
		q, err := openQueue(o.QueueDir, 100)
		if err != nil {
			t.Fatal(err)
		}
		if got := drain(t, q); len(got) != 5 {
			t.Fatalf("started=%v: %d transcripts on disk after Close, want 5: %v", started, len(got), got)
		}
		if err := c.PublishTranscript(utterance(6)); !errors.Is(err, ErrClosed) {
			t.Fatalf("PublishTranscript after Close: %v", err)
		}
	}
}
