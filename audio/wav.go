package audio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// WAVFormat describes the PCM data of a WAV file.
type WAVFormat struct {
	SampleRate    int
	Channels      int
	BitsPerSample int
	Float         bool // IEEE float samples (format 3), else integer PCM
}

// BlockAlign is the size of one sample frame (all channels) in bytes.
func (f WAVFormat) BlockAlign() int { return f.Channels * f.BitsPerSample / 8 }

// ErrNotWAV is wrapped by every error that means the input is not a WAV file hark can read.
var ErrNotWAV = errors.New("not a readable WAV file")

// WAVReader reads the data chunk of a WAV file as it streams, so large files are never
// held in memory.
type WAVReader struct {
	Format WAVFormat
	// DataBytes is the declared size of the data chunk; streams written by tools that did
	// not know the length (0 or 0xFFFFFFFF) are read to EOF instead.
	DataBytes int64
	r         io.Reader
	left      int64 // -1 when reading to EOF
	raw       []byte
}

const (
	wavFormatPCM        = 1
	wavFormatFloat      = 3
	wavFormatExtensible = 0xFFFE
	maxChunkSkip        = 64 << 20
)

// NewWAVReader parses the RIFF header up to the data chunk. It accepts integer PCM of 8, 16,
// 24 or 32 bits and IEEE float of 32 or 64 bits, any rate and channel count, in plain or
// WAVE_FORMAT_EXTENSIBLE form.
func NewWAVReader(r io.Reader) (*WAVReader, error) {
	var hdr [12]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("%w: reading RIFF header: %v", ErrNotWAV, err)
	}
	if string(hdr[0:4]) != "RIFF" || string(hdr[8:12]) != "WAVE" {
		return nil, fmt.Errorf("%w: missing RIFF/WAVE signature", ErrNotWAV)
	}
	var f WAVFormat
	haveFmt := false
	for {
		var ch [8]byte
		if _, err := io.ReadFull(r, ch[:]); err != nil {
			return nil, fmt.Errorf("%w: no data chunk: %v", ErrNotWAV, err)
		}
		id := string(ch[0:4])
		size := int64(binary.LittleEndian.Uint32(ch[4:8]))
		switch id {
		case "fmt ":
			if size < 16 || size > 1024 {
				return nil, fmt.Errorf("%w: fmt chunk of %d bytes", ErrNotWAV, size)
			}
			b := make([]byte, size+size%2)
			if _, err := io.ReadFull(r, b); err != nil {
				return nil, fmt.Errorf("%w: reading fmt chunk: %v", ErrNotWAV, err)
			}
			tag := binary.LittleEndian.Uint16(b[0:2])
			f.Channels = int(binary.LittleEndian.Uint16(b[2:4]))
			f.SampleRate = int(binary.LittleEndian.Uint32(b[4:8]))
			f.BitsPerSample = int(binary.LittleEndian.Uint16(b[14:16]))
			if tag == wavFormatExtensible {
				if size < 40 {
					return nil, fmt.Errorf("%w: short WAVE_FORMAT_EXTENSIBLE fmt chunk", ErrNotWAV)
				}
				tag = binary.LittleEndian.Uint16(b[24:26]) // first two bytes of the sub-format GUID
			}
			switch tag {
			case wavFormatPCM:
				if f.BitsPerSample != 8 && f.BitsPerSample != 16 && f.BitsPerSample != 24 && f.BitsPerSample != 32 {
					return nil, fmt.Errorf("%w: %d-bit integer PCM is not supported", ErrNotWAV, f.BitsPerSample)
				}
			case wavFormatFloat:
				f.Float = true
				if f.BitsPerSample != 32 && f.BitsPerSample != 64 {
					return nil, fmt.Errorf("%w: %d-bit float PCM is not supported", ErrNotWAV, f.BitsPerSample)
				}
			default:
				return nil, fmt.Errorf("%w: compressed format tag 0x%04x (only PCM and float are supported)", ErrNotWAV, tag)
			}
			if f.Channels < 1 || f.Channels > 32 {
				return nil, fmt.Errorf("%w: %d channels", ErrNotWAV, f.Channels)
			}
			if f.SampleRate < 1000 || f.SampleRate > 768000 {
				return nil, fmt.Errorf("%w: sample rate %d Hz", ErrNotWAV, f.SampleRate)
			}
			haveFmt = true
		case "data":
			if !haveFmt {
				return nil, fmt.Errorf("%w: data chunk before fmt chunk", ErrNotWAV)
			}
			w := &WAVReader{Format: f, DataBytes: size, r: r, left: size}
			if size == 0 || size == 0xFFFFFFFF {
				w.left = -1
			}
			return w, nil
		default:
			if size > maxChunkSkip {
				return nil, fmt.Errorf("%w: chunk %q of %d bytes before data", ErrNotWAV, id, size)
			}
			if _, err := io.CopyN(io.Discard, r, size+size%2); err != nil {
				return nil, fmt.Errorf("%w: skipping chunk %q: %v", ErrNotWAV, id, err)
			}
		}
	}
}

