package dgemu

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/hark-audio/hark/audio"
	"github.com/hark-audio/hark/dgemu/spec"
)

// Every message the emulator sends is checked against Deepgram's published specification
// (dgemu/spec). Members the spec does not declare are allowed only when listed here with
// the reason: each is something the service is observed to send (docs/emulator.md,
// "Where the published spec and the service differ").
var serviceExtensions = map[string][]string{
	// The live Metadata message: once audio was received the service sends models and
	// model_info (SDKs parse them; captures in deepgram-protocol.md), and it echoes extra;
	// the AsyncAPI schema lists none of them.
	"Metadata": {"$.models", "$.model_info", "$.model_info.", "$.extra"},
	// Results: the service echoes extra in metadata; punctuated_word is declared.
	"Results": {"$.metadata.extra"},
	// Pre-recorded: the spec's model_info is an object without properties; the service keys
	// it by model uuid. extra is echoed in metadata. punctuated_word on channel words is
	// what every SDK reads, though only the utterance words declare it.
	"prerecorded": {"$.metadata.model_info.", "$.metadata.extra",
		"$.results.channels[].alternatives[].words[].punctuated_word"},
	// Error bodies: 503s carry error_code instead of err_code (observed; SDK issue threads).
	"error": {"$.error_code"},
}

func allowed(kind, path string) bool {
	// Array indexes do not matter for the allow-list.
	var b strings.Builder
	skip := false
	for _, r := range path {
		switch {
		case r == '[':
			b.WriteRune(r)
			skip = true
		case r == ']':
			skip = false
			b.WriteRune(r)
		case !skip:
			b.WriteRune(r)
		}
	}
	p := b.String()
	for _, a := range serviceExtensions[kind] {
		if p == a || strings.HasSuffix(a, ".") && strings.HasPrefix(p, a) {
			return true
		}
	}
	return false
}

var liveSchemas = map[string]*spec.Schema{
	"Results":       spec.AsyncAPI().MustSchema("ListenV1_ListenV1Results"),
	"Metadata":      spec.AsyncAPI().MustSchema("ListenV1_ListenV1Metadata"),
	"UtteranceEnd":  spec.AsyncAPI().MustSchema("ListenV1_ListenV1UtteranceEnd"),
	"SpeechStarted": spec.AsyncAPI().MustSchema("ListenV1_ListenV1SpeechStarted"),
}

// checkMessage validates one server message against the schema of its kind and reports
// members the spec does not declare and the allow-list does not excuse.
func checkMessage(t *testing.T, s *spec.Schema, kind string, b []byte) {
	t.Helper()
	if err := s.ValidateJSON(b); err != nil {
		t.Errorf("%s does not match the published spec: %v\n%s", kind, err, b)
		return
	}
	extra, err := s.Undocumented(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range extra {
		if !allowed(kind, p) {
			t.Errorf("%s member %s is not in the published spec and not a known service extension:\n%s", kind, p, b)
		}
	}
}

// The live Error message is not in the AsyncAPI document at all (the service sends it for
// a malformed text message, per deepgram-protocol.md); its shape is checked here.
func checkErrorMessage(t *testing.T, b []byte) {
	t.Helper()
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"type", "description", "message", "variant"} {
		if _, ok := m[k].(string); !ok {
			t.Errorf("Error message without string %q: %s", k, b)
		}
	}
}

