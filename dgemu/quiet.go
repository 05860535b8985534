package dgemu

import (
	"math/rand/v2"
	"time"
)

// Quiet switches on behaviours of the live service that a client must survive although
// they look like trouble: staying silent, answering late, answering oddly. They are
// reported by users and SDK maintainers rather than documented (docs/emulator.md lists the
// sources), so each is an option, off by default, and hark's tests run under each.
type Quiet struct {
	// NoWordlessResults: no Results at all for audio without words: no empty finals (at
	// endpoints, Finalize or CloseStream) and no empty interims. The audio they would have
	// covered is covered by the next final that has words.
	NoWordlessResults bool
	// UnansweredFinalize: a Finalize is answered only when words are pending; otherwise
	// nothing is sent (and the pending silence stays pending).
	UnansweredFinalize bool
	// LateFinalize: a Finalize with no words pending is answered late: an empty final with
	// from_finalize true (speech_final false) covering the silence it flushed, sent only
	// when the next Finalize (or CloseStream) arrives, after any results sent meanwhile.
	LateFinalize bool
	// FinalizeNotSpeechFinal: answers to Finalize carry speech_final false, however much
	// silence trails the words.
	FinalizeNotSpeechFinal bool
	// EmptyFinalEvery: during silence (no utterance open or pending), an empty final
	// (speech_final false) covering the silence so far is sent every this much audio.
	EmptyFinalEvery time.Duration
	// ResultsJitter adds a uniformly random delay in [0, ResultsJitter) to each live
	// server frame, on top of Config.ResultsDelay. Frames keep their order.
	ResultsJitter time.Duration
}

// Modes are named combinations of the quiet options, as the tests and `dgemu --mode` use
// them. "" is the plain emulator.
var Modes = map[string]Quiet{
	"":             {},
	"quiet":        {NoWordlessResults: true, UnansweredFinalize: true},
	"late-empty":   {LateFinalize: true, FinalizeNotSpeechFinal: true},
	"empty-finals": {EmptyFinalEvery: time.Second},
	"jitter":       {ResultsJitter: 700 * time.Millisecond},
	"all": {NoWordlessResults: true, LateFinalize: true, FinalizeNotSpeechFinal: true,
		ResultsJitter: 700 * time.Millisecond},
}

// jitter is the extra delay of one server frame.
func (q *Quiet) jitter() time.Duration {
	if q.ResultsJitter <= 0 {
		return 0
	}
	return rand.N(q.ResultsJitter)
}

// quietFinal says whether a final with these words must not be sent (NoWordlessResults).
func (t *transcriber) quietFinal(ws []word) bool {
	return t.q.NoWordlessResults && len(ws) == 0
}

// finalizeQuietly handles a Finalize (not the end of the stream) when nothing with words
// is pending, as the options say. It reports whether it handled it (nothing more to do).
func (t *transcriber) finalizeQuietly(last int) bool {
	if len(t.pendingWords()) > 0 || last <= t.finalWin {
		return false
	}
	switch {
	case t.q.LateFinalize:
		// The silence is flushed now; its (empty) answer goes out at the next Finalize.
		r := t.results(last, nil, true, false, true)
		t.pending = nil
		t.finalWin, t.lastResultWin = last, last
		if !t.q.NoWordlessResults {
			t.late = append(t.late, r)
		}
		return true
	case t.q.UnansweredFinalize:
		t.pending = nil // utterances without words, if any: nothing to say about them
		return true
	}
	return false
}

// sendLate sends the empty answers held back by LateFinalize.
func (t *transcriber) sendLate() {
	for _, r := range t.late {
		t.emit(r)
	}
	t.late = nil
}

// emptyFinalDue reports whether a periodic empty final is due at window end.
func (t *transcriber) emptyFinalDue(end int) bool {
	return t.emptyEveryWins > 0 && t.cur == nil && len(t.pending) == 0 && end-t.finalWin >= t.emptyEveryWins
}
