package live

import (
	"math/rand/v2"
	"testing"
	"time"
)

// runLedgerScript interprets b as a sequence of events — the gate's segments and frames,
// the supervisor's connections, drops, backoffs and refusals, the writer taking items, and
// a service that answers in stream order but may stay quiet, answer Finalize late, empty,
// twice or not at all, and send empty finals — and checks the ledger's invariants after
// every step and at the end (lharness.check, lharness.checkFinal): every segment has
// exactly one outcome (published whole from one connection, or spooled whole), no word is
// published twice or lost, and every word is mapped to the capture time of its frame.
//
// The one assumption about the service is health: words it has heard are answered before
// the grace after the Finalize behind them runs out (unless the connection dies first).
// The time steps respect it; rule 7 of ledger.go covers the service that does not.
func runLedgerScript(t testing.TB, b []byte) ledgerCounts {
	h := newLH(t, testLedgerConfig())
	h.rt = false
	pos := 0
	next := func() int {
		if pos >= len(b) {
			return 0
		}
		pos++
		return int(b[pos-1])
	}
	for pos < len(b) {
		switch op := next() % 20; op {
		case 0:
			h.start()
		case 1, 2:
			h.frame(op == 2)
		case 3:
			h.end()
		case 4:
			if h.svc == nil && !h.now.Before(h.l.noConnUntil) {
				h.connect()
			}
		case 5:
			h.send(next()%8 + 1)
		case 6: // an endpointing final up to somewhere in what was heard
			if h.alive() && len(h.svc.recv) > h.svc.answered {
				h.finalUpTo(h.svc.answered+1+next()%(len(h.svc.recv)-h.svc.answered), false, next()%2 == 0)
			}
		case 7:
			if h.alive() {
				h.answerFinalize()
			}
		case 8: // the oldest Finalize has nothing with words pending: unanswered, or late
			if s := h.svc; h.alive() && len(s.fins) > 0 && !s.wordsIn(s.answered, s.fins[0]) {
				p := s.fins[0]
				if next()%2 == 0 && p > s.answered {
					s.late = append(s.late, results{Start: float64(s.answered) * frameSec,
						Duration: float64(p-s.answered) * frameSec, IsFinal: true, FromFinalize: true})
				}
				s.fins, s.finAt = s.fins[1:], s.finAt[1:]
			}
		case 9:
			if s := h.svc; h.alive() && len(s.late) > 0 {
				r := s.late[0]
				s.late = s.late[1:]
				h.deliver(&r)
			}
		case 10:
			if s := h.svc; h.alive() && s.last != nil {
				h.deliver(s.last)
			}
		case 11: // a periodic empty final over silence
			if s := h.svc; h.alive() && len(s.recv) > s.answered {
				up := s.answered + 1 + next()%(len(s.recv)-s.answered)
				if !s.wordsIn(s.answered, up) {
					h.finalUpTo(up, false, false)
				}
			}
		case 12:
			if h.alive() {
				h.heard()
			}
		case 13:
			h.healthyAdvance(time.Duration(next()%40) * 50 * time.Millisecond)
		case 14:
			if h.svc != nil {
				h.drop()
				h.l.setNoConnUntil(h.now.Add(time.Duration(next()%80)*100*time.Millisecond), "backoff", false, h.now)
				h.collect()
			}
		case 15:
			if h.svc == nil {
				h.l.setNoConnUntil(h.now.Add(2*time.Minute), "refused", true, h.now)
				h.collect()
			}
		case 16:
			if h.alive() && next()%4 == 0 {
				h.closeGracefully()
			}
		case 17:
			h.l.tick(h.now)
			h.collect()
		case 19: // endpointing: a speech_final up to just after the last word heard
			if s := h.svc; h.alive() {
				last := -1
				for k := len(s.recv) - 1; k >= s.answered; k-- {
					if s.recv[k] != 0 {
						last = k
						break
					}
				}
				if last >= 0 {
					h.finalUpTo(last+1+next()%3, false, true)
				}
			}
		case 18: // the connection dies without a sound (half-open): nothing more comes
			// from it until the liveness check (op 14) finds out
			if h.svc != nil {
				h.svc.dead = true
			}
		}
		h.check()
	}
	// Input end: the gate closes the open segment, the stream is closed gracefully (when
	// there is one) and whatever is left goes to the spool.
	h.end()
	if h.alive() {
		h.healthyAdvance(0)
		h.closeGracefully()
	} else {
		h.drop()
	}
	h.l.finish(h.now, "stopping")
	h.collect()
	h.checkFinal()
	return h.l.n
}

func (h *lharness) alive() bool { return h.svc != nil && !h.svc.dead }

// wordsIn reports whether stream frames [a, b) hold a word.
func (s *svc) wordsIn(a, b int) bool {
	for k := a; k < b && k < len(s.recv); k++ {
		if s.recv[k] != 0 {
			return true
		}
	}
	return false
}

// healthyAdvance moves the clock by d, first answering every Finalize whose words would
// otherwise still be unanswered when its grace could run out. The service hears audio at
// most 1.25x real time, so a Finalize behind a replayed backlog is heard late, and may
// be answered as late as a grace after that.
func (h *lharness) healthyAdvance(d time.Duration) {
	if s := h.svc; h.alive() {
		for i := len(s.fins) - 1; i >= 0; i-- {
			heard := s.finAt[i]
			if p := s.fins[i]; p > 0 {
				heard = maxTime(heard, s.heardAt[p-1])
			}
			if s.wordsIn(s.answered, s.fins[i]) && !h.now.Add(d).Before(heard.Add(h.l.cfg.Grace)) {
				h.finalUpTo(s.fins[i], true, false)
				break
			}
		}
	}
	h.advance(d)
}

