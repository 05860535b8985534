// Package version carries build information, set at link time by the Makefile
// (-X github.com/hark-audio/hark/internal/version.Version=...).
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

var (
	// Version is the release version ("dev" for local builds).
	Version = "dev"
	// Commit is the git commit the binary was built from.
	Commit = ""
)

// String is the line `hark version` prints.
func String() string {
	commit := Commit
	if commit == "" {
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					commit = s.Value
				}
			}
		}
	}
	if commit == "" {
		commit = "unknown"
	}
	return fmt.Sprintf("hark %s (commit %s, %s, %s/%s)", Version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
