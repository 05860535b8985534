package dgemu

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hark-audio/hark/audio"
)

// A model/language pair the service does not serve is refused as the service refuses it:
// 400, err_code "Bad Request", "No such model/language/tier combination found", live and
// pre-recorded alike.
func TestModelLanguageTable(t *testing.T) {
	s := newTestServer(t, Config{})
	wav := append(audio.WAVHeader(3200), tone(0.1)...)
	for _, tc := range []struct {
		model, lang string
		ok          bool
	}{
		{"nova-3", "en", true}, {"nova-3", "en-US", true}, {"nova-3", "de", true}, {"nova-3", "multi", true},
		{"nova-3", "ja", true}, {"nova-3", "EN-us", true}, {"nova-3-medical", "en", true},
		{"nova-3-medical", "fr", false}, {"nova-3", "xx", false}, {"nova-3", "english!", false},
		{"nova-2", "fr", true}, {"nova-2", "th", true}, {"nova-2-meeting", "en-US", true},
		{"nova-2-meeting", "fr", false}, {"nova-2-phonecall", "en-GB", false}, {"enhanced", "ta", true},
		{"base", "ru", true}, {"nova-9", "en", false}, {"custom", "en", false},
	} {
		q := "model=" + tc.model + "&language=" + tc.lang
		resp, b := post(t, s, q, bytes.NewReader(wav), nil)
		c, err := tryDial(s, mustQuery(q+"&encoding=linear16&sample_rate=16000"), http.Header{"Authorization": {"Token " + testKey}})
		if err == nil {
			c.conn.Close()
			<-c.done
		}
		if tc.ok {
			if resp.StatusCode != 200 || err != nil {
				t.Errorf("%s: pre-recorded %d %s, live %v; want both accepted", q, resp.StatusCode, b, err)
			}
			continue
		}
		var live []byte
		if c.resp != nil {
			live = readBody(t, c.resp)
		}
		for name, got := range map[string]struct {
			status int
			h      http.Header
			b      []byte
		}{"pre-recorded": {resp.StatusCode, resp.Header, b}, "live": {statusOf(c.resp), headerOf(c.resp), live}} {
			var eb errorBody
			json.Unmarshal(got.b, &eb)
			if got.status != 400 || eb.ErrCode != "Bad Request" || !strings.HasPrefix(eb.ErrMsg, msgNoModel) ||
				!strings.HasPrefix(got.h.Get("dg-error"), msgNoModel) {
				t.Errorf("%s %s: %d %s, want 400 Bad Request %q", name, q, got.status, got.b, msgNoModel)
			}
		}
	}
}

func statusOf(r *http.Response) int {
	if r == nil {
		return 0
	}
	return r.StatusCode
}

func headerOf(r *http.Response) http.Header {
	if r == nil {
		return http.Header{}
	}
	return r.Header
}

// A stream that never received audio ends with the service's zero-audio Metadata: duration
// 0, channels 0, and no models or model_info (captures in SDK issue threads).
func TestZeroAudioMetadata(t *testing.T) {
	s := newTestServer(t, Config{})
	c := dial(t, s, liveQuery())
	c.sendText(`{"type":"CloseStream"}`)
	ms, _ := c.collect()
	md := ofType(ms, "Metadata")
	if len(md) != 1 {
		t.Fatalf("%d Metadata messages", len(md))
	}
	if _, has := md[0]["models"]; has {
		t.Errorf("zero-audio Metadata has models: %v", md[0])
	}
	if _, has := md[0]["model_info"]; has {
		t.Errorf("zero-audio Metadata has model_info: %v", md[0])
	}
	c = dial(t, s, liveQuery())
	c.sendAudio(tone(0.5), 3200)
	c.sendText(`{"type":"CloseStream"}`)
	ms, _ = c.collect()
	md = ofType(ms, "Metadata")
	if len(md) != 1 || md[0]["models"] == nil || md[0]["model_info"] == nil {
		t.Errorf("Metadata after audio: %v", md)
	}
}

