package uplink

import "testing"

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
