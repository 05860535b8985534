package capture

import (
	"context"
	"testing"
	"time"
)

func TestDbgPulse(t *testing.T) {
	startPulse(t)
	for k := 0; k < 3; k++ {
		t0 := time.Now()
		s, err := Open(context.Background(), Config{Backend: "pulseaudio", StallTimeout: 10 * time.Second,
			OnEvent: func(e Event) { t.Logf("event %+v", e) }})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("open took %v", time.Since(t0))
		tm := time.After(4 * time.Second)
		n := 0
	loop:
		for {
			select {
			case <-s.Frames():
				if n == 0 {
					t.Logf("first frame after %v", time.Since(t0))
				}
				n++
			case <-tm:
				t.Logf("%d frames, stats %+v", n, s.Stats())
				break loop
			}
		}
		s.Close()
	}
}
