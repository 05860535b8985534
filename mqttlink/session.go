package mqttlink

import (
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/hark-audio/hark/internal/logging"
)

// shortSession and takeoverAfter define the pattern of a session taken over: a broker
// disconnects a client when another connects with the same client id, and with both
// reconnecting they cut each other off within seconds, for ever. paho reports each cut as a
// bare "EOF", so the pattern is what tells: takeoverAfter connections in a row that ended
// within shortSession of being made.
const (
	shortSession  = 10 * time.Second
	takeoverAfter = 3
)

var errSessionTakenOver = errors.New("the broker closes the connection right after it opens: another client is probably connected with the same client id")

// sessionWatch follows how long connections last, to say why the broker keeps closing
// them and to keep a storm of reconnections from flooding the log. Its methods are called
// from paho's callbacks and never block.
type sessionWatch struct {
	log      *slog.Logger
	clientID string
	takeover *logging.Repeater

	mu      sync.Mutex
	upSince time.Time
	gen     uint64
	short   int // connections in a row that ended within shortSession
	stable  *time.Timer
	closed  bool
}

func newSessionWatch(log *slog.Logger, clientID string) *sessionWatch {
	return &sessionWatch{log: log, clientID: clientID,
		takeover: logging.NewRepeater(log, "the broker keeps cutting the connection right after it opens", 0)}
}

// up records a new connection. quiet says that the reconnection is part of a storm and
// need not be logged above Debug.
func (w *sessionWatch) up() (quiet bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.upSince = time.Now()
	w.gen++
	if w.stable != nil {
		w.stable.Stop()
	}
	if !w.closed && w.short > 0 {
		gen := w.gen
		w.stable = time.AfterFunc(shortSession, func() { w.settled(gen) })
	}
	return w.short > 0
}

// settled runs once a connection has lasted shortSession: the storm, if any, is over.
func (w *sessionWatch) settled(gen uint64) {
	w.mu.Lock()
	if gen != w.gen {
		w.mu.Unlock()
		return
	}
	w.short = 0
	w.mu.Unlock()
	w.takeover.OK("client_id", w.clientID)
}

// down records the loss of the connection. It returns errSessionTakenOver when the
// pattern of a session taken over is seen (and logged), and whether the loss is part of a
// storm (log it at Debug).
func (w *sessionWatch) down() (cause error, quiet bool) {
	w.mu.Lock()
	lived := time.Since(w.upSince)
	w.gen++
	if w.stable != nil {
		w.stable.Stop()
	}
	if lived < shortSession {
		w.short++
	} else {
		w.short = 0
	}
	n := w.short
	w.mu.Unlock()
	if n >= takeoverAfter {
		w.takeover.Fail(errSessionTakenOver, "client_id", w.clientID, "short_connections", n,
			"hint", "give every device its own mqtt.client_id (the default is derived from mqtt.topic_prefix and device_id)")
		return errSessionTakenOver, true
	}
	return nil, n > 1
}

func (w *sessionWatch) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	if w.stable != nil {
		w.stable.Stop()
	}
}
