package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hark-audio/hark/audio"
	"github.com/hark-audio/hark/config"
	"github.com/hark-audio/hark/internal/fsx"
	"github.com/hark-audio/hark/uplink/batch"
	"github.com/hark-audio/hark/uplink/live"
	"golang.org/x/sys/unix"
)

// Exit statuses of `hark transcribe`, one per failure class so scripts can tell a
// retryable failure from one that needs a person.
const (
	exitTranscribeOther       = 1  // configuration invalid, no API key, unexpected error
	exitTranscribeInput       = 3  // the file cannot be read or is not a supported WAV
	exitTranscribeAuth        = 10 // 401: the API key was refused
	exitTranscribeCredits     = 11 // 402: the project has no credits
	exitTranscribePermission  = 12 // 403: the project may not use this model/feature
	exitTranscribeRejected    = 13 // 400/415/other 4xx: corrupt audio or a bad option
	exitTranscribeTooLarge    = 14 // 413: the file is too large
	exitTranscribeRateLimited = 15 // 429 after retries
	exitTranscribeServer      = 16 // 5xx after retries
	exitTranscribeNetwork     = 17 // no answer: network unreachable, connection refused
	exitTranscribeTimeout     = 18 // an attempt timed out, or 408 after retries
	exitTranscribeInterrupted = 130
)

const transcribeUsage = `usage: hark transcribe FILE [--json] [--config FILE] [--language L] [--model M]
                       [--raw --sample-rate N --channels N --encoding linear16]

Transcribes FILE through Deepgram's pre-recorded endpoint and prints the transcript
(--json: the full response). FILE is an audio file sent as it is, its format recognised
from its contents (not its name): WAV (any PCM or float layout, checked here), FLAC, MP3,
Ogg (Opus, Vorbis), MP4/M4A, WebM, AAC, AIFF or AMR; or, with --raw, headerless audio
described by the flags. An upload of 1 MB or more shows its progress on a terminal.

exit status:
  0 ok             1 config/key/other      2 usage        3 unreadable input
  10 bad API key   11 no credits           12 permission  13 rejected (corrupt audio, bad option)
  14 too large     15 rate limited         16 server error (after retries)
  17 network       18 timeout              130 interrupted
`

// cmdTranscribe implements `hark transcribe`.
func cmdTranscribe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("transcribe", stdout, stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), transcribeUsage) }
	jsonOut := fs.Bool("json", false, "print the full JSON response")
	cfgFile := fs.String("config", defaultConfigFile(), "configuration file")
	raw := fs.Bool("raw", false, "FILE is headerless audio described by --encoding, --sample-rate, --channels")
	rate := fs.Int("sample-rate", 16000, "sample rate of --raw audio")
	channels := fs.Int("channels", 1, "channels of --raw audio")
	encoding := fs.String("encoding", "linear16", "encoding of --raw audio (linear16, mulaw, alaw, ...)")
	language := fs.String("language", "", "language (default: deepgram.language)")
	model := fs.String("model", "", "model (default: deepgram.model)")
	pos, err := parseInterspersed(fs, args)
	if err != nil || len(pos) != 1 {
		return usageError(fs, err)
	}
	path := pos[0]

	l, err := config.Load(config.Options{File: *cfgFile, NoRemote: true})
	if err != nil {
		return &exitError{exitTranscribeOther, fmt.Errorf("invalid configuration: %w", err)}
	}
	cfg := l.Config
	auth, err := config.DeepgramCredential(cfg.Deepgram, nil)
	if err != nil {
		return &exitError{exitTranscribeOther, err}
	}

	opts := prerecordedOptions(cfg.Deepgram)
	if *language != "" {
		opts.Set("language", *language)
	}
	if *model != "" {
		opts.Set("model", *model)
	}
	if *raw {
		if *rate < 1000 || *rate > 768000 || *channels < 1 || *channels > 32 || *encoding == "" {
			fmt.Fprintln(stderr, "hark transcribe: --raw needs a sensible --sample-rate, --channels and --encoding")
			return errUsage
		}
		opts.Set("encoding", *encoding)
		opts.Set("sample_rate", strconv.Itoa(*rate))
		opts.Set("channels", strconv.Itoa(*channels))
	}
	size, err := checkInput(ctx, path, *raw)
	if errors.Is(err, context.Canceled) {
		return transcribeError(err)
	}
	if err != nil {
		return &exitError{exitTranscribeInput, err}
	}

	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c := batch.NewClient(batch.ClientConfig{URL: cfg.Deepgram.PrerecordedURL, APIKey: auth.APIKey, TokenFile: auth.TokenFile, Logger: log})
	defer c.CloseIdleConnections()
	var progress func(sent, total int64)
	var pw *progressWriter
	if isTerminal(stderr) && size >= 1<<20 {
		pw = &progressWriter{w: stderr}
		progress = pw.update
	}
	resp, err := c.TranscribeFile(ctx, path, opts, progress)
	if pw != nil {
		pw.finish()
	}
	if err != nil {
		return transcribeError(err)
	}
	if *jsonOut {
		stdout.Write(resp.Raw)
		if len(resp.Raw) > 0 && resp.Raw[len(resp.Raw)-1] != '\n' {
			fmt.Fprintln(stdout)
		}
		return nil
	}
	text := resp.Transcript()
	if text == "" {
		fmt.Fprintln(stderr, "hark transcribe: no speech recognised")
		return nil
	}
	fmt.Fprintln(stdout, text)
	return nil
}

