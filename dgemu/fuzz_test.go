package dgemu

import (
	"bytes"
	"net/url"
	"testing"

	"github.com/hark-audio/hark/audio"
)

var queryTable = []string{
	"model=nova-3&encoding=linear16&sample_rate=16000&channels=1",
	"model=nova-3&encoding=linear16&sample_rate=16000&keywords=hark:2",
	"model=nova-2&keywords=a&keywords=b&interim_results=true&utterance_end_ms=1000",
	"model=nova-3&endpointing=false&vad_events=true&extra=a:b&extra=c:d&tag=x",
	"model=nova-2-phonecall&encoding=linear32&sample_rate=8000&channels=2",
	"model=&encoding=linear16",
	"model=nova-3&model=nova-3",
	"endpointing=-1&utterance_end_ms=x",
	"language=en-US&punctuate=TRUE&smart_format=false",
	"%zz=1&model=nova-3",
	"encoding=mulaw&sample_rate=8000",
}

func TestParseOptionsTable(t *testing.T) {
	cases := []struct {
		q      string
		live   bool
		strict bool
		ok     bool
		check  func(*Options) bool
	}{
		{queryTable[0], true, false, true, func(o *Options) bool {
			return o.Model == "nova-3" && o.Encoding == "linear16" && o.SampleRate == 16000 && o.Channels == 1 && o.EndpointingMs == 10
		}},
		{queryTable[1], true, false, false, nil},
		{queryTable[2], true, false, true, func(o *Options) bool {
			return len(o.Keywords) == 2 && o.UtteranceEndMs == 1000 && o.InterimResults
		}},
		{queryTable[3], true, false, true, func(o *Options) bool {
			return o.EndpointingMs == -1 && o.VADEvents && o.Extra["a"] == "b" && o.Extra["c"] == "d" && o.Tags[0] == "x"
		}},
		{queryTable[4], true, false, true, func(o *Options) bool { return o.Channels == 2 && o.Encoding == "linear32" }},
		{queryTable[5], true, false, false, nil},
		{queryTable[6], true, false, false, nil},
		{queryTable[7], true, false, false, nil},
		{queryTable[8], true, false, true, func(o *Options) bool { return o.Punctuate && o.Language == "en-US" && o.Model == "" }},
		{"model=nova-3&utterance_end_ms=1000", false, false, true, nil}, // pre-recorded: no interim requirement
		{"model=nova-3&foo=1", true, false, true, func(o *Options) bool { return len(o.Unknown) == 1 }},
		{"model=nova-3&foo=1", true, true, false, nil},
		{"model=nova-3&encoding=mulaw&sample_rate=8000", true, false, false, nil},
		{"model=nova-3&sample_rate=16000", true, false, true, func(o *Options) bool { return o.Encoding == "" }},
		{"model=nova-3&channels=0", true, false, false, nil},
		{"model=nova-3&extra=novalue", true, false, false, nil},
		{"model=nova-3&language=english!", true, false, false, nil},
		{"model=NOVA-3&endpointing=true", true, false, true, func(o *Options) bool { return o.EndpointingMs == 10 }},
	}
	for _, tc := range cases {
		q, _ := url.ParseQuery(tc.q)
		o, err := parseOptions(q, tc.live, tc.strict)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err %v, want ok=%v", tc.q, err, tc.ok)
			continue
		}
		if err != nil && (err.status != 400 || (err.code != "INVALID_QUERY_PARAMETER" && err.code != "Bad Request") || err.msg == "") {
			t.Errorf("%s: refusal %+v", tc.q, err)
		}
		if tc.check != nil && !tc.check(o) {
			t.Errorf("%s: options %+v", tc.q, o)
		}
	}
}

func FuzzParseOptions(f *testing.F) {
	for _, q := range queryTable {
		f.Add(q, true, false)
	}
	f.Fuzz(func(t *testing.T, raw string, live, strict bool) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		o, qerr := parseOptions(q, live, strict)
		if qerr != nil {
			if qerr.status != 400 || qerr.msg == "" {
				t.Fatalf("refusal %+v", qerr)
			}
			return
		}
		if o.Channels < 1 || (o.Encoding != "" && o.SampleRate == 0) || (live && o.UtteranceEndMs > 0 && !o.InterimResults) {
			t.Fatalf("accepted inconsistent options %+v", o)
		}
		if _, ok := knownModel(o.Model); !ok {
			t.Fatalf("accepted unknown model %q", o.Model)
		}
	})
}

