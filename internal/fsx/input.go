package fsx

import (
	"context"
	"os"
	"syscall"
	"time"
)

// OpenInput opens a file to read audio from, obeying ctx in every blocking step: the open
// and every read after it. A regular file opens as usual. A FIFO (or another special file
// whose open may wait) is opened on a goroutine of its own, since open(2) of a FIFO blocks
// until a writer appears; if ctx ends first, OpenInput unblocks that open by opening the
// FIFO for writing itself, closes what it got and returns ctx's error, leaving nothing
// behind. The file returned is set non-blocking, so its reads wait in the runtime's poller:
// Close (or CloseOnDone) ends a read that waits for a silent writer.
func OpenInput(ctx context.Context, path string) (*os.File, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().IsRegular() || fi.IsDir() {
		return os.Open(path)
	}
	type result struct {
		f   *os.File
		err error
	}
	ch := make(chan result, 1)
	go func() {
		f, err := os.Open(path)
		ch <- result{f, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, r.err
		}
		return pollable(r.f)
	case <-ctx.Done():
	}
	// Unblock the open: a FIFO's reader waits for a writer, so be one for a moment. Until
	// the goroutine is inside open(2) there is no reader, and a non-blocking open for
	// writing fails with ENXIO: try again until the open has returned.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if w, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
		select {
		case r := <-ch:
			if r.f != nil {
				r.f.Close()
			}
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
}

// pollable makes f's reads wait in the runtime's poller (so Close ends them) by setting
// its descriptor non-blocking and wrapping it again. A FIFO then reads as before: data, or
// io.EOF once every writer has gone.
func pollable(f *os.File) (*os.File, error) {
	fd, err := syscall.Dup(int(f.Fd()))
	name := f.Name()
	f.Close()
	if err != nil {
		return nil, &os.PathError{Op: "dup", Path: name, Err: err}
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return nil, &os.PathError{Op: "setnonblock", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), name), nil
}

// CloseOnDone closes f when ctx ends, which ends a read waiting on it (for a file from
// OpenInput). The returned stop function undoes it, as context.AfterFunc's.
func CloseOnDone(ctx context.Context, f *os.File) (stop func() bool) {
	return context.AfterFunc(ctx, func() { f.Close() })
}
