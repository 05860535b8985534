package dgemu

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hark-audio/hark/audio"
)

const testKey = "test-key-123"

// tone returns sec seconds of a 440 Hz tone at about -10 dBFS, 16 kHz mono linear16.
func tone(sec float64) []byte {
	n := int(sec * 16000)
	s := make([]int16, n)
	for i := range s {
		s[i] = int16(10000 * math.Sin(2*math.Pi*440*float64(i)/16000))
	}
	return audio.AppendPCM(nil, s)
}

func silence(sec float64) []byte { return make([]byte, int(sec*16000)*2) }

func concat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// twoUtterances: 0.2 s silence, 1 s speech, 1 s silence, 0.8 s speech, 1.2 s silence.
func twoUtterances() []byte {
	return concat(silence(0.2), tone(1), silence(1), tone(0.8), silence(1.2))
}

func newTestServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	if cfg.APIKey == "" {
		cfg.APIKey = testKey
	}
	s := NewServer(cfg)
	t.Cleanup(s.Close)
	return s
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

type client struct {
	t    *testing.T
	conn *websocket.Conn
	resp *http.Response
	msgs chan map[string]any
	raw  chan []byte
	done chan struct{}
	err  error // read error, valid after done
}

// dial connects with the Token header and the given query, and starts a reader that
// collects server messages.
func dial(t *testing.T, s *Server, q url.Values) *client {
	t.Helper()
	c, err := tryDial(s, q, http.Header{"Authorization": {"Token " + testKey}})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.t = t
	t.Cleanup(func() { c.conn.Close(); <-c.done })
	return c
}

func tryDial(s *Server, q url.Values, h http.Header) (*client, error) {
	u := s.URL()
	if q != nil {
		u += "?" + q.Encode()
	}
	conn, resp, err := websocket.DefaultDialer.Dial(u, h)
	if err != nil {
		return &client{resp: resp}, err
	}
	c := &client{conn: conn, resp: resp, msgs: make(chan map[string]any, 1000), raw: make(chan []byte, 1000), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			mt, b, err := conn.ReadMessage()
			if err != nil {
				c.err = err
				return
			}
			if mt != websocket.TextMessage {
				continue
			}
			var m map[string]any
			if json.Unmarshal(b, &m) == nil {
				c.msgs <- m
				c.raw <- b
			}
		}
	}()
	return c, nil
}

func liveQuery(extra ...string) url.Values {
	q := url.Values{"model": {"nova-3"}, "encoding": {"linear16"}, "sample_rate": {"16000"}, "channels": {"1"}}
	for i := 0; i+1 < len(extra); i += 2 {
		if q.Has(extra[i]) {
			q.Set(extra[i], extra[i+1])
		} else {
			q.Add(extra[i], extra[i+1])
		}
	}
	return q
}

func (c *client) sendAudio(b []byte, chunk int) {
	c.t.Helper()
	for len(b) > 0 {
		n := min(chunk, len(b))
		if err := c.conn.WriteMessage(websocket.BinaryMessage, b[:n]); err != nil {
			c.t.Fatalf("write audio: %v", err)
		}
		b = b[n:]
	}
}

func (c *client) sendText(s string) {
	c.t.Helper()
	if err := c.conn.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		c.t.Fatalf("write text: %v", err)
	}
}

// collect reads messages until the connection ends and returns them with the close error.
func (c *client) collect() ([]map[string]any, error) {
	c.t.Helper()
	select {
	case <-c.done:
	case <-time.After(20 * time.Second):
		c.t.Fatal("connection did not end")
	}
	var out []map[string]any
	for {
		select {
		case m := <-c.msgs:
			out = append(out, m)
		default:
			return out, c.err
		}
	}
}

// next waits for the next message of the given type.
func (c *client) next(typ string) map[string]any {
	c.t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case m := <-c.msgs:
			if m["type"] == typ {
				return m
			}
		case <-c.done:
			select {
			case m := <-c.msgs:
				if m["type"] == typ {
					return m
				}
				continue
			default:
			}
			c.t.Fatalf("connection ended (%v) before a %s message", c.err, typ)
		case <-timeout:
			c.t.Fatalf("no %s message", typ)
		}
	}
}

func closeCode(err error) (int, string) {
	if ce, ok := err.(*websocket.CloseError); ok {
		return ce.Code, ce.Text
	}
	return 0, ""
}

func ofType(ms []map[string]any, typ string) []map[string]any {
	var out []map[string]any
	for _, m := range ms {
		if m["type"] == typ {
			out = append(out, m)
		}
	}
	return out
}

func finals(ms []map[string]any) []map[string]any {
	var out []map[string]any
	for _, m := range ofType(ms, "Results") {
		if m["is_final"] == true {
			out = append(out, m)
		}
	}
	return out
}

func transcriptOf(m map[string]any) string {
	alt := m["channel"].(map[string]any)["alternatives"].([]any)[0].(map[string]any)
	return alt["transcript"].(string)
}

func wordsOf(m map[string]any) []map[string]any {
	alt := m["channel"].(map[string]any)["alternatives"].([]any)[0].(map[string]any)
	var out []map[string]any
	for _, w := range alt["words"].([]any) {
		out = append(out, w.(map[string]any))
	}
	return out
}

func nonEmpty(ts []string) []string {
	var out []string
	for _, t := range ts {
		if strings.TrimSpace(t) != "" {
			out = append(out, t)
		}
	}
	return out
}
