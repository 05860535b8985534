package spool

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Issue 12 item 3: a spool directory deleted while running is recreated, with its
// subdirectories and private modes, by the next write; nothing is reported lost.
func TestDeletedDirRecreatedOnPut(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	s := mustOpen(t, dir, Limits{})
	if _, err := s.Put(Meta{Start: t0}, samples(1600, 1)); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	m, err := s.Put(Meta{Start: t0.Add(time.Second)}, samples(1600, 2))
	if err != nil {
		t.Fatalf("put after the directory was deleted: %v", err)
	}
	for _, d := range []string{dir, filepath.Join(dir, failedDir)} {
		fi, err := os.Stat(d)
		if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
			t.Fatalf("%s not recreated 0700: %v %v", d, fi, err)
		}
	}
	if got := readWAV(t, s.path(m.ID, extWAV)); len(got) != 1600 || got[0] != 2 {
		t.Fatalf("entry after recreation damaged")
	}
	// The entry lost with the directory is forgotten when the uploader finds it gone; the
	// new one is there after a restart.
	if p := mustOpen(t, dir, Limits{}).Pending(); len(p) != 1 || p[0].Meta.ID != m.ID {
		t.Fatalf("after reopen %+v", p)
	}
	// Moving aside also works in a recreated directory.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	m3, err := s.Put(Meta{Start: t0.Add(2 * time.Second)}, samples(1600, 3))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.MoveAside(m3.ID, "test", nil); err != nil {
		t.Fatalf("move aside in a recreated directory: %v", err)
	}
}
