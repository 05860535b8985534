// Package dgemu is a local emulator of Deepgram's speech-to-text API, faithful enough that
// hark's live uplink, its batch uploader and the official Deepgram Go SDK work against it
// unchanged. Users run it (cmd/dgemu) to try hark without an account; every test that needs
// a Deepgram peer runs it in-process:
//
//	srv := dgemu.NewServer(dgemu.Config{Utterances: []string{"Hello there.", "Goodbye."}})
//	defer srv.Close()
//	// live: srv.URL() is ws://127.0.0.1:PORT/v1/listen; pre-recorded: srv.HTTPURL()
//
// # What it models
//
// Live (GET /v1/listen, WebSocket): auth as the service takes it, "Authorization: Token KEY"
// for an API key or "Bearer JWT" for a token from POST /v1/auth/grant (scheme
// case-insensitive), or the "token, KEY" / "bearer, JWT" subprotocols answered with
// "token" / "bearer" (auth.go); the model/language table of Deepgram's docs, other pairs
// refused with 400 "Bad Request" (models.go); a dg-request-id header on every response;
// refusals as plain HTTP
// with a dg-error header and a JSON body {"err_code","err_msg","request_id"} (503 uses
// "error_code"); query validation (encoding/sample_rate/channels, model, keywords vs nova-3,
// utterance_end_ms without interim_results, repeated single-valued options); Results,
// Metadata, UtteranceEnd, SpeechStarted and Error messages in the service's shapes;
// KeepAlive, Finalize, CloseStream and the legacy empty binary frame; the idle timer
// (Metadata then 1011 with the service's NET-0001 sentence); 1008 DATA-0000 for audio that
// cannot be linear16 (odd byte counts, JSON sent as binary, headerless audio without
// encoding); an optional realtime limit (Config.RealtimeLimit), concurrency limit
// (Config.MaxStreams, 429) and service latency (Config.ResultsDelay).
//
// Pre-recorded (POST /v1/listen): WAV bodies (any PCM format audio.NewWAVReader reads) or
// raw linear16 with encoding and sample_rate; the 200 response shape with file-relative
// word times and "utterances" when utterances=true; 400 "failed to process audio: corrupt
// or unsupported data"; 411 for chunked uploads with Config.RequireContentLength; 413 past
// Config.MaxBodyBytes; JSON {"url"} bodies are refused (no outbound fetch); callback
// requests answered with {"request_id"} only, as the service does; AnswerRequests injects
// raw 2xx answers (not JSON, empty channels, huge bodies). Package dgemu/spec checks all of
// it against Deepgram's published AsyncAPI and OpenAPI documents.
//
// # Transcripts
//
// Everything is a function of the bytes received, never of wall-clock time: all times are
// seconds of audio received on that connection (or in that file). An energy detector marks
// each 10 ms window speech or silence (Config.SpeechThresholdDBFS); speech separated by less
// than Config.UtteranceGap is one utterance. Each utterance takes the next fixture text
// (Config.Utterances; live and pre-recorded each have their own server-wide cursor; a
// pre-recorded request can bring its own with the Dgemu-Utterance header) and its words are
// spread over the utterance's speech windows. Without fixture text an utterance is described
// ("speech one point two seconds").
//
// Live results: an interim (is_final false) every Config.InterimInterval of audio with
// interim_results=true, empty ones in silence included; a final covering the audio since the
// previous final when an utterance has ended and `endpointing` ms of silence have passed
// (speech_final true; endpointing below UtteranceGap acts as UtteranceGap; with
// endpointing=false the final comes at the utterance's end with speech_final false);
// UtteranceEnd once utterance_end_ms of audio have passed since the last final word;
// SpeechStarted at each utterance's first speech window with vad_events=true. Finalize sends
// what is buffered as a final with from_finalize true (nothing when no audio arrived since
// the previous final). CloseStream finishes, sends the last final, Metadata, and closes 1000.
//
// # Faults and observation
//
// Tests call these at any time: RefuseHandshakes and FailRequests (queued statuses with
// optional Retry-After; Times repeats one), SetHandshakeDelay, DropSessions, DropAfterAudio,
// StopReading / ResumeReading, CloseSessions, FailNET0000, SetUtterances. Sessions and
// Requests return snapshots (request id, query, auth form, audio bytes and seconds,
// KeepAlive/Finalize/CloseStream counts, results sent, transcripts, close codes); WaitSession,
// WaitRequest and Changed let a test wait for "closed with 1011" or "three KeepAlives seen"
// without sleeping:
//
//	si, err := srv.WaitSession(ctx, func(si dgemu.SessionInfo) bool { return si.Closed })
//	// si.CloseCode == 1011, si.CloseReason == dgemu.ReasonNET0001
//
// The close reasons are the service's sentences: NET-0001 and NET-0000 appear only as
// "dpgr.am/net0001" / "dpgr.am/net0000" inside them, so clients must match the code
// case-insensitively without relying on the dash. docs/emulator.md lists where the emulator
// knowingly differs from the service.
package dgemu
