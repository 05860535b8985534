package dgemu

import (
	"math"
	"testing"
	"time"
)

func num(m map[string]any, k string) float64 { v, _ := m[k].(float64); return v }

// NoWordlessResults: silence gets no Results of any kind, not at a Finalize, not in
// interims, not at CloseStream; speech still does.
func TestQuietNoWordlessResults(t *testing.T) {
	s := newTestServer(t, Config{Utterances: []string{"hello there"}, Quiet: Quiet{NoWordlessResults: true}})
	c := dial(t, s, liveQuery("interim_results", "true"))
	c.sendAudio(silence(2.5), 3200)
	c.sendText(`{"type":"Finalize"}`)
	c.sendAudio(concat(tone(1), silence(1)), 3200)
	c.sendText(`{"type":"Finalize"}`)
	c.sendAudio(silence(1.5), 3200)
	c.sendText(`{"type":"CloseStream"}`)
	ms, _ := c.collect()
	for _, m := range ofType(ms, "Results") {
		if len(wordsOf(m)) == 0 {
			t.Errorf("a result without words: %v", m)
		}
	}
	fs := finals(ms)
	if len(fs) != 1 || transcriptOf(fs[0]) != "hello there" {
		t.Fatalf("finals %v", fs)
	}
	// The one final covers the silence before it too: coverage stays contiguous.
	if num(fs[0], "start") != 0 {
		t.Errorf("final starts at %v, want 0 (it covers the unanswered silence)", fs[0]["start"])
	}
	if len(ofType(ms, "Metadata")) != 1 {
		t.Error("no Metadata")
	}
}

// UnansweredFinalize: a Finalize with nothing but silence pending gets no answer; the
// silence is covered by the next final.
func TestQuietUnansweredFinalize(t *testing.T) {
	s := newTestServer(t, Config{Utterances: []string{"one", "two"}, Quiet: Quiet{UnansweredFinalize: true}})
	c := dial(t, s, liveQuery())
	c.sendAudio(concat(silence(0.2), tone(1), silence(1)), 3200)
	f1 := c.next("Results") // the endpoint after "one"
	if transcriptOf(f1) != "one" || f1["speech_final"] != true {
		t.Fatalf("first final %v", f1)
	}
	end1 := num(f1, "start") + num(f1, "duration")
	c.sendAudio(silence(0.5), 3200)
	c.sendText(`{"type":"Finalize"}`) // only silence pending: no answer
	c.sendAudio(concat(tone(1), silence(0.2)), 3200)
	c.sendText(`{"type":"Finalize"}`)
	f2 := c.next("Results")
	if transcriptOf(f2) != "two" || f2["from_finalize"] != true {
		t.Fatalf("second final %v", f2)
	}
	if math.Abs(num(f2, "start")-end1) > 1e-9 {
		t.Errorf("second final starts at %v, want %v (covering the unanswered silence)", f2["start"], end1)
	}
	// Nothing else was sent for the unanswered Finalize: after CloseStream (no words
	// pending: nothing to flush), only Metadata follows.
	c.sendText(`{"type":"CloseStream"}`)
	rest, _ := c.collect()
	if len(rest) != 1 || rest[0]["type"] != "Metadata" {
		t.Errorf("after the second answer: %v", rest)
	}
}

// LateFinalize with FinalizeNotSpeechFinal: the answer to a Finalize with only silence
// pending comes after the next Finalize, empty, from_finalize, speech_final false; the
// next answer follows it.
func TestQuietLateEmptyFinalize(t *testing.T) {
	s := newTestServer(t, Config{Utterances: []string{"one", "two"},
		Quiet: Quiet{LateFinalize: true, FinalizeNotSpeechFinal: true}})
	c := dial(t, s, liveQuery())
	c.sendAudio(concat(silence(0.2), tone(1), silence(1)), 3200)
	f1 := c.next("Results")
	end1 := num(f1, "start") + num(f1, "duration")
	c.sendAudio(silence(0.5), 3200)
	c.sendText(`{"type":"Finalize"}`) // held back
	c.sendAudio(concat(tone(1), silence(0.2)), 3200)
	c.sendText(`{"type":"Finalize"}`)
	late := c.next("Results")
	// It covers the silence from the first final to the first Finalize (2.7 s of audio).
	if late["from_finalize"] != true || late["speech_final"] != false || transcriptOf(late) != "" ||
		math.Abs(num(late, "start")-end1) > 1e-9 || math.Abs(num(late, "start")+num(late, "duration")-2.7) > 1e-9 {
		t.Fatalf("late answer %v, want an empty from_finalize final over [%v, 2.7)", late, end1)
	}
	f2 := c.next("Results")
	if transcriptOf(f2) != "two" || f2["from_finalize"] != true || f2["speech_final"] != false {
		t.Fatalf("second answer %v", f2)
	}
	if math.Abs(num(f2, "start")-(end1+num(late, "duration"))) > 1e-9 {
		t.Errorf("second answer starts at %v", f2["start"])
	}
}

