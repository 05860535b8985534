package live

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

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
		// gorilla only reads (frameWriter writes): its write buffer is never used.
		WriteBufferSize: 256,
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

var (
	jsonKeepAlive   = []byte(`{"type":"KeepAlive"}`)
	jsonFinalize    = []byte(`{"type":"Finalize"}`)
	jsonCloseStream = []byte(`{"type":"CloseStream"}`)
)

// connEvent is what a connection's goroutines tell the uplink's goroutine: a parsed
// message, a sign of life (pong), or the error that ended the goroutine.
type connEvent struct {
	c        *conn
	msg      serverMsg
	parseErr error
	raw      []byte // the frame, kept only when it could not be parsed (for the log)
	pong     bool
	err      error
	writer   bool // err came from the writer
}

// ctlMsg is a control frame the writer must send for the reader (a pong) or for shutdown
// (the close frame).
type ctlMsg struct {
	op      byte
	payload []byte
}

// conn owns one websocket: exactly one writer goroutine and one reader goroutine
// (gorilla's writePump/readPump shape). The writer pulls what to send from the ledger
// under the uplink's lock, so a frame goes from the gate's goroutine to the socket through
// no queue and no other goroutine; it is woken by wake. Events carry their conn, so the
// uplink ignores whatever a replaced connection still says.
type conn struct {
	u      *Uplink
	epoch  uint64
	ws     *websocket.Conn
	fw     *frameWriter
	reqID  string
	opened time.Time

	wake       chan struct{} // cap 1: something may be ready to send
	ctl        chan ctlMsg   // pongs to send, the close frame
	stop       chan struct{}
	stopOnce   sync.Once
	writerDone chan struct{}
	wg         sync.WaitGroup
	secret     string // the API key, hidden in server text (close reasons, bad frames)
}

func startConn(u *Uplink, ws *websocket.Conn, epoch uint64, reqID string, now time.Time) *conn {
	c := &conn{
		u: u, epoch: epoch, ws: ws, fw: newFrameWriter(ws.NetConn()), reqID: reqID, opened: now, secret: u.cfg.APIKey,
		wake: make(chan struct{}, 1), ctl: make(chan ctlMsg, 4), stop: make(chan struct{}),
		writerDone: make(chan struct{}),
	}
	c.wg.Add(2)
	go c.writeLoop()
	go c.readLoop()
	return c
}

// ping asks the writer for a ping now; it never blocks.
func (c *conn) ping() {
	select {
	case c.ctl <- ctlMsg{op: opPing}:
	default:
	}
}

// notify wakes the writer; it never blocks.
func (c *conn) notify() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// shutdown stops both goroutines, closes the socket and waits for them. graceful first
// lets the writer send a close frame (bounded by the write timeout): the peer answered
// our CloseStream, or closed first. For a dead peer the socket is just closed.
//
// It runs on the uplink's goroutine, which also receives events: while waiting it drains
// them (they can only come from c, the one connection there is), so a goroutine blocked
// reporting cannot hold the shutdown up.
func (c *conn) shutdown(graceful bool, events <-chan connEvent) {
	if graceful {
		select {
		case c.ctl <- ctlMsg{op: opClose, payload: closePayload(websocket.CloseNormalClosure)}:
			t := time.NewTimer(c.u.cfg.WriteTimeout)
		wait:
			for {
				select {
				case <-c.writerDone:
					break wait
				case <-events:
				case <-t.C:
					break wait
				}
			}
			t.Stop()
		default:
		}
	}
	c.stopOnce.Do(func() { close(c.stop) })
	c.ws.Close()
	c.wg.Wait()
}

func closePayload(code int) []byte {
	b := make([]byte, 2)
	binary.BigEndian.PutUint16(b, uint16(code))
	return b
}

func (c *conn) report(ev connEvent) {
	ev.c = c
	select {
	case c.u.events <- ev:
	case <-c.stop:
	}
}

// writeLoop sends what the ledger hands it, then waits. One timer serves pings and
// KeepAlives: it fires every ping period, sends a ping (liveness), and a KeepAlive when
// no data message would otherwise have gone out within KeepAlive. During silence that is
// the only wake-up; nothing on the audio path can starve it.
func (c *conn) writeLoop() {
	defer c.wg.Done()
	defer close(c.writerDone)
	cfg := &c.u.cfg
	period := min(cfg.PingInterval, cfg.KeepAlive)
	t := time.NewTimer(period)
	defer t.Stop()
	lastData := time.Now()
	ended := false // CloseStream sent: only control frames after it
	for {
		for {
			now := time.Now()
			it := c.u.take(c.epoch, now)
			if it.kind == itemNone {
				break
			}
			if err := c.send(it, now); err != nil {
				c.report(connEvent{err: err, writer: true})
				return
			}
			lastData = now
			if it.kind == itemCloseStream {
				ended = true
			}
		}
		var err error
		select {
		case <-c.stop:
			return
		case <-c.wake:
			continue
		case m := <-c.ctl:
			err = c.fw.message(m.op, m.payload, time.Now().Add(cfg.WriteTimeout))
			if m.op == opClose {
				return
			}
		case now := <-t.C:
			err = c.fw.message(opPing, nil, now.Add(cfg.WriteTimeout))
			if err == nil && !ended && now.Sub(lastData)+period > cfg.KeepAlive {
				c.u.st.keepAlives.Add(1)
				err = c.fw.message(opText, jsonKeepAlive, now.Add(cfg.WriteTimeout))
				lastData = now
			}
			t.Reset(period)
		}
		if err != nil {
			c.report(connEvent{err: err, writer: true})
			return
		}
	}
}

func (c *conn) send(it sendItem, now time.Time) error {
	dl := now.Add(c.u.cfg.WriteTimeout)
	switch it.kind {
	case itemAudio:
		if err := c.fw.audio(it.frame.Samples, dl); err != nil {
			return err
		}
		c.u.st.framesSent.Add(1)
		c.u.st.samplesSent.Add(int64(len(it.frame.Samples)))
		return nil
	case itemFinalize:
		c.u.st.finalizes.Add(1)
		return c.fw.message(opText, jsonFinalize, dl)
	case itemCloseStream:
		return c.fw.message(opText, jsonCloseStream, dl)
	}
	return nil
}

// readLoop reads until the connection ends. Its read deadline, extended by every message
// and every pong, is what finds a dead or half-open connection: a quiet service still
// answers pings.
func (c *conn) readLoop() {
	defer c.wg.Done()
	ws := c.ws
	ws.SetReadLimit(1 << 20)
	wait := c.u.cfg.PongWait
	extend := func() { _ = ws.SetReadDeadline(time.Now().Add(wait)) }
	extend()
	ws.SetPongHandler(func(string) error {
		extend()
		c.report(connEvent{pong: true})
		return nil
	})
	// gorilla's own handlers would write from this goroutine: the writer answers instead.
	ws.SetPingHandler(func(p string) error {
		extend()
		select {
		case c.ctl <- ctlMsg{op: opPong, payload: []byte(p)}:
		default:
		}
		return nil
	})
	ws.SetCloseHandler(func(int, string) error { return nil })
	for {
		mt, b, err := ws.ReadMessage()
		if err != nil {
			// The close reason is server text: it reaches logs and the state.
			// gorilla returns shared package-level values for some closes (abnormal
			// closure), so scrub a copy, never the value itself.
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				scrubbed := *ce
				scrubbed.Text = redact.Text(ce.Text, 300, c.secret)
				err = &scrubbed
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
