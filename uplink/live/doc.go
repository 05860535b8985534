// Package live streams hark's speech segments to Deepgram's live endpoint
// (wss://…/v1/listen) and turns the answers into final utterances with capture wall-clock
// times. It is the heart of the product: no word may be lost and none published twice.
//
// # Wiring (the agent)
//
//	u := live.New(live.Config{
//		URL: cfg.Deepgram.URL, APIKey: key, // key from config.Secret; never logged
//		Options:   live.Query(cfg.Deepgram), // raw linear16/16 kHz/mono always added
//		KeepAlive: ..., IdleClose: ..., ConnectTimeout: ..., ResultTimeout: ...,
//		Interim:   cfg.Deepgram.InterimResults,
//		Logger:    log.With("component", "live"),
//	}, live.Handler{Utterance: ..., Interim: ..., Unconfirmed: ..., Event: ..., State: ...})
//	go u.Run(ctx)              // owns every connection goroutine
//	u.SegmentStart(t); u.Frame(f); u.SegmentEnd(t) // from the audio loop; never block
//	u.SetOptions(live.Query(newCfg.Deepgram))     // applies from the next stream
//	u.Close(ctx)               // graceful stop; returns after Run has returned
//
// Handler callbacks run on Run's goroutine, one at a time; they must not block.
//
// # Goroutines
//
// Run's goroutine owns all state: segments, the backlog, the stream clock and the
// transcript assembly. Each connection has exactly one writer goroutine (audio, KeepAlive
// from its own timer, Finalize, CloseStream, pings; a write deadline per message) and one
// reader goroutine (read deadline extended by pongs and messages). Run talks to the writer
// through a bounded queue (full = the service stopped reading = the connection is dead)
// and waits for both goroutines before a new connection starts. Dialling happens in a
// short-lived goroutine whose result Run receives.
//
// # Streams
//
// A stream is opened lazily at speech onset; frames queue (bounded by MaxBacklog) while
// it connects, so the gate's pre-roll covers the connection time. After IdleClose without
// speech the stream is closed gracefully (CloseStream, drain until Metadata and the close
// frame) and reopened at the next onset. Failures back off exponentially with jitter; the
// backoff resets once results flow or the stream stayed up StableAfter. Refusals 400-403
// (and other 4xx) are configuration or account problems: state "refused" with the dg-error
// text, retried after RefusedRetry (minutes); 429 honours Retry-After, capped; 5xx and
// network errors are transient.
//
// # Time and assembly
//
// Deepgram's times are seconds of audio received on one connection; gated silence is not
// sent and a new connection restarts at 0. Every frame sent is noted against the stream
// clock (a checkpoint at each segment start and wherever capture time drifts), and every
// returned time, each word's individually, is mapped back to capture wall-clock time.
// Finals are joined into an utterance published on speech_final, on UtteranceEnd, or when
// the Finalize sent at a segment's end is answered (from_finalize) or FinalizeTimeout
// passes.
//
// # Nothing lost, nothing twice
//
// The audio of every segment sent on a stream is kept until finals cover it (a final's
// start+duration, an answered Finalize, or Metadata after CloseStream). When a stream dies,
// the finals already received are published first, then exactly the audio they do not cover
// goes to Handler.Unconfirmed (one Segment per contiguous run), for the spool to transcribe.
// A segment that cannot be streamed (refused, a long backoff, connecting too slowly, stopping)
// goes to Unconfirmed whole.
package live
