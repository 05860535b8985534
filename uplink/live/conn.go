package live

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hark-audio/hark/audio"
	"github.com/hark-audio/hark/internal/backoff"
	"github.com/hark-audio/hark/internal/redact"
	"github.com/hark-audio/hark/uplink"
)

// RefusedError is a handshake the service answered with an HTTP error instead of 101.
type RefusedError struct {
	Status     int
	Code       string // err_code (or error_code) from the body, e.g. INVALID_AUTH
	Message    string // dg-error header, else err_msg from the body
	RequestID  string
	RetryAfter time.Duration // from a Retry-After header, 0 if absent
}

func (e *RefusedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "deepgram refused the stream: HTTP %d", e.Status)
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	return b.String()
}

// Permanent reports whether retrying soon is pointless: configuration or account problems
// (400, 401, 402, 403 and other 4xx except 408 and 429).
func (e *RefusedError) Permanent() bool {
	return e.Status >= 400 && e.Status < 500 && e.Status != http.StatusTooManyRequests &&
		e.Status != http.StatusRequestTimeout
}

type dialResult struct {
	ws        *websocket.Conn
	requestID string
	err       error // *RefusedError for a refused handshake
	took      time.Duration
}

// dial opens one stream. The key travels only in the request header; neither the errors
// returned nor anything logged here contains it.
func dial(ctx context.Context, cfg *Config, target string) dialResult {
	t0 := time.Now()
	d := websocket.Dialer{
		Proxy:            http.ProxyFromEnvironment,
		HandshakeTimeout: cfg.ConnectTimeout,
		WriteBufferSize:  audio.FrameBytes + 64,
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	// An API key goes as "Token KEY"; a token file's JWT, re-read for every connection so
	// that its refresher is followed, as "Bearer JWT".
	authz, secret, err := uplink.Authorization(cfg.APIKey, cfg.TokenFile)
	if err != nil {
		return dialResult{err: err, took: time.Since(t0)}
	}
	h := http.Header{}
	h.Set("Authorization", authz)
	ws, resp, err := d.DialContext(ctx, target, h)
	r := dialResult{ws: ws, took: time.Since(t0)}
	if resp != nil {
		r.requestID = resp.Header.Get("dg-request-id")
	}
	if err == nil {
		return r
	}
	if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols && resp.StatusCode >= 300 {
		// gorilla keeps up to 1 KiB of the body for us.
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		code, msg, bodyID := uplink.ParseErrorBody(body, secret)
		re := &RefusedError{Status: resp.StatusCode, Code: code, Message: resp.Header.Get("dg-error"),
			RequestID: r.requestID}
		re.RetryAfter, _ = backoff.RetryAfter(resp.Header.Get("Retry-After"), time.Now(), 24*time.Hour)
		if re.Message == "" {
			re.Message = msg
		}
		if re.RequestID == "" {
			re.RequestID = bodyID
			r.requestID = bodyID
		}
		re.Message = redact.Text(re.Message, 300, secret)
		re.RequestID = redact.Text(re.RequestID, 100, secret)
		r.requestID = re.RequestID
		r.err = re
		return r
	}
	r.err = fmt.Errorf("connect: %w", errors.New(redact.Text(err.Error(), 300, secret)))
	return r
}

type outKind uint8

const (
	outAudio outKind = iota
	outFinalize
	outCloseStream
)

type outMsg struct {
	kind  outKind
	frame audio.Frame
}

var (
	jsonKeepAlive   = []byte(`{"type":"KeepAlive"}`)
	jsonFinalize    = []byte(`{"type":"Finalize"}`)
	jsonCloseStream = []byte(`{"type":"CloseStream"}`)
)

// connEvent is what a connection's goroutines tell the uplink's goroutine: one parsed
// message, or the error that ended the goroutine.
type connEvent struct {
	c        *conn
	msg      serverMsg
	parseErr error
	raw      []byte // the frame, kept only when it could not be parsed (for the log)
	err      error
	writer   bool // err came from the writer
}

// conn owns one websocket: exactly one writer goroutine and one reader goroutine. The
// uplink's goroutine talks to the writer only through the bounded out queue and hears from
// both through events; stale events (from a connection already replaced) carry their conn
// so they can be ignored.
type conn struct {
	ws     *websocket.Conn
	out    chan outMsg
	stop   chan struct{}
	wg     sync.WaitGroup
	events chan<- connEvent
	st     *counters
	secret string // the API key, hidden in server text

	keepAlive, ping, writeTimeout, readWait time.Duration
}

func startConn(ws *websocket.Conn, cfg *Config, events chan<- connEvent, st *counters) *conn {
	c := &conn{
		ws: ws, out: make(chan outMsg, cfg.WriteQueue), stop: make(chan struct{}), events: events, st: st, secret: cfg.APIKey,
		keepAlive: cfg.KeepAlive, ping: cfg.PingInterval, writeTimeout: cfg.WriteTimeout,
		readWait: 3 * cfg.PingInterval,
	}
	c.wg.Add(2)
	go c.writeLoop()
	go c.readLoop()
	return c
}

// send queues a message for the writer without blocking; false means the queue is full
// (the service stopped reading).
func (c *conn) send(m outMsg) bool {
	select {
	case c.out <- m:
		return true
	default:
		return false
	}
}

// shutdown stops both goroutines and closes the socket, then waits for them.
func (c *conn) shutdown() {
	close(c.stop)
	c.ws.Close()
	c.wg.Wait()
}

func (c *conn) report(ev connEvent) {
	ev.c = c
	select {
	case c.events <- ev:
	case <-c.stop:
	}
}

func (c *conn) writeLoop() {
	defer c.wg.Done()
	buf := make([]byte, 0, audio.FrameBytes)
	// The KeepAlive timer lives here, in the only goroutine that writes: nothing on the
	// audio path can starve it, and any message sent resets it.
	ka := time.NewTimer(c.keepAlive)
	defer ka.Stop()
	ping := time.NewTicker(c.ping)
	defer ping.Stop()
	ended := false // CloseStream sent: nothing but control frames after it
	write := func(mt int, b []byte) error {
		if err := c.ws.SetWriteDeadline(time.Now().Add(c.writeTimeout)); err != nil {
			return err
		}
		return c.ws.WriteMessage(mt, b)
	}
	for {
		var err error
		select {
		case <-c.stop:
			return
		case m := <-c.out:
			if ended {
				continue
			}
			switch m.kind {
			case outAudio:
				buf = audio.AppendPCM(buf[:0], m.frame.Samples)
				if len(buf) == 0 {
					// An empty binary frame would end the stream: never send one.
					c.st.emptySkipped.Add(1)
					continue
				}
				err = write(websocket.BinaryMessage, buf)
				if err == nil {
					c.st.framesSent.Add(1)
					c.st.samplesSent.Add(int64(len(m.frame.Samples)))
				}
			case outFinalize:
				c.st.finalizes.Add(1)
				err = write(websocket.TextMessage, jsonFinalize)
			case outCloseStream:
				err = write(websocket.TextMessage, jsonCloseStream)
				ended = true
			}
			ka.Reset(c.keepAlive)
		case <-ka.C:
			if !ended {
				c.st.keepAlives.Add(1)
				err = write(websocket.TextMessage, jsonKeepAlive)
			}
			ka.Reset(c.keepAlive)
		case <-ping.C:
			err = c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.writeTimeout))
		}
		if err != nil {
			c.report(connEvent{err: err, writer: true})
			return
		}
	}
}

func (c *conn) readLoop() {
	defer c.wg.Done()
	c.ws.SetReadLimit(1 << 20)
	extend := func() error { return c.ws.SetReadDeadline(time.Now().Add(c.readWait)) }
	extend()
	c.ws.SetPongHandler(func(string) error { return extend() })
	for {
		mt, b, err := c.ws.ReadMessage()
		if err != nil {
			// The close reason is server text: it reaches logs and the state.
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				ce.Text = redact.Text(ce.Text, 300, c.secret)
			}
			c.report(connEvent{err: err})
			return
		}
		extend()
		if mt != websocket.TextMessage {
			c.report(connEvent{parseErr: errors.New("unexpected binary message"), raw: c.truncate(b)})
			continue
		}
		m, perr := parseMessage(b)
		ev := connEvent{msg: m, parseErr: perr}
		if perr != nil {
			ev.raw = c.truncate(b)
		}
		c.report(ev)
	}
}

// truncate keeps the start of an unparsable frame for the log, scrubbed (server text).
func (c *conn) truncate(b []byte) []byte {
	return []byte(redact.Text(string(b), 200, c.secret))
}
