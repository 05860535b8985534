package dgemu

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/hark-audio/hark/audio"
)

// FixtureHeader is a request header the pre-recorded endpoint reads as a per-request
// fixture: each value (the header may repeat) is the text of one utterance of the uploaded
// file, in order. When present, the server-wide cursor is not consumed.
const FixtureHeader = "Dgemu-Utterance"

// msgCorrupt is the service's answer to audio it cannot decode (err_code "Bad Request").
const msgCorrupt = "Bad Request: failed to process audio: corrupt or unsupported data"

func (s *Server) serveREST(w http.ResponseWriter, r *http.Request, reqID string) {
	log := s.log.With("request_id", reqID)
	ri := &RequestInfo{RequestID: reqID, Query: cloneValues(r.URL.Query()), ContentType: r.Header.Get("Content-Type")}
	s.mu.Lock()
	s.requests = append(s.requests, ri)
	s.requests = trimClosed(s.requests, func(x *RequestInfo) bool { return x.Done })
	delay := s.hsDelay
	var inj *Refusal
	if len(s.restFaults) > 0 {
		inj = &s.restFaults[0]
		s.restFaults = s.restFaults[1:]
	}
	s.notifyLocked()
	s.mu.Unlock()
	status := http.StatusOK
	defer func() {
		s.mu.Lock()
		ri.Status = status
		ri.Done = true
		s.notifyLocked()
		s.mu.Unlock()
		log.Info("pre-recorded request", "status", status, "bytes", ri.BodyBytes)
	}()
	fail := func(rf Refusal) {
		status = rf.Status
		refuse(w, reqID, rf)
	}
	if !s.sleep(delay, r.Context().Done()) {
		status = 0
		return
	}
	if inj != nil {
		// Drain a little so the client sees the response rather than a reset.
		_, _ = io.CopyN(io.Discard, r.Body, 1<<20)
		fail(*inj)
		return
	}
	if a := s.nextAnswer(); a != nil {
		var n int64
		status, n = writeAnswer(w, r, reqID, a)
		s.mu.Lock()
		ri.BodyBytes = n
		s.mu.Unlock()
		return
	}
	if _, ok := s.authenticate(r, false); !ok {
		fail(Refusal{Status: http.StatusUnauthorized})
		return
	}
	opts, qerr := parseOptions(r.URL.Query(), false, s.cfg.StrictQuery)
	if qerr != nil {
		fail(Refusal{Status: qerr.status, Code: qerr.code, Message: qerr.msg})
		return
	}
	if s.denied(opts.Model) {
		fail(Refusal{Status: http.StatusForbidden})
		return
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == "application/json" {
		var body struct {
			URL string `json:"url"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil || body.URL == "" {
			fail(Refusal{Status: http.StatusBadRequest, Code: "INVALID_JSON", Message: "the JSON body must be {\"url\": ...}"})
			return
		}
		// The emulator never fetches remote content: it must work offline and must not
		// be a way to make requests on a user's behalf.
		fail(Refusal{Status: http.StatusBadRequest, Code: "REMOTE_CONTENT_ERROR", Message: "dgemu does not fetch remote URLs; upload the audio instead"})
		return
	}
	if callbackRequested(r) {
		n, _ := io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
		s.mu.Lock()
		ri.BodyBytes = n
		s.mu.Unlock()
		writeAccepted(w, reqID)
		return
	}
	if r.ContentLength < 0 && s.cfg.RequireContentLength {
		fail(Refusal{Status: http.StatusLengthRequired})
		return
	}
	if r.ContentLength > s.cfg.MaxBodyBytes {
		fail(Refusal{Status: http.StatusRequestEntityTooLarge})
		return
	}
	var texts []string
	perRequest := r.Header.Values(FixtureHeader)
	next := func() (string, bool) {
		if perRequest != nil {
			if len(texts) >= len(perRequest) {
				return "", false
			}
			texts = append(texts, perRequest[len(texts)])
			return texts[len(texts)-1], true
		}
		return s.nextFixture(false)
	}
	body := http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	resp, n, err := transcribeBody(body, opts, &s.cfg, reqID, next)
	s.mu.Lock()
	ri.BodyBytes = n
	s.mu.Unlock()
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			fail(Refusal{Status: http.StatusRequestEntityTooLarge})
			return
		}
		log.Info("corrupt audio", "err", err)
		fail(Refusal{Status: http.StatusBadRequest, Code: "Bad Request", Message: msgCorrupt})
		return
	}
	s.mu.Lock()
	ri.Transcript = resp.Results.Channels[0].Alternatives[0].Transcript
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(resp)
}

// transcribeBody reads a whole upload (WAV, or raw with encoding and sample_rate),
// streaming it through the analyzer, and builds the pre-recorded response. It returns the
// number of body bytes read.
func transcribeBody(body io.Reader, o *Options, cfg *Config, reqID string, next func() (string, bool)) (*restResponse, int64, error) {
	h := sha256.New()
	cr := &countingReader{r: io.TeeReader(body, h)}
	br := bufio.NewReaderSize(cr, 64<<10)
	var f audio.WAVFormat
	var src io.Reader
	if o.Encoding != "" {
		f = audio.WAVFormat{SampleRate: o.SampleRate, Channels: o.Channels, BitsPerSample: 16}
		if o.Encoding == "linear32" {
			f.BitsPerSample = 32
		}
		src = br
	} else if head, _ := br.Peek(audio.SniffLen); isCompressed(head) {
		// The service decodes FLAC, MP3, Ogg, MP4, WebM... The emulator has no decoder for
		// them: it reads the body whole (size and hash as for any upload) and answers for a
		// nominal utterance in place of its audio (docs/emulator.md, known differences).
		if _, err := io.Copy(io.Discard, br); err != nil {
			return nil, cr.n, err
		}
		f = audio.WAVFormat{SampleRate: audio.SampleRate, Channels: 1, BitsPerSample: 16}
		src = bytes.NewReader(nominalUtterance())
	} else {
		wr, err := audio.NewWAVReader(br)
		if err != nil {
			_, _ = io.Copy(io.Discard, br)
			return nil, cr.n, err
		}
		f = wr.Format
		src = wr
	}
	mi, _ := knownModel(o.Model)
	meta := resultsMeta{RequestID: reqID, ModelInfo: mi, ModelUUID: mi.uuid}
	t := newTranscriber(o, f.SampleRate, cfg, next, nil, meta)
	block := f.BlockAlign()
	buf := make([]byte, block*4096)
	var mono []float32
	for {
		n, err := io.ReadFull(src, buf)
		n -= n % block
		if n > 0 {
			mono = decodeMono(mono[:0], buf[:n], f)
			t.addSamples(mono)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return nil, cr.n, err
		}
	}
	// Whatever follows the data chunk (LIST chunks...) still counts for the hash and the
	// size limit.
	if _, err := io.Copy(io.Discard, br); err != nil {
		return nil, cr.n, err
	}
	if t.an.samples == 0 {
		return nil, cr.n, errors.New("no audio samples")
	}
	t.finalize(false, true)

	var words []word
	var utts []restUtterance
	for _, u := range t.closed {
		words = append(words, u.words...)
		if len(u.words) == 0 {
			continue
		}
		utts = append(utts, restUtterance{
			Start: u.words[0].Start, End: u.words[len(u.words)-1].End,
			Confidence: avgConfidence(u.words), Channel: 0,
			Transcript: t.transcript(u.words), Words: u.words,
			ID: uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "%s/%d", reqID, u.startWin)).String(),
		})
	}
	if words == nil {
		words = []word{}
	}
	resp := &restResponse{
		Metadata: restMetadata{
			TransactionKey: transactionKey, RequestID: reqID, SHA256: hex.EncodeToString(h.Sum(nil)),
			Created: time.Now().UTC().Format(createdLayout), Duration: round3(t.an.seconds()),
			Channels: f.Channels, Models: []string{mi.uuid}, ModelInfo: map[string]modelInfo{mi.uuid: mi},
			Extra: o.Extra,
		},
		Results: restResults{Channels: []restChannel{{Alternatives: []alternative{{
			Transcript: strings.TrimSpace(t.transcript(words)), Confidence: avgConfidence(words), Words: words,
		}}}}},
	}
	if o.Utterances {
		if utts == nil {
			utts = []restUtterance{}
		}
		resp.Results.Utterances = &utts
	}
	return resp, cr.n, nil
}

// isCompressed reports whether an upload's first bytes are the signature of a compressed
// container the service accepts.
func isCompressed(head []byte) bool {
	c, ok := audio.SniffContainer(head)
	return ok && c.ContentType != "audio/wav"
}

// nominalUtterance is what the emulator hears in a compressed upload: 0.5 s of silence,
// 1.5 s of a 300 Hz tone at -10 dBFS, 0.5 s of silence (16 kHz mono linear16), one
// utterance for the fixture's next line.
func nominalUtterance() []byte {
	const rate = audio.SampleRate
	pcm := make([]int16, rate*5/2)
	for i := rate / 2; i < rate*2; i++ {
		pcm[i] = int16(0.316 * 32767 * math.Sin(2*math.Pi*300*float64(i)/rate))
	}
	return audio.AppendPCM(nil, pcm)
}

func avgConfidence(ws []word) float64 {
	if len(ws) == 0 {
		return 0
	}
	c := 0.0
	for _, w := range ws {
		c += w.Confidence
	}
	return round4(c / float64(len(ws)))
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
