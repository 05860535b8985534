package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/hark-audio/hark/capture"
)

// cmdDevices lists capture devices. It exits 1 when no device is found (or no backend
// works), so scripts can check for a microphone with `hark devices >/dev/null`.
func cmdDevices(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("devices", stdout, stderr)
	backend := fs.String("backend", "auto", "audio backend: "+strings.Join(capture.Backends, ", "))
	if pos, err := parseInterspersed(fs, args); err != nil || len(pos) > 0 {
		return usageError(fs, err)
	}
	devs, err := capture.ListDevices(ctx, *backend)
	if err != nil {
		return &exitError{1, fmt.Errorf("list capture devices (backend %s): %w", *backend, err)}
	}
	if len(devs) == 0 {
		return &exitError{1, errors.New("no capture devices found (backend " + *backend + "). " +
			"Is a microphone plugged in, and is the user in the 'audio' group? " +
			"(`arecord -l` lists ALSA capture hardware)")}
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEFAULT\tBACKEND\tID\tNAME")
	for _, d := range devs {
		mark := ""
		if d.Default {
			mark = "*"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", mark, d.Backend, d.ID, d.Name)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "\nSet capture.device to an id or to part of a name; \"\" uses the default (*).")
	return nil
}
