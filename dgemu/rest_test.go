package dgemu

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/hark-audio/hark/audio"
)

// post sends a pre-recorded request and returns the response with its body read.
func post(t *testing.T, s *Server, query string, body io.Reader, h http.Header) (*http.Response, []byte) {
	t.Helper()
	u := s.HTTPURL()
	if query != "" {
		u += "?" + query
	}
	req, err := http.NewRequest(http.MethodPost, u, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Token "+testKey)
	for k, vs := range h {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get("dg-request-id") == "" {
		t.Errorf("status %d without dg-request-id", resp.StatusCode)
	}
	return resp, b
}

func postWAV(t *testing.T, s *Server, query string, pcm []byte, h http.Header) *restResponse {
	t.Helper()
	resp, b := post(t, s, query, bytes.NewReader(append(audio.WAVHeader(len(pcm)), pcm...)), h)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	var r restResponse
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return &r
}

func TestRESTWAV(t *testing.T) {
	s := newTestServer(t, Config{Utterances: []string{"Hello there.", "Bye."}})
	pcm := twoUtterances()
	resp, b := post(t, s, "model=nova-3&punctuate=true&utterances=true", bytes.NewReader(append(audio.WAVHeader(len(pcm)), pcm...)),
		http.Header{"Content-Type": {"audio/wav"}})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	var r restResponse
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	alt := r.Results.Channels[0].Alternatives[0]
	if alt.Transcript != "Hello there. Bye." || len(alt.Words) != 3 {
		t.Fatalf("alternative %+v", alt)
	}
	if w := alt.Words[2]; w.Start != 2.2 || w.End != 3 || w.Word != "bye" || w.PunctuatedWord != "Bye." {
		t.Errorf("file-relative word %+v", w)
	}
	us := *r.Results.Utterances
	if len(us) != 2 || us[0].Start != 0.2 || us[0].End != 1.2 || us[1].Transcript != "Bye." || us[0].ID == "" {
		t.Errorf("utterances %+v", us)
	}
	md := r.Metadata
	if md.RequestID != resp.Header.Get("dg-request-id") || md.Duration != 4.2 || md.Channels != 1 || md.TransactionKey != "deprecated" || len(md.SHA256) != 64 {
		t.Errorf("metadata %+v", md)
	}
	// Exact top-level shape.
	var raw map[string]map[string]json.RawMessage
	json.Unmarshal(b, &raw)
	if _, ok := raw["results"]["utterances"]; !ok {
		t.Error("no utterances key")
	}
	// Without utterances=true the key is absent.
	_, b = post(t, s, "model=nova-3", bytes.NewReader(append(audio.WAVHeader(len(pcm)), pcm...)), nil)
	raw = nil
	json.Unmarshal(b, &raw)
	if _, ok := raw["results"]["utterances"]; ok {
		t.Error("utterances without utterances=true")
	}
	ri, err := s.WaitRequest(ctxT(t), func(ri RequestInfo) bool { return ri.Done && ri.RequestID == md.RequestID })
	if err != nil || ri.Status != 200 || ri.BodyBytes != int64(len(pcm)+44) || ri.Transcript != "Hello there. Bye." {
		t.Errorf("request info %+v %v", ri, err)
	}
}

func TestRESTRaw(t *testing.T) {
	s := newTestServer(t, Config{Utterances: []string{"raw"}})
	resp, b := post(t, s, "model=nova-3&encoding=linear16&sample_rate=16000", bytes.NewReader(concat(tone(1), silence(0.5))), nil)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"transcript":"raw"`) {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
}

// wavFormat builds a WAV file of the tone in another PCM format.
func wavFormat(t *testing.T, bits int, float bool, channels, rate int, sec float64) []byte {
	t.Helper()
	n := int(sec * float64(rate))
	var data []byte
	for i := 0; i < n; i++ {
		v := 0.3 * math.Sin(2*math.Pi*440*float64(i)/float64(rate))
		if float64(i)/float64(rate) > sec-0.6 {
			v = 0
		}
		for c := 0; c < channels; c++ {
			switch {
			case float && bits == 32:
				data = binary.LittleEndian.AppendUint32(data, math.Float32bits(float32(v)))
			case float:
				data = binary.LittleEndian.AppendUint64(data, math.Float64bits(v))
			case bits == 8:
				data = append(data, byte(int(v*127)+128))
			case bits == 24:
				x := int32(v * 8388607)
				data = append(data, byte(x), byte(x>>8), byte(x>>16))
			case bits == 32:
				data = binary.LittleEndian.AppendUint32(data, uint32(int32(v*2147483647)))
			default:
				data = binary.LittleEndian.AppendUint16(data, uint16(int16(v*32767)))
			}
		}
	}
	h := audio.WAVHeaderFormat(len(data), rate, channels)
	tag := uint16(1)
	if float {
		tag = 3
	}
	binary.LittleEndian.PutUint16(h[20:], tag)
	binary.LittleEndian.PutUint32(h[28:], uint32(rate*channels*bits/8))
	binary.LittleEndian.PutUint16(h[32:], uint16(channels*bits/8))
	binary.LittleEndian.PutUint16(h[34:], uint16(bits))
	return append(h, data...)
}

func TestRESTFormats(t *testing.T) {
	cases := []struct {
		bits     int
		float    bool
		channels int
		rate     int
	}{{8, false, 1, 8000}, {16, false, 2, 44100}, {24, false, 1, 48000}, {32, false, 1, 16000}, {32, true, 2, 22050}, {64, true, 1, 16000}}
	for _, tc := range cases {
		s := newTestServer(t, Config{Utterances: []string{"ok"}})
		resp, b := post(t, s, "model=nova-3", bytes.NewReader(wavFormat(t, tc.bits, tc.float, tc.channels, tc.rate, 1.6)), nil)
		var r restResponse
		json.Unmarshal(b, &r)
		if resp.StatusCode != 200 || r.Results.Channels[0].Alternatives[0].Transcript != "ok" || math.Abs(r.Metadata.Duration-1.6) > 0.001 || r.Metadata.Channels != tc.channels {
			t.Errorf("%+v: %d %s", tc, resp.StatusCode, b)
		}
		if w := r.Results.Channels[0].Alternatives[0].Words; len(w) != 1 || w[0].Start != 0 || math.Abs(w[0].End-1.0) > 0.011 {
			t.Errorf("%+v: words %+v", tc, w)
		}
	}
}

func TestRESTErrors(t *testing.T) {
	s := newTestServer(t, Config{MaxBodyBytes: 100000, DeniedModels: []string{"nova-2"}})
	wav := append(audio.WAVHeader(32000), tone(1)...)
	cases := []struct {
		name   string
		query  string
		body   io.Reader
		h      http.Header
		status int
		msg    string
	}{
		{"corrupt", "model=nova-3", strings.NewReader("this is not audio at all"), nil, 400, "failed to process audio: corrupt or unsupported data"},
		{"empty", "model=nova-3", strings.NewReader(""), nil, 400, "corrupt"},
		{"truncated header", "model=nova-3", bytes.NewReader(wav[:30]), nil, 400, "corrupt"},
		{"url", "model=nova-3", strings.NewReader(`{"url":"https://example.com/a.wav"}`), http.Header{"Content-Type": {"application/json"}}, 400, "does not fetch"},
		{"bad query", "model=nova-3&keywords=x", bytes.NewReader(wav), nil, 400, "keywords"},
		{"denied", "model=nova-2", bytes.NewReader(wav), nil, 403, "access"},
		{"bad key", "model=nova-3", bytes.NewReader(wav), http.Header{"Authorization": {"Token nope"}}, 401, "credentials"},
		{"too large", "model=nova-3", bytes.NewReader(append(wav, make([]byte, 100000)...)), nil, 413, "size"},
		{"too large chunked", "model=nova-3", io.MultiReader(bytes.NewReader(wav), bytes.NewReader(make([]byte, 100000))), nil, 413, "size"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := post(t, s, tc.query, tc.body, tc.h)
			var body errorBody
			json.Unmarshal(b, &body)
			if resp.StatusCode != tc.status || !strings.Contains(resp.Header.Get("dg-error"), tc.msg) || body.RequestID != resp.Header.Get("dg-request-id") || body.ErrCode == "" {
				t.Errorf("%d dg-error %q body %s", resp.StatusCode, resp.Header.Get("dg-error"), b)
			}
		})
	}
}

func TestRESTChunked(t *testing.T) {
	pcm := concat(tone(1), silence(0.6))
	body := func() io.Reader {
		// A reader without Len: net/http sends it chunked, as the SDK's FromFile does.
		return io.MultiReader(bytes.NewReader(audio.WAVHeader(len(pcm))), bytes.NewReader(pcm))
	}
	s := newTestServer(t, Config{})
	if resp, b := post(t, s, "model=nova-3", body(), nil); resp.StatusCode != 200 {
		t.Fatalf("chunked upload: %d %s", resp.StatusCode, b)
	}
	s2 := newTestServer(t, Config{RequireContentLength: true})
	if resp, _ := post(t, s2, "model=nova-3", body(), nil); resp.StatusCode != 411 {
		t.Fatalf("chunked upload with RequireContentLength: %d", resp.StatusCode)
	}
}

func TestRESTInjectedFailures(t *testing.T) {
	s := newTestServer(t, Config{Utterances: []string{"finally"}})
	s.FailRequests(Refusal{Status: 503}, Refusal{Status: 429, RetryAfter: "2"}, Refusal{Status: 408}, Refusal{Status: 413}, Refusal{Status: 504})
	pcm := concat(tone(1), silence(0.6))
	want := []struct {
		status int
		key    string
		retry  string
	}{{503, "error_code", ""}, {429, "err_code", "2"}, {408, "err_code", ""}, {413, "err_code", ""}, {504, "err_code", ""}}
	for _, w := range want {
		resp, b := post(t, s, "model=nova-3", bytes.NewReader(append(audio.WAVHeader(len(pcm)), pcm...)), nil)
		var body map[string]any
		json.Unmarshal(b, &body)
		if resp.StatusCode != w.status || body[w.key] == nil || resp.Header.Get("Retry-After") != w.retry {
			t.Errorf("want %d: got %d %v %v", w.status, resp.StatusCode, resp.Header, body)
		}
	}
	// Failed requests consume no fixture text.
	r := postWAV(t, s, "model=nova-3", pcm, nil)
	if got := r.Results.Channels[0].Alternatives[0].Transcript; got != "finally" {
		t.Errorf("transcript %q", got)
	}
	if n := len(s.Requests()); n != 6 {
		t.Errorf("%d requests recorded", n)
	}
}

func TestRESTPerRequestFixture(t *testing.T) {
	s := newTestServer(t, Config{Utterances: []string{"server wide"}})
	r := postWAV(t, s, "model=nova-3&utterances=true", twoUtterances(), http.Header{FixtureHeader: {"first one", "second"}})
	if got := r.Results.Channels[0].Alternatives[0].Transcript; got != "first one second" {
		t.Fatalf("transcript %q", got)
	}
	// The server-wide cursor was not consumed.
	r = postWAV(t, s, "model=nova-3", concat(tone(1), silence(0.6)), nil)
	if got := r.Results.Channels[0].Alternatives[0].Transcript; got != "server wide" {
		t.Fatalf("transcript %q", got)
	}
}

func TestRESTSilence(t *testing.T) {
	s := newTestServer(t, Config{Utterances: []string{"unused"}})
	r := postWAV(t, s, "model=nova-3&utterances=true", silence(2), nil)
	alt := r.Results.Channels[0].Alternatives[0]
	if alt.Transcript != "" || len(alt.Words) != 0 || r.Results.Utterances == nil || len(*r.Results.Utterances) != 0 || r.Metadata.Duration != 2 {
		t.Fatalf("%+v", r)
	}
}

func TestRESTMethod(t *testing.T) {
	s := newTestServer(t, Config{})
	resp, err := http.Get(s.HTTPURL())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 || resp.Header.Get("dg-request-id") == "" {
		t.Errorf("GET without upgrade: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodPut, s.HTTPURL(), nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Errorf("PUT: %d", resp.StatusCode)
	}
	_ = url.Values{}
}
