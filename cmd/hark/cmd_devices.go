package main

import (
	"context"
	"errors"
	"io"
)

// cmdDevices is being written; this placeholder keeps the tree building.
func cmdDevices(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("devices: not implemented yet")
}