func TestParseControlTable(t *testing.T) {
	cases := map[string]string{
		`{"type":"KeepAlive"}`:             "KeepAlive",
		`{ "type": "CloseStream" }`:        "CloseStream",
		`{"type":"Finalize","extra":1}`:    "Finalize",
		`{"type":"keepalive"}`:             "",
		`{"type":""}`:                      "",
		`{}`:                               "",
		`not json`:                         "",
		`{"type":1}`:                       "",
		`[]`:                               "",
		``:                                 "",
		"{\"type\":\"KeepAlive\"}\x00\x01": "",
	}
	for in, want := range cases {
		got, err := parseControl([]byte(in))
		if got != want || (want == "") != (err != nil) {
			t.Errorf("%q: %q %v, want %q", in, got, err, want)
		}
	}
}

func FuzzParseControl(f *testing.F) {
	for _, s := range []string{`{"type":"KeepAlive"}`, `{"type":"Finalize"}`, `{ "type": "CloseStream" }`, `{"type":"X"}`, `nope`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		kind, err := parseControl(b)
		if err == nil && kind != "KeepAlive" && kind != "Finalize" && kind != "CloseStream" {
			t.Fatalf("accepted %q as %q", b, kind)
		}
		if err != nil && err.Error() == "" {
			t.Fatal("empty error description")
		}
	})
}

// FuzzTranscribeBody feeds arbitrary bodies to the pre-recorded path, as WAV and as raw.
func FuzzTranscribeBody(f *testing.F) {
	pcm := concat(silence(0.1), tone(0.3), silence(0.6), tone(0.2))
	f.Add(append(audio.WAVHeader(len(pcm)), pcm...), false)
	f.Add(pcm, true)
	f.Add([]byte("RIFF\x00\x00\x00\x00WAVEfmt "), false)
	f.Add([]byte{}, true)
	f.Add([]byte{1}, true)
	f.Fuzz(func(t *testing.T, body []byte, raw bool) {
		q := url.Values{"model": {"nova-3"}, "utterances": {"true"}, "punctuate": {"true"}}
		if raw {
			q.Set("encoding", "linear16")
			q.Set("sample_rate", "16000")
		}
		o, qerr := parseOptions(q, false, false)
		if qerr != nil {
			t.Fatal(qerr)
		}
		cfg := withDefaults(Config{})
		n := 0
		next := func() (string, bool) { n++; return "fixture words here", n < 3 }
		resp, read, err := transcribeBody(bytes.NewReader(body), o, &cfg, "id", next)
		if read > int64(len(body)) {
			t.Fatalf("read %d of %d bytes", read, len(body))
		}
		if err != nil {
			return
		}
		checkWords(t, resp.Results.Channels[0].Alternatives[0].Words, resp.Metadata.Duration)
	})
}

func checkWords(t *testing.T, ws []word, dur float64) {
	t.Helper()
	prev := 0.0
	for _, w := range ws {
		if w.Start < prev-1e-9 || w.End < w.Start || w.End > dur+0.0005 || w.Word == "" {
			t.Fatalf("word %+v (previous end %v, duration %v)", w, prev, dur)
		}
		prev = w.End
	}
}

