package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/hark-audio/hark/audio"
)

// FileDecoder turns a WAV file (any common PCM rate and channel count) or raw linear16
// into 100 ms frames of 16 kHz mono, as fast as the reader allows. It is the conversion the
// daemon's file and stdin inputs use (they add pacing on top) and what `hark vad` runs, so
// both see exactly the same samples.
//
// Channels are averaged; other rates go through a windowed-sinc resampler whose low-pass
// removes what would alias; 16 kHz 16-bit input passes through bit-exact. Frame i has
// Seq i and Time start + i*100 ms. The last partial frame is zero-padded to 1600 samples.
type FileDecoder struct {
	name  string
	start time.Time
	wav   *audio.WAVReader // nil for raw input
	raw   io.Reader
	// block holds raw bytes read ahead for the direct path, unread from off to end: one
	// read per blockBytes (2 s) of 16 kHz mono instead of one per frame.
	block    []byte
	off, end int
	chans    int
	rs       *resampler // nil when the input is already 16 kHz
	inputs   int64      // input sample frames read, for the resampler's flush

	in      []float32 // interleaved input block
	mono    []float32
	pending []float32 // converted 16 kHz samples not yet framed
	seq     uint64
	eof     bool
	err     error

	// direct is set for input already in the pipeline's format (16 kHz mono 16-bit PCM, and
	// raw stdin): frames are read straight from the bytes, bit-exact and with no float
	// round trip, which is most of the cost of reading a file otherwise.
	direct bool
	chunk  []int16 // backing store handed out a frame at a time (frames are never mutated)
}

// framesPerChunk frames share one allocation: fewer, larger allocations on the file path.
const framesPerChunk = 16

// newSamples returns a zeroed frame-sized slice of its own (capacity capped, so no frame
// can grow into the next).
func (d *FileDecoder) newSamples() []int16 {
	if len(d.chunk) < audio.FrameSamples {
		d.chunk = make([]int16, framesPerChunk*audio.FrameSamples)
	}
	s := d.chunk[:audio.FrameSamples:audio.FrameSamples]
	d.chunk = d.chunk[audio.FrameSamples:]
	return s
}

// Format describes the decoder's input.
func (d *FileDecoder) Format() audio.WAVFormat {
	if d.wav != nil {
		return d.wav.Format
	}
	return audio.WAVFormat{SampleRate: audio.SampleRate, Channels: 1, BitsPerSample: 16}
}

// readBlock is how many input sample frames are decoded at a time.
const readBlock = 4096

// blockBytes is the read-ahead of the direct path: 20 frames. Reads cost more than their
// bytes here (each system call also wakes the Go runtime's monitor thread), and reading
// into the decoder's own block keeps it to one copy from the kernel to the samples.
const blockBytes = 20 * audio.FrameBytes

// NewFileDecoder parses the WAV header from r. name is used in errors (the file path).
// start is the Time of the first frame.
func NewFileDecoder(r io.Reader, name string, start time.Time) (*FileDecoder, error) {
	w, err := audio.NewWAVReader(r)
	if err != nil {
		return nil, fmt.Errorf("read audio file %q: %w", name, err)
	}
	d := &FileDecoder{name: name, start: start, wav: w, chans: w.Format.Channels}
	if f := w.Format; f.SampleRate == audio.SampleRate && f.Channels == 1 && f.BitsPerSample == 16 && !f.Float {
		d.direct = true
		d.block = make([]byte, blockBytes)
		return d, nil
	}
	d.in = make([]float32, readBlock*d.chans)
	if w.Format.SampleRate != audio.SampleRate {
		d.rs = newResampler(w.Format.SampleRate, audio.SampleRate)
	}
	return d, nil
}

// NewRawDecoder reads raw little-endian signed 16-bit 16 kHz mono samples from r (the
// stdin input "-"). A trailing odd byte is ignored.
func NewRawDecoder(r io.Reader, name string, start time.Time) *FileDecoder {
	return &FileDecoder{name: name, start: start, raw: r, chans: 1, block: make([]byte, blockBytes), direct: true}
}

// Next returns the next frame, or io.EOF after the last one. Any other error names the
// input and the problem; after an error Next keeps returning it. Each frame has Samples of
// its own.
func (d *FileDecoder) Next() (audio.Frame, error) {
	if d.err != nil {
		return audio.Frame{}, d.err
	}
	return d.NextInto(d.newSamples())
}

