package dgemu

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"math"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hark-audio/hark/audio"
)

const (
	writeTimeout   = 5 * time.Second
	closeGrace     = 2 * time.Second // how long to wait for the client's close reply
	maxMessage     = 8 << 20
	realtimeBurst  = time.Second
	createdLayout  = "2006-01-02T15:04:05.000Z"
	transactionKey = "deprecated"
)

var upgrader = websocket.Upgrader{
	// The service answers the "token, KEY" and "bearer, JWT" forms with the subprotocol
	// "token" or "bearer" (the first offered that it knows: the scheme, never the secret).
	Subprotocols:    []string{subprotocolToken, subprotocolBearer},
	CheckOrigin:     func(*http.Request) bool { return true },
	ReadBufferSize:  16 << 10,
	WriteBufferSize: 16 << 10,
}

func (s *Server) serveLive(w http.ResponseWriter, r *http.Request, reqID string) {
	s.mu.Lock()
	delay := s.hsDelay
	s.mu.Unlock()
	if !s.sleep(delay, r.Context().Done()) {
		return
	}
	log := s.log.With("request_id", reqID)
	s.mu.Lock()
	var inj *Refusal
	if len(s.refusals) > 0 {
		inj = &s.refusals[0]
		s.refusals = s.refusals[1:]
	}
	s.mu.Unlock()
	if inj != nil {
		log.Info("handshake refused (injected)", "status", inj.Status)
		refuse(w, reqID, *inj)
		return
	}
	method, ok := s.authenticate(r, true)
	if !ok {
		log.Info("handshake refused", "status", 401)
		refuse(w, reqID, Refusal{Status: http.StatusUnauthorized})
		return
	}
	opts, qerr := parseOptions(r.URL.Query(), true, s.cfg.StrictQuery)
	if qerr != nil {
		log.Info("handshake refused", "status", qerr.status, "err", qerr.msg)
		refuse(w, reqID, Refusal{Status: qerr.status, Code: qerr.code, Message: qerr.msg})
		return
	}
	if s.denied(opts.Model) {
		log.Info("handshake refused", "status", 403, "model", opts.Model)
		refuse(w, reqID, Refusal{Status: http.StatusForbidden})
		return
	}
	// The concurrency limit counts from here, before the 101, so a client that saw its
	// handshake succeed is always counted.
	s.mu.Lock()
	full := s.cfg.MaxStreams > 0 && s.streams >= s.cfg.MaxStreams
	if !full {
		s.streams++
	}
	s.mu.Unlock()
	if full {
		log.Info("handshake refused: concurrency limit", "status", 429, "max_streams", s.cfg.MaxStreams)
		refuse(w, reqID, Refusal{Status: http.StatusTooManyRequests})
		return
	}
	hdr := http.Header{}
	hdr.Set("dg-request-id", reqID)
	// A client may act on the session as soon as it sees the 101, before it is registered
	// below: Sessions and the faults wait for upgrades in flight.
	s.mu.Lock()
	s.upgrading++
	s.mu.Unlock()
	registered := false
	defer func() {
		if !registered {
			s.mu.Lock()
			s.upgrading--
			s.notifyLocked()
			s.mu.Unlock()
		}
	}()
	conn, err := upgrader.Upgrade(w, r, hdr)
	if err != nil {
		// Upgrade has already answered the client.
		log.Debug("upgrade failed", "err", err)
		s.mu.Lock()
		s.streams--
		s.mu.Unlock()
		return
	}
	mi, _ := knownModel(opts.Model)
	ss := &session{
		srv:        s,
		conn:       conn,
		opts:       opts,
		log:        log,
		hash:       sha256.New(),
		model:      mi,
		killc:      make(chan struct{}),
		out:        make(chan outMsg, 1024),
		writerDone: make(chan struct{}),
		info: SessionInfo{
			RequestID: reqID, Query: cloneValues(r.URL.Query()), AuthMethod: method,
			Options: opts, Started: time.Now(),
		},
	}
	ss.emit = ss.send
	ss.meta = resultsMeta{RequestID: reqID, ModelInfo: mi, ModelUUID: mi.uuid, Extra: opts.Extra}
	if opts.Encoding != "" {
		ss.format = &audio.WAVFormat{SampleRate: opts.SampleRate, Channels: opts.Channels, BitsPerSample: 16}
		if opts.Encoding == "linear32" {
			ss.format.BitsPerSample = 32
		}
		ss.startTranscriber()
	}
	conn.SetReadLimit(maxMessage)
	s.mu.Lock()
	s.upgrading--
	registered = true
	s.sessions = append(s.sessions, ss)
	s.sessions = trimClosed(s.sessions, func(x *session) bool { return x.info.Closed })
	s.notifyLocked()
	s.mu.Unlock()
	go ss.writeLoop()
	log.Info("session opened", "auth", method, "query", r.URL.RawQuery)
	if len(opts.Unknown) > 0 {
		log.Debug("unknown query parameters ignored", "params", opts.Unknown)
	}
	ss.run()
}

