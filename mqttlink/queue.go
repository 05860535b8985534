package mqttlink

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hark-audio/hark/internal/backoff"
	"github.com/hark-audio/hark/internal/fsx"
	"github.com/hark-audio/hark/internal/logging"
)

// diskQueue is the durable FIFO of transcript payloads waiting for the broker's PUBACK.
//
// Entries arrive through Push and the Client's queue writer (see handoff below), never
// straight from the publisher's goroutine. One file per entry, named by a sequence number that increases across restarts, written to a
// temporary name, fsync'd, renamed and the directory fsync'd: a crash leaves either the whole
// entry or nothing (stray temporary files are removed at open), and no entry is ever rewritten,
// so there is no segment compaction to get wrong. Transcripts arrive every few seconds at most,
// so the cost of a file per entry is irrelevant.
type diskQueue struct {
	dir string
	max int

	mu      sync.Mutex
	seqs    []uint64 // entries on disk, oldest first
	next    uint64
	dropped uint64 // evicted because the queue was full
	corrupt uint64 // unreadable entries discarded
	bytes   int64  // approximate: payload bytes of the entries on disk
	sizes   map[uint64]int64

	hand handoff // PublishTranscript's hand-off to the writer (see Push)

	// corruptLog, if set, says which unreadable entries were dropped (once, then counted).
	corruptLog *logging.Repeater
}

type queueEntry struct {
	seq  uint64
	data []byte
}

const (
	queueSuffix    = ".json"
	queueTmpPrefix = "tmp-"
)

func openQueue(dir string, max int) (*diskQueue, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create queue directory: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read queue directory: %w", err)
	}
	q := &diskQueue{dir: dir, max: max, next: 1, sizes: map[uint64]int64{}}
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, queueTmpPrefix) {
			// An append interrupted before its rename: the caller was never told it succeeded.
			_ = os.Remove(filepath.Join(dir, name))
			continue
		}
		seq, ok := parseQueueName(name)
		if !ok || !e.Type().IsRegular() {
			continue // not ours; leave it alone
		}
		var size int64
		if info, err := e.Info(); err == nil {
			size = info.Size()
		}
		q.seqs = append(q.seqs, seq)
		q.sizes[seq] = size
		q.bytes += size
		q.next = max64(q.next, seq+1)
	}
	slices.Sort(q.seqs)
	// A smaller queue_max than last time: keep the newest (q.dropped tells the caller).
	q.mu.Lock()
	q.trimLocked(0)
	q.mu.Unlock()
	return q, nil
}