// NextInto is Next decoding into dst (audio.FrameSamples long), which becomes the frame's
// Samples: the daemon's capture decodes into storage it reuses.
func (d *FileDecoder) NextInto(dst []int16) (audio.Frame, error) {
	if d.err != nil {
		return audio.Frame{}, d.err
	}
	dst = dst[:audio.FrameSamples]
	if d.direct {
		return d.nextDirect(dst)
	}
	for len(d.pending) < audio.FrameSamples && !d.eof {
		if err := d.fill(); err != nil {
			d.err = fmt.Errorf("read audio file %q: %w", d.name, err)
			return audio.Frame{}, d.err
		}
	}
	if len(d.pending) == 0 {
		d.err = io.EOF
		return audio.Frame{}, io.EOF
	}
	f := audio.Frame{
		Seq:     d.seq,
		Time:    d.start.Add(time.Duration(d.seq) * audio.FrameDuration),
		Samples: dst,
	}
	n := min(len(d.pending), audio.FrameSamples)
	for i, v := range d.pending[:n] {
		f.Samples[i] = toInt16(v)
	}
	clear(f.Samples[n:]) // the last frame is zero-padded
	d.pending = d.pending[:copy(d.pending, d.pending[n:])]
	d.seq++
	return f, nil
}

// fill decodes one block of WAV input into pending, setting eof at the end of the input.
// (Raw input is always 16 kHz mono and takes the direct path.)
func (d *FileDecoder) fill() error {
	n, err := d.wav.ReadFloat(d.in)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	frames := n / d.chans
	d.mono = d.mono[:0]
	if d.chans == 1 {
		d.mono = append(d.mono, d.in[:n]...)
	} else {
		inv := 1 / float32(d.chans)
		for i := 0; i < frames; i++ {
			var s float32
			for _, v := range d.in[i*d.chans : (i+1)*d.chans] {
				s += v
			}
			d.mono = append(d.mono, s*inv)
		}
	}
	d.inputs += int64(frames)
	if d.rs == nil {
		d.pending = append(d.pending, d.mono...)
	} else {
		d.pending = d.rs.process(d.pending, d.mono)
	}
	if err != nil { // io.EOF
		d.eof = true
		if d.rs != nil {
			d.pending = d.rs.flush(d.pending, d.inputs)
		}
	}
	return nil
}

// nextDirect reads one frame of linear16 straight into samples. A short last frame is
// zero-padded; a truncated file (shorter than its header says) ends at what is there.
func (d *FileDecoder) nextDirect(dst []int16) (audio.Frame, error) {
	if d.end-d.off < audio.FrameBytes && !d.eof {
		// Refill: keep the unread tail, read at least the rest of a frame (a pipe is not
		// waited on for more), as much as the block holds.
		var src io.Reader = d.raw
		if d.wav != nil {
			src = d.wav
		}
		d.end = copy(d.block, d.block[d.off:d.end])
		d.off = 0
		n, err := io.ReadAtLeast(src, d.block[d.end:], audio.FrameBytes-d.end)
		d.end += n
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			d.eof = true
		case err != nil:
			d.err = fmt.Errorf("read audio file %q: %w", d.name, err)
			return audio.Frame{}, d.err
		}
	}
	n := min(d.end-d.off, audio.FrameBytes)
	if n < 2 {
		d.err = io.EOF
		return audio.Frame{}, io.EOF
	}
	f := audio.Frame{
		Seq:     d.seq,
		Time:    d.start.Add(time.Duration(d.seq) * audio.FrameDuration),
		Samples: dst,
	}
	b := d.block[d.off : d.off+n&^1]
	d.off += n
	for i := range len(b) / 2 {
		f.Samples[i] = int16(binary.LittleEndian.Uint16(b[2*i:]))
	}
	clear(f.Samples[len(b)/2:]) // the last frame is zero-padded
	d.seq++
	return f, nil
}

// toInt16 converts a [-1, 1] sample to linear16. v*32768 is exact for values that came
// from 16-bit input, so such input round-trips bit-exact.
func toInt16(v float32) int16 {
	x := math.Round(float64(v) * 32768)
	if x > math.MaxInt16 {
		return math.MaxInt16
	}
	if x < math.MinInt16 {
		return math.MinInt16
	}
	return int16(x)
}
