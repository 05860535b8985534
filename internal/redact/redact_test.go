package redact

import (
	"strings"
	"testing"
	"unicode/utf8"
)

const key = "SECRETKEY123"
const jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXZhbHVl"

func TestText(t *testing.T) {
	for in, want := range map[string]string{
		`{"err_msg":"bad header Authorization: Token ` + key + `"}`:      `{"err_msg":"bad header Authorization: Token REDACTED"}`,
		"invalid credentials: Bearer " + jwt:                             "invalid credentials: Bearer REDACTED",
		"token " + jwt + " expired":                                      "token REDACTED expired",
		`Post "https://h/v1/listen?model=nova-3&token=abc": dial tcp: x`: `Post "https://h/v1/listen?model=nova-3&token=REDACTED": dial tcp: x`,
		"wss://user:pw@h/v1/listen?keyterm=hark&auth=zz.":                "wss://REDACTED@h/v1/listen?auth=REDACTED&keyterm=hark.",
		"api_key=abc123 and keyterm=hark":                                "api_key=REDACTED and keyterm=hark",
		"No such model/language/tier combination found.":                 "No such model/language/tier combination found.",
		"line1\nline2\x00":                                               "line1 line2",
		"the key " + key + " was refused":                                "the key REDACTED was refused",
	} {
		if got := Text(in, 500, key); got != want {
			t.Errorf("Text(%q)\n got %q\nwant %q", in, got, want)
		}
	}
	long := strings.Repeat("é", 400)
	if got := Text(long, 101); !utf8.ValidString(got) || len(got) > 104 {
		t.Errorf("bounded text %d bytes, valid %v", len(got), utf8.ValidString(got))
	}
}

func TestURL(t *testing.T) {
	for in, want := range map[string]string{
		"wss://api.deepgram.com/v1/listen":                         "wss://api.deepgram.com/v1/listen",
		"https://u:p@h/v1/listen":                                  "https://REDACTED@h/v1/listen",
		"https://h/v1/listen?access_token=x&X-Amz-Signature=y&a=1": "https://h/v1/listen?X-Amz-Signature=REDACTED&a=1&access_token=REDACTED",
		"https://h/v1/listen?auth=x":                               "https://h/v1/listen?auth=REDACTED",
		"https://h/v1/listen?keyterm=a&keywords=b":                 "https://h/v1/listen?keyterm=a&keywords=b",
		"https://h/p#frag-with-secret":                             "https://h/p",
		"%zz@host":                                                 "<redacted>",
	} {
		if got := URL(in); got != want {
			t.Errorf("URL(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzText(f *testing.F) {
	f.Add("Authorization: Token "+key, key)
	f.Add("https://u:p@h/?token="+key, key)
	f.Add(jwt, "")
	f.Fuzz(func(t *testing.T, s, secret string) {
		out := Text(s+" "+secret, 300, secret)
		if len(secret) >= 4 && strings.Contains(out, secret) && !strings.Contains(Mark, secret) {
			// The secret may legitimately reappear only as part of the mark or of text
			// created by redaction itself.
			if !strings.Contains(strings.ReplaceAll(out, Mark, ""), secret) {
				return
			}
			t.Fatalf("secret %q survives in %q", secret, out)
		}
		for _, r := range out {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("control character in %q", out)
			}
		}
		if len(out) > 303 {
			t.Fatalf("%d bytes", len(out))
		}
	})
}