func max64(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

func parseQueueName(name string) (uint64, bool) {
	s, ok := strings.CutSuffix(name, queueSuffix)
	if !ok || len(s) != 20 {
		return 0, false
	}
	seq, err := strconv.ParseUint(s, 10, 64)
	return seq, err == nil && seq > 0
}

func (q *diskQueue) path(seq uint64) string {
	return filepath.Join(q.dir, fmt.Sprintf("%020d%s", seq, queueSuffix))
}

// trimLocked evicts the oldest entries until room more entries fit within max; it returns
// how many it evicted.
func (q *diskQueue) trimLocked(room int) int {
	n := 0
	for len(q.seqs) > 0 && len(q.seqs)+room > q.max {
		q.removeLocked(q.seqs[0])
		q.dropped++
		n++
	}
	return n
}

func (q *diskQueue) removeLocked(seq uint64) {
	i, found := slices.BinarySearch(q.seqs, seq)
	if !found {
		return
	}
	q.seqs = slices.Delete(q.seqs, i, i+1)
	q.bytes -= q.sizes[seq]
	delete(q.sizes, seq)
	// The entry is forgotten either way; a file that could not be removed is re-sent at the
	// next start (at-least-once), which is the safe direction.
	_ = os.Remove(q.path(seq))
}

// Append stores data durably (fsync'd file and directory) and returns how many old entries
// were evicted to make room.
func (q *diskQueue) Append(data []byte) (evicted int, err error) {
	return q.appendThen(data, nil)
}

// appendThen is Append, running then (if not nil) under the queue's lock once the entry is
// in: the hand-off drops its copy there, so counts never see a transcript twice.
func (q *diskQueue) appendThen(data []byte, then func()) (evicted int, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	seq := q.next
	tmp, err := fsx.WriteTemp(q.dir, queueTmpPrefix+"*", data, 0o600)
	if err != nil {
		return 0, fmt.Errorf("queue transcript: %w", err)
	}
	if err := os.Rename(tmp, q.path(seq)); err != nil {
		_ = os.Remove(tmp)
		return 0, fmt.Errorf("queue transcript: %w", err)
	}
	if err := fsx.SyncDir(q.dir); err != nil {
		return 0, fmt.Errorf("queue transcript: %w", err)
	}
	q.next++
	evicted = q.trimLocked(1)
	q.seqs = append(q.seqs, seq)
	q.sizes[seq] = int64(len(data))
	q.bytes += int64(len(data))
	if then != nil {
		then()
	}
	return evicted, nil
}

// Peek returns the oldest entry. Unreadable entries are discarded (and counted) on the way.
func (q *diskQueue) Peek() (queueEntry, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.seqs) > 0 {
		seq := q.seqs[0]
		data, err := os.ReadFile(q.path(seq))
		if err == nil && isJSONObject(data) {
			return queueEntry{seq: seq, data: data}, true
		}
		q.removeLocked(seq)
		q.corrupt++
		if q.corruptLog != nil {
			if err == nil {
				err = errors.New("not a JSON object (torn or damaged file)")
			}
			q.corruptLog.Fail(err, "file", filepath.Base(q.path(seq)), "bytes", len(data), "corrupt_total", q.corrupt)
		}
	}
	return queueEntry{}, false
}

// Remove deletes an entry once the broker has acknowledged it; removing an entry that was
// evicted in the meantime is a no-op.
func (q *diskQueue) Remove(seq uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.removeLocked(seq)
}

type queueStats struct {
	entries          int // on disk
	pending          int // handed over by Push, not yet on disk
	bytes            int64
	dropped, corrupt uint64
}

func (q *diskQueue) Stats() queueStats {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.hand.mu.Lock() // lock order: q.mu, then hand.mu (as in appendThen)
	pending := len(q.hand.items)
	q.hand.mu.Unlock()
	return queueStats{entries: len(q.seqs), pending: pending, bytes: q.bytes, dropped: q.dropped, corrupt: q.corrupt}
}

// The hand-off between PublishTranscript and the disk.
//
// PublishTranscript is called on the live uplink's event loop, which must never wait for
// a disk: an fsync'd append (file and directory) took 3-10 ms here and can take seconds on
// an SD card under load. So the payload is handed to a bounded in-memory list and the queue
// writer goroutine appends it durably, in order, and only then lets the sender see it: a
// transcript is on disk before it is sent, and reported delivered only after its PUBACK.
// Close writes whatever is still in the list before it returns, so a graceful stop loses
// nothing. The list is full only when the disk has been far slower than speech for a long
// time; Push then waits for room (bounded by handoffWait) and finally refuses.
const (
	handoffMax  = 64
	handoffWait = 5 * time.Second
)

// ErrQueueBusy is returned by PublishTranscript when the transcript queue's disk has not
// kept up for handoffWait with handoffMax transcripts waiting.
var ErrQueueBusy = errors.New("transcript queue: disk not keeping up")

type handoff struct {
	write   sync.Mutex // one writeNext at a time: the writer's, or Close's final drain
	mu      sync.Mutex
	items   [][]byte      // accepted, not yet on disk, oldest first; items[0] is being written
	room    chan struct{} // closed when items shrink, for a Push waiting for room
	closed  bool          // Push refuses: Close has begun its final drain
	refused atomic.Uint64 // Push calls refused for lack of room

	wait        time.Duration // how long Push waits for room; handoffWait unless a test shortens it
	beforeWrite func()        // test hook: called by writeNext before the disk write
}

