package config

import (
	"regexp"
	"strings"
	"testing"
)

// validDeviceID accepts exactly what the documented pattern accepts.
func TestValidDeviceID(t *testing.T) {
	re := regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	cases := []string{"", "kitchen", "Kitchen-2_b", strings.Repeat("a", 64), strings.Repeat("a", 65),
		"kitchen/one", "+", "#", "a b", "é", "pi\x00", "-", "_", "ünï", "a.b"}
	for _, s := range cases {
		if got, want := validDeviceID(s), re.MatchString(s); got != want {
			t.Errorf("validDeviceID(%q) = %v, want %v", s, got, want)
		}
	}
}

func FuzzValidDeviceID(f *testing.F) {
	re := regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	for _, s := range []string{"kitchen", "a/b", strings.Repeat("z", 64), "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := validDeviceID(s), re.MatchString(s); got != want {
			t.Errorf("validDeviceID(%q) = %v, want %v", s, got, want)
		}
	})
}
