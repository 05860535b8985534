package spool

import (
	"log/slog"
	"testing"
	"time"
)

// BenchmarkPut measures one durable Put (two files, two fsyncs, two renames, a
// directory fsync) of utterances of typical lengths; Complete keeps the spool small.
func BenchmarkPut(b *testing.B) {
	for _, d := range []time.Duration{time.Second, 5 * time.Second, 30 * time.Second} {
		b.Run(d.String(), func(b *testing.B) {
			s, err := Open(b.TempDir(), Limits{}, slog.New(slog.DiscardHandler))
			if err != nil {
				b.Fatal(err)
			}
			pcm := samples(int(d.Seconds()*16000), 0)
			b.SetBytes(int64(2 * len(pcm)))
			for i := 0; b.Loop(); i++ {
				m, err := s.Put(Meta{Start: t0.Add(time.Duration(i) * time.Second)}, pcm)
				if err != nil {
					b.Fatal(err)
				}
				s.Complete(m.ID)
			}
		})
	}
}