// session is one live connection. Its run goroutine (the HTTP handler's) owns reading and
// the transcriber; its writer goroutine owns every data-frame write, in order, each after
// Config.ResultsDelay. Faults enqueue through the same path (closeWith) or cut the
// connection (drop, kill).
type session struct {
	srv   *Server
	conn  *websocket.Conn
	opts  *Options
	log   *slog.Logger
	hash  hash.Hash
	model modelInfo
	meta  resultsMeta

	format   *audio.WAVFormat // nil until a container header is seen
	carry    []byte           // partial sample frame between messages (container mode)
	header   []byte           // container header received so far
	tr       *transcriber
	mono     []float32
	firstAud time.Time
	gotAudio bool

	// hmu guards what Metadata reports (hash, samples, format), since faults close the
	// session from other goroutines.
	hmu      sync.Mutex
	samples  int64
	rate     int
	channels int

	// wmu guards the two flags and makes enqueueing atomic (Metadata and the close frame
	// go in together); the writer never takes it.
	wmu        sync.Mutex
	closeSent  bool // a close frame is queued: nothing more is sent
	dropped    bool
	out        chan outMsg
	writerDone chan struct{}
	killOnce   sync.Once
	killc      chan struct{}

	emit func(any) // where the transcriber's messages go: send (a fuzz test replaces it)

	info SessionInfo // guarded by srv.mu
}

// outMsg is one queued server frame: a JSON text message, or the close frame.
type outMsg struct {
	due    time.Time
	v      any
	b      []byte
	close  bool
	code   int
	reason string
}

func (ss *session) snapshotLocked() SessionInfo {
	si := ss.info
	si.Query = cloneValues(ss.info.Query)
	si.Transcripts = append([]string(nil), ss.info.Transcripts...)
	return si
}

func (ss *session) update(f func(*SessionInfo)) {
	ss.srv.mu.Lock()
	f(&ss.info)
	ss.srv.notifyLocked()
	ss.srv.mu.Unlock()
}

func (ss *session) startTranscriber() {
	ss.tr = newTranscriber(ss.opts, ss.format.SampleRate, &ss.srv.cfg,
		func() (string, bool) { return ss.srv.nextFixture(true) }, ss.emit, ss.meta)
}

// kill ends the session at once (server Close, drop): no close frame.
func (ss *session) kill() {
	ss.killOnce.Do(func() { close(ss.killc) })
	_ = ss.conn.NetConn().Close()
}

// drop cuts the TCP connection without a close frame (fault).
func (ss *session) drop() {
	ss.kill() // first: it unblocks an enqueuer holding wmu
	ss.wmu.Lock()
	ss.dropped = true
	ss.wmu.Unlock()
	ss.update(func(si *SessionInfo) { si.Dropped = true })
	ss.log.Info("dropped connection (fault)")
}

