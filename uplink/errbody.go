package uplink

import (
	"encoding/json"

	"github.com/hark-audio/hark/internal/redact"
)

// ParseErrorBody reads a Deepgram error body, whatever its shape: err_code or error_code
// (503s use the latter), err_msg, message or reason, and request_id. A body that is not
// JSON (a gateway's HTML page) yields empty fields. The results went through redact.Text
// (bounded, no control characters, no credentials even when the body echoes the
// request's Authorization header), since they end up in logs and MQTT state; secrets are
// hidden wherever they appear.
func ParseErrorBody(b []byte, secrets ...string) (code, msg, requestID string) {
	var j struct {
		ErrCode   string `json:"err_code"`
		ErrorCode string `json:"error_code"`
		ErrMsg    string `json:"err_msg"`
		Message   string `json:"message"`
		Reason    string `json:"reason"`
		RequestID string `json:"request_id"`
	}
	if json.Unmarshal(b, &j) != nil {
		return "", "", ""
	}
	code = j.ErrCode
	if code == "" {
		code = j.ErrorCode
	}
	msg = j.ErrMsg
	if msg == "" {
		msg = j.Message
	}
	if msg == "" {
		msg = j.Reason
	}
	return redact.Text(code, 100, secrets...), redact.Text(msg, 500, secrets...), redact.Text(j.RequestID, 100, secrets...)
}
