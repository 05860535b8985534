package dgemu

import (
	"math"
	"strings"
	"unicode"
)

// analyzer turns mono samples into fixed windows (10 ms at rates divisible by 100) of
// speech or silence by mean energy. It is deliberately simple and deterministic: the
// emulator needs to know where speech is, not what was said.
type analyzer struct {
	rate       int
	winSamples int
	thresh     float64 // mean square above which a window is speech
	acc        float64
	n          int
	speech     []bool
	samples    int64 // mono sample frames seen, including the partial window
}

func newAnalyzer(rate int, threshDBFS float64) analyzer {
	w := rate / 100
	if w < 1 {
		w = 1
	}
	a := math.Pow(10, threshDBFS/20)
	return analyzer{rate: rate, winSamples: w, thresh: a * a}
}

// add consumes samples and returns how many new complete windows exist.
func (a *analyzer) add(x []float32) int {
	before := len(a.speech)
	for _, v := range x {
		a.acc += float64(v) * float64(v)
		a.n++
		if a.n == a.winSamples {
			a.speech = append(a.speech, a.acc/float64(a.n) > a.thresh)
			a.acc, a.n = 0, 0
		}
	}
	a.samples += int64(len(x))
	return len(a.speech) - before
}

// flush turns a trailing partial window into a window (only at the end of the audio).
func (a *analyzer) flush() int {
	if a.n == 0 {
		return 0
	}
	a.speech = append(a.speech, a.acc/float64(a.n) > a.thresh)
	a.acc, a.n = 0, 0
	return 1
}

// time is the audio time at the start of window i; the end of the last window is the
// exact end of the audio.
func (a *analyzer) time(i int) float64 {
	s := int64(i) * int64(a.winSamples)
	if s > a.samples {
		s = a.samples
	}
	return float64(s) / float64(a.rate)
}

func (a *analyzer) seconds() float64 { return float64(a.samples) / float64(a.rate) }

// word is one emitted word, times in seconds of audio.
type word struct {
	Word           string  `json:"word"`
	Start          float64 `json:"start"`
	End            float64 `json:"end"`
	Confidence     float64 `json:"confidence"`
	PunctuatedWord string  `json:"punctuated_word,omitempty"`
}

// utt is one detected utterance: speech windows separated by less than the utterance gap.
type utt struct {
	startWin, lastWin int
	speechWins        []int
	tokens            []string // fixture text split in words; nil = describe what was heard
	fixture           bool
	refSpan           int     // index in Config.Reference's spans, -1 if not located there
	refPos            float64 // reference seconds at the utterance's first speech window
	first             bool    // no utterance before it in this stream or file
	closedAtEnd       bool    // closed by Finalize or the end of the audio, not by a pause
	words             []word  // assigned when closed
}

// transcriber is the deterministic recogniser shared by the live and pre-recorded paths:
// it segments the audio into utterances, gives each the next fixture text and spreads its
// words over the utterance's speech windows, and decides when Results are due.
type transcriber struct {
	o           *Options
	an          analyzer
	gapWins     int // silence that ends an utterance
	epWins      int // silence before an endpoint (speech_final); -1 = endpointing off
	rawEpWins   int // endpointing as asked, for Finalize
	interimWins int
	next        func() (string, bool) // next fixture text
	emit        func(any)             // live messages out (nil on the pre-recorded path)

	ref         *Reference // content-addressed fixture, or nil
	utts        int        // utterances begun in this stream
	recent      []float32  // last samples, for locating an onset in ref
	recentStart int64      // index of recent[0] in the audio

	cur           *utt
	pending       []*utt // closed, words not yet sent in a final (live path)
	closed        []*utt // every closed utterance (pre-recorded path)
	finalWin      int    // window where the next final's segment starts
	lastResultWin int
	lastSpeech    int
	lastWordEnd   float64
	ueArmed       bool
	meta          resultsMeta

	q              Quiet        // the service's quiet side (quiet.go)
	late           []resultsMsg // LateFinalize: answers held back
	emptyEveryWins int          // EmptyFinalEvery in windows; 0 = off
}

func (t *transcriber) ms(ms int) int {
	if ms < 0 {
		return -1
	}
	w := int(math.Ceil(float64(ms) / 1000 * float64(t.an.rate) / float64(t.an.winSamples)))
	if w < 1 {
		w = 1
	}
	return w
}

func newTranscriber(o *Options, rate int, cfg *Config, next func() (string, bool), emit func(any), meta resultsMeta) *transcriber {
	t := &transcriber{o: o, an: newAnalyzer(rate, cfg.SpeechThresholdDBFS), next: next, emit: emit, lastSpeech: -1, meta: meta,
		ref: cfg.Reference}
	t.gapWins = t.ms(int(cfg.UtteranceGap.Milliseconds()))
	t.rawEpWins = t.ms(o.EndpointingMs)
	t.epWins = t.rawEpWins
	if t.epWins >= 0 && t.epWins < t.gapWins {
		t.epWins = t.gapWins
	}
	t.interimWins = t.ms(int(cfg.InterimInterval.Milliseconds()))
	t.q = cfg.Quiet
	if cfg.Quiet.EmptyFinalEvery > 0 {
		t.emptyEveryWins = t.ms(int(cfg.Quiet.EmptyFinalEvery.Milliseconds()))
	}
	return t
}