// EmptyFinalEvery: silence gets an empty final every second of audio, contiguous.
func TestQuietPeriodicEmptyFinals(t *testing.T) {
	s := newTestServer(t, Config{Utterances: []string{"one"}, Quiet: Quiet{EmptyFinalEvery: time.Second}})
	c := dial(t, s, liveQuery())
	c.sendAudio(concat(silence(3.5), tone(1), silence(1)), 3200)
	c.sendText(`{"type":"CloseStream"}`)
	ms, _ := c.collect()
	fs := finals(ms)
	if len(fs) < 4 {
		t.Fatalf("finals %v", fs)
	}
	at := 0.0
	for i, f := range fs {
		if math.Abs(num(f, "start")-at) > 1e-9 {
			t.Errorf("final %d starts at %v, want %v", i, f["start"], at)
		}
		at = num(f, "start") + num(f, "duration")
	}
	for _, f := range fs[:3] {
		if transcriptOf(f) != "" || f["speech_final"] != false || math.Abs(num(f, "duration")-1) > 0.011 {
			t.Errorf("periodic final %v", f)
		}
	}
	if transcriptOf(fs[3]) != "one" {
		t.Errorf("the speech final %v", fs[3])
	}
}

// ResultsJitter keeps the order of what is sent.
func TestQuietJitterKeepsOrder(t *testing.T) {
	s := newTestServer(t, Config{Utterances: []string{"a", "b", "c", "d"}, Quiet: Quiet{ResultsJitter: 100 * time.Millisecond}})
	c := dial(t, s, liveQuery("interim_results", "true"))
	for range 4 {
		c.sendAudio(concat(tone(0.6), silence(0.8)), 3200)
	}
	c.sendText(`{"type":"CloseStream"}`)
	ms, _ := c.collect()
	fs := finals(ms)
	var got []string
	last := -1.0
	for _, m := range ofType(ms, "Results") {
		if st := num(m, "start"); m["is_final"] == true && st < last {
			t.Errorf("final at %v after one at %v", st, last)
		} else if m["is_final"] == true {
			last = st
		}
	}
	for _, f := range fs {
		if tr := transcriptOf(f); tr != "" {
			got = append(got, tr)
		}
	}
	if len(got) != 4 || got[0] != "a" || got[3] != "d" {
		t.Errorf("finals %v", got)
	}
	if ms[len(ms)-1]["type"] != "Metadata" {
		t.Errorf("last message %v", ms[len(ms)-1])
	}
}

// Every named mode is a valid configuration that still transcribes.
func TestQuietModes(t *testing.T) {
	for name, q := range Modes {
		t.Run(name, func(t *testing.T) {
			s := newTestServer(t, Config{Utterances: []string{"hi"}, Quiet: q})
			c := dial(t, s, liveQuery())
			c.sendAudio(concat(silence(0.2), tone(1), silence(0.3)), 3200)
			c.sendText(`{"type":"Finalize"}`)
			c.sendText(`{"type":"CloseStream"}`)
			ms, _ := c.collect()
			var got []string
			for _, f := range finals(ms) {
				if tr := transcriptOf(f); tr != "" {
					got = append(got, tr)
				}
			}
			if len(got) != 1 || got[0] != "hi" {
				t.Errorf("finals %v", got)
			}
		})
	}
}
