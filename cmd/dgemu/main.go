// Command dgemu runs hark's local Deepgram emulator (package dgemu): a live WebSocket and
// pre-recorded endpoint on /v1/listen, so hark can be tried without an account.
//
//	dgemu --fixture testdata/demo/sample.txt --ready-file /tmp/dgemu.url
//
// It logs one line per session and request (request id, close code) to stderr and stops
// cleanly on SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/hark-audio/hark/internal/fsx"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hark-audio/hark/dgemu"
)

func main() {
	os.Exit(Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// Main runs the emulator until ctx is cancelled or a signal arrives, and returns the exit
// status.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, args, stdout, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "dgemu:", err)
		return 2
	}
	return 0
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dgemu", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8765", "listen address (host:port; port 0 picks a free one)")
	key := fs.String("key", "", "the only API key accepted (a dummy test key; default: any non-empty key). $DGEMU_API_KEY is read when unset")
	keyFile := fs.String("key-file", "", "read the accepted API key from this file instead of --key")
	fixture := fs.String("fixture", "", "file with one utterance text per line, handed out in order")
	reference := fs.String("reference", "", "reference recording FILE.wav (16 kHz mono) with FILE.json beside it: utterances found in it get their own words, in any order")
	idle := fs.Duration("idle-timeout", 10*time.Second, "close a live stream (1011 NET-0001) after this long without a client frame; 0 disables")
	noAudio := fs.Duration("no-audio-timeout", 0, "close a live stream that never received audio after this long (1011 NET-0000); 0 disables")
	rtl := fs.Float64("realtime-limit", 1.25, "accept live audio at most this many times real time; 0 = unlimited")
	gap := fs.Duration("utterance-gap", 500*time.Millisecond, "silence that separates utterances (and the shortest endpointing)")
	thresh := fs.Float64("speech-threshold", -45, "RMS level in dBFS above which a 10 ms window is speech")
	interim := fs.Duration("interim-interval", time.Second, "audio between interim results")
	delay := fs.Duration("results-delay", 0, "delay every live server frame by this much (service latency)")
	maxStreams := fs.Int("max-streams", 50, "concurrent live streams before handshakes get 429; 0 = unlimited")
	quiet := quietFlags(fs)
	strict := fs.Bool("strict-query", false, "refuse unknown query parameters with 400 (default: ignore them)")
	needLen := fs.Bool("require-content-length", false, "refuse pre-recorded uploads without Content-Length (chunked) with 411")
	deny := fs.String("deny-models", "", "comma-separated models refused with 403")
	printURL := fs.Bool("print-url", false, "print the live URL on stdout once listening")
	readyFile := fs.String("ready-file", "", "write the live URL to this file once listening (atomically)")
	verbose := fs.Bool("v", false, "debug logging")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: dgemu [flags]\n\nRuns a local Deepgram emulator on /v1/listen (live WebSocket and pre-recorded POST).\n\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	apiKey := *key
	if *keyFile != "" {
		b, err := os.ReadFile(*keyFile)
		if err != nil {
			return fmt.Errorf("read key file: %w", err)
		}
		apiKey = strings.TrimSpace(string(b))
	}
	if apiKey == "" {
		apiKey = os.Getenv("DGEMU_API_KEY")
	}
	var lines []string
	if *fixture != "" {
		var err error
		if lines, err = dgemu.ReadFixture(*fixture); err != nil {
			return err
		}
	}
	var ref *dgemu.Reference
	if *reference != "" {
		var err error
		if ref, err = dgemu.LoadReference(*reference, strings.TrimSuffix(*reference, ".wav")+".json"); err != nil {
			return err
		}
	}
	idleTimeout := *idle
	if idleTimeout == 0 {
		idleTimeout = -1
	}
	cfg := dgemu.Config{
		Addr: *addr, APIKey: apiKey, Utterances: lines, Reference: ref, IdleTimeout: idleTimeout,
		NoAudioTimeout: *noAudio, RealtimeLimit: *rtl, UtteranceGap: *gap,
		SpeechThresholdDBFS: *thresh, InterimInterval: *interim, StrictQuery: *strict,
		RequireContentLength: *needLen, ResultsDelay: *delay, MaxStreams: *maxStreams, Logger: log,
	}
	if *deny != "" {
		cfg.DeniedModels = strings.Split(*deny, ",")
	}
	q, err := quiet()
	if err != nil {
		return err
	}
	cfg.Quiet = q
	srv, err := dgemu.Listen(cfg)
	if err != nil {
		return err
	}
	defer srv.Close()
	log.Info("listening", "live", srv.URL(), "prerecorded", srv.HTTPURL(), "fixture_lines", len(lines),
		"auth", map[bool]string{true: "one key", false: "any key"}[apiKey != ""])
	if *readyFile != "" {
		if err := fsx.WriteFile(*readyFile, []byte(srv.URL()+"\n"), 0o644); err != nil {
			return fmt.Errorf("write ready file: %w", err)
		}
	}
	if *printURL {
		fmt.Fprintln(stdout, srv.URL())
	}
	<-ctx.Done()
	log.Info("shutting down")
	srv.Close()
	return nil
}
