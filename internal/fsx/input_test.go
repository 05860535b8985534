package fsx

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hark-audio/hark/internal/leaktest"
)

func fifo(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "in.fifo")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	return p
}

// A FIFO with no writer: the open waits, and ends with the context, leaving no goroutine.
func TestOpenInputFIFOCancelled(t *testing.T) {
	leaktest.Check(t)
	p := fifo(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		f, err := OpenInput(ctx, p)
		if f != nil {
			f.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("open returned %v with no writer", err)
	case <-time.After(50 * time.Millisecond): // it must still be waiting: a bound, not a sync
	}
	cancel()
	select {
	case err := <-done:
		if err != context.Canceled {
			t.Fatalf("got %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("OpenInput ignored the cancelled context")
	}
}

// A FIFO with a writer: data, then a read waiting on a silent writer ends with Close,
// and EOF when the writer goes.
func TestOpenInputFIFOReads(t *testing.T) {
	leaktest.Check(t)
	p := fifo(t)
	w, err := os.OpenFile(p, os.O_RDWR, 0) // never blocks on Linux
	if err != nil {
		t.Fatal(err)
	}
	f, err := OpenInput(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("abc"))
	buf := make([]byte, 8)
	if n, err := f.Read(buf); err != nil || string(buf[:n]) != "abc" {
		t.Fatalf("read %q %v", buf[:n], err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	CloseOnDone(ctx, f)
	read := make(chan error, 1)
	go func() { _, err := f.Read(buf); read <- err }()
	cancel()
	select {
	case err := <-read:
		if err == nil {
			t.Fatal("read on a closed input succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a read waiting on a silent writer ignored Close")
	}
	w.Close()

	// EOF once every writer has gone.
	w2, _ := os.OpenFile(p, os.O_RDWR, 0)
	f2, err := OpenInput(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	w2.Write([]byte("x"))
	w2.Close()
	if b, err := io.ReadAll(f2); err != nil || string(b) != "x" {
		t.Fatalf("read all %q %v", b, err)
	}
}

func TestOpenInputRegular(t *testing.T) {
	p := filepath.Join(t.TempDir(), "a.wav")
	os.WriteFile(p, []byte("RIFF"), 0o600)
	f, err := OpenInput(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if b, _ := io.ReadAll(f); string(b) != "RIFF" {
		t.Fatalf("read %q", b)
	}
	if _, err := OpenInput(context.Background(), filepath.Join(t.TempDir(), "missing")); !os.IsNotExist(err) {
		t.Fatalf("missing file: %v", err)
	}
}
