package mqttlink

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
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
