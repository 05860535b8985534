package agent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hark-audio/hark/audio"
	"github.com/hark-audio/hark/internal/logging"
)

// The journal keeps the speech being streamed on disk until its fate is settled, so that a
// kill (SIGKILL, the watchdog's SIGABRT, the OOM killer) does not lose an utterance the
// live uplink holds only in memory. Each forwarded segment has its own file in
// <spool>/journal, named by the capture time of its first frame, to which every frame is
// appended as it is forwarded: one write(2) per 100 ms frame, no fsync. The page cache
// survives the death of the process (not a power cut, which the spool's fsync covers once
// a segment is spooled).
//
// A journal file is removed when its segment is settled: published live (or answered with
// no words), or written to the spool. At the next start the files left behind are put into
// the spool (recoverJournal), named by their content tag, so audio that reached the spool
// too is not spooled twice.
//
// A journal names the input it was captured from: a file input is read again from its start
// when hark restarts (systemd's Restart=), so that run hears the segment again and a
// recovered copy would publish it twice; a journal from the same file is dropped instead.
// Microphone and stdin journals are always recovered.
//
// File format: a header "HARKJ1\n", the input name (Go-quoted) and "\n", then one record
// per frame: capture time of the frame
// (int64 Unix ns), Seq (uint64), sample count (uint32), samples (int16 LE), all little
// endian. A record torn by a crash ends the file.

const (
	journalDir    = "journal"
	journalMagic  = "HARKJ1\n"
	journalSuffix = ".journal"
	recordHeader  = 8 + 8 + 4
)

// journal is the audio loop's writer; remove may be called from any goroutine.
type journal struct {
	dir   string
	input string // capture.input ("" microphone, "-" stdin, or a file)
	f     *os.File
	buf   []byte
	fail  *logging.Repeater
}

func newJournal(spoolDir, input string, fail *logging.Repeater) *journal {
	return &journal{dir: filepath.Join(spoolDir, journalDir), input: input, fail: fail,
		buf: make([]byte, 0, recordHeader+2*audio.FrameSamples)}
}

func journalPath(dir string, first time.Time) string {
	return filepath.Join(dir, strconv.FormatInt(first.UnixNano(), 10)+journalSuffix)
}

// frame appends a forwarded frame, opening the segment's file on its first frame. A
// failure (no spool directory, full disk) stops journaling this segment, which then has
// only the memory's protection, as before: it is logged once, then counted.
func (j *journal) frame(f audio.Frame, first bool) {
	if first {
		j.end()
		if err := os.MkdirAll(j.dir, 0o700); err != nil {
			j.fail.Fail(err)
			return
		}
		fh, err := os.OpenFile(journalPath(j.dir, f.Time), os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
		if err == nil {
			_, err = fh.WriteString(journalMagic + strconv.Quote(j.input) + "\n")
		}
		if err != nil {
			if fh != nil {
				fh.Close()
			}
			j.fail.Fail(err)
			return
		}
		j.f = fh
	}
	if j.f == nil {
		return
	}
	b := binary.LittleEndian.AppendUint64(j.buf[:0], uint64(f.Time.UnixNano()))
	b = binary.LittleEndian.AppendUint64(b, f.Seq)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(f.Samples)))
	b = audio.AppendPCM(b, f.Samples)
	j.buf = b[:0]
	if _, err := j.f.Write(b); err != nil {
		j.fail.Fail(err)
		j.end()
		return
	}
	j.fail.OK()
}

// end closes the open segment's file (it stays until the segment is settled).
func (j *journal) end() {
	if j.f != nil {
		j.f.Close()
		j.f = nil
	}
}

// remove deletes the file of the segment whose first frame was captured at first.
func (j *journal) remove(first time.Time) {
	if err := os.Remove(journalPath(j.dir, first)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		j.fail.Fail(err)
	}
}

// journaled is a segment read back from a journal file.
type journaled struct {
	path   string
	input  string
	frames []audio.Frame
}

// readJournals reads every journal file in dir (torn tails dropped). Files that cannot be
// read at all are returned with no frames, to be removed.
func readJournals(dir string) ([]journaled, error) {
	des, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []journaled
	for _, de := range des {
		if de.IsDir() || !strings.HasSuffix(de.Name(), journalSuffix) {
			continue
		}
		p := filepath.Join(dir, de.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read journal %s: %w", de.Name(), err)
		}
		input, frames := parseJournal(b)
		out = append(out, journaled{path: p, input: input, frames: frames})
	}
	return out, nil
}

// parseJournal decodes a journal file's input name and frames, stopping at the first torn
// or implausible record. It never panics, whatever the bytes.
func parseJournal(b []byte) (input string, frames []audio.Frame) {
	if !strings.HasPrefix(string(b), journalMagic) {
		return "", nil
	}
	b = b[len(journalMagic):]
	i := strings.IndexByte(string(b), '\n')
	if i < 0 {
		return "", nil
	}
	input, err := strconv.Unquote(string(b[:i]))
	if err != nil {
		return "", nil
	}
	b = b[i+1:]
	for len(b) >= recordHeader {
		t := int64(binary.LittleEndian.Uint64(b))
		seq := binary.LittleEndian.Uint64(b[8:])
		n := int(binary.LittleEndian.Uint32(b[16:]))
		if n <= 0 || n > 4*audio.FrameSamples || len(b) < recordHeader+2*n {
			break
		}
		if len(frames) > 0 && seq <= frames[len(frames)-1].Seq {
			break
		}
		frames = append(frames, audio.Frame{Time: time.Unix(0, t), Seq: seq,
			Samples: audio.DecodePCM(nil, b[recordHeader:recordHeader+2*n])})
		b = b[recordHeader+2*n:]
	}
	return input, frames
}
