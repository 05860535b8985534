package agent

import (
	"context"
	"sync"
	"testing"

	"github.com/hark-audio/hark/transcript"
)

// lastState is a publisher that keeps the last state it was given (as the MQTT client's
// retained <base>/state keeps only the newest payload).
type lastState struct {
	mu   sync.Mutex
	last State
}

func (p *lastState) PublishTranscript(transcript.Utterance) error { return nil }
func (p *lastState) PublishInterim(any)                           {}
func (p *lastState) PublishEvent(any)                             {}
func (p *lastState) SetConfig([]byte)                             {}
func (p *lastState) PublishHealth(any)                            {}
func (p *lastState) Close(context.Context) error                  { return nil }
func (p *lastState) SetState(v any) {
	p.mu.Lock()
	p.last = v.(State)
	p.mu.Unlock()
}

// TestStatePublishedInOrder: state changes made at once from several goroutines (a mute
// request and the uploader's state change it causes) reach the publisher in the order they
// were made, so the retained state is the current one. Published outside the tracker's
// lock, an older state could overtake a newer one: the device then showed "muted" after an
// unmute (seen in TestMQTTEndToEnd under load).
func TestStatePublishedInOrder(t *testing.T) {
	a := &Agent{opts: Options{Notifier: nopNotifier{}}}
	a.st.init(a)
	p := &lastState{}
	a.pub = p
	for round := range 200 {
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range 50 {
				a.st.set(func(s *State) { s.Muted = (round+i)%2 == 0 })
			}
		}()
		go func() {
			defer wg.Done()
			for i := range 50 {
				a.st.set(func(s *State) { s.Spool.Entries = round*50 + i })
			}
		}()
		wg.Wait()
		want := a.st.get()
		p.mu.Lock()
		got := p.last
		p.mu.Unlock()
		if got.Muted != want.Muted || got.Spool.Entries != want.Spool.Entries {
			t.Fatalf("round %d: the publisher holds %+v, the state is %+v", round, got, want)
		}
	}
}