// TestLiveMessagesMatchSpec runs sessions that make the emulator send every kind of live
// message under every option that changes its shape, and validates each frame.
func TestLiveMessagesMatchSpec(t *testing.T) {
	s := newTestServer(t, Config{Utterances: []string{"Hello there, world.", "Second one."}})
	pcm := twoUtterances()
	cases := map[string]struct {
		q      url.Values
		script func(c *client)
	}{
		"all events": {liveQuery("interim_results", "true", "vad_events", "true", "utterance_end_ms", "1000",
			"punctuate", "true", "extra", "site:kitchen", "tag", "t1"), func(c *client) {
			c.sendAudio(pcm, 3200)
			c.sendText(`{"type":"Finalize"}`)
			c.sendText(`{"type":"CloseStream"}`)
		}},
		"plain, endpointing off": {liveQuery("endpointing", "false", "model", "nova-2", "language", "en-US"), func(c *client) {
			c.sendAudio(pcm, 1600)
			c.sendText(`{"type":"KeepAlive"}`)
			c.sendText(`{"type":"CloseStream"}`)
		}},
		"no audio":   {liveQuery(), func(c *client) { c.sendText(`{"type":"CloseStream"}`) }},
		"bad text":   {liveQuery(), func(c *client) { c.sendText(`not json`); c.sendText(`{"type":"CloseStream"}`) }},
		"data error": {liveQuery(), func(c *client) { c.sendAudio([]byte{1, 2, 3}, 3) }},
		"container": {url.Values{"model": {"nova-3"}}, func(c *client) {
			c.sendAudio(append(audio.WAVHeader(len(pcm)), pcm...), 4000)
			c.sendText(`{"type":"CloseStream"}`)
		}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c := dial(t, s, tc.q)
			tc.script(c)
			c.collectRaw(t, func(typ string, b []byte) {
				if typ == "Error" {
					checkErrorMessage(t, b)
					return
				}
				sc, ok := liveSchemas[typ]
				if !ok {
					t.Errorf("message type %q is not in the published spec: %s", typ, b)
					return
				}
				checkMessage(t, sc, typ, b)
			})
		})
	}
	// Idle timeout and an injected NET-0000 also end with Metadata.
	s2 := newTestServer(t, Config{IdleTimeout: 200 * 1e6})
	c := dial(t, s2, liveQuery())
	c.collectRaw(t, func(typ string, b []byte) { checkMessage(t, liveSchemas[typ], typ, b) })
}

// collectRaw waits for the end of the connection and hands every text frame over.
func (c *client) collectRaw(t *testing.T, f func(typ string, b []byte)) {
	t.Helper()
	if _, err := c.collect(); err == nil {
		t.Fatal("connection ended without an error")
	}
	n := 0
	for {
		select {
		case b := <-c.raw:
			var m struct{ Type string }
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatalf("frame is not JSON: %s", b)
			}
			f(m.Type, b)
			n++
		default:
			if n == 0 {
				t.Fatal("no messages")
			}
			return
		}
	}
}

// TestPrerecordedMatchesSpec validates 200 responses with and without utterances, with no
// speech, and with options that change their shape.
func TestPrerecordedMatchesSpec(t *testing.T) {
	s := newTestServer(t, Config{Utterances: []string{"One two three.", "Four five."}})
	r200 := spec.OpenAPI().MustSchema("listen_v1_media_transcribe_Response_200")
	full := spec.OpenAPI().MustSchema("ListenV1Response")
	wav := func(pcm []byte) []byte { return append(audio.WAVHeader(len(pcm)), pcm...) }
	for name, tc := range map[string]struct {
		q    string
		body []byte
	}{
		"utterances":   {"model=nova-3&utterances=true&punctuate=true&extra=a:b", wav(twoUtterances())},
		"plain":        {"model=nova-2&language=en", wav(twoUtterances())},
		"silence":      {"model=nova-3&utterances=true", wav(silence(1))},
		"raw linear16": {"model=nova-3&encoding=linear16&sample_rate=16000", twoUtterances()},
		"smart_format": {"model=nova-3&smart_format=true&diarize=true", wav(tone(0.5))},
	} {
		t.Run(name, func(t *testing.T) {
			resp, b := post(t, s, tc.q, bytes.NewReader(tc.body), nil)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			if err := r200.ValidateJSON(b); err != nil {
				t.Errorf("response does not match the published spec: %v\n%s", err, b)
			}
			checkMessage(t, full, "prerecorded", b)
		})
	}
}

