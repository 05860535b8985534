package mqttlink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"unicode/utf8"
)

// Handler answers one remote request: op is the topic remainder after <base>/request/ (for
// example "config/get", "config/set", "mute") and body is the payload: a JSON object ("{}"
// for a payload of white space; "transaction" is left in it and echoed by this package; a
// zero-byte message is no request and never reaches the handler), or, for a
// payload that is not a JSON object, the payload itself with surrounding white space
// removed: a plain command such as ON, OFF, true or false, as Home Assistant and Node-RED
// send them (valid UTF-8, never starting with '{'). The returned data becomes the
// response's "data"; a non-nil error becomes status "error" with err.Error() as "error", so
// it must not carry secrets, nor Go internals.
//
// Requests run one at a time, in arrival order, on a goroutine of this package (never on
// paho's), so a handler may block briefly; ctx ends when the Client is closed.
type Handler func(ctx context.Context, op string, body []byte) (data any, err error)

// IsPlain reports whether a request body is a plain payload rather than a JSON object.
func IsPlain(body []byte) bool { return len(body) == 0 || body[0] != '{' }

// MaxRequestBytes bounds a request payload; a larger one is answered with an error.
const MaxRequestBytes = 256 << 10

const maxOpBytes = 128

var (
	errBusy      = errors.New("busy: too many requests waiting; retry later")
	errNoHandler = errors.New("remote requests are not handled by this device")
)

// retainedError refuses a request that arrived with the retain flag. The broker keeps a
// retained request and hands it over again at every (re)subscription, so it would run again
// at every reconnection, undoing whatever changed since. MQTT 3.1.1 flags a retained
// message only when it is replayed at subscription time, not when it is delivered live, so
// a retained request published while the device is connected runs once and is refused
// from the next connection on (docs/mqtt.md): the answer says how to clear it.
type retainedError struct{ topic string }

func (e *retainedError) Error() string {
	return fmt.Sprintf("retained request refused: it would run again at every reconnection. "+
		"Send requests with retain off, and clear this one: mosquitto_pub -r -n -t '%s'", e.topic)
}

type request struct {
	op          string
	transaction json.RawMessage // nil when absent; echoed byte for byte
	body        []byte
}

// parseRequest checks a request's envelope. On error the request still carries whatever
// transaction could be read, so the error response can be correlated.
func parseRequest(op string, payload []byte) (request, error) {
	req := request{op: op}
	switch {
	case op == "":
		return req, errors.New("missing operation: publish to <base>/request/<op>")
	case len(op) > maxOpBytes:
		return req, fmt.Errorf("operation longer than %d bytes", maxOpBytes)
	case !utf8.ValidString(op):
		return req, errors.New("operation is not valid UTF-8")
	case len(payload) > MaxRequestBytes:
		return req, fmt.Errorf("request of %d bytes exceeds the limit of %d", len(payload), MaxRequestBytes)
	}
	trimmed := bytes.TrimSpace(payload)
	if len(trimmed) == 0 {
		// White space only: a request without fields. (A zero-byte message never gets here:
		// the client ignores it, as the clearing of a retained message.)
		req.body = []byte("{}")
		return req, nil
	}
	if trimmed[0] != '{' {
		// A plain payload (ON, true, ...): the handler decides what it means for its op.
		if !utf8.Valid(trimmed) {
			return req, errors.New("malformed request: payload is neither a JSON object nor UTF-8 text")
		}
		req.body = trimmed
		return req, nil
	}
	// A map, not a struct: encoding/json matches struct fields case-insensitively and
	// "Transaction" is not our key.
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &fields); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return req, fmt.Errorf("malformed request: invalid JSON at byte %d", se.Offset)
		}
		return req, errors.New("malformed request: payload is not valid JSON")
	}
	if t, ok := fields["transaction"]; ok {
		req.transaction = t
	}
	req.body = trimmed
	return req, nil
}

// buildResponse writes {"transaction": ..., "status": ..., "error": ..., "data": ...} by
// hand so that the transaction is echoed exactly as it arrived (encoding/json would compact
// and re-escape a RawMessage).
func buildResponse(transaction json.RawMessage, data any, err error) []byte {
	var dataJSON []byte
	if err == nil && data != nil {
		b, merr := json.Marshal(data)
		if merr != nil {
			err = fmt.Errorf("encode response data: %v", merr)
		} else {
			dataJSON = b
		}
	}
	var buf bytes.Buffer
	buf.WriteByte('{')
	if transaction != nil {
		buf.WriteString(`"transaction":`)
		buf.Write(transaction)
		buf.WriteByte(',')
	}
	if err != nil {
		msg, _ := json.Marshal(err.Error()) // a string always marshals
		buf.WriteString(`"status":"error","error":`)
		buf.Write(msg)
	} else {
		buf.WriteString(`"status":"ok"`)
		if dataJSON != nil {
			buf.WriteString(`,"data":`)
			buf.Write(dataJSON)
		}
	}
	buf.WriteByte('}')
	return buf.Bytes()
}

// serve answers one request synchronously: envelope, handler (panics recovered), response.
// retainedTopic is the request's topic when it arrived with the retain flag, else "".
func serve(ctx context.Context, h Handler, op string, payload []byte, retainedTopic string) (resp []byte, err error) {
	req, err := parseRequest(op, payload)
	if err == nil && retainedTopic != "" {
		err = &retainedError{topic: retainedTopic}
	}
	if err == nil && h == nil {
		err = errNoHandler
	}
	if err != nil {
		return buildResponse(req.transaction, nil, err), err
	}
	data, err := callHandler(ctx, h, req)
	return buildResponse(req.transaction, data, err), err
}

type panicError struct {
	v     any
	stack []byte
}

func (p *panicError) Error() string { return "internal error while handling the request" }

func callHandler(ctx context.Context, h Handler, req request) (data any, err error) {
	defer func() {
		if v := recover(); v != nil {
			data, err = nil, &panicError{v: v, stack: debug.Stack()}
		}
	}()
	return h(ctx, req.op, req.body)
}

// isJSONObject reports whether b is one valid JSON object (the shape of every payload this
// package queues).
func isJSONObject(b []byte) bool {
	b = bytes.TrimSpace(b)
	return len(b) > 0 && b[0] == '{' && json.Valid(b)
}