// FuzzLedger explores event sequences (go test -fuzz FuzzLedger ./uplink/live).
func FuzzLedger(f *testing.F) {
	for _, seed := range ledgerSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 4000 {
			return
		}
		runLedgerScript(t, b)
	})
}

// ledgerSeeds are scripts for the scenarios of TestLedgerRules and a few random ones.
func ledgerSeeds() [][]byte {
	seeds := [][]byte{
		// connect, a segment with words, send, answer
		{4, 0, 2, 2, 1, 1, 3, 5, 7, 5, 7, 7, 12},
		// quiet: endpointing final, unanswered Finalize, pong, time passes
		{4, 0, 2, 1, 2, 1, 1, 1, 3, 5, 7, 5, 7, 5, 7, 6, 4, 1, 8, 0, 12, 13, 35, 13, 35},
		// drop mid-segment, reconnect, replay
		{4, 0, 2, 2, 5, 7, 6, 1, 1, 14, 3, 2, 2, 13, 10, 4, 5, 7, 5, 7, 3, 5, 7, 7},
		// late empty answer after the next Finalize
		{4, 0, 2, 1, 1, 3, 5, 7, 5, 7, 8, 0, 0, 2, 1, 3, 5, 7, 5, 7, 9, 7, 10},
		// refusal, then segments
		{15, 0, 2, 2, 3, 0, 2, 3, 13, 39, 17},
		// no connection for long: MaxWait
		{0, 2, 2, 2, 13, 39, 13, 39, 13, 39, 3, 4, 5, 7},
		// planned close with a segment pending
		{4, 0, 2, 2, 3, 5, 7, 5, 7, 16, 0, 0, 2, 3, 4, 5, 7, 5, 7},
	}
	r := rand.New(rand.NewPCG(7, 7))
	for range 8 {
		b := make([]byte, 300)
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		seeds = append(seeds, b)
	}
	return seeds
}

// sessionScript writes a plausible session: segments spoken in real time with the writer
// keeping up, a service that endpoints, answers, stays quiet or answers late, pongs, and
// faults (drops with backoffs, refusals, planned closes) at random points.
func sessionScript(r *rand.Rand) []byte {
	var b []byte
	op := func(x ...int) {
		for _, v := range x {
			b = append(b, byte(v))
		}
	}
	p := func(pr float64) bool { return r.Float64() < pr }
	for range 1 + r.IntN(8) {
		if p(0.8) {
			op(4) // connect if possible
		}
		op(0)
		for range 1 + r.IntN(40) {
			op(1 + r.IntN(2)) // a frame, with a word or not
			op(5, r.IntN(8))  // the writer takes it
			op(13, 2)         // 100 ms pass
			switch {
			case p(0.05):
				op(6, r.IntN(256), r.IntN(2)) // endpointing final
			case p(0.02):
				op(14, r.IntN(60)) // drop, backoff
			case p(0.01):
				op(18) // dies silently; found out at the next drop
			case p(0.03):
				op(4) // reconnect
			case p(0.02):
				op(12)
			case p(0.01):
				op(15) // refusal (when disconnected)
			}
		}
		if p(0.5) {
			op(19, r.IntN(3)) // the service endpoints after the last word
		}
		op(3, 5, 7) // end, Finalize
		switch r.IntN(6) {
		case 0:
			op(7) // answered
		case 1:
			op(8, r.IntN(2)) // unanswered or late (if nothing wordful pending)
		case 2:
			op(6, r.IntN(256), 1, 8, 1) // endpoint then late
		case 3:
			op(7, 10) // answered twice
		case 4:
			op(11, r.IntN(256)) // an empty final
		}
		if p(0.3) {
			op(12) // pong
		}
		op(13, r.IntN(40), 13, r.IntN(40)) // a pause
		if p(0.7) {
			op(12) // pong, maybe after the grace
		}
		if p(0.3) {
			op(9)
		}
		if p(0.1) {
			op(16, 0)
		}
		if p(0.1) {
			op(18, 13, 39, 13, 39, 12) // dies silently; time passes; no pong comes
		}
		if p(0.1) {
			op(14, r.IntN(60))
		}
	}
	return b
}

// TestLedgerProperties runs the fuzz target's checks over the seeds and many random
// scripts, so they hold in every ordinary test run too.
func TestLedgerProperties(t *testing.T) {
	var total ledgerCounts
	add := func(n ledgerCounts) {
		total.published += n.published
		total.empty += n.empty
		total.spooled += n.spooled
		total.replays += n.replays
		total.graceCompleted += n.graceCompleted
		total.duplicateWords += n.duplicateWords
	}
	for _, s := range ledgerSeeds() {
		add(runLedgerScript(t, s))
	}
	n := 3000
	if testing.Short() {
		n = 300
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range n {
		var b []byte
		if i%2 == 0 {
			b = sessionScript(r)
		} else {
			b = make([]byte, 50+r.IntN(400))
			for j := range b {
				b[j] = byte(r.IntN(256))
			}
		}
		t.Run("", func(t *testing.T) {
			defer func() {
				if t.Failed() {
					t.Logf("script %d: %v", i, b)
				}
			}()
			add(runLedgerScript(t, b))
		})
		if t.Failed() {
			return
		}
	}
	// The scripts must reach every kind of outcome, or the test proves little.
	t.Logf("outcomes over %d scripts: %d published (%d by grace), %d empty, %d spooled, %d replays, %d duplicate words",
		n, total.published, total.graceCompleted, total.empty, total.spooled, total.replays, total.duplicateWords)
	if total.published == 0 || total.graceCompleted == 0 || total.empty == 0 || total.spooled == 0 ||
		total.replays == 0 || total.duplicateWords == 0 {
		t.Errorf("the scripts no longer reach every outcome: %+v", total)
	}
}