// TestErrorBodiesMatchSpec validates the body of every refusal the emulator can send, live
// and pre-recorded. The spec's ErrorResponse is a oneOf whose object branches declare no
// required member, so any object matches two of them and the oneOf can never pass: the
// bodies are checked against the legacy branch, which is what the service sends
// ({err_code, err_msg, request_id}).
func TestErrorBodiesMatchSpec(t *testing.T) {
	legacy := spec.OpenAPI().MustSchema("ErrorResponseLegacyError")
	if err := spec.OpenAPI().MustSchema("ErrorResponse").ValidateJSON([]byte(`{"err_code":"x","err_msg":"y","request_id":"z"}`)); err == nil {
		t.Error("the spec's ErrorResponse oneOf now accepts a legacy body: check the emulator against it directly")
	}
	s := newTestServer(t, Config{DeniedModels: []string{"nova-2"}, MaxStreams: 1})
	var statuses []int
	for st := range usualRefusals {
		statuses = append(statuses, st)
	}
	slices.Sort(statuses)
	check := func(name string, resp *http.Response, b []byte) {
		t.Helper()
		if resp == nil {
			t.Fatalf("%s: no response", name)
		}
		if resp.Header.Get("dg-error") == "" || resp.Header.Get("dg-request-id") == "" {
			t.Errorf("%s: status %d without dg-error or dg-request-id", name, resp.StatusCode)
		}
		t.Run(name, func(t *testing.T) { checkMessage(t, legacy, "error", b) })
	}
	wav := append(audio.WAVHeader(3200), tone(0.1)...)
	for _, st := range statuses {
		s.RefuseHandshakes(Refusal{Status: st, RetryAfter: "1"})
		c, err := tryDial(s, liveQuery(), http.Header{"Authorization": {"Token " + testKey}})
		if err == nil {
			t.Fatalf("handshake with an injected %d succeeded", st)
		}
		check(fmt.Sprintf("live %d", st), c.resp, readBody(t, c.resp))
		s.FailRequests(Refusal{Status: st})
		resp, b := post(t, s, "model=nova-3", bytes.NewReader(wav), nil)
		check(fmt.Sprintf("prerecorded %d", st), resp, b)
	}
	for name, q := range map[string]string{
		"bad option": "model=nova-3&punctuate=maybe", "bad model": "model=nova-9",
		"bad pair": "model=nova-2-meeting&language=fr", "denied": "model=nova-2",
	} {
		c, err := tryDial(s, mustQuery(q+"&encoding=linear16&sample_rate=16000"), http.Header{"Authorization": {"Token " + testKey}})
		if err == nil {
			t.Fatalf("%s: handshake succeeded", name)
		}
		check("live "+name, c.resp, readBody(t, c.resp))
		resp, b := post(t, s, q, bytes.NewReader(wav), nil)
		check("prerecorded "+name, resp, b)
	}
	resp, b := post(t, s, "model=nova-3", strings.NewReader("not audio"), nil)
	check("corrupt audio", resp, b)
	resp, b = post(t, s, "model=nova-3", bytes.NewReader(wav), http.Header{"Authorization": {"Token wrong"}})
	check("wrong key", resp, b)
}

func readBody(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	if resp == nil {
		t.Fatal("no response")
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustQuery(s string) url.Values {
	q, err := url.ParseQuery(s)
	if err != nil {
		panic(err)
	}
	return q
}

// The grant endpoint's answer and a callback acknowledgement match the spec too.
func TestGrantAndCallbackMatchSpec(t *testing.T) {
	s := newTestServer(t, Config{})
	req, _ := http.NewRequest(http.MethodPost, "http://"+s.Addr()+"/v1/auth/grant", strings.NewReader(`{"ttl_seconds":30}`))
	req.Header.Set("Authorization", "Token "+testKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b := readBody(t, resp)
	resp.Body.Close()
	checkMessage(t, spec.OpenAPI().MustSchema("GrantV1Response"), "grant", b)
	resp, b = post(t, s, "model=nova-3&callback=https://collector.invalid/x", bytes.NewReader(append(audio.WAVHeader(3200), tone(0.1)...)), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("callback: %d %s", resp.StatusCode, b)
	}
	checkMessage(t, spec.OpenAPI().MustSchema("listen_v1_media_transcribe_Response_200"), "accepted", b)
	checkMessage(t, spec.OpenAPI().MustSchema("ListenV1AcceptedResponse"), "accepted", b)
}
