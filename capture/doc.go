// Package capture is where hark's audio comes from: a microphone through miniaudio (malgo),
// a WAV file, or raw linear16 on stdin. Whatever the input, it delivers 100 ms frames of
// 16 kHz mono linear16 (audio.Frame) stamped with the capture wall-clock time of their
// first sample.
//
// # API
//
//	s, err := capture.Open(ctx, capture.Config{Device: "usb", Backend: "auto", Realtime: true, RingMS: 5000})
//	for {
//		f, err := s.Next() // waits for the frame; io.EOF at end of file, ErrClosed after Close
//		...                // f.Samples is valid for FrameLifetime more frames: copy to keep it
//	}
//	err = s.Err()                      // nil for a clean end of file or Close
//	st := s.Stats()                    // frames, samples, dropped, reopens, device, backend, state, last error
//	s.Close()                          // stops capture, waits for its goroutines; idempotent
//
// Config.Input selects the input: "" is the microphone, "-" raw s16le 16 kHz mono from
// Config.Stdin, anything else a WAV file path. Open fails with an error naming the device
// or file and the problem; a microphone that cannot be opened at start is an error (the
// service manager restarts hark), one lost later is reopened in the background.
// Config.OnEvent receives device_lost, reopen_failed, device_reopened and overflow events
// from capture's goroutines. ListDevices enumerates capture devices for `hark devices`.
// NewFileDecoder/NewRawDecoder are the unpaced conversion used by file input, exported so
// `hark vad` analyses exactly the samples the daemon would.
//
// # Microphone path
//
// miniaudio opens the device with a 16 kHz mono s16 client format and converts from
// whatever the device runs at (linear resampler with its maximum low-pass order);
// Config.SampleRate is therefore not passed to the device. The data callback runs on a C
// thread with a buffer valid only during the call: it copies into a preallocated ring
// (no allocation, no channel send that can block, a lock held only for the copy) and
// returns; it wakes the consumer only once a whole frame is buffered. When the consumer
// stalls longer than the ring holds, the oldest audio is overwritten and counted. Next cuts
// the ring into frames on the consumer's own goroutine, reading straight into the frame's
// storage: between the callback and the consumer there is no goroutine and no channel.
//
// # Cost
//
// While nobody speaks, waking up for each frame is most of what the daemon does, so the
// input is built to wake as little as possible: one callback per 100 ms period (miniaudio
// period = frame), one wake-up of the consumer per frame, a stall watchdog that sleeps
// until StallTimeout after the last callback instead of polling; file and stdin input are
// paced by a timerfd (internal/pace) on the consumer's goroutine, read through a 64 KiB
// buffer, and released five frames at a time while the gate is closed (SetIdle); frames live in FrameLifetime reusable slots, so nothing is allocated per frame.
//
// Seq is the frame's position in the capture stream: a gap means frames were lost (ring
// overflow, or the partial frame discarded when the device was reopened). Time comes from
// the callback's clock minus the audio buffered after the frame, smoothed so it follows
// the sample count, never goes backwards, and jumps forward after a device reopen.
//
// A device that stops, fails, or delivers nothing for Config.StallTimeout is released and
// reopened with exponential backoff and jitter until it works or the Source is closed.
// A device is stopped before it is uninitialised (miniaudio's PulseAudio backend
// otherwise never returns from ma_device_uninit once its stream is dead), and releasing is
// bounded anyway: a device that does not close in time is abandoned and logged rather
// than freezing capture. Repeated losses back off further and log once above Debug.
//
// # Backends
//
// "alsa", "pulseaudio", "null" (miniaudio's null device: silence, for tests) and "auto",
// which on Linux tries PulseAudio then ALSA and reports which one opened. miniaudio's own
// default list would end with the null backend and record silence forever on a machine
// whose audio stack is broken; hark reports an error instead. malgo's BackendNull constant
// names the wrong backend (see maBackendNull).
//
// # Files and stdin
//
// WAV of any common PCM or float format, rate and channel count: channels are averaged,
// other rates go through a windowed-sinc polyphase resampler (Kaiser window, 16 zero
// crossings, cutoff at 92% of 8 kHz: the anti-aliasing low-pass), 16 kHz 16-bit input
// passes bit-exact. Input is paced at real time when Config.Realtime (frame i is returned
// once due, at start + (i+1)·100 ms), else returned as fast as the consumer asks; the last
// partial frame is zero-padded; end of input is io.EOF from Next with Err nil. A file is
// read by Next itself; stdin by a goroutine of its own, since a blocked read on a pipe
// cannot be interrupted.
package capture
