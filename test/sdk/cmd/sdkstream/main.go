// Command sdkstream is the peer of hark's cost benchmark (bench/cost): the official
// Deepgram Go SDK's live client streaming every 100 ms frame of a WAV file at real time,
// the way an application built on the SDK would, so that hark's CPU and memory can be
// quoted as a ratio of it, measured in the same run.
//
//	sdkstream --url ws://127.0.0.1:PORT --file speech.wav
//
// It writes one frame each time one is due (a timer to the frame's due time, not a poll),
// reading it from the file just before, sends CloseStream after the last one, and waits
// (bounded) for the service to close the stream. It prints the number of final transcripts received on stderr and exits 1 when
// the stream could not be opened.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	msginterfaces "github.com/deepgram/deepgram-go-sdk/v3/pkg/api/listen/v1/websocket/interfaces"
	interfaces "github.com/deepgram/deepgram-go-sdk/v3/pkg/client/interfaces"
	listen "github.com/deepgram/deepgram-go-sdk/v3/pkg/client/listen"

	"github.com/hark-audio/hark/audio"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "sdkstream:", err)
		os.Exit(1)
	}
}

func run() error {
	liveURL := flag.String("url", "", "live endpoint, ws://host:port (the path is the SDK's own /v1/listen)")
	file := flag.String("file", "", "WAV file, 16 kHz mono 16-bit")
	key := flag.String("key", "bench-key", "API key (the emulator accepts any)")
	flag.Parse()
	u, err := url.Parse(*liveURL)
	if err != nil || u.Host == "" || *file == "" {
		return fmt.Errorf("usage: sdkstream --url ws://host:port --file FILE.wav")
	}
	f, err := os.Open(*file)
	if err != nil {
		return err
	}
	defer f.Close()
	wr, err := audio.NewWAVReader(f)
	if err != nil {
		return fmt.Errorf("%s: %w", *file, err)
	}
	if wr.Format.SampleRate != audio.SampleRate || wr.Format.Channels != 1 || wr.Format.BitsPerSample != 16 {
		return fmt.Errorf("%s: want 16 kHz mono 16-bit, got %+v", *file, wr.Format)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := &recorder{closed: make(chan struct{})}
	opts := &interfaces.LiveTranscriptionOptions{
		// What hark asks for by default (live.Query with the default configuration).
		Model: "nova-3", Language: "en", Encoding: "linear16", SampleRate: audio.SampleRate, Channels: 1,
		Punctuate: true, SmartFormat: true, Endpointing: "300",
	}
	dg, err := listen.NewWSUsingCallback(ctx, *key, &interfaces.ClientOptions{Host: u.Scheme + "://" + u.Host}, opts, rec)
	if err != nil {
		return fmt.Errorf("new client: %w", err)
	}
	if !dg.ConnectWithCancel(ctx, cancel, 1) {
		return fmt.Errorf("could not connect to %s", u.Host)
	}
	start := time.Now()
	t := time.NewTimer(time.Hour)
	buf := make([]byte, audio.FrameBytes)
	frames := 0
	for ; ; frames++ {
		n, err := io.ReadFull(wr, buf)
		if n == 0 {
			if err != nil && err != io.EOF {
				return fmt.Errorf("%s: %w", *file, err)
			}
			break
		}
		// Frame i is complete, as if captured live, at start + (i+1) * 100 ms.
		t.Reset(time.Until(start.Add(time.Duration(frames+1) * audio.FrameDuration)))
		<-t.C
		if _, err := dg.Write(buf[:n]); err != nil {
			return fmt.Errorf("write: %w", err)
		}
	}
	// CloseStream sent directly, then wait for the close: the SDK's Stop would close the
	// socket before the last results arrive (see test/sdk).
	if err := dg.WriteJSON(map[string]string{"type": "CloseStream"}); err != nil {
		return fmt.Errorf("close stream: %w", err)
	}
	select {
	case <-rec.closed:
	case <-time.After(10 * time.Second):
		fmt.Fprintln(os.Stderr, "sdkstream: no close from the service within 10 s")
	}
	dg.Stop()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	fmt.Fprintf(os.Stderr, "sdkstream: %d frames sent, %d finals: %s\n", frames, len(rec.finals), strings.Join(rec.finals, " | "))
	return nil
}

// recorder keeps the final transcripts, as an application would.
type recorder struct {
	mu       sync.Mutex
	finals   []string
	closed   chan struct{}
	closeOne sync.Once
}

func (r *recorder) Open(*msginterfaces.OpenResponse) error { return nil }
func (r *recorder) Message(m *msginterfaces.MessageResponse) error {
	if m.IsFinal && len(m.Channel.Alternatives) > 0 && m.Channel.Alternatives[0].Transcript != "" {
		r.mu.Lock()
		r.finals = append(r.finals, m.Channel.Alternatives[0].Transcript)
		r.mu.Unlock()
	}
	return nil
}
func (r *recorder) Metadata(*msginterfaces.MetadataResponse) error           { return nil }
func (r *recorder) SpeechStarted(*msginterfaces.SpeechStartedResponse) error { return nil }
func (r *recorder) UtteranceEnd(*msginterfaces.UtteranceEndResponse) error   { return nil }
func (r *recorder) Close(*msginterfaces.CloseResponse) error {
	r.closeOne.Do(func() { close(r.closed) })
	return nil
}
func (r *recorder) Error(e *msginterfaces.ErrorResponse) error {
	fmt.Fprintf(os.Stderr, "sdkstream: service error: %s: %s\n", e.ErrMsg, e.Description)
	return nil
}
func (r *recorder) UnhandledEvent([]byte) error { return nil }