// Read reads raw data-chunk bytes.
func (w *WAVReader) Read(p []byte) (int, error) {
	if w.left == 0 {
		return 0, io.EOF
	}
	if w.left > 0 && int64(len(p)) > w.left {
		p = p[:w.left]
	}
	n, err := w.r.Read(p)
	if w.left > 0 {
		w.left -= int64(n)
		if err == io.EOF && w.left > 0 {
			err = io.ErrUnexpectedEOF
		}
	}
	return n, err
}

// ReadFloat fills dst with interleaved samples scaled to [-1, 1] and returns how many it
// wrote (always a whole number of sample frames). It returns io.EOF when the data ends; a
// trailing partial sample frame is dropped.
func (w *WAVReader) ReadFloat(dst []float32) (int, error) {
	bps := w.Format.BitsPerSample / 8
	block := w.Format.BlockAlign()
	frames := len(dst) / w.Format.Channels
	if frames == 0 {
		return 0, nil
	}
	need := frames * block
	if cap(w.raw) < need {
		w.raw = make([]byte, need)
	}
	buf := w.raw[:need]
	n, err := io.ReadFull(w, buf)
	if err == io.ErrUnexpectedEOF || (err == io.EOF && n > 0) {
		err = nil
		if n < need {
			err = io.EOF
		}
	}
	n -= n % block
	out := 0
	for i := 0; i < n; i += bps {
		dst[out] = decodeSample(buf[i:i+bps], w.Format)
		out++
	}
	if out == 0 && err == nil {
		err = io.EOF
	}
	return out, err
}

func decodeSample(b []byte, f WAVFormat) float32 {
	switch {
	case f.Float && f.BitsPerSample == 32:
		v := math.Float32frombits(binary.LittleEndian.Uint32(b))
		if v != v { // NaN would poison every filter downstream
			return 0
		}
		return clamp1(v)
	case f.Float:
		v := float32(math.Float64frombits(binary.LittleEndian.Uint64(b)))
		if v != v {
			return 0
		}
		return clamp1(v)
	case f.BitsPerSample == 8:
		return (float32(b[0]) - 128) / 128
	case f.BitsPerSample == 16:
		return float32(int16(binary.LittleEndian.Uint16(b))) / 32768
	case f.BitsPerSample == 24:
		v := int32(uint32(b[0])<<8|uint32(b[1])<<16|uint32(b[2])<<24) >> 8
		return float32(v) / 8388608
	default:
		return float32(int32(binary.LittleEndian.Uint32(b))) / 2147483648
	}
}

func clamp1(v float32) float32 {
	if v > 1 {
		return 1
	}
	if v < -1 {
		return -1
	}
	return v
}

// WAVHeader returns the 44-byte header of a 16 kHz mono linear16 WAV file holding
// dataBytes bytes of audio.
func WAVHeader(dataBytes int) []byte {
	return WAVHeaderFormat(dataBytes, SampleRate, 1)
}

// WAVHeaderFormat returns a 44-byte linear16 WAV header for the given rate and channels.
func WAVHeaderFormat(dataBytes, rate, channels int) []byte {
	h := make([]byte, 44)
	copy(h[0:], "RIFF")
	binary.LittleEndian.PutUint32(h[4:], uint32(36+dataBytes))
	copy(h[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(h[16:], 16)
	binary.LittleEndian.PutUint16(h[20:], wavFormatPCM)
	binary.LittleEndian.PutUint16(h[22:], uint16(channels))
	binary.LittleEndian.PutUint32(h[24:], uint32(rate))
	binary.LittleEndian.PutUint32(h[28:], uint32(rate*channels*2))
	binary.LittleEndian.PutUint16(h[32:], uint16(channels*2))
	binary.LittleEndian.PutUint16(h[34:], 16)
	copy(h[36:], "data")
	binary.LittleEndian.PutUint32(h[40:], uint32(dataBytes))
	return h
}