// addSamples feeds decoded mono audio and runs the state machine on each new window.
func (t *transcriber) addSamples(x []float32) {
	t.keepRecent(x)
	n := t.an.add(x)
	for i := len(t.an.speech) - n; i < len(t.an.speech); i++ {
		t.step(i)
	}
}

func (t *transcriber) step(i int) {
	if t.an.speech[i] {
		if t.cur == nil {
			t.cur = &utt{startWin: i, refSpan: -1, first: t.utts == 0}
			t.utts++
			if span, pos, ok := t.refLookup(i); ok {
				t.cur.refSpan, t.cur.refPos, t.cur.fixture = span, pos, true
				t.cur.tokens = strings.Fields(t.ref.Spans[span].Text)
			} else if text, ok := t.next(); ok {
				t.cur.tokens = strings.Fields(text)
				t.cur.fixture = true
			}
			if t.o.VADEvents && t.emit != nil {
				t.emit(speechStartedMsg{Type: "SpeechStarted", Channel: []int{0, 1}, Timestamp: round3(t.an.time(i))})
			}
		}
		t.cur.speechWins = append(t.cur.speechWins, i)
		t.cur.lastWin = i
		t.lastSpeech = i
	} else if t.cur != nil && i-t.cur.lastWin >= t.gapWins {
		t.closeUtt()
	}
	end := i + 1
	if t.emit == nil {
		return
	}
	if len(t.pending) > 0 {
		if t.epWins < 0 {
			t.final(end, false, false)
		} else if i-t.lastSpeech >= t.epWins {
			t.final(end, true, false)
		}
	} else if t.emptyFinalDue(end) {
		t.final(end, false, false)
	}
	if t.o.UtteranceEndMs > 0 && t.o.InterimResults && t.ueArmed && t.cur == nil && len(t.pending) == 0 &&
		t.an.time(end)-t.lastWordEnd >= float64(t.o.UtteranceEndMs)/1000 {
		t.ueArmed = false
		t.emit(utteranceEndMsg{Type: "UtteranceEnd", Channel: []int{0, 1}, LastWordEnd: round3(t.lastWordEnd)})
	}
	if t.o.InterimResults && end-t.lastResultWin >= t.interimWins {
		t.interim(end)
	}
}

func (t *transcriber) closeUtt() {
	u := t.cur
	t.cur = nil
	if !u.fixture {
		u.tokens = describe(t.an.time(u.lastWin+1) - t.an.time(u.startWin))
	}
	if u.refSpan >= 0 {
		u.tokens = t.refTokens(u)
	}
	u.words = t.spread(u, u.tokens)
	if t.emit == nil {
		t.closed = append(t.closed, u) // the pre-recorded path lists every utterance
		return
	}
	t.pending = append(t.pending, u)
}

// spread gives each token an equal share of the utterance's speech time, so words sit on
// detected speech and never in the pauses between sentences.
func (t *transcriber) spread(u *utt, tokens []string) []word {
	W := len(u.speechWins)
	n := len(tokens)
	if n == 0 || W == 0 {
		return nil
	}
	// at maps a position in speech time (in windows, 0..W) to audio time. A word ending
	// exactly on a window boundary ends at the end of that window, not at the start of the
	// next speech window, which may lie after a pause.
	at := func(pos float64, isEnd bool) float64 {
		k := int(pos)
		frac := pos - float64(k)
		if isEnd && frac == 0 && k > 0 {
			return t.an.time(u.speechWins[k-1] + 1)
		}
		if k >= W {
			return t.an.time(u.speechWins[W-1] + 1)
		}
		w0, w1 := t.an.time(u.speechWins[k]), t.an.time(u.speechWins[k]+1)
		return w0 + frac*(w1-w0)
	}
	ws := make([]word, 0, n)
	for i, tok := range tokens {
		w := word{
			Word:       normalizeWord(tok),
			Start:      round3(at(float64(i*W)/float64(n), false)),
			End:        round3(at(float64((i+1)*W)/float64(n), true)),
			Confidence: wordConfidence(tok),
		}
		if t.o.Punctuate || t.o.SmartFormat {
			w.PunctuatedWord = tok
		}
		ws = append(ws, w)
	}
	return ws
}

