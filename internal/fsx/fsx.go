// Package fsx is the project's one way to write a file durably: a temp file in the target
// directory, fsync, rename over the target, fsync of the directory. A crash or power cut
// at any point leaves either the old file or the new one, never a torn mix, and a rename
// that returned is not undone by the next power cut (the directory entry is on disk too).
//
// The spool, the MQTT transcript queue, persisted remote configuration and the mute state
// all go through here, so the crash guarantees are written and tested once.
package fsx

import (
	"fmt"
	"os"
	"path/filepath"
)

// TempPrefix starts the name of every temp file WriteFile makes, so a directory's owner
// can remove a crash's leftovers at start with one prefix test.
const TempPrefix = ".tmp-"

// WriteFile writes data to path atomically and durably with permissions perm, creating
// the parent directory (0700) if it is missing.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp, err := WriteTemp(dir, TempPrefix+filepath.Base(path)+"-*", data, perm)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := SyncDir(dir); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// WriteTemp writes data to a new file in dir named by pattern (as os.CreateTemp), sets
// perm, fsyncs it and returns its path, ready to be renamed into place. On error nothing
// is left behind. Callers that scan dir at start recognise their leftovers by pattern.
func WriteTemp(dir, pattern string, data []byte, perm os.FileMode) (string, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return "", err
	}
	p := f.Name()
	// CreateTemp makes the file 0600; Chmod only when asked for something else, so the
	// common case (private audio and transcripts) costs no extra syscall.
	if perm != 0o600 {
		err = f.Chmod(perm)
	}
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(p)
		return "", err
	}
	return p, nil
}

// SyncDir fsyncs a directory, making the renames and removals in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
