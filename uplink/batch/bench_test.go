package batch

import (
	"context"
	"testing"
	"time"

	"github.com/hark-audio/hark/dgemu"
)

// BenchmarkTranscribeFile measures one upload of a 5 s utterance to the in-process
// emulator over loopback: the client's own overhead plus the emulator's analysis.
func BenchmarkTranscribeFile(b *testing.B) {
	srv := dgemu.NewServer(dgemu.Config{APIKey: testKey})
	defer srv.Close()
	c := NewClient(ClientConfig{URL: srv.HTTPURL(), APIKey: testKey})
	defer c.CloseIdleConnections()
	path := wavFileB(b, speech(5*time.Second))
	for b.Loop() {
		if _, err := c.TranscribeFile(context.Background(), path, nil, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTranscribeLargeFile uploads 32 MiB (about 17 minutes of 16 kHz audio):
// B/op (client and in-process emulator together) shows the body is streamed, not held.
func BenchmarkTranscribeLargeFile(b *testing.B) {
	srv := dgemu.NewServer(dgemu.Config{APIKey: testKey})
	defer srv.Close()
	c := NewClient(ClientConfig{URL: srv.HTTPURL(), APIKey: testKey})
	defer c.CloseIdleConnections()
	pcm := make([]int16, 16<<20)
	for i := range pcm {
		pcm[i] = int16(i % 7) // near silence
	}
	path := wavFileB(b, pcm)
	b.SetBytes(int64(2 * len(pcm)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.TranscribeFile(context.Background(), path, nil, nil); err != nil {
			b.Fatal(err)
		}
	}
}