// Push hands data to the writer without touching the disk.
func (q *diskQueue) Push(data []byte) error {
	h := &q.hand
	h.mu.Lock()
	var timeout <-chan time.Time
	for len(h.items) >= handoffMax && !h.closed {
		if h.room == nil {
			h.room = make(chan struct{})
		}
		room := h.room
		h.mu.Unlock()
		if timeout == nil {
			t := time.NewTimer(cmp.Or(h.wait, handoffWait))
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-room:
		case <-timeout:
			h.refused.Add(1)
			return ErrQueueBusy
		}
		h.mu.Lock()
	}
	defer h.mu.Unlock()
	if h.closed {
		return ErrClosed
	}
	h.items = append(h.items, data)
	return nil
}

// pendingWrites is how many pushed transcripts are not yet on disk.
func (q *diskQueue) pendingWrites() int {
	q.hand.mu.Lock()
	defer q.hand.mu.Unlock()
	return len(q.hand.items)
}

// writeNext appends the oldest pushed transcript durably. It reports whether there was
// one, how many old entries were evicted for it, and the write error (the transcript then
// stays first in line).
func (q *diskQueue) writeNext() (wrote bool, evicted int, err error) {
	h := &q.hand
	h.write.Lock()
	defer h.write.Unlock()
	h.mu.Lock()
	if len(h.items) == 0 {
		h.mu.Unlock()
		return false, 0, nil
	}
	data := h.items[0]
	h.mu.Unlock()
	if h.beforeWrite != nil {
		h.beforeWrite()
	}
	evicted, err = q.appendThen(data, func() {
		h.mu.Lock()
		h.items[0] = nil
		h.items = h.items[1:]
		if h.room != nil {
			close(h.room)
			h.room = nil
		}
		h.mu.Unlock()
	})
	if err != nil {
		return false, 0, err
	}
	return true, evicted, nil
}

// closeHandoff makes Push refuse from now on.
func (q *diskQueue) closeHandoff() {
	q.hand.mu.Lock()
	q.hand.closed = true
	if q.hand.room != nil {
		close(q.hand.room)
		q.hand.room = nil
	}
	q.hand.mu.Unlock()
}

// queueWriter writes pushed transcripts to the disk queue until ctx ends, retrying a
// failed write with backoff (the transcript keeps its place), and pokes the sender after
// each one.
func (c *Client) queueWriter(ctx context.Context) {
	defer c.wg.Done()
	fails := logging.NewRepeater(c.log, "cannot write a transcript to the queue; retrying", 0)
	retry := backoff.Policy{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	attempt := 0
	for {
		wrote, evicted, err := c.queue.writeNext()
		switch {
		case err != nil:
			fails.Fail(err, "waiting", c.queue.pendingWrites())
			t := time.NewTimer(retry.Delay(attempt))
			attempt++
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
			continue
		case wrote:
			attempt = 0
			fails.OK()
			c.reportEvicted(evicted)
			poke(c.qwake)
			continue
		}
		select {
		case <-c.qwrite:
		case <-ctx.Done():
			return
		}
	}
}

// drainHandoff writes, on the calling goroutine, what the writer has not: Close's last step
// before the queue is left for the next start.
func (c *Client) drainHandoff() {
	c.queue.closeHandoff()
	for {
		wrote, evicted, err := c.queue.writeNext()
		if err != nil {
			n := c.queue.pendingWrites()
			c.log.Error("transcripts could not be written to the queue and are lost", "count", n, "err", err)
			return
		}
		if !wrote {
			return
		}
		c.reportEvicted(evicted)
	}
}

// reportEvicted logs the first eviction of an episode of a full queue (the broker away for
// queue_max transcripts); the sender logs the end of the episode.
func (c *Client) reportEvicted(evicted int) {
	if evicted > 0 && c.queueDropEpisode.Add(uint64(evicted)) == uint64(evicted) {
		c.log.Warn("transcript queue full: dropping the oldest until the broker is back", "queue_max", c.o.QueueMax)
	}
}
