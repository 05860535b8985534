package live

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"time"

	"github.com/hark-audio/hark/audio"
)

// WebSocket opcodes (RFC 6455 §5.2).
const (
	opText   = 0x1
	opBinary = 0x2
	opClose  = 0x8
	opPing   = 0x9
	opPong   = 0xA
)

// frameWriter writes client frames (FIN set, masked, RFC 6455 §5.2-5.3) straight to the
// socket from one buffer it owns. gorilla/websocket does the handshake and all reading; its
// client-side WriteMessage allocates a writer per message, which would be the only
// allocation on the path from the gate to the socket, so the connection's writer goroutine
// frames its own messages here, and it is the only code that ever writes to the socket
// (gorilla's ping and close handlers are replaced so that they never write).
//
// Audio samples are encoded to little-endian linear16 and masked in one pass into the
// buffer: one copy from the captured frame to the socket's write call.
type frameWriter struct {
	nc  net.Conn
	buf []byte
}

// maxHeader is a client frame header with a 64-bit length and the masking key.
const maxHeader = 14

func newFrameWriter(nc net.Conn) *frameWriter {
	return &frameWriter{nc: nc, buf: make([]byte, maxHeader+audio.FrameBytes)}
}

// header writes a frame header for n payload bytes and returns where the payload goes and
// the masking key.
func (w *frameWriter) header(op byte, n int) (int, uint32) {
	if need := maxHeader + n; cap(w.buf) < need {
		w.buf = make([]byte, need)
	}
	b := w.buf[:cap(w.buf)]
	b[0] = 0x80 | op
	i := 2
	switch {
	case n < 126:
		b[1] = 0x80 | byte(n)
	case n <= 0xFFFF:
		b[1] = 0x80 | 126
		binary.BigEndian.PutUint16(b[2:], uint16(n))
		i = 4
	default:
		b[1] = 0x80 | 127
		binary.BigEndian.PutUint64(b[2:], uint64(n))
		i = 10
	}
	// The masking key only has to be unpredictable to the network path (it defeats cache
	// poisoning of proxies), not secret.
	key := rand.Uint32()
	binary.LittleEndian.PutUint32(b[i:], key)
	return i + 4, key
}

func (w *frameWriter) write(n int, deadline time.Time) error {
	if err := w.nc.SetWriteDeadline(deadline); err != nil {
		return err
	}
	_, err := w.nc.Write(w.buf[:n])
	return err
}

// audio writes one binary message of samples as linear16. It never writes an empty one
// (that would end the stream): the caller skips empty frames.
func (w *frameWriter) audio(samples []int16, deadline time.Time) error {
	n := 2 * len(samples)
	off, key := w.header(opBinary, n)
	p := w.buf[off : off+n]
	// Two samples are four payload bytes, exactly one masking key: little-endian samples
	// XOR the key read little-endian is the byte-wise masking of the spec.
	i := 0
	for ; i+1 < len(samples); i += 2 {
		v := uint32(uint16(samples[i])) | uint32(uint16(samples[i+1]))<<16
		binary.LittleEndian.PutUint32(p[2*i:], v^key)
	}
	if i < len(samples) {
		binary.LittleEndian.PutUint16(p[2*i:], uint16(samples[i])^uint16(key))
	}
	return w.write(off+n, deadline)
}

// message writes one message of another kind (text, ping, pong, close) with payload p.
func (w *frameWriter) message(op byte, p []byte, deadline time.Time) error {
	off, key := w.header(op, len(p))
	var k [4]byte
	binary.LittleEndian.PutUint32(k[:], key)
	dst := w.buf[off : off+len(p)]
	for i, c := range p {
		dst[i] = c ^ k[i&3]
	}
	return w.write(off+len(p), deadline)
}
