package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// commentedKey is a documented key left at its default in packaging/hark.yaml: "#key:"
// with no space after the '#' (prose comments have one).
var commentedKey = regexp.MustCompile(`^(\s*)#([a-z_0-9]+:.*)$`)

// TestPackagedConfigDocumentsEveryKey: /etc/hark/hark.yaml documents every key `hark config
// check` prints, set or commented out, and nothing else; with every commented key
// uncommented it is still a configuration hark accepts (the documented values are valid).
func TestPackagedConfigDocumentsEveryKey(t *testing.T) {
	raw, err := os.ReadFile("../../packaging/hark.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(raw), "\n") {
		if m := commentedKey.FindStringSubmatch(l); m != nil {
			l = m[1] + m[2]
		}
		lines = append(lines, l)
	}
	dir := t.TempDir()
	t.Setenv("STATE_DIRECTORY", dir)
	t.Setenv("HARK_CONFIG", "")
	t.Setenv("DEEPGRAM_API_KEY", "k")
	uncommented := filepath.Join(dir, "hark.yaml")
	os.WriteFile(uncommented, []byte(strings.Join(lines, "\n")), 0o600)
	code, out, errOut := runHark("config", "check", "--config", uncommented)
	if code != 0 {
		t.Fatalf("packaging/hark.yaml with every documented key uncommented: exit %d: %s", code, errOut)
	}
	// Unknown keys were refused above; now every key printed must be in the file.
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(strings.Join(lines, "\n")), &doc); err != nil {
		t.Fatal(err)
	}
	documented := func(key string) bool {
		var v any = doc
		for _, part := range strings.Split(key, ".") {
			m, ok := v.(map[string]any)
			if !ok {
				return false
			}
			if v, ok = m[part]; !ok {
				return false
			}
		}
		return true
	}
	n := 0
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || strings.HasPrefix(l, "#") {
			continue
		}
		n++
		if !documented(f[0]) {
			t.Errorf("packaging/hark.yaml does not document %s (add it, commented out with its default: #%s: ...)", f[0], f[0][strings.LastIndex(f[0], ".")+1:])
		}
	}
	if n < 50 {
		t.Fatalf("config check printed only %d keys:\n%s", n, out)
	}
}
