package dgemu

import (
	"bytes"
	"io"
	"net/http"
	"strings"
)

// Answer is an injected raw answer to a pre-recorded request, for what a proxy or a
// misbehaving service may send with a success status: a body that is not JSON, a
// callback acknowledgement, an empty channel list, a body too large to hold. The request
// body is read and discarded first. The body sent is Body, then FillBytes copies of
// FillByte (streamed, never held in memory), then Tail.
type Answer struct {
	Status    int // default 200
	Body      []byte
	FillBytes int64
	FillByte  byte
	Tail      []byte
}

// AnswerRequests queues raw answers: the next len(as) pre-recorded requests get them, in
// order (after any FailRequests refusals queued before them have been used).
func (s *Server) AnswerRequests(as ...Answer) {
	s.mu.Lock()
	s.answers = append(s.answers, as...)
	s.mu.Unlock()
}

func (s *Server) nextAnswer() *Answer {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.answers) == 0 {
		return nil
	}
	a := s.answers[0]
	s.answers = s.answers[1:]
	return &a
}

// writeAnswer drains the request and sends a.
func writeAnswer(w http.ResponseWriter, r *http.Request, reqID string, a *Answer) (status int, n int64) {
	n, _ = io.Copy(io.Discard, r.Body)
	status = a.Status
	if status == 0 {
		status = http.StatusOK
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("dg-request-id", reqID)
	w.WriteHeader(status)
	_, _ = w.Write(a.Body)
	if a.FillBytes > 0 {
		chunk := bytes.Repeat([]byte{a.FillByte}, 64<<10)
		for left := a.FillBytes; left > 0; {
			k := min(left, int64(len(chunk)))
			if _, err := w.Write(chunk[:k]); err != nil {
				return status, n
			}
			left -= k
		}
	}
	_, _ = w.Write(a.Tail)
	return status, n
}

// callbackRequested: with a callback URL the service transcribes asynchronously and
// answers at once with only {"request_id"} (OpenAPI ListenV1AcceptedResponse). The
// emulator answers the same way and never calls the URL: it makes no outbound requests.
func callbackRequested(r *http.Request) bool {
	return strings.TrimSpace(r.URL.Query().Get("callback")) != ""
}

func writeAccepted(w http.ResponseWriter, reqID string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, `{"request_id":"`+reqID+`"}`+"\n")
}
