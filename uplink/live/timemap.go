package live

import (
	"sort"
	"time"

	"github.com/hark-audio/hark/audio"
)

// checkpoint ties a stream position (in frames sent on one connection) to the capture
// wall-clock time of the frame sent there. Silence between segments is not sent, so the
// stream clock jumps over it; a checkpoint at every segment start (and wherever capture
// time drifts from the frame count, e.g. after dropped frames) keeps the mapping exact.
type checkpoint struct {
	frame int64
	at    time.Time
}

// timeMap maps one connection's stream seconds to capture time. A new connection starts a
// new map at 0.
type timeMap struct{ cps []checkpoint }

// driftTolerance is how far a frame's capture time may stray from the time predicted by the
// last checkpoint before a new checkpoint is added.
const driftTolerance = 20 * time.Millisecond

// note records that frame f is sent at stream position idx. newPiece forces a checkpoint
// (a segment start: the capture clock jumped over unsent silence).
func (m *timeMap) note(idx int64, f audio.Frame, newPiece bool) {
	if !newPiece && len(m.cps) > 0 {
		exp := m.wallAt(idx)
		d := f.Time.Sub(exp)
		if d < driftTolerance && d > -driftTolerance {
			return
		}
	}
	m.cps = append(m.cps, checkpoint{frame: idx, at: f.Time})
}

func (m *timeMap) wallAt(idx int64) time.Time {
	cp := m.cps[len(m.cps)-1]
	return cp.at.Add(time.Duration(idx-cp.frame) * audio.FrameDuration)
}

// toWall maps a stream time in seconds to capture wall-clock time. An end time that falls
// exactly on a checkpoint belongs to the audio before it (the end of the previous segment),
// a start time to the audio after it.
func (m *timeMap) toWall(sec float64, isEnd bool) time.Time {
	if len(m.cps) == 0 {
		return time.Time{}
	}
	d := time.Duration(clampSec(sec) * float64(time.Second))
	i := sort.Search(len(m.cps), func(i int) bool {
		p := time.Duration(m.cps[i].frame) * audio.FrameDuration
		if isEnd {
			return p >= d
		}
		return p > d
	}) - 1
	if i < 0 {
		i = 0
	}
	cp := m.cps[i]
	return cp.at.Add(d - time.Duration(cp.frame)*audio.FrameDuration)
}
