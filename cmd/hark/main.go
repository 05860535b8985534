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
	"strconv"
	"strings"
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
		{"devices", "devices [--backend B] [--all]\tlist capture devices", cmdDevices},
		{"transcribe", "transcribe FILE [--json]\ttranscribe a file through the pre-recorded endpoint", cmdTranscribe},
		{"config", "config check [--config FILE] [--state-dir DIR] [-q]\tvalidate a configuration and print the effective one", cmdConfig},
		{"fleet", "fleet ls|get|set|mute|watch [--device ID | --group NAME | --all]\tconfigure and watch many devices over MQTT", cmdFleet},
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
//
// Help is asked for with -h, --help (or `hark help COMMAND`): the usage goes to stdout once
// and the status is 0. A usage error prints the usage to stderr with status 2.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		if len(args) > 1 && args[0] == "help" {
			return Main([]string{args[1], "--help"}, stdout, stderr)
		}
		usage(stdout)
		return 0
	case "-version", "--version":
		args = []string{"version"}
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		// Signal handling costs a goroutine and system calls at start: only for commands
		// that run long enough to be stopped.
		ctx := context.Background()
		if c.name != "version" {
			var stop context.CancelFunc
			ctx, stop = signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
			defer stop()
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		var ee *exitError
		switch {
		case err == nil, errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
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
	fs := newFlags("version", stdout, stderr)
	if pos, err := parseInterspersed(fs, args); err != nil || len(pos) > 0 {
		return usageError(fs, err)
	}
	fmt.Fprintln(stdout, version.String())
	return nil
}

// newFlags returns the flag set of `hark NAME`: parse errors go to stderr with the usage;
// -h and --help print the usage to stdout (parseInterspersed then returns flag.ErrHelp,
// which Main turns into status 0). The usage starts with the command's line from
// commands(); a command may replace fs.Usage, writing to fs.Output().
func newFlags(name string, stdout, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("hark "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	h := &helpFlag{stdout: stdout}
	fs.Var(h, "h", "show this help")
	fs.Var(h, "help", "show this help")
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "usage: hark %s\n", usageLine(name))
		var flags bool
		fs.VisitAll(func(f *flag.Flag) { flags = flags || (f.Name != "h" && f.Name != "help") })
		if flags {
			fmt.Fprintln(w, "\nflags:")
			printDefaults(fs)
		}
	}
	return fs
}

// usageLine is the synopsis of a command as listed by `hark --help`.
func usageLine(name string) string {
	for _, c := range commands() {
		if syn, _, _ := strings.Cut(c.usage, "\t"); strings.HasPrefix(syn+" ", name+" ") {
			return syn
		}
	}
	return name
}

// printDefaults is flag.PrintDefaults without the -h/--help pair every command has.
func printDefaults(fs *flag.FlagSet) {
	keep := flag.NewFlagSet(fs.Name(), flag.ContinueOnError)
	keep.SetOutput(fs.Output())
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name != "h" && f.Name != "help" {
			keep.Var(f.Value, f.Name, f.Usage)
			keep.Lookup(f.Name).DefValue = f.DefValue
		}
	})
	keep.PrintDefaults()
}

// helpFlag is -h/--help: a boolean flag that records the request, so the usage is printed
// once, to stdout, after parsing (the flag package's own -h prints to the error output).
type helpFlag struct {
	stdout io.Writer
	set    bool
}

func (h *helpFlag) String() string   { return "" }
func (h *helpFlag) IsBoolFlag() bool { return true }
func (h *helpFlag) Set(v string) error {
	b, err := strconv.ParseBool(v)
	h.set = h.set || b
	return err
}

// usageError is what a command returns when its arguments are wrong: flag.ErrHelp (status
// 0) when help was asked for and printed, else errUsage after printing the usage to stderr
// (the flag package has already printed a parse error and the usage).
func usageError(fs *flag.FlagSet, err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	if err == nil {
		fs.Usage()
	}
	return errUsage
}

// parseInterspersed parses flags that may come before or after positional arguments
// (hark vad FILE --csv), returning the positional ones. When -h or --help was given it
// prints the usage to stdout and returns flag.ErrHelp.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if f := fs.Lookup("h"); f == nil {
		return pos, nil
	} else if h, ok := f.Value.(*helpFlag); ok && h.set {
		out := fs.Output()
		fs.SetOutput(h.stdout)
		fs.Usage()
		fs.SetOutput(out)
		return nil, flag.ErrHelp
	}
	return pos, nil
}

func lookupEnv(k string) string { v, _ := os.LookupEnv(k); return v }
