// Package backoff is the project's one retry-delay policy: exponential growth from a
// minimum to a cap with "equal jitter", and the server's Retry-After, capped.
//
// Every reconnect and retry loop in hark (live stream, pre-recorded uploads, capture
// device reopen, waiting for a microphone) takes its delays from here, so a fleet that
// lost its network, broker or audio server at the same moment spreads its retries out
// instead of hammering the peer in lockstep.
package backoff

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Policy is exponential backoff from Min, doubling per attempt, capped at Max.
type Policy struct {
	Min, Max time.Duration
}

// Ceiling is the delay before jitter for attempt n (0-based): Min·2ⁿ capped at Max.
func (p Policy) Ceiling(attempt int) time.Duration {
	d := p.Max
	if attempt < 0 {
		attempt = 0
	}
	if attempt < 62 {
		if x := p.Min << attempt; x > 0 && x < p.Max {
			d = x
		}
	}
	if d < p.Min {
		// Max below Min: Min wins, so a misconfigured cap never means "retry at once".
		d = p.Min
	}
	return max(d, 0)
}

// Delay is the wait before retry number attempt (0-based): with d = Ceiling(attempt), a
// uniform value in [d/2, d]. Equal jitter keeps a floor of d/2 (full jitter can retry
// at once, which an overloaded peer does not need) while spreading a fleet over d/2.
func (p Policy) Delay(attempt int) time.Duration {
	d := p.Ceiling(attempt)
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1)
}

// RetryAfter parses an HTTP Retry-After value (delay-seconds or an HTTP date) relative to
// now. ok is false when v is absent or unparseable; a date in the past is 0. The result
// is capped at limit when limit > 0: a server asking for an hour must not stall a device
// for an hour when the caller knows better.
func RetryAfter(v string, now time.Time, limit time.Duration) (d time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0, false
		}
		d = time.Duration(min(n, 1<<31)) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = max(t.Sub(now), 0)
	} else {
		return 0, false
	}
	if limit > 0 {
		d = min(d, limit)
	}
	return d, true
}
