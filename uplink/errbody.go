package uplink

import (
	"encoding/json"
	"strings"
)

// ParseErrorBody reads a Deepgram error body, whatever its shape: err_code or error_code
// (503s use the latter), err_msg, message or reason, and request_id. A body that is not
// JSON (a gateway's HTML page) yields empty fields. The results are bounded and stripped of
// control characters, since they end up in logs and MQTT state.
func ParseErrorBody(b []byte) (code, msg, requestID string) {
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
	return Clean(code, 100), Clean(msg, 500), Clean(j.RequestID, 100)
}

// Clean bounds and strips control characters from text that ends up in logs.
func Clean(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > max {
		s = s[:max] + "..."
	}
	return strings.TrimSpace(s)
}
