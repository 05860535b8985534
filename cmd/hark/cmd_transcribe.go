package main

import (
	"context"
	"errors"
	"io"
)

// cmdTranscribe is being written; this placeholder keeps the tree building.
func cmdTranscribe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("transcribe: not implemented yet")
}
