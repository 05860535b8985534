// Package audio holds the few types and helpers every stage of hark's audio path shares:
// the 100 ms frame that flows from capture through the gate to the uplinks, and WAV I/O.
//
// Everything downstream of capture works in one format, 16 kHz mono signed 16-bit
// little-endian (linear16), because that is what Deepgram is told to expect on every
// connection and what the spool writes; conversion happens once, at capture.
package audio

import (
	"encoding/binary"
	"time"
)

const (
	// SampleRate is the rate of every frame after capture, in Hz.
	SampleRate = 16000
	// FrameSamples is the number of samples in one 100 ms frame.
	FrameSamples = SampleRate / 10
	// FrameBytes is the size of one frame as linear16.
	FrameBytes = FrameSamples * 2
	// FrameDuration is the length of one frame.
	FrameDuration = 100 * time.Millisecond
)

// Frame is 100 ms of captured audio. Samples always holds FrameSamples samples: a frame is
// never empty, because an empty binary websocket message means end-of-stream to Deepgram.
type Frame struct {
	// Seq counts frames from the start of capture (0, 1, 2, ...). A gap means frames were
	// dropped (capture ring overflow).
	Seq uint64
	// Time is the capture wall-clock time of the first sample.
	Time time.Time
	// Samples is the audio, bit-exact as captured (after conversion to 16 kHz mono).
	Samples []int16
}

// Clone returns f with Samples of its own, for keeping a frame beyond the time its producer
// guarantees the samples (capture reuses frame storage).
func (f Frame) Clone() Frame {
	f.Samples = append([]int16(nil), f.Samples...)
	return f
}

// End is the wall-clock time just after the frame's last sample.
func (f Frame) End() time.Time { return f.Time.Add(FrameDuration) }

// AppendPCM appends samples as little-endian linear16 bytes to dst and returns it.
// It allocates only when dst lacks capacity, so the per-frame path can reuse a buffer.
func AppendPCM(dst []byte, samples []int16) []byte {
	for _, s := range samples {
		dst = binary.LittleEndian.AppendUint16(dst, uint16(s))
	}
	return dst
}

// DecodePCM converts little-endian linear16 bytes to samples, appending to dst. A trailing
// odd byte is ignored.
func DecodePCM(dst []int16, b []byte) []int16 {
	for i := 0; i+1 < len(b); i += 2 {
		dst = append(dst, int16(binary.LittleEndian.Uint16(b[i:])))
	}
	return dst
}
