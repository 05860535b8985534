package mqttlink

import "sync"

// link is this package's view of whether the broker connection is usable, fed by paho's
// callbacks. paho runs OnConnect and OnConnectionLost on goroutines of their own, so they can
// arrive late and out of order; each transition therefore re-checks paho's own status under
// link's mutex, and a stale callback changes nothing.
//
// gen counts transitions. A QoS 1 token that completes after gen moved on is not trusted as
// an acknowledgement: paho completes tokens without a PUBACK when it re-sends stored
// messages at a reconnection (nullStore prevents that; this check keeps us safe should it
// happen another way), and re-sending costs at most a duplicate.
type link struct {
	mu      sync.Mutex
	up      bool
	ready   bool // up, and announced: subscribed and "online" published
	closed  bool
	gen     uint64
	upCh    chan struct{} // closed while up
	downCh  chan struct{} // closed while down
	readyCh chan struct{} // closed while ready
}

func newLink() *link {
	l := &link{upCh: make(chan struct{}), downCh: make(chan struct{}), readyCh: make(chan struct{})}
	close(l.downCh)
	return l
}

// markReady records that the connection of generation gen has been announced.
func (l *link) markReady(gen uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.up && l.gen == gen && !l.ready {
		l.ready = true
		close(l.readyCh)
	}
}

// markUp records a connection if paho still reports it open; it reports whether this was a
// transition.
func (l *link) markUp(isOpen func() bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.up || l.closed || !isOpen() {
		return false
	}
	l.up = true
	l.gen++
	close(l.upCh)
	l.downCh = make(chan struct{})
	return true
}

// markDown records the loss of the connection unless paho has already reconnected (a late
// OnConnectionLost). isOpen may be nil to force it (Close).
func (l *link) markDown(isOpen func() bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.up || (isOpen != nil && isOpen()) {
		return false
	}
	l.up = false
	l.gen++
	close(l.downCh)
	l.upCh = make(chan struct{})
	if l.ready {
		l.ready = false
		l.readyCh = make(chan struct{})
	}
	return true
}

// close marks the link down for good: nothing waits for it to come up again.
func (l *link) close() {
	l.markDown(nil)
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
}

type linkState struct {
	up, ready bool
	gen       uint64
	upCh      <-chan struct{}
	downCh    <-chan struct{}
	readyCh   <-chan struct{}
}

func (l *link) state() linkState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return linkState{up: l.up, ready: l.ready, gen: l.gen, upCh: l.upCh, downCh: l.downCh, readyCh: l.readyCh}
}

func (l *link) generation() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.gen
}
