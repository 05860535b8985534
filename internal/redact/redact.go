// Package redact is the one place hark hides secrets in text that leaves the process: URLs
// shown in logs, configuration output and MQTT payloads, and every error or log line that
// carries text from a server (an error body that echoes the Authorization header, a proxy
// page quoting the request URL, a close reason). Everything that shows such text goes
// through URL or Text.
package redact

import (
	"net/url"
	"regexp"
	"strings"
)

// Mark replaces a hidden value.
const Mark = "REDACTED"

// sensitiveWords, as a word of a parameter's name (split at anything not a letter or
// digit) or as the whole name without separators, mark its value as a credential: token=,
// access_token=, api_key=, apikey=, auth=, X-Amz-Signature=, password=, client_secret=...
// (but not keyterm= or keywords=).
var sensitiveWords = map[string]bool{
	"token": true, "tokens": true, "accesstoken": true, "key": true, "apikey": true, "secret": true,
	"password": true, "passwd": true, "pass": true, "pwd": true, "auth": true, "authorization": true,
	"sig": true, "signature": true, "credential": true, "credentials": true, "session": true,
	"sessionid": true, "jwt": true, "bearer": true,
}

// SensitiveParam reports whether a query parameter named name carries a credential.
func SensitiveParam(name string) bool {
	n := strings.ToLower(name)
	words := strings.FieldsFunc(n, func(r rune) bool { return !('a' <= r && r <= 'z' || '0' <= r && r <= '9') })
	for _, w := range words {
		if sensitiveWords[w] {
			return true
		}
	}
	return sensitiveWords[strings.Join(words, "")]
}

// URL hides the credentials a URL may carry (user info, credential-like query values), so
// it can be shown. Text that does not parse as a URL but contains '@' is hidden whole
// ("<redacted>").
func URL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		// Not a URL Go can take apart: nothing in it can be told safe.
		if strings.ContainsAny(raw, "@?=#") {
			return "<redacted>"
		}
		return noControl(raw)
	}
	if u.User != nil {
		u.User = url.User(Mark)
	}
	if u.RawQuery != "" {
		q, err := url.ParseQuery(u.RawQuery)
		if err != nil {
			// A query Go cannot parse may still hide a token: keep none of it.
			u.RawQuery = Mark
		} else {
			changed := false
			for k, vs := range q {
				if SensitiveParam(k) {
					for i := range vs {
						vs[i] = Mark
					}
					changed = true
				}
			}
			if changed {
				u.RawQuery = q.Encode()
			}
		}
	}
	if u.Fragment != "" {
		u.Fragment = ""
		u.RawFragment = ""
	}
	return u.String()
}

var (
	// "Token abc", "Bearer eyJ...", "Basic ...", also after "Authorization:".
	schemeRE = regexp.MustCompile(`(?i)\b(token|bearer|basic)(\s*[:=]?\s+)([^\s"',;]+)`)
	// JWTs anywhere.
	jwtRE = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*`)
	// URLs in prose ("Post \"https://host/v1/listen?token=...\": dial tcp ...").
	urlRE = regexp.MustCompile(`[a-zA-Z][a-zA-Z0-9+.-]*://[^\s"'<>]+`)
	// name=value pairs outside URLs ("api_key=abc", "token: abc"); the name is checked
	// with SensitiveParam.
	pairRE = regexp.MustCompile(`\b([A-Za-z][A-Za-z0-9_.-]*)("?\s*[=:]\s*"?)([^\s"',;&]+)`)
)

// Text makes server or error text safe to log and publish: it hides the given secrets
// wherever they appear, anything following an auth scheme word (Token, Bearer, Basic),
// JWT-shaped strings, credentials in URLs and credential-like name=value pairs; replaces
// control characters with spaces; and bounds the result to max bytes (plus "...").
func Text(s string, max int, secrets ...string) string {
	// Control characters first (in the secrets too), so that no later step can make a
	// secret appear again.
	s = noControl(s)
	for _, sec := range secrets {
		if sec = noControl(sec); len(sec) >= 4 {
			s = strings.ReplaceAll(s, sec, Mark)
		}
	}
	s = urlRE.ReplaceAllStringFunc(s, func(u string) string {
		trail := ""
		for len(u) > 0 && strings.ContainsRune(").,:;", rune(u[len(u)-1])) {
			trail = u[len(u)-1:] + trail
			u = u[:len(u)-1]
		}
		return URL(u) + trail
	})
	s = jwtRE.ReplaceAllString(s, Mark)
	s = schemeRE.ReplaceAllStringFunc(s, func(m string) string {
		p := schemeRE.FindStringSubmatch(m)
		if p[3] == Mark {
			return m
		}
		return p[1] + p[2] + Mark
	})
	s = pairRE.ReplaceAllStringFunc(s, func(m string) string {
		p := pairRE.FindStringSubmatch(m)
		if !SensitiveParam(p[1]) || p[3] == Mark || schemeWord(p[3]) {
			return m
		}
		return p[1] + p[2] + Mark
	})
	if max > 0 && len(s) > max {
		cut := max
		// Do not split a UTF-8 sequence.
		for cut > 0 && s[cut]&0xC0 == 0x80 {
			cut--
		}
		s = s[:cut] + "..."
	}
	return strings.TrimSpace(s)
}

func schemeWord(s string) bool {
	switch strings.ToLower(s) {
	case "token", "bearer", "basic":
		return true
	}
	return false
}

func noControl(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