// checkInput verifies the file locally, so a wrong file fails with a clear message
// instead of a 400 from the service. The container is recognised by its signature; WAV
// files are parsed (any layout audio.NewWAVReader accepts), other containers are the
// service's to decode and are sent as they are.
func checkInput(ctx context.Context, path string, raw bool) (int64, error) {
	// Not os.Open: a FIFO's open waits for a writer, and a signal must still stop it.
	f, err := fsx.OpenInput(ctx, path)
	if errors.Is(err, context.Canceled) {
		return 0, err
	}
	if err != nil {
		return 0, fmt.Errorf("cannot read %s: %w", path, unwrapPath(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("cannot read %s: %w", path, unwrapPath(err))
	}
	if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("%s is not a regular file", path)
	}
	if fi.Size() == 0 {
		return 0, fmt.Errorf("%s is empty", path)
	}
	if raw {
		return fi.Size(), nil
	}
	head := make([]byte, audio.SniffLen)
	n, _ := io.ReadFull(f, head)
	c, ok := audio.SniffContainer(head[:n])
	if !ok {
		return 0, fmt.Errorf("%s is not an audio file hark recognises (%s); for headerless audio use --raw --sample-rate N --channels N", path, audio.Containers)
	}
	if c.ContentType != "audio/wav" {
		return fi.Size(), nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, fmt.Errorf("cannot read %s: %w", path, unwrapPath(err))
	}
	wr, err := audio.NewWAVReader(f)
	if err != nil {
		return 0, fmt.Errorf("%s: %w (for headerless audio use --raw --sample-rate N --channels N)", path, err)
	}
	var buf [1]byte
	if n, _ := wr.Read(buf[:]); n == 0 {
		return 0, fmt.Errorf("%s: the WAV file holds no audio", path)
	}
	return fi.Size(), nil
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// transcribeError turns a failed call into a message a person can act on and the
// documented exit status.
func transcribeError(err error) error {
	var ae *batch.APIError
	var ne *batch.NetError
	switch {
	case errors.Is(err, context.Canceled):
		return &exitError{exitTranscribeInterrupted, errors.New("interrupted")}
	case errors.As(err, &ae):
		detail := ae.Error()
		switch s := ae.Status; {
		case s == 401:
			return &exitError{exitTranscribeAuth, fmt.Errorf("the Deepgram credential was refused (check the key file or DEEPGRAM_API_KEY, or the token file): %s", detail)}
		case s == 402:
			return &exitError{exitTranscribeCredits, fmt.Errorf("the Deepgram project has no credits left: %s", detail)}
		case s == 403:
			return &exitError{exitTranscribePermission, fmt.Errorf("the Deepgram project may not use this model or feature: %s", detail)}
		case s == 413:
			return &exitError{exitTranscribeTooLarge, fmt.Errorf("the file is too large for the pre-recorded endpoint (2 GB limit): %s", detail)}
		case s == 408:
			return &exitError{exitTranscribeTimeout, fmt.Errorf("Deepgram timed out receiving the upload (slow uplink?): %s", detail)}
		case s == 429:
			return &exitError{exitTranscribeRateLimited, fmt.Errorf("rate limited by Deepgram; try again later: %s", detail)}
		case s >= 500:
			return &exitError{exitTranscribeServer, fmt.Errorf("Deepgram server error; try again later: %s", detail)}
		case s == 415 || s == 400 && batch.Classify(err) == batch.ClassBadAudio:
			return &exitError{exitTranscribeRejected, fmt.Errorf("Deepgram could not decode the audio (corrupt or unsupported): %s", detail)}
		case s == 400:
			// Any other 400 is about the request, not the file (an unknown option, a
			// model/language pair the service does not serve...).
			return &exitError{exitTranscribeRejected, fmt.Errorf("Deepgram rejected the request (check model, language and the other deepgram settings): %s", detail)}
		default:
			return &exitError{exitTranscribeRejected, fmt.Errorf("Deepgram rejected the request (check deepgram.prerecorded_url): %s", detail)}
		}
	case errors.Is(err, batch.ErrBadResponse):
		return &exitError{exitTranscribeServer, fmt.Errorf("Deepgram's answer was not a usable transcription: %w", err)}
	case errors.As(err, &ne) && ne.Timeout:
		return &exitError{exitTranscribeTimeout, fmt.Errorf("the upload timed out: %w", err)}
	case errors.As(err, &ne):
		return &exitError{exitTranscribeNetwork, fmt.Errorf("cannot reach Deepgram (network unreachable?): %w", err)}
	}
	return &exitError{exitTranscribeOther, err}
}

// prerecordedOptions builds the query from the deepgram settings that apply to a file: the
// live stream's options (one builder, so extra never overrides hark's keys here either)
// less the live-only ones.
func prerecordedOptions(d config.Deepgram) url.Values {
	return batch.PrerecordedOptions(live.Query(d))
}

// isTerminal reports whether w is a terminal: a file the terminal ioctl answers for. Being
// a character device is not enough (/dev/null is one, and so is a serial port).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// progressWriter draws "uploading 42% (3.1/7.4 MB)" on one terminal line, at most
// five times a second.
type progressWriter struct {
	w     io.Writer
	mu    sync.Mutex
	last  time.Time
	drawn bool
}

func (p *progressWriter) update(sent, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if now := time.Now(); sent < total && now.Sub(p.last) < 200*time.Millisecond {
		return
	} else {
		p.last = now
	}
	fmt.Fprintf(p.w, "\ruploading %3d%% (%.1f/%.1f MB)", sent*100/max(total, 1), float64(sent)/1e6, float64(total)/1e6)
	p.drawn = true
}

func (p *progressWriter) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprint(p.w, "\r"+strings.Repeat(" ", 40)+"\r")
	}
}
