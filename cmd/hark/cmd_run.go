package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hark-audio/hark/agent"
	"github.com/hark-audio/hark/config"
	"github.com/hark-audio/hark/internal/logging"
	"github.com/hark-audio/hark/internal/service"
	"github.com/hark-audio/hark/internal/version"
)

// cmdRun is the daemon: load and validate the configuration (a bad one exits non-zero
// naming the key, before anything starts), build the agent, run it until SIGTERM/SIGINT or
// the end of a file input, and reload the configuration on SIGHUP.
func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("run", stdout, stderr)
	file := fs.String("config", defaultConfigFile(), "configuration file (YAML); default $HARK_CONFIG")
	if pos, err := parseInterspersed(fs, args); err != nil || len(pos) > 0 {
		return usageError(fs, err)
	}
	oneProcessor()
	opts := config.Options{File: *file}
	loaded, err := config.Load(opts)
	if err != nil {
		return &exitError{exConfig, fmt.Errorf("invalid configuration: %w", err)}
	}
	if err := agent.Check(loaded, nil); err != nil {
		return &exitError{exConfig, fmt.Errorf("invalid configuration: %w", err)}
	}
	log, level := logging.New(loaded.Config.Log.Format, loaded.Config.Log.Level, stderr)
	for _, w := range loaded.Warnings {
		log.Warn(w)
	}
	notifier := service.New(log.With("component", "systemd"))
	defer notifier.Close()

	a, err := agent.New(agent.Options{Loaded: loaded, Logger: log, LevelVar: level, Stdout: stdout,
		Stdin: os.Stdin, Notifier: notifier, Version: version.Version})
	if err != nil {
		return err
	}

	// SIGHUP reloads the file: RELOADING=1 (with MONOTONIC_USEC) then READY=1, the protocol
	// systemd 252 understands without Type=notify-reload.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	// SIGABRT is how systemd's watchdog ends a stalled hark (WatchdogSignal=). Go's default
	// for it, a dump of every goroutine and exit status 2, put hundreds of lines in the
	// journal and read as "status=2/INVALIDARGUMENT"; hark says what stalled instead, at
	// err, stops as gracefully as the stall allows and exits EX_SOFTWARE.
	abrt := make(chan os.Signal, 1)
	signal.Notify(abrt, syscall.SIGABRT)
	defer signal.Stop(abrt)
	var watchdogStop atomic.Bool
	reloadDone := make(chan struct{})
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer close(reloadDone)
		for {
			select {
			case <-runCtx.Done():
				return
			case <-abrt:
				watchdogStop.Store(true)
				log.Error("stopped by the service manager (SIGABRT: the systemd watchdog saw no progress); stopping",
					"stalled", strings.Join(notifier.Stalled(), ","), "watchdog", notifier.WatchdogInterval())
				if log.Enabled(context.Background(), slog.LevelDebug) {
					buf := make([]byte, 1<<20)
					log.Debug("goroutines at the watchdog stop", "stacks", string(buf[:runtime.Stack(buf, true)]))
				}
				// A stall may also hold up the graceful stop: it gets a bounded time, well
				// inside systemd's wait before SIGKILL.
				time.AfterFunc(abortGrace, func() {
					log.Error("graceful stop after the watchdog did not finish; exiting", "waited", abortGrace)
					os.Exit(exSoftware)
				})
				cancel()
				return
			case <-hup:
				notifier.Reloading()
				if err := a.Reload(opts); err != nil {
					log.Error("reload failed; keeping the running configuration", "err", err)
				}
				notifier.Ready()
			}
		}
	}()
	err = a.Run(runCtx)
	cancel()
	<-reloadDone
	var ce *agent.ConfigError
	if errors.Is(err, agent.ErrNoAPIKey) || errors.As(err, &ce) {
		return &exitError{exConfig, err}
	}
	if err == nil && watchdogStop.Load() {
		return &exitError{exSoftware, errors.New("stopped by the systemd watchdog")}
	}
	return err
}

// oneProcessor runs the daemon's goroutines on one processor (GOMAXPROCS=1) unless the
// environment sets GOMAXPROCS. The daemon's work fits in a small fraction of one core, and
// more processors only cost: at every hand-off between goroutines the Go runtime wakes an
// idle thread to look for work, and the processor that miniaudio's capture thread holds
// after each callback into Go keeps the runtime's monitor thread polling every 20 us until
// it takes the processor back (golang/go#57103). Measured with the null capture backend on
// the 2-core build machine: the monitor thread woke 240 times a second with GOMAXPROCS=2
// and 24 times with 1, and the process's CPU per second fell from 7.6 ms to 3.7 ms (the
// rest is miniaudio's own polling; BENCHMARKS.md). Latency does not suffer: nothing on the
// audio path runs for long, and the capture ring holds 5 s.
func oneProcessor() {
	if _, set := os.LookupEnv("GOMAXPROCS"); !set {
		runtime.GOMAXPROCS(1)
	}
}

// exSoftware is EX_SOFTWARE from sysexits.h: the exit status after the watchdog stopped a
// stalled hark (systemd shows "status=70/SOFTWARE" and restarts it).
const exSoftware = 70

// abortGrace bounds the graceful stop after the watchdog's SIGABRT.
const abortGrace = 10 * time.Second

// exConfig is EX_CONFIG from sysexits.h. The unit lists it in RestartPreventExitStatus: a
// configuration problem is not fixed by restarting, and restart loops hide the message.
const exConfig = 78