// enqueueLocked queues frames for the writer; wmu is held. A full queue (a client that
// does not read) blocks the caller, as a real server's reader would stall.
func (ss *session) enqueueLocked(ms ...outMsg) {
	for _, m := range ms {
		select {
		case ss.out <- m:
		case <-ss.killc:
			return
		}
	}
}

// send queues one server message (JSON text).
func (ss *session) send(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // our own types always marshal
	}
	ss.wmu.Lock()
	defer ss.wmu.Unlock()
	if ss.closeSent || ss.dropped {
		return
	}
	ss.enqueueLocked(outMsg{due: time.Now().Add(ss.srv.cfg.ResultsDelay + ss.srv.cfg.Quiet.jitter()), v: v, b: b})
}

// writeLoop writes queued frames in order, each at its due time, and ends after the close
// frame, a write error or kill.
func (ss *session) writeLoop() {
	defer close(ss.writerDone)
	for {
		var m outMsg
		select {
		case m = <-ss.out:
		case <-ss.killc:
			return
		}
		if !ss.srv.sleep(time.Until(m.due), ss.killc) {
			return
		}
		_ = ss.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
		if m.close {
			if err := ss.conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(m.code, m.reason)); err != nil {
				ss.log.Debug("writing the close frame failed", "err", err)
			}
			// Wait briefly for the client's close reply, then the reader ends.
			_ = ss.conn.SetReadDeadline(time.Now().Add(closeGrace))
			return
		}
		if err := ss.conn.WriteMessage(websocket.TextMessage, m.b); err != nil {
			ss.log.Debug("write failed", "err", err)
			_ = ss.conn.NetConn().Close()
			return
		}
		ss.record(m.v)
	}
}

func (ss *session) record(v any) {
	ss.update(func(si *SessionInfo) {
		si.MessagesWritten++
		switch m := v.(type) {
		case resultsMsg:
			if m.IsFinal {
				si.Finals++
				si.Transcripts = append(si.Transcripts, m.Channel.Alternatives[0].Transcript)
				if m.SpeechFinal {
					si.SpeechFinals++
				}
				if m.FromFinalize {
					si.FromFinalize++
				}
			} else {
				si.Interims++
			}
		case utteranceEndMsg:
			si.UtteranceEnds++
		case speechStartedMsg:
			si.SpeechStarteds++
		case errorMsg:
			si.ErrorsSent++
		case metadataMsg:
			si.MetadataSent = true
		}
	})
}

func (ss *session) metadata() metadataMsg {
	md := metadataMsg{Type: "Metadata", restMetadata: restMetadata{
		TransactionKey: transactionKey, RequestID: ss.info.RequestID,
		SHA256: hex.EncodeToString(ss.hash.Sum(nil)), Created: time.Now().UTC().Format(createdLayout),
		Extra: ss.opts.Extra,
	}}
	// Without audio the service reports duration 0, channels 0 and no models.
	if ss.samples > 0 {
		md.Duration = round3(float64(ss.samples) / float64(ss.rate))
		md.Channels = ss.channels
		md.Models = []string{ss.model.uuid}
		md.ModelInfo = map[string]modelInfo{ss.model.uuid: ss.model}
	}
	return md
}

// closeWith queues Metadata and a close frame, once, behind everything already queued; the
// reader then waits briefly for the client's close reply. It reports whether this call
// closed the session.
func (ss *session) closeWith(code int, reason string) bool {
	ss.wmu.Lock()
	if ss.closeSent || ss.dropped {
		ss.wmu.Unlock()
		return false
	}
	ss.hmu.Lock()
	md := ss.metadata()
	ss.hmu.Unlock()
	b, _ := json.Marshal(md)
	due := time.Now().Add(ss.srv.cfg.ResultsDelay)
	ss.closeSent = true
	ss.enqueueLocked(outMsg{due: due, v: md, b: b}, outMsg{due: due, close: true, code: code, reason: reason})
	ss.wmu.Unlock()
	ss.update(func(si *SessionInfo) { si.CloseCode, si.CloseReason = code, reason })
	ss.log.Info("closing session", "code", code, "reason", reason)
	return true
}

