package dgemu

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

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
