package capture

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

func TestDbgHang(t *testing.T) {
	p := startPulse(t)
	s, err := Open(context.Background(), Config{Backend: "pulseaudio", StallTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	<-s.Frames()
	p.run("pactl", "unload-module", "module-null-sink")
	fmt.Fprintf(os.Stderr, "PID %d\n", os.Getpid())
	time.Sleep(40 * time.Second)
	s.Close()
}