// FuzzTranscriber drives the live state machine with arbitrary audio chunks and control
// messages and checks the invariants clients rely on: finals tile the audio without gaps,
// word times are ordered and inside the audio, interims never start before the last final.
func FuzzTranscriber(f *testing.F) {
	f.Add(concat(tone(0.5), silence(0.7), tone(0.3)), []byte{0, 1, 2, 0, 0, 3}, true)
	f.Add(silence(2), []byte{2, 2, 2}, false)
	f.Add(tone(3), []byte{1, 0, 1}, true)
	f.Fuzz(func(t *testing.T, pcm []byte, ops []byte, interim bool) {
		if len(pcm) > 1<<20 {
			return
		}
		pcm = pcm[:len(pcm)&^1]
		q := url.Values{"model": {"nova-3"}, "encoding": {"linear16"}, "sample_rate": {"16000"},
			"interim_results": {boolStr(interim)}, "vad_events": {"true"}}
		if interim {
			q.Set("utterance_end_ms", "300")
		}
		o, qerr := parseOptions(q, true, false)
		if qerr != nil {
			t.Fatal(qerr)
		}
		cfg := withDefaults(Config{UtteranceGap: 200e6, InterimInterval: 300e6})
		var msgs []any
		tr := newTranscriber(o, 16000, &cfg, func() (string, bool) { return "a b c", true }, func(m any) { msgs = append(msgs, m) }, resultsMeta{})
		var mono []float32
		f := audio.WAVFormat{SampleRate: 16000, Channels: 1, BitsPerSample: 16}
		for i, op := range ops {
			switch op % 4 {
			case 0, 3:
				n := (int(op)*97 + i*31) % 6400 &^ 1
				if n > len(pcm) {
					n = len(pcm)
				}
				mono = decodeMono(mono[:0], pcm[:n], f)
				pcm = pcm[n:]
				tr.addSamples(mono)
			case 1:
				tr.finalize(true, false)
			case 2:
			}
		}
		mono = decodeMono(mono[:0], pcm, f)
		tr.addSamples(mono)
		tr.finalize(false, true)
		end := 0.0
		total := tr.an.seconds()
		for _, m := range msgs {
			r, ok := m.(resultsMsg)
			if !ok {
				continue
			}
			if r.Start < end-0.0015 {
				t.Fatalf("result starts at %v before the last final's end %v", r.Start, end)
			}
			if r.IsFinal {
				if abs(r.Start-end) > 0.0015 {
					t.Fatalf("final starts at %v, previous ended at %v", r.Start, end)
				}
				end = round3(r.Start + r.Duration)
			}
			checkWords(t, r.Channel.Alternatives[0].Words, total)
		}
		if tr.an.samples > 0 && abs(end-total) > 0.0015 {
			t.Fatalf("finals end at %v, audio at %v", end, total)
		}
	})
}

func boolStr(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// FuzzLiveDecode feeds arbitrary binary messages to a live session's decoder (raw mono,
// raw stereo, or container-sniffing mode): it must never panic, and never decode more
// samples than the bytes received can hold.
func FuzzLiveDecode(f *testing.F) {
	pcm := concat(tone(0.2), silence(0.1))
	wav := append(audio.WAVHeader(len(pcm)), pcm...)
	f.Add(wav, []byte{3, 27, 200, 255}, byte(2))
	f.Add(pcm, []byte{100, 101}, byte(0))
	f.Add(pcm, []byte{7}, byte(1))
	f.Add([]byte(`{"type":"KeepAlive"}`), []byte{0}, byte(0))
	f.Fuzz(func(t *testing.T, data, cuts []byte, mode byte) {
		q := url.Values{"model": {"nova-3"}}
		switch mode % 3 {
		case 0:
			q.Set("encoding", "linear16")
			q.Set("sample_rate", "16000")
		case 1:
			q.Set("encoding", "linear16")
			q.Set("sample_rate", "8000")
			q.Set("channels", "2")
		}
		o, qerr := parseOptions(q, true, false)
		if qerr != nil {
			t.Fatal(qerr)
		}
		srv := &Server{cfg: withDefaults(Config{})}
		ss := &session{srv: srv, opts: o}
		ss.emit = func(any) {}
		if o.Encoding != "" {
			ss.format = &audio.WAVFormat{SampleRate: o.SampleRate, Channels: o.Channels, BitsPerSample: 16}
			ss.startTranscriber()
		}
		total := 0
		for i := 0; len(data) > 0; i++ {
			n := len(data)
			if i < len(cuts) {
				n = min(n, int(cuts[i])*13+1)
			}
			msg := data[:n]
			data = data[n:]
			total += len(msg)
			samples, err := ss.decode(msg)
			if err != nil {
				return // the session would close with DATA-0000
			}
			if ss.tr != nil {
				ss.tr.addSamples(samples)
				if got := ss.tr.an.samples * int64(ss.format.BlockAlign()); got > int64(total) {
					t.Fatalf("decoded %d bytes of samples from %d bytes", got, total)
				}
			}
		}
	})
}
