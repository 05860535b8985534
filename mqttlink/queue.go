package mqttlink

import (
	"fmt"
	"github.com/hark-audio/hark/internal/fsx"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// diskQueue is the durable FIFO of transcript payloads waiting for the broker's PUBACK.
//
// One file per entry, named by a sequence number that increases across restarts, written to a
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
	entries          int
	bytes            int64
	dropped, corrupt uint64
}

func (q *diskQueue) Stats() queueStats {
	q.mu.Lock()
	defer q.mu.Unlock()
	return queueStats{entries: len(q.seqs), bytes: q.bytes, dropped: q.dropped, corrupt: q.corrupt}
}
