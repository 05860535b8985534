package allocs

import "testing"

var sink []byte

func TestPerRunSeesAmortisedAllocations(t *testing.T) {
	i := 0
	got := PerRun(160, func() {
		if i%16 == 0 {
			sink = make([]byte, 1024)
		}
		i++
	})
	if got < 0.05 || got > 0.08 {
		t.Fatalf("one allocation every 16 calls measured as %v per call", got)
	}
	if n := PerRun(100, func() {}); n != 0 {
		t.Fatalf("an empty function allocates %v times", n)
	}
}
