// Package live streams hark's speech segments to Deepgram's live endpoint (wss://…/v1/listen)
// and publishes each segment's transcript once, whole, with capture wall-clock times; a
// segment the live stream cannot carry goes to the spool whole. No word may be lost,
// repeated, or split across two transcripts.
//
// # Wiring (the agent)
//
//	u := live.New(live.Config{
//		URL: cfg.Deepgram.URL, APIKey: key, // key from config.Secret; never logged
//		Options:   live.Query(cfg.Deepgram), // raw linear16/16 kHz/mono always added
//		KeepAlive: ..., IdleClose: ..., ConnectTimeout: ...,
//		Interim:   cfg.Deepgram.InterimResults,
//		Logger:    log.With("component", "live"),
//	}, live.Handler{Utterance: ..., Interim: ..., Unconfirmed: ..., Event: ..., State: ...})
//	go u.Run(ctx)              // owns every connection goroutine
//	u.SegmentStart(t); u.Frame(f); u.SegmentEnd(t) // from the audio loop; never block
//	u.SetOptions(live.Query(newCfg.Deepgram))     // applies from the next stream
//	u.Close(ctx)               // graceful stop; returns after Run has returned
//
// # Three parts
//
// The ledger (ledger.go) is all the bookkeeping, with no goroutines and time passed in:
// segments and their frames, which connection carries which segment, the stream clock of
// each connection and its map back to capture time, what the finals confirmed, and the one
// outcome of every segment (published live from one connection, or spooled whole). Its
// rules are listed and justified at the top of ledger.go and specified by table tests and
// a property/fuzz test (ledger_test.go, ledger_fuzz_test.go).
//
// The supervisor (uplink.go) holds one explicit phase — idle, connecting, connected,
// closing, backoff (or refused), stopped — and step derives its one timer from it (the
// retry time, the idle close, the close deadline) and from the ledger's deadlines (a
// Finalize's grace, a segment's wait for a connection). Its goroutine, Run, dials, takes
// the connections' events, and calls the Handler, never with a lock held.
//
// Each connection (conn.go) has exactly one writer goroutine and one reader goroutine. The
// writer pulls what to send from the ledger (frames in order, a Finalize after each
// segment, CloseStream after everything on a planned close) and frames it itself
// (frame.go); it also sends pings and KeepAlives from one timer, the only wake-up during
// silence. The reader parses messages and reports them with their connection, so whatever
// a replaced connection still says is ignored; Run waits for both goroutines before the
// next connection.
//
// # The path of a frame
//
// Frame (on the agent's audio goroutine) appends the frame to its segment in the ledger
// under a mutex and wakes the writer; the writer takes it, encodes and masks the samples in
// one pass into its buffer and writes them: two goroutines, no queue (the ledger keeps the
// segment's frames anyway, for a replay or the spool), one copy, no allocation
// (TestFrameToSocketAllocs).
//
// # Liveness
//
// Only the transport says a connection is dead: no pong or message within PongWait
// (pings every PingInterval), or a write that misses its deadline. A service that says
// nothing about silence or leaves a Finalize unanswered is healthy. A planned close (idle,
// stop) sends CloseStream behind all queued audio and reads until Metadata and the close
// frame (bounded by CloseTimeout); only a dead peer's socket is closed abruptly.
//
// # Refusals and retries
//
// Failures back off exponentially with jitter (internal/backoff); the backoff resets once
// results flow or a connection stayed up StableAfter. Refusals 400-403 (and other 4xx) are
// configuration or account problems: state "refused" with the dg-error text, retried after
// RefusedRetry (minutes), and speech goes to the spool meanwhile; 429 honours Retry-After,
// capped; 5xx and network errors are transient.
package live