// partial reveals the open utterance's first words at a steady speaking rate, for interims.
func (t *transcriber) partial() []word {
	u := t.cur
	if u == nil {
		return nil
	}
	tokens := u.tokens
	if !u.fixture {
		tokens = []string{"speech"}
	}
	speechSec := float64(len(u.speechWins)*t.an.winSamples) / float64(t.an.rate)
	k := int(speechSec * 2.5)
	if k > len(tokens) {
		k = len(tokens)
	}
	return t.spread(u, tokens[:k])
}

func (t *transcriber) transcript(ws []word) string {
	parts := make([]string, len(ws))
	for i, w := range ws {
		if w.PunctuatedWord != "" {
			parts[i] = w.PunctuatedWord
		} else {
			parts[i] = w.Word
		}
	}
	return strings.Join(parts, " ")
}

func (t *transcriber) results(end int, words []word, isFinal, speechFinal, fromFinalize bool) resultsMsg {
	start := t.an.time(t.finalWin)
	if words == nil {
		words = []word{}
	}
	conf := 0.0
	for _, w := range words {
		conf += w.Confidence
	}
	if len(words) > 0 {
		conf = round4(conf / float64(len(words)))
	}
	return resultsMsg{
		Type: "Results", ChannelIndex: []int{0, 1},
		Duration: round3(t.an.time(end) - start), Start: round3(start),
		IsFinal: isFinal, SpeechFinal: speechFinal, FromFinalize: fromFinalize,
		Channel: channelJSON{Alternatives: []alternative{{
			Transcript: t.transcript(words), Confidence: conf, Words: words,
		}}},
		Metadata: t.meta,
	}
}

func (t *transcriber) pendingWords() []word {
	var ws []word
	for _, u := range t.pending {
		ws = append(ws, u.words...)
	}
	return ws
}

func (t *transcriber) final(end int, speechFinal, fromFinalize bool) {
	ws := t.pendingWords()
	t.pending = nil
	if t.quietFinal(ws) {
		return // covered by the next final with words
	}
	t.emit(t.results(end, ws, true, speechFinal, fromFinalize))
	t.finalWin = end
	t.lastResultWin = end
	if len(ws) > 0 {
		t.lastWordEnd = ws[len(ws)-1].End
		t.ueArmed = true
	}
}

func (t *transcriber) interim(end int) {
	ws := append(t.pendingWords(), t.partial()...)
	if t.q.NoWordlessResults && len(ws) == 0 {
		t.lastResultWin = end
		return
	}
	t.emit(t.results(end, ws, false, false, false))
	t.lastResultWin = end
}

// finalize answers Finalize (fromFinalize) and the end of the stream: the open utterance is
// closed where it stands and everything since the previous final is sent as a final. With no
// audio since the previous final nothing is sent, as the service may do.
func (t *transcriber) finalize(fromFinalize, end bool) {
	if t.emit != nil {
		t.sendLate() // answers held back go out before anything about this request
	}
	if end {
		if i := len(t.an.speech); t.an.flush() > 0 {
			t.step(i)
		}
	}
	if t.cur != nil {
		t.cur.closedAtEnd = true
		t.closeUtt()
	}
	last := len(t.an.speech)
	if last <= t.finalWin && len(t.pending) == 0 {
		return
	}
	if t.emit == nil {
		t.pending = nil
		return
	}
	if fromFinalize && t.finalizeQuietly(last) {
		return
	}
	sf := len(t.pending) > 0 && t.rawEpWins >= 0 && last-1-t.lastSpeech >= t.rawEpWins
	if fromFinalize && t.q.FinalizeNotSpeechFinal {
		sf = false
	}
	t.final(last, sf, fromFinalize)
}

// normalizeWord is Deepgram's `word`: lower case without surrounding punctuation.
func normalizeWord(tok string) string {
	w := strings.TrimFunc(tok, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
	if w == "" {
		w = tok
	}
	return strings.ToLower(w)
}

// wordConfidence is deterministic and plausible: long words a little less sure.
func wordConfidence(tok string) float64 {
	return round4(0.999 - 0.004*float64(len(tok)%7))
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }
func round4(x float64) float64 { return math.Round(x*10000) / 10000 }

var numberWords = []string{"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
	"ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"}
var tensWords = []string{"", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"}

func spellNumber(n int) []string {
	switch {
	case n < 20:
		return []string{numberWords[n]}
	case n < 100:
		if n%10 == 0 {
			return []string{tensWords[n/10]}
		}
		return []string{tensWords[n/10], numberWords[n%10]}
	case n < 1000:
		out := []string{numberWords[n/100], "hundred"}
		if n%100 != 0 {
			out = append(out, spellNumber(n%100)...)
		}
		return out
	}
	return []string{"many"}
}

// describe is the transcript of an utterance when no fixture text is left: what was heard,
// e.g. "speech one point two seconds".
func describe(sec float64) []string {
	tenths := int(math.Round(sec * 10))
	out := []string{"speech"}
	out = append(out, spellNumber(tenths/10)...)
	out = append(out, "point")
	out = append(out, spellNumber(tenths%10)...)
	return append(out, "seconds")
}