func (ss *session) deadline() time.Time {
	cfg := &ss.srv.cfg
	var d time.Time
	if cfg.IdleTimeout > 0 {
		d = time.Now().Add(cfg.IdleTimeout)
	}
	if cfg.NoAudioTimeout > 0 && !ss.gotAudio {
		na := ss.info.Started.Add(cfg.NoAudioTimeout)
		if d.IsZero() || na.Before(d) {
			d = na
		}
	}
	return d
}

func (ss *session) isClosing() bool {
	ss.wmu.Lock()
	defer ss.wmu.Unlock()
	return ss.closeSent || ss.dropped
}

// run is the read loop; it returns when the connection is over.
func (ss *session) run() {
	defer ss.finish()
	for {
		if !ss.waitUnpaused() {
			return
		}
		closing := ss.isClosing()
		if !closing {
			_ = ss.conn.SetReadDeadline(ss.deadline())
			// A fault may have closed the session since: keep the close grace.
			if closing = ss.isClosing(); closing {
				_ = ss.conn.SetReadDeadline(time.Now().Add(closeGrace + ss.srv.cfg.ResultsDelay + writeTimeout))
			}
		}
		mt, data, err := ss.conn.ReadMessage()
		if err != nil {
			ss.readFailed(err, closing)
			return
		}
		if ss.isClosing() {
			continue // draining until the client's close reply
		}
		switch mt {
		case websocket.TextMessage:
			ss.handleText(data)
		case websocket.BinaryMessage:
			ss.handleBinary(data)
		}
	}
}

func (ss *session) waitUnpaused() bool {
	for {
		ss.srv.mu.Lock()
		paused, resume := ss.srv.paused, ss.srv.resume
		ss.srv.mu.Unlock()
		if !paused || ss.isClosing() {
			return true
		}
		_ = ss.conn.SetReadDeadline(time.Time{})
		select {
		case <-resume:
		case <-ss.killc:
			return false
		case <-ss.srv.done:
			return false
		}
	}
}

func (ss *session) readFailed(err error, closing bool) {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		ss.update(func(si *SessionInfo) { si.ClientCloseCode = ce.Code })
		if !closing {
			ss.log.Info("client closed the stream", "code", ce.Code)
		}
		return
	}
	var ne net.Error
	if !closing && errors.As(err, &ne) && ne.Timeout() {
		// The idle timer: no frame from the client in the window. A stream that never got
		// audio is closed as the service does then, with NET-0000.
		if na := ss.srv.cfg.NoAudioTimeout; na > 0 && !ss.gotAudio && time.Since(ss.info.Started) >= na {
			ss.closeWith(1011, ReasonNET0000)
			return
		}
		ss.closeWith(1011, ReasonNET0001)
		return
	}
	if !closing {
		ss.log.Info("connection lost", "err", err)
	}
}

func (ss *session) finish() {
	// A queued close (CloseStream, idle timer, DATA-0000) is written before the socket
	// closes; anything else still queued is for a client that has gone.
	if ss.isClosing() {
		t := time.NewTimer(ss.srv.cfg.ResultsDelay + writeTimeout + closeGrace)
		select {
		case <-ss.writerDone:
		case <-t.C:
		case <-ss.srv.done:
		}
		t.Stop()
	}
	ss.kill()
	<-ss.writerDone
	_ = ss.conn.Close()
	ss.update(func(si *SessionInfo) {
		ss.srv.streams-- // srv.mu is held
		si.Closed = true
		si.Ended = time.Now()
	})
	ss.srv.mu.Lock()
	si := ss.info
	ss.srv.mu.Unlock()
	ss.log.Info("session ended", "audio_seconds", round3(si.AudioSeconds), "close_code", si.CloseCode,
		"client_close_code", si.ClientCloseCode, "dropped", si.Dropped, "finals", si.Finals)
}

// controlMsg is a client text message.
type controlMsg struct {
	Type string `json:"type"`
}

