package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/hark-audio/hark/capture"
)

// cmdDevices lists capture devices: the default device first (marked *), then the sound
// cards' devices, then PulseAudio monitors of outputs; ALSA plugin pseudo-devices (rate
// converters, mixers, routes to other sound systems) only with --all. It exits 1 when no
// device is found (or no backend works), so scripts can check for a microphone with
// `hark devices >/dev/null`.
func cmdDevices(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("devices", stdout, stderr)
	backend := fs.String("backend", "auto", "audio backend: "+strings.Join(capture.Backends, ", "))
	all := fs.Bool("all", false, "also list ALSA plugin pseudo-devices (lavrate, speexrate, jack, oss, upmix, ...)")
	if pos, err := parseInterspersed(fs, args); err != nil || len(pos) > 0 {
		return usageError(fs, err)
	}
	devs, err := capture.ListDevices(ctx, *backend)
	if err != nil {
		return &exitError{1, fmt.Errorf("list capture devices (backend %s): %w", *backend, err)}
	}
	devs, hidden := arrangeDevices(devs, *all)
	hiddenNote := ""
	if len(hidden) > 0 {
		hiddenNote = fmt.Sprintf("%d ALSA plugin device(s) not shown (%s); `hark devices --all` lists them", len(hidden), strings.Join(hidden, ", "))
	}
	if len(devs) == 0 {
		msg := "no capture devices found (backend " + *backend + "). " +
			"Is a microphone plugged in, and is the user in the 'audio' group? " +
			"(`arecord -l` lists ALSA capture hardware)"
		if hiddenNote != "" {
			msg += "; " + hiddenNote
		}
		return &exitError{1, fmt.Errorf("%s", msg)}
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEFAULT\tBACKEND\tID\tNAME")
	marked := false
	for _, d := range devs {
		mark := ""
		if d.Default {
			mark, marked = "*", true
		}
		name := d.Name
		if d.Monitor {
			name += " (monitor of an output)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", mark, d.Backend, d.ID, name)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(stdout)
	if hiddenNote != "" {
		fmt.Fprintln(stdout, hiddenNote+".")
	}
	if marked {
		fmt.Fprintln(stdout, `Set capture.device to an id or to part of a name; "" uses the default device (marked *).`)
	} else {
		fmt.Fprintln(stdout, `Set capture.device to an id or to part of a name; "" uses the system's default device.`)
	}
	return nil
}

// arrangeDevices orders devices for a person choosing a microphone, and drops ALSA plugin
// pseudo-devices unless all (their ids are returned). Only the default of the backend that
// capture would use for "" (the first backend listed, for auto) keeps its mark: auto picks
// that backend's default, not the others'.
func arrangeDevices(devs []capture.Device, all bool) (shown []capture.Device, hidden []string) {
	primary := ""
	for _, d := range devs {
		if !d.Plugin {
			primary = d.Backend
			break
		}
	}
	for _, d := range devs {
		if d.Plugin && !all {
			hidden = append(hidden, d.ID)
			continue
		}
		d.Default = d.Default && d.Backend == primary
		shown = append(shown, d)
	}
	rank := func(d capture.Device) int {
		switch {
		case d.Default:
			return 0
		case d.Plugin:
			return 3
		case d.Monitor:
			return 2
		}
		return 1
	}
	slices.SortStableFunc(shown, func(a, b capture.Device) int { return rank(a) - rank(b) })
	return shown, hidden
}
