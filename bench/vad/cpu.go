package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hark-audio/hark/audio"
	"github.com/hark-audio/hark/capture"
	"github.com/hark-audio/hark/vad"
)

// cpuTime is this process's user+sys CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuShare holds the CPU spent by each stage of `hark vad` over one set.
type cpuShare struct {
	audioSec              float64
	decoder, direct, gate time.Duration
}

// measureCPU splits the cost of `hark vad` into its stages, each timed alone over every
// WAV of the set (the files are read into memory first, so disk I/O is not counted):
//   - decoder: capture.NewFileDecoder producing every frame (what `hark vad` uses);
//   - direct: audio.WAVReader + audio.DecodePCM, the bit-exact path for 16 kHz mono s16,
//     for comparison with the decoder;
//   - gate: vad.NewGate, Push on every frame (decoded beforehand) and Flush.
//
// Each stage is run rounds times and the least CPU time is kept, since the machine is
// shared and other load only ever adds.
func measureCPU(dir string, cfg vad.Config, rounds int) (cpuShare, error) {
	files, err := filepath.Glob(filepath.Join(dir, "wav", "*.wav"))
	if err != nil || len(files) == 0 {
		return cpuShare{}, fmt.Errorf("%s: no wav files", dir)
	}
	var res cpuShare
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			return res, err
		}
		var frames []audio.Frame
		dec := func(keep bool) error {
			d, err := capture.NewFileDecoder(bytes.NewReader(data), path, time.Unix(0, 0))
			if err != nil {
				return err
			}
			for {
				f, err := d.Next()
				if errors.Is(err, io.EOF) {
					return nil
				}
				if err != nil {
					return err
				}
				if keep {
					frames = append(frames, f)
				}
			}
		}
		if err := dec(true); err != nil {
			return res, err
		}
		res.audioSec += float64(len(frames)) * audio.FrameDuration.Seconds()
		best := func(run func() error) (time.Duration, error) {
			var min time.Duration
			for r := 0; r < rounds; r++ {
				t0 := cpuTime()
				if err := run(); err != nil {
					return 0, err
				}
				if d := cpuTime() - t0; r == 0 || d < min {
					min = d
				}
			}
			return min, nil
		}
		d, err := best(func() error { return dec(false) })
		if err != nil {
			return res, err
		}
		res.decoder += d
		d, err = best(func() error {
			w, err := audio.NewWAVReader(bytes.NewReader(data))
			if err != nil {
				return err
			}
			br := bufio.NewReaderSize(w, audio.FrameBytes*8)
			buf := make([]byte, audio.FrameBytes)
			for {
				if _, err := io.ReadFull(br, buf); err != nil {
					return nil // EOF or a short last frame: the rest is not timed
				}
				_ = audio.DecodePCM(make([]int16, 0, audio.FrameSamples), buf)
			}
		})
		if err != nil {
			return res, err
		}
		res.direct += d
		ev := make([]vad.Event, 0, 64)
		d, _ = best(func() error {
			g := vad.NewGate(cfg)
			for _, f := range frames {
				ev = g.Push(f, ev[:0])
			}
			ev = g.Flush(ev[:0])
			return nil
		})
		res.gate += d
	}
	return res, nil
}

func (c cpuShare) write(w io.Writer) {
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / c.audioSec }
	fmt.Fprintf(w, "| stage | CPU s | µs CPU per audio second |\n|---|---|---|\n")
	fmt.Fprintf(w, "| capture.FileDecoder (what `hark vad` uses) | %.3f | %.1f |\n", c.decoder.Seconds(), per(c.decoder))
	fmt.Fprintf(w, "| audio.WAVReader + DecodePCM (pass-through reference) | %.3f | %.1f |\n", c.direct.Seconds(), per(c.direct))
	fmt.Fprintf(w, "| VAD + gate (NewGate, Push, Flush) | %.3f | %.1f |\n", c.gate.Seconds(), per(c.gate))
	fmt.Fprintf(w, "\n%.0f s of audio\n", c.audioSec)
}
