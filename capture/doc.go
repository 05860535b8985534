// Package capture is where hark's audio comes from: a microphone through miniaudio (malgo),
// a WAV file, or raw linear16 on stdin. Whatever the input, it delivers 100 ms frames of
// 16 kHz mono linear16 (audio.Frame) with the capture wall-clock time of their first sample.
package capture