// The emulator accepts exactly what the service accepts: API keys under Token, tokens from
// the grant endpoint under Bearer, both subprotocol forms answered with their scheme.
func TestAuthForms(t *testing.T) {
	s := newTestServer(t, Config{})
	// A token from the grant endpoint, as the SDKs obtain one.
	req, _ := http.NewRequest(http.MethodPost, "http://"+s.Addr()+"/v1/auth/grant", strings.NewReader(`{"ttl_seconds":60}`))
	req.Header.Set("Authorization", "Token "+testKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var grant struct {
		AccessToken string  `json:"access_token"`
		ExpiresIn   float64 `json:"expires_in"`
	}
	b := readBody(t, resp)
	resp.Body.Close()
	if resp.StatusCode != 200 || json.Unmarshal(b, &grant) != nil || grant.AccessToken == "" || grant.ExpiresIn != 60 {
		t.Fatalf("grant: %d %s", resp.StatusCode, b)
	}
	jwt := grant.AccessToken
	other := NewServer(Config{APIKey: testKey})
	foreign := other.IssueToken(time.Minute) // signed by another server
	other.Close()
	for _, tc := range []struct {
		name, method string
		h            http.Header
		proto        string // subprotocol answered; "" for none
	}{
		{"token", AuthToken, http.Header{"Authorization": {"Token " + testKey}}, ""},
		{"bearer jwt", AuthBearer, http.Header{"Authorization": {"Bearer " + jwt}}, ""},
		{"bearer lower", AuthBearer, http.Header{"Authorization": {"bearer " + jwt}}, ""},
		{"token subprotocol", AuthTokenSubprotocol, http.Header{"Sec-WebSocket-Protocol": {"token, " + testKey}}, "token"},
		{"bearer subprotocol", AuthBearerSubprotocol, http.Header{"Sec-WebSocket-Protocol": {"bearer, " + jwt}}, "bearer"},
		{"bearer with an API key", "", http.Header{"Authorization": {"Bearer " + testKey}}, ""},
		{"token with a jwt", "", http.Header{"Authorization": {"Token " + jwt}}, ""},
		{"expired jwt", "", http.Header{"Authorization": {"Bearer " + s.IssueToken(-time.Second)}}, ""},
		{"foreign jwt", "", http.Header{"Authorization": {"Bearer " + foreign}}, ""},
		{"tampered jwt", "", http.Header{"Authorization": {"Bearer " + jwt[:len(jwt)-2] + "AA"}}, ""},
		{"bearer subprotocol with a key", "", http.Header{"Sec-WebSocket-Protocol": {"bearer, " + testKey}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tryDial(s, liveQuery(), tc.h)
			if tc.method == "" {
				if err == nil {
					c.conn.Close()
					<-c.done
					t.Fatal("accepted")
				}
				if statusOf(c.resp) != 401 {
					t.Fatalf("status %d, want 401", statusOf(c.resp))
				}
				// Pre-recorded: the same header gets the same answer.
				if tc.h.Get("Authorization") != "" {
					r, _ := post(t, s, "model=nova-3", bytes.NewReader(append(audio.WAVHeader(3200), tone(0.1)...)), tc.h)
					if r.StatusCode != 401 {
						t.Errorf("pre-recorded: %d, want 401", r.StatusCode)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v (status %d)", err, statusOf(c.resp))
			}
			defer func() { c.conn.Close(); <-c.done }()
			if c.conn.Subprotocol() != tc.proto {
				t.Errorf("subprotocol %q, want %q", c.conn.Subprotocol(), tc.proto)
			}
			si, err := s.WaitSession(ctxT(t), func(si SessionInfo) bool { return si.RequestID == c.resp.Header.Get("dg-request-id") })
			if err != nil {
				t.Fatal(err)
			}
			if si.AuthMethod != tc.method {
				t.Errorf("auth method %q, want %q", si.AuthMethod, tc.method)
			}
		})
	}
	// A token cannot mint tokens, and a bad TTL is refused.
	for name, h := range map[string][2]string{
		"bearer grant": {"Bearer " + jwt, `{}`}, "ttl too long": {"Token " + testKey, `{"ttl_seconds":7200}`},
		"not json": {"Token " + testKey, `ttl=5`},
	} {
		req, _ := http.NewRequest(http.MethodPost, "http://"+s.Addr()+"/v1/auth/grant", strings.NewReader(h[1]))
		req.Header.Set("Authorization", h[0])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 4 {
			t.Errorf("%s: grant answered %d", name, resp.StatusCode)
		}
	}
}

// FuzzAuthenticate: whatever a client sends as Authorization or subprotocols (outside
// input), authentication neither panics nor accepts a credential it did not issue.
func FuzzAuthenticate(f *testing.F) {
	s := NewServer(Config{APIKey: testKey})
	defer s.Close()
	tok := s.IssueToken(time.Minute)
	for _, seed := range [][2]string{
		{"Token " + testKey, ""}, {"Bearer " + tok, ""}, {"", "token, " + testKey}, {"", "bearer, " + tok},
		{"Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.e30.AAAA", ""}, {"Bearer a.b.c", ""}, {"Basic x", ""},
		{"", "bearer"}, {"Token", ""}, {"", ",,,"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, authz, protos string) {
		r, _ := http.NewRequest(http.MethodGet, "http://x/v1/listen", nil)
		if authz != "" {
			r.Header.Set("Authorization", authz)
		}
		if protos != "" {
			r.Header.Set("Sec-WebSocket-Protocol", protos)
		}
		method, ok := s.authenticate(r, true)
		if !ok {
			return
		}
		c := presented(r, true)
		switch {
		case c.bearer() && c.secret != tok:
			// Only tokens this server signed pass; the fuzzer cannot forge one.
			if s.checkJWT(c.secret, time.Now()) != nil {
				t.Fatalf("accepted %q as %s", c.secret, method)
			}
		case !c.bearer() && c.secret != testKey:
			t.Fatalf("accepted key %q as %s", c.secret, method)
		}
	})
}