// parseControl classifies a client text message: KeepAlive, Finalize, CloseStream, or an
// error description for anything else.
func parseControl(b []byte) (string, error) {
	var m controlMsg
	if err := json.Unmarshal(b, &m); err != nil {
		return "", fmt.Errorf("could not parse the text message as JSON: %v", err)
	}
	switch m.Type {
	case "KeepAlive", "Finalize", "CloseStream":
		return m.Type, nil
	case "":
		return "", errors.New("text message has no type")
	}
	return "", fmt.Errorf("unknown message type %q", m.Type)
}

func (ss *session) handleText(b []byte) {
	kind, err := parseControl(b)
	if err != nil {
		ss.update(func(si *SessionInfo) { si.BadText++ })
		ss.log.Debug("bad text message", "err", err)
		ss.send(errorMsg{Type: "Error", Description: "Failed to process the text message.", Message: err.Error(), Variant: "INVALID_MESSAGE"})
		return
	}
	switch kind {
	case "KeepAlive":
		ss.update(func(si *SessionInfo) { si.KeepAlives++ })
	case "Finalize":
		ss.update(func(si *SessionInfo) { si.Finalizes++ })
		if ss.tr != nil {
			ss.tr.finalize(true, false)
		}
	case "CloseStream":
		ss.update(func(si *SessionInfo) { si.CloseStreams++ })
		ss.endOfStream()
	}
}

func (ss *session) endOfStream() {
	if ss.tr != nil {
		ss.tr.finalize(false, true)
	}
	ss.closeWith(websocket.CloseNormalClosure, "")
}

func (ss *session) handleBinary(b []byte) {
	if len(b) == 0 {
		ss.update(func(si *SessionInfo) { si.EmptyBinary++ })
		ss.endOfStream()
		return
	}
	ss.hmu.Lock()
	ss.hash.Write(b)
	ss.hmu.Unlock()
	if !ss.gotAudio {
		ss.gotAudio = true
		ss.firstAud = time.Now()
	}
	samples, err := ss.decode(b)
	if err == nil && ss.tr != nil { // nil while a container header is incomplete
		ss.tr.addSamples(samples)
		ss.hmu.Lock()
		ss.samples, ss.rate, ss.channels = ss.tr.an.samples, ss.tr.an.rate, ss.format.Channels
		ss.hmu.Unlock()
	}
	ss.srv.mu.Lock()
	ss.info.AudioBytes += int64(len(b))
	ss.info.AudioMessages++
	if ss.tr != nil {
		ss.info.AudioSeconds = ss.tr.an.seconds()
	}
	dropNow := ss.srv.dropAfter > 0 && ss.info.AudioBytes >= ss.srv.dropAfter
	if dropNow {
		ss.srv.dropAfter = 0
	}
	ss.srv.notifyLocked()
	ss.srv.mu.Unlock()
	if dropNow {
		ss.drop()
		return
	}
	if err != nil {
		ss.log.Info("undecodable audio", "err", err)
		ss.closeWith(websocket.ClosePolicyViolation, ReasonDATA0000)
		return
	}
	ss.pace()
}

// pace enforces the realtime limit by not reading the next message before its time.
func (ss *session) pace() {
	f := ss.srv.cfg.RealtimeLimit
	if f <= 0 || ss.tr == nil {
		return
	}
	allowed := time.Duration(ss.tr.an.seconds()/f*float64(time.Second)) - realtimeBurst
	if wait := allowed - time.Since(ss.firstAud); wait > 0 {
		ss.srv.sleep(wait, ss.killc)
	}
}

