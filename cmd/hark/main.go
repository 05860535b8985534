// Command hark is the edge audio agent: it captures a microphone, gates speech locally,
// streams it to Deepgram and publishes transcripts over MQTT. This package only wires:
// it parses flags, loads configuration, builds the parts and runs them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"

	"github.com/hark-audio/hark/internal/logging"
	"github.com/hark-audio/hark/internal/version"
)

// command is one subcommand. It returns an error to be printed; errUsage means the
// usage text was already printed.
type command struct {
	name  string
	usage string
	run   func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var errUsage = errors.New("usage")

// exitError carries a specific exit status.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func commands() []command {
	return []command{
		{"run", "run [--config FILE]\trun the daemon", cmdRun},
		{"vad", "vad FILE.wav [--config FILE] [--csv]\trun the VAD and gate over a WAV file", cmdVAD},
		{"devices", "devices [--backend B]\tlist capture devices", cmdDevices},
		{"transcribe", "transcribe FILE [--json]\ttranscribe a file through the pre-recorded endpoint", cmdTranscribe},
		{"config", "config check [--config FILE]\tvalidate a configuration and print the effective one", cmdConfig},
		{"version", "version\tprint version, commit, Go version and target", cmdVersion},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: hark COMMAND [flags]\n\ncommands:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range commands() {
		fmt.Fprintln(tw, "  "+c.usage)
	}
	tw.Flush()
}

func main() {
	os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
}

// Main runs one command and returns the process exit status. SIGINT and SIGTERM cancel the
// context; each command decides what a graceful stop means for it.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		var ee *exitError
		switch {
		case err == nil:
			return 0
		case errors.Is(err, errUsage), errors.Is(err, flag.ErrHelp):
			return 2
		case errors.As(err, &ee):
			fmt.Fprintln(stderr, logging.LinePrefix(stderr, slog.LevelError)+"hark:", ee.err)
			return ee.code
		default:
			fmt.Fprintln(stderr, logging.LinePrefix(stderr, slog.LevelError)+"hark:", err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "hark: unknown command %q\n", args[0])
	usage(stderr)
	return 2
}

func cmdVersion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fmt.Fprintln(stdout, version.String())
	return nil
}

// newFlags returns a flag set that reports errors to stderr and does not exit.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("hark "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseInterspersed parses flags that may come before or after positional arguments
// (hark vad FILE --csv), returning the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func lookupEnv(k string) string { v, _ := os.LookupEnv(k); return v }
