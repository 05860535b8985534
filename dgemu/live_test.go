package dgemu

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hark-audio/hark/audio"
)

func TestLiveFixtureCloseStream(t *testing.T) {
	s := newTestServer(t, Config{Utterances: []string{"Hello there, world.", "Second one."}})
	c := dial(t, s, liveQuery("punctuate", "true", "interim_results", "true"))
	if c.resp.Header.Get("dg-request-id") == "" {
		t.Error("101 has no dg-request-id")
	}
	c.sendAudio(twoUtterances(), 3200)
	c.sendText(`{"type":"CloseStream"}`)
	ms, err := c.collect()
	if code, _ := closeCode(err); code != 1000 {
		t.Fatalf("close: %v, want 1000", err)
	}
	fs := finals(ms)
	var got []string
	for _, f := range fs {
		got = append(got, transcriptOf(f))
	}
	want := []string{"Hello there, world.", "Second one."}
	if g := nonEmpty(got); fmt.Sprint(g) != fmt.Sprint(want) {
		t.Fatalf("final transcripts %q, want %q", g, want)
	}
	// Finals tile the audio: each starts where the previous ended.
	end := 0.0
	for _, f := range fs {
		if st := f["start"].(float64); abs(st-end) > 0.0015 {
			t.Errorf("final starts at %v, previous ended at %v", st, end)
		}
		end = f["start"].(float64) + f["duration"].(float64)
	}
	if abs(end-4.2) > 0.002 {
		t.Errorf("finals end at %v, want 4.2", end)
	}
	// Words sit on the speech: first utterance 0.2..1.2 s, second 2.2..3.0 s.
	w := wordsOf(fs[0])
	if len(w) != 3 || w[0]["start"].(float64) < 0.19 || w[2]["end"].(float64) > 1.21 || w[0]["punctuated_word"] != "Hello" || w[0]["word"] != "hello" {
		t.Errorf("first words %v", w)
	}
	md := ofType(ms, "Metadata")
	if len(md) != 1 {
		t.Fatalf("%d Metadata messages", len(md))
	}
	if d := md[0]["duration"].(float64); abs(d-4.2) > 0.001 {
		t.Errorf("Metadata duration %v", d)
	}
	if ms[len(ms)-1]["type"] != "Metadata" {
		t.Errorf("last message is %v, want Metadata", ms[len(ms)-1]["type"])
	}
	if len(ofType(ms, "Results")) <= len(fs) {
		t.Error("no interim results")
	}
	si, err := s.WaitSession(ctxT(t), func(si SessionInfo) bool { return si.Closed })
	if err != nil {
		t.Fatal(err)
	}
	if si.CloseCode != 1000 || si.CloseStreams != 1 || si.AudioBytes != int64(len(twoUtterances())) {
		t.Errorf("session %+v", si)
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

func TestLiveAuth(t *testing.T) {
	s := newTestServer(t, Config{})
	cases := []struct {
		name string
		h    http.Header
		ok   bool
	}{
		{"token", http.Header{"Authorization": {"Token " + testKey}}, true},
		{"token lower", http.Header{"Authorization": {"token " + testKey}}, true},
		{"bearer with an API key", http.Header{"Authorization": {"Bearer " + testKey}}, false},
		{"subprotocol", http.Header{"Sec-WebSocket-Protocol": {"token, " + testKey}}, true},
		{"bad key", http.Header{"Authorization": {"Token nope"}}, false},
		{"none", http.Header{}, false},
		{"basic", http.Header{"Authorization": {"Basic " + testKey}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tryDial(s, liveQuery(), tc.h)
			if c.resp == nil || c.resp.Header.Get("dg-request-id") == "" {
				t.Fatalf("no dg-request-id (err %v)", err)
			}
			if tc.ok {
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				if _, ok := tc.h["Sec-WebSocket-Protocol"]; ok && c.conn.Subprotocol() != "token" {
					t.Errorf("subprotocol %q", c.conn.Subprotocol())
				}
				c.conn.Close()
				<-c.done
				return
			}
			if err == nil {
				c.conn.Close()
				<-c.done
				t.Fatal("dial succeeded")
			}
			if c.resp.StatusCode != 401 || !strings.Contains(c.resp.Header.Get("dg-error"), "credentials") {
				t.Errorf("status %d dg-error %q", c.resp.StatusCode, c.resp.Header.Get("dg-error"))
			}
		})
	}
}

func TestLiveIdleTimeout(t *testing.T) {
	s := newTestServer(t, Config{IdleTimeout: 300 * time.Millisecond})
	c := dial(t, s, liveQuery())
	c.sendAudio(tone(0.5), 3200)
	ms, err := c.collect()
	code, reason := closeCode(err)
	if code != 1011 || !strings.Contains(strings.ToLower(reason), "net0001") {
		t.Fatalf("close %v", err)
	}
	if len(ms) == 0 || ms[len(ms)-1]["type"] != "Metadata" {
		t.Fatalf("messages %v", ms)
	}
}

func TestLiveNoAudioTimeout(t *testing.T) {
	s := newTestServer(t, Config{IdleTimeout: 5 * time.Second, NoAudioTimeout: 300 * time.Millisecond})
	c := dial(t, s, liveQuery())
	c.sendText(`{"type":"KeepAlive"}`)
	ms, err := c.collect()
	code, reason := closeCode(err)
	if code != 1011 || !strings.Contains(reason, "net0000") {
		t.Fatalf("close %v", err)
	}
	md := ofType(ms, "Metadata")
	if len(md) != 1 || md[0]["duration"].(float64) != 0 || md[0]["channels"].(float64) != 0 {
		t.Fatalf("metadata %v", md)
	}
}

func TestLiveKeepAliveResetsIdle(t *testing.T) {
	s := newTestServer(t, Config{IdleTimeout: time.Second})
	c := dial(t, s, liveQuery())
	start := time.Now()
	for i := 1; time.Since(start) < 2500*time.Millisecond; i++ {
		c.sendText(`{"type":"KeepAlive"}`)
		if _, err := s.WaitSession(ctxT(t), func(si SessionInfo) bool { return si.KeepAlives == i }); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond) // paces the KeepAlives
	}
	si := s.Sessions()[0]
	if si.Closed || si.MessagesWritten != 0 {
		t.Fatalf("KeepAlive did not keep the stream open or got a reply: %+v", si)
	}
	// Then silence: the idle timer fires.
	_, err := c.collect()
	if code, _ := closeCode(err); code != 1011 {
		t.Fatalf("close %v", err)
	}
}

func TestLiveRefusals(t *testing.T) {
	s := newTestServer(t, Config{})
	cases := []struct {
		r        Refusal
		code     string
		codeKey  string
		retryHdr string
	}{
		{Refusal{Status: 400}, "INVALID_QUERY_PARAMETER", "err_code", ""},
		{Refusal{Status: 401}, "INVALID_AUTH", "err_code", ""},
		{Refusal{Status: 402}, "ASR_PAYMENT_REQUIRED", "err_code", ""},
		{Refusal{Status: 403}, "INSUFFICIENT_PERMISSIONS", "err_code", ""},
		{Refusal{Status: 429, RetryAfter: "7"}, "TOO_MANY_REQUESTS", "err_code", "7"},
		{Refusal{Status: 429}, "TOO_MANY_REQUESTS", "err_code", ""},
		{Refusal{Status: 503}, "SERVICE_UNAVAILABLE", "error_code", ""},
		{Refusal{Status: 500, Code: "X", Message: "custom"}, "X", "err_code", ""},
	}
	var rs []Refusal
	for _, tc := range cases {
		rs = append(rs, tc.r)
	}
	s.RefuseHandshakes(rs...)
	for _, tc := range cases {
		t.Run(fmt.Sprint(tc.r.Status, tc.retryHdr), func(t *testing.T) {
			c, err := tryDial(s, liveQuery(), http.Header{"Authorization": {"Token " + testKey}})
			if err == nil {
				c.conn.Close()
				t.Fatal("handshake not refused")
			}
			resp := c.resp
			if resp.StatusCode != tc.r.Status {
				t.Fatalf("status %d", resp.StatusCode)
			}
			id := resp.Header.Get("dg-request-id")
			var body map[string]any
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			if body[tc.codeKey] != tc.code || body["request_id"] != id || id == "" || body["err_msg"] == "" || resp.Header.Get("dg-error") != body["err_msg"] {
				t.Errorf("body %v headers %v", body, resp.Header)
			}
			if resp.Header.Get("Retry-After") != tc.retryHdr {
				t.Errorf("Retry-After %q", resp.Header.Get("Retry-After"))
			}
		})
	}
	// The queue is used up: the next handshake works.
	c := dial(t, s, liveQuery())
	c.conn.Close()
}

func TestLiveQueryRefusals(t *testing.T) {
	s := newTestServer(t, Config{DeniedModels: []string{"nova-2-medical"}})
	cases := []struct {
		q      string
		status int
		msg    string
	}{
		{"model=nova-3&encoding=linear16&sample_rate=16000&keywords=hark:2", 400, "keywords"},
		{"model=nova-2&encoding=linear16&sample_rate=16000&keyterm=hark", 400, "keyterm"},
		{"model=nova-3&encoding=linear16&sample_rate=16000&utterance_end_ms=1000", 400, "interim_results"},
		{"model=nova-9&encoding=linear16&sample_rate=16000", 400, "model"},
		{"model=nova-3&model=nova-2&encoding=linear16&sample_rate=16000", 400, "model"},
		{"model=nova-3&encoding=linear16", 400, "sample_rate"},
		{"model=nova-3&encoding=pcm&sample_rate=16000", 400, "encoding"},
		{"model=nova-3&encoding=linear16&sample_rate=16000&punctuate=yes", 400, "punctuate"},
		{"model=nova-3&encoding=linear16&sample_rate=16000&endpointing=soon", 400, "endpointing"},
		{"model=nova-2-medical&encoding=linear16&sample_rate=16000", 403, "access"},
	}
	for _, tc := range cases {
		t.Run(tc.q, func(t *testing.T) {
			u := s.URL() + "?" + tc.q
			conn, resp, err := websocket.DefaultDialer.Dial(u, http.Header{"Authorization": {"Token " + testKey}})
			if err == nil {
				conn.Close()
				t.Fatal("handshake not refused")
			}
			if resp.StatusCode != tc.status || !strings.Contains(resp.Header.Get("dg-error"), tc.msg) {
				t.Errorf("status %d dg-error %q", resp.StatusCode, resp.Header.Get("dg-error"))
			}
		})
	}
	// Accepted: unknown parameters ignored, multi-valued ones repeated, nova-2 keywords.
	for _, q := range []string{
		"model=nova-3&encoding=linear16&sample_rate=16000&foo=bar&keyterm=a&keyterm=b&tag=x&tag=y",
		"model=nova-2&encoding=linear16&sample_rate=16000&keywords=hark:2&keywords=kitchen",
		"model=nova-2-phonecall&encoding=linear16&sample_rate=8000&endpointing=false",
	} {
		conn, _, err := websocket.DefaultDialer.Dial(s.URL()+"?"+q, http.Header{"Authorization": {"Token " + testKey}})
		if err != nil {
			t.Errorf("%s: %v", q, err)
			continue
		}
		conn.Close()
	}
	si, err := s.WaitSession(ctxT(t), func(si SessionInfo) bool { return len(si.Options.Unknown) > 0 })
	if err != nil || si.Options.Unknown[0] != "foo" || len(si.Options.Keyterms) != 2 {
		t.Errorf("unknown params not recorded: %v %+v", err, si.Options)
	}
}

func TestLiveStrictQuery(t *testing.T) {
	s := newTestServer(t, Config{StrictQuery: true})
	_, err := tryDial(s, liveQuery("foo", "bar"), http.Header{"Authorization": {"Token " + testKey}})
	if err == nil {
		t.Fatal("unknown parameter accepted with StrictQuery")
	}
}

func TestLiveDATA0000(t *testing.T) {
	cases := []struct {
		name string
		q    []string
		send func(c *client)
	}{
		{"odd bytes", nil, func(c *client) { c.sendAudio(tone(0.1), 3200); c.sendAudio([]byte{1, 2, 3}, 3) }},
		{"binary KeepAlive", nil, func(c *client) {
			c.conn.WriteMessage(websocket.BinaryMessage, []byte(`{"type":"KeepAlive"}`))
		}},
		{"headerless without encoding", []string{"-encoding"}, func(c *client) { c.sendAudio(tone(0.1), 3200) }},
		{"stereo odd frame", []string{"channels", "2"}, func(c *client) { c.sendAudio(tone(0.1)[:3202], 3202) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestServer(t, Config{})
			q := liveQuery()
			for i := 0; i < len(tc.q); i++ {
				if strings.HasPrefix(tc.q[i], "-") {
					q.Del(tc.q[i][1:])
					q.Del("sample_rate")
					continue
				}
				q.Set(tc.q[i], tc.q[i+1])
				i++
			}
			c := dial(t, s, q)
			tc.send(c)
			ms, err := c.collect()
			code, reason := closeCode(err)
			if code != 1008 || !strings.Contains(reason, "DATA-0000") {
				t.Fatalf("close %v", err)
			}
			if len(ms) == 0 || ms[len(ms)-1]["type"] != "Metadata" {
				t.Fatalf("no Metadata before the close: %v", ms)
			}
		})
	}
}

// TestLiveWAVContainer streams a WAV file without encoding: the header is sniffed from the
// first message, as the service does.
func TestLiveWAVContainer(t *testing.T) {
	s := newTestServer(t, Config{Utterances: []string{"one", "two"}})
	q := url.Values{"model": {"nova-3"}}
	c := dial(t, s, q)
	pcm := twoUtterances()
	wav := append(audio.WAVHeader(len(pcm)), pcm...)
	c.sendAudio(wav, 3201) // odd chunks: sample frames straddle messages
	c.sendText(`{"type":"CloseStream"}`)
	ms, err := c.collect()
	if code, _ := closeCode(err); code != 1000 {
		t.Fatal(err)
	}
	var got []string
	for _, f := range finals(ms) {
		got = append(got, transcriptOf(f))
	}
	if fmt.Sprint(nonEmpty(got)) != "[one two]" {
		t.Fatalf("finals %q", got)
	}
	md := ofType(ms, "Metadata")[0]
	if abs(md["duration"].(float64)-4.2) > 0.001 {
		t.Errorf("duration %v", md["duration"])
	}
}

func TestLiveEmptyBinaryEndsStream(t *testing.T) {
	s := newTestServer(t, Config{Utterances: []string{"only one"}})
	c := dial(t, s, liveQuery())
	c.sendAudio(concat(silence(0.3), tone(1)), 3200) // speech still open
	c.conn.WriteMessage(websocket.BinaryMessage, nil)
	ms, err := c.collect()
	if code, _ := closeCode(err); code != 1000 {
		t.Fatal(err)
	}
	fs := finals(ms)
	if len(fs) != 1 || transcriptOf(fs[0]) != "only one" {
		t.Fatalf("finals %v", fs)
	}
	if si, _ := s.WaitSession(ctxT(t), func(si SessionInfo) bool { return si.Closed }); si.EmptyBinary != 1 || si.CloseCode != 1000 {
		t.Errorf("session %+v", si)
	}
}

func TestLiveMalformedText(t *testing.T) {
	s := newTestServer(t, Config{})
	c := dial(t, s, liveQuery())
	for _, m := range []string{`not json`, `{"type":"Dance"}`, `{}`, `[1,2]`} {
		c.sendText(m)
		e := c.next("Error")
		for _, k := range []string{"description", "message", "variant"} {
			if s, _ := e[k].(string); s == "" {
				t.Errorf("%s: Error without %s: %v", m, k, e)
			}
		}
	}
	// The session continues.
	c.sendAudio(tone(0.5), 3200)
	c.sendText(`{ "type": "CloseStream" }`)
	_, err := c.collect()
	if code, _ := closeCode(err); code != 1000 {
		t.Fatal(err)
	}
	if si := s.Sessions()[0]; si.BadText != 4 || si.AudioBytes != 16000 {
		t.Errorf("session %+v", si)
	}
}

func TestLiveInterimsInSilence(t *testing.T) {
	s := newTestServer(t, Config{})
	c := dial(t, s, liveQuery("interim_results", "true"))
	c.sendAudio(silence(3.05), 3200)
	for i := 1; i <= 3; i++ {
		m := c.next("Results")
		if m["is_final"] != false || transcriptOf(m) != "" || abs(m["duration"].(float64)-float64(i)) > 0.001 || m["start"].(float64) != 0 {
			t.Fatalf("interim %d: %v", i, m)
		}
	}
	c.sendText(`{"type":"CloseStream"}`)
	ms, _ := c.collect()
	fs := finals(ms)
	if len(fs) != 1 || transcriptOf(fs[0]) != "" || fs[0]["speech_final"] != false {
		t.Fatalf("finals %v", fs)
	}
}

func TestLiveInterimsRevealWords(t *testing.T) {
	s := newTestServer(t, Config{Utterances: []string{"a b c d e f g h i j"}})
	c := dial(t, s, liveQuery("interim_results", "true"))
	c.sendAudio(tone(2.5), 3200)
	i1, i2 := c.next("Results"), c.next("Results")
	n1, n2 := len(wordsOf(i1)), len(wordsOf(i2))
	if i1["is_final"] != false || n1 == 0 || n2 <= n1 || !strings.HasPrefix("a b c d e f g h i j", transcriptOf(i2)) {
		t.Fatalf("interims %q then %q", transcriptOf(i1), transcriptOf(i2))
	}
}

func TestLiveEndpointing(t *testing.T) {
	cases := []struct {
		ep          string
		finals      []string
		speechFinal bool
	}{
		{"", []string{"one", "two"}, true},
		{"10", []string{"one", "two"}, true},
		{"false", []string{"one", "two"}, false},
		// A long endpointing joins both utterances (1 s apart) into one final.
		{"1500", []string{"one two"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.ep, func(t *testing.T) {
			s := newTestServer(t, Config{Utterances: []string{"one", "two"}})
			q := liveQuery()
			if tc.ep != "" {
				q.Set("endpointing", tc.ep)
			}
			c := dial(t, s, q)
			c.sendAudio(concat(silence(0.2), tone(1), silence(1), tone(0.8), silence(2)), 3200)
			var got []string
			for range tc.finals {
				f := c.next("Results")
				for f["is_final"] != true {
					f = c.next("Results")
				}
				got = append(got, transcriptOf(f))
				if f["speech_final"] != tc.speechFinal {
					t.Errorf("speech_final %v", f["speech_final"])
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.finals) {
				t.Errorf("finals %q, want %q", got, tc.finals)
			}
		})
	}
}

func TestLiveUtteranceEndAndSpeechStarted(t *testing.T) {
	s := newTestServer(t, Config{Utterances: []string{"one two", "three"}})
	c := dial(t, s, liveQuery("interim_results", "true", "utterance_end_ms", "1000", "vad_events", "true"))
	c.sendAudio(concat(silence(0.5), tone(1), silence(1.5), tone(1), silence(1.2)), 3200)
	c.sendText(`{"type":"CloseStream"}`)
	ms, _ := c.collect()
	ss := ofType(ms, "SpeechStarted")
	if len(ss) != 2 || ss[0]["timestamp"].(float64) != 0.5 || ss[1]["timestamp"].(float64) != 3 {
		t.Fatalf("SpeechStarted %v", ss)
	}
	ue := ofType(ms, "UtteranceEnd")
	if len(ue) != 2 || ue[0]["last_word_end"].(float64) != 1.5 || ue[1]["last_word_end"].(float64) != 4 {
		t.Fatalf("UtteranceEnd %v", ue)
	}
	if ch := ue[0]["channel"].([]any); len(ch) != 2 || ch[0].(float64) != 0 || ch[1].(float64) != 1 {
		t.Errorf("channel %v", ch)
	}
	// UtteranceEnd follows the final of its words.
	for i, m := range ms {
		if m["type"] == "UtteranceEnd" {
			prev := ms[i-1]
			for prev["type"] != "Results" || prev["is_final"] != true {
				i--
				prev = ms[i-1]
			}
			if transcriptOf(prev) == "" {
				t.Errorf("UtteranceEnd after an empty final")
			}
		}
	}
}

func TestLiveFinalize(t *testing.T) {
	s := newTestServer(t, Config{Utterances: []string{"cut short", "rest"}})
	c := dial(t, s, liveQuery())
	c.sendAudio(concat(silence(0.2), tone(1), silence(0.1)), 3200) // utterance still open
	c.sendText(`{"type":"Finalize"}`)
	f := c.next("Results")
	if f["is_final"] != true || f["from_finalize"] != true || transcriptOf(f) != "cut short" {
		t.Fatalf("finalize answer %v", f)
	}
	if f["speech_final"] != true { // 100 ms of trailing silence > endpointing 10 ms
		t.Errorf("speech_final %v", f["speech_final"])
	}
	// Nothing buffered: no answer. CloseStream then shows only the closing messages.
	c.sendText(`{"type":"Finalize"}`)
	if _, err := s.WaitSession(ctxT(t), func(si SessionInfo) bool { return si.Finalizes == 2 }); err != nil {
		t.Fatal(err)
	}
	c.sendText(`{"type":"CloseStream"}`)
	ms, _ := c.collect()
	if len(ms) != 1 || ms[0]["type"] != "Metadata" {
		t.Fatalf("after an empty Finalize and CloseStream: %v", ms)
	}
	si := s.Sessions()[0]
	if si.FromFinalize != 1 || si.Finals != 1 {
		t.Errorf("session %+v", si)
	}
}

// TestLiveTimesCountBytes: a wall-clock pause (KeepAlives only) does not advance stream time.
func TestLiveTimesCountBytes(t *testing.T) {
	s := newTestServer(t, Config{Utterances: []string{"first", "second"}})
	c := dial(t, s, liveQuery())
	c.sendAudio(concat(tone(1), silence(0.6)), 3200)
	f1 := c.next("Results")
	for i := 1; i <= 3; i++ {
		c.sendText(`{"type":"KeepAlive"}`)
		if _, err := s.WaitSession(ctxT(t), func(si SessionInfo) bool { return si.KeepAlives == i }); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond) // paces the pause
	}
	c.sendAudio(concat(tone(1), silence(0.6)), 3200)
	f2 := c.next("Results")
	w1, w2 := wordsOf(f1), wordsOf(f2)
	if w1[0]["start"].(float64) != 0 || w2[0]["start"].(float64) != 1.6 || w2[0]["end"].(float64) != 2.6 {
		t.Fatalf("words %v then %v", w1, w2)
	}
}

func TestLiveDescribeWithoutFixture(t *testing.T) {
	s := newTestServer(t, Config{})
	c := dial(t, s, liveQuery())
	c.sendAudio(concat(tone(1.2), silence(0.6)), 3200)
	f := c.next("Results")
	if got := transcriptOf(f); got != "speech one point two seconds" {
		t.Fatalf("transcript %q", got)
	}
}

func TestLiveMessageShapes(t *testing.T) {
	s := newTestServer(t, Config{Utterances: []string{"Hi."}})
	c := dial(t, s, liveQuery("punctuate", "true", "extra", "site:kitchen"))
	c.sendAudio(concat(tone(0.5), silence(0.6)), 3200)
	c.sendText(`{"type":"CloseStream"}`)
	<-c.done
	var raws [][]byte
	for len(c.raw) > 0 {
		raws = append(raws, <-c.raw)
	}
	// Exact key sets, as the service sends them.
	wantKeys := map[string]string{
		"Results":  "channel channel_index duration from_finalize is_final metadata speech_final start type",
		"Metadata": "channels created duration extra model_info models request_id sha256 transaction_key type",
	}
	for _, b := range raws {
		var m map[string]json.RawMessage
		json.Unmarshal(b, &m)
		var typ string
		json.Unmarshal(m["type"], &typ)
		var keys []string
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if w, ok := wantKeys[typ]; ok && strings.Join(keys, " ") != w {
			t.Errorf("%s keys %v, want %s", typ, keys, w)
		}
		if typ == "Results" {
			var r struct {
				Channel struct {
					Alternatives []struct {
						Words []map[string]any
					}
				}
				Metadata struct {
					RequestID string                               `json:"request_id"`
					ModelUUID string                               `json:"model_uuid"`
					ModelInfo struct{ Name, Version, Arch string } `json:"model_info"`
					Extra     map[string]string
				}
			}
			json.Unmarshal(b, &r)
			if r.Metadata.RequestID != c.resp.Header.Get("dg-request-id") || r.Metadata.ModelUUID == "" || r.Metadata.ModelInfo.Arch != "nova-3" || r.Metadata.Extra["site"] != "kitchen" {
				t.Errorf("results metadata %+v", r.Metadata)
			}
			for _, w := range r.Channel.Alternatives[0].Words {
				if len(w) != 5 {
					t.Errorf("word %v", w)
				}
			}
		}
		if typ == "Metadata" {
			var md metadataMsg
			json.Unmarshal(b, &md)
			sum := sha256.Sum256(concat(tone(0.5), silence(0.6)))
			if md.SHA256 != hex.EncodeToString(sum[:]) || md.TransactionKey != "deprecated" || len(md.Models) != 1 || md.ModelInfo[md.Models[0]].Arch != "nova-3" {
				t.Errorf("metadata %+v", md)
			}
			if _, err := time.Parse(time.RFC3339Nano, md.Created); err != nil {
				t.Errorf("created %q: %v", md.Created, err)
			}
		}
	}
}

func TestLiveMultichannel(t *testing.T) {
	s := newTestServer(t, Config{Utterances: []string{"stereo"}})
	c := dial(t, s, liveQuery("channels", "2"))
	mono := concat(tone(1), silence(0.6))
	st := make([]byte, 0, 2*len(mono))
	for i := 0; i < len(mono); i += 2 {
		st = append(st, mono[i], mono[i+1], 0, 0)
	}
	c.sendAudio(st, 6400)
	c.sendText(`{"type":"CloseStream"}`)
	ms, _ := c.collect()
	if fs := finals(ms); len(fs) != 2 || transcriptOf(fs[0]) != "stereo" || transcriptOf(fs[1]) != "" {
		t.Fatalf("finals %v", fs)
	}
	if md := ofType(ms, "Metadata")[0]; md["channels"].(float64) != 2 || abs(md["duration"].(float64)-1.6) > 0.001 {
		t.Errorf("metadata %v", md)
	}
}

// TestFixtureCursorAcrossSessions: a stream split over connections gets the fixture lines in
// order, and pre-recorded requests have their own cursor.
func TestFixtureCursorAcrossSessions(t *testing.T) {
	s := newTestServer(t, Config{Utterances: []string{"one", "two", "three"}})
	for _, want := range []string{"one", "two"} {
		c := dial(t, s, liveQuery())
		c.sendAudio(concat(tone(0.5), silence(0.6)), 3200)
		c.sendText(`{"type":"CloseStream"}`)
		ms, _ := c.collect()
		if got := transcriptOf(finals(ms)[0]); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	resp := postWAV(t, s, "", concat(tone(0.5), silence(0.6)), nil)
	if got := resp.Results.Channels[0].Alternatives[0].Transcript; got != "one" {
		t.Fatalf("pre-recorded got %q, want one", got)
	}
}

// TestLiveWAVHeaderSplit: a WAV header spread over several small messages is assembled.
func TestLiveWAVHeaderSplit(t *testing.T) {
	s := newTestServer(t, Config{Utterances: []string{"split"}})
	c := dial(t, s, url.Values{"model": {"nova-3"}})
	pcm := concat(tone(1), silence(0.6))
	wav := append(audio.WAVHeader(len(pcm)), pcm...)
	c.sendAudio(wav[:3], 3)
	c.sendAudio(wav[3:30], 27)
	c.sendAudio(wav[30:], 3200)
	c.sendText(`{"type":"CloseStream"}`)
	ms, err := c.collect()
	if !websocket.IsCloseError(err, 1000) {
		t.Fatal(err)
	}
	if fs := finals(ms); len(fs) < 1 || transcriptOf(fs[0]) != "split" {
		t.Fatalf("finals %v", fs)
	}
	// A broken header is still DATA-0000.
	c2 := dial(t, s, url.Values{"model": {"nova-3"}})
	bad := append([]byte(nil), wav[:44]...)
	copy(bad[8:], "WAVX")
	c2.sendAudio(bad, 44)
	_, err = c2.collect()
	if code, _ := closeCode(err); code != 1008 {
		t.Fatal(err)
	}
}