// decode turns one binary message into mono samples, or fails as the service's DATA-0000.
func (ss *session) decode(b []byte) ([]float32, error) {
	if ss.format == nil {
		// No encoding: the service sniffs a container. Only WAV is decoded here; its header
		// may arrive over several messages.
		ss.header = append(ss.header, b...)
		h := ss.header
		if !bytes.HasPrefix(h, []byte("RIFF")) && !(len(h) < 4 && bytes.HasPrefix([]byte("RIFF"), h)) {
			return nil, errors.New("no encoding given and the audio has no container header")
		}
		r := bytes.NewReader(h)
		wr, err := audio.NewWAVReader(r)
		if err != nil {
			if len(h) < maxHeader && errors.Is(err, audio.ErrNotWAV) && truncatedHeader(h) {
				return nil, nil // wait for the rest of the header
			}
			return nil, fmt.Errorf("container header: %w", err)
		}
		f := wr.Format
		ss.format = &f
		ss.header = nil
		ss.startTranscriber()
		b = h[len(h)-r.Len():]
	} else if ss.opts.Encoding != "" {
		if looksLikeJSON(b) {
			return nil, errors.New("binary message is JSON text, not audio")
		}
		if len(b)%ss.format.BlockAlign() != 0 {
			return nil, fmt.Errorf("%d bytes is not a whole number of %d-byte samples", len(b), ss.format.BlockAlign())
		}
	}
	if len(ss.carry) > 0 {
		b = append(ss.carry, b...)
		ss.carry = nil
	}
	block := ss.format.BlockAlign()
	if rem := len(b) % block; rem != 0 {
		ss.carry = append([]byte(nil), b[len(b)-rem:]...)
		b = b[:len(b)-rem]
	}
	ss.mono = decodeMono(ss.mono[:0], b, *ss.format)
	return ss.mono, nil
}

// maxHeader bounds how much audio is buffered waiting for a complete WAV header.
const maxHeader = 64 << 10

// truncatedHeader reports whether parsing h as a WAV header failed because h ended (the
// parser wanted more bytes), rather than on its content.
func truncatedHeader(h []byte) bool {
	r := &endReader{r: bytes.NewReader(h)}
	_, err := audio.NewWAVReader(r)
	return err != nil && r.ended
}

// endReader notes whether a reader was asked for more than it had.
type endReader struct {
	r     *bytes.Reader
	ended bool
}

func (e *endReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if n < len(p) {
		e.ended = true
	}
	return n, err
}

// looksLikeJSON catches a control message sent as a binary frame (a binary KeepAlive),
// which the service tries to decode as audio and rejects.
func looksLikeJSON(b []byte) bool {
	t := bytes.TrimSpace(b)
	return len(t) >= 2 && t[0] == '{' && t[len(t)-1] == '}' && json.Valid(t)
}

// decodeMono mixes interleaved PCM (whole sample frames) down to mono in [-1, 1].
func decodeMono(dst []float32, b []byte, f audio.WAVFormat) []float32 {
	bps := f.BitsPerSample / 8
	block := f.BlockAlign()
	if block == 0 {
		return dst
	}
	inv := 1 / float32(f.Channels)
	for off := 0; off+block <= len(b); off += block {
		var sum float32
		for c := 0; c < f.Channels; c++ {
			sum += sampleAt(b[off+c*bps:off+(c+1)*bps], f)
		}
		dst = append(dst, sum*inv)
	}
	return dst
}

func sampleAt(b []byte, f audio.WAVFormat) float32 {
	switch {
	case f.Float && f.BitsPerSample == 32:
		v := math.Float32frombits(binary.LittleEndian.Uint32(b))
		if v != v || v > 1 || v < -1 {
			return 0
		}
		return v
	case f.Float:
		v := float32(math.Float64frombits(binary.LittleEndian.Uint64(b)))
		if v != v || v > 1 || v < -1 {
			return 0
		}
		return v
	case f.BitsPerSample == 8:
		return (float32(b[0]) - 128) / 128
	case f.BitsPerSample == 16:
		return float32(int16(binary.LittleEndian.Uint16(b))) / 32768
	case f.BitsPerSample == 24:
		return float32(int32(uint32(b[0])<<8|uint32(b[1])<<16|uint32(b[2])<<24)>>8) / 8388608
	default:
		return float32(int32(binary.LittleEndian.Uint32(b))) / 2147483648
	}
}
