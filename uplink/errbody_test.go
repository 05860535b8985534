package uplink

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var errorBodySeeds = []string{
	`{"err_code":"INVALID_AUTH","err_msg":"Invalid credentials.","request_id":"r1"}`,
	`{"error_code":"SERVICE_UNAVAILABLE","err_msg":"down"}`,
	`{"message":"m","reason":"x"}`,
	"<html>502 Bad Gateway</html>",
	`{"err_msg":"line1\nline2\u0000"}`,
	``,
}

func FuzzParseErrorBody(f *testing.F) {
	for _, s := range errorBodySeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		code, msg, rid := ParseErrorBody(b)
		for _, s := range []string{code, msg, rid} {
			for _, r := range s {
				if r < 0x20 || r == 0x7f {
					t.Fatalf("control character in %q", s)
				}
			}
			if len(s) > 503 {
				t.Fatalf("unbounded field of %d bytes", len(s))
			}
		}
	})
}

func TestParseErrorBody(t *testing.T) {
	for i, want := range [][3]string{
		{"INVALID_AUTH", "Invalid credentials.", "r1"},
		{"SERVICE_UNAVAILABLE", "down", ""},
		{"", "m", ""},
		{"", "", ""},
		{"", "line1 line2", ""},
		{"", "", ""},
	} {
		c, m, r := ParseErrorBody([]byte(errorBodySeeds[i]))
		if [3]string{c, m, r} != want {
			t.Errorf("seed %d: %q %q %q", i, c, m, r)
		}
	}
}

// The body of a refusal may echo the request's Authorization header: it never survives.
func TestParseErrorBodyScrubs(t *testing.T) {
	code, msg, _ := ParseErrorBody([]byte(`{"err_code":"INVALID_AUTH","err_msg":"bad header Authorization: Token SECRETKEY123"}`), "SECRETKEY123")
	if code != "INVALID_AUTH" || strings.Contains(msg, "SECRETKEY123") || !strings.Contains(msg, "bad header") {
		t.Fatalf("%q %q", code, msg)
	}
}

func FuzzAuthorizationTokenFile(f *testing.F) {
	f.Add([]byte("eyJhbGciOiJIUzI1NiJ9.e30.sig\n"))
	f.Add([]byte(""))
	f.Add([]byte("two words\n"))
	f.Add([]byte("\x00\xff"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(dir, "token")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		h, secret, err := Authorization("", p)
		if err != nil {
			if secret != "" || h != "" || (len(b) > 0 && strings.Contains(err.Error(), string(b)) && len(strings.TrimSpace(string(b))) > 3) {
				t.Fatalf("error %q leaks the file content or returns a value", err)
			}
			return
		}
		if h != "Bearer "+secret || secret == "" || strings.ContainsAny(secret, " \t\r\n") {
			t.Fatalf("header %q secret %q", h, secret)
		}
	})
}
