package main

import (
	"context"
	"errors"
	"io"
)

// cmdVAD is being written; this placeholder keeps the tree building.
func cmdVAD(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("vad: not implemented yet")
}
