// Package audiotest makes compressed audio files for tests with the real encoders (sox,
// lame, opusenc, ffmpeg), so that what hark sniffs and sends is what those tools write.
// A format whose tool is missing is reported as not available and the test says so;
// scripts/install-test-deps.sh installs sox, lame and opus-tools (ffmpeg, for M4A, WebM
// and AAC, only when present).
package audiotest

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Format is a container the tests can make.
type Format struct {
	Name        string // as audio.SniffContainer names it
	Ext         string
	ContentType string
	tool        string
	args        func(in, out string) []string
}

// Formats are the compressed containers hark sends as they are.
var Formats = []Format{
	{"FLAC", "flac", "audio/flac", "sox", func(in, out string) []string { return []string{in, out} }},
	{"Ogg/Vorbis", "ogg", "audio/ogg", "sox", func(in, out string) []string { return []string{in, "-t", "vorbis", out} }},
	{"AIFF", "aiff", "audio/aiff", "sox", func(in, out string) []string { return []string{in, out} }},
	{"MP3", "mp3", "audio/mpeg", "lame", func(in, out string) []string { return []string{"--quiet", in, out} }},
	{"MP3", "mp3", "audio/mpeg", "lame", func(in, out string) []string { return []string{"--quiet", "--id3v2-only", "--tt", "hark", in, out} }},
	{"Ogg/Opus", "opus", "audio/ogg", "opusenc", func(in, out string) []string { return []string{"--quiet", in, out} }},
	{"MP4/M4A", "m4a", "audio/mp4", "ffmpeg", func(in, out string) []string {
		return []string{"-loglevel", "error", "-y", "-i", in, "-c:a", "aac", out}
	}},
	{"WebM", "webm", "audio/webm", "ffmpeg", func(in, out string) []string {
		return []string{"-loglevel", "error", "-y", "-i", in, "-c:a", "libopus", out}
	}},
	{"AAC", "aac", "audio/aac", "ffmpeg", func(in, out string) []string {
		return []string{"-loglevel", "error", "-y", "-i", in, "-c:a", "aac", "-f", "adts", out}
	}},
	{"Matroska", "mka", "audio/x-matroska", "ffmpeg", func(in, out string) []string {
		return []string{"-loglevel", "error", "-y", "-i", in, "-c:a", "flac", out}
	}},
}

// Encode converts the WAV file in into f in dir. It returns "" (and logs why) when f's
// tool is not installed, and fails the test when the tool fails.
func Encode(t testing.TB, in string, f Format, dir, base string) string {
	t.Helper()
	if _, err := exec.LookPath(f.tool); err != nil {
		t.Logf("%s not available: %s is not installed", f.Name, f.tool)
		return ""
	}
	out := filepath.Join(dir, base+"."+f.Ext)
	if b, err := exec.Command(f.tool, f.args(in, out)...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", f.tool, strings.Join(f.args(in, out), " "), err, b)
	}
	return out
}
