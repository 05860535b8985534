package backoff

import (
	"net/http"
	"testing"
	"time"
)

func TestDelayBounds(t *testing.T) {
	p := Policy{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	for attempt := 0; attempt < 80; attempt++ {
		c := p.Ceiling(attempt)
		want := 5 * time.Second
		if attempt < 6 {
			want = 100 * time.Millisecond << attempt // 100ms .. 3.2s, below the cap
		}
		if c != want {
			t.Fatalf("Ceiling(%d) = %v, want %v", attempt, c, want)
		}
		for i := 0; i < 50; i++ {
			d := p.Delay(attempt)
			if d < c/2 || d > c {
				t.Fatalf("Delay(%d) = %v, outside [%v, %v]", attempt, d, c/2, c)
			}
		}
	}
}

func TestDelaySpreads(t *testing.T) {
	// A fleet retrying together must not retry in lockstep.
	p := Policy{Min: time.Second, Max: time.Minute}
	seen := map[time.Duration]bool{}
	for i := 0; i < 100; i++ {
		seen[p.Delay(3)] = true
	}
	if len(seen) < 50 {
		t.Fatalf("100 delays took only %d distinct values", len(seen))
	}
}

func TestDegenerate(t *testing.T) {
	if d := (Policy{}).Delay(5); d != 0 {
		t.Fatalf("zero policy: %v", d)
	}
	if c := (Policy{Min: time.Second, Max: time.Millisecond}).Ceiling(0); c != time.Second {
		t.Fatalf("max below min: %v", c)
	}
	if c := (Policy{Min: time.Second, Max: time.Hour}).Ceiling(-3); c != time.Second {
		t.Fatalf("negative attempt: %v", c)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := []struct {
		in    string
		limit time.Duration
		want  time.Duration
		ok    bool
	}{
		{"", 0, 0, false},
		{"  ", 0, 0, false},
		{"7", 0, 7 * time.Second, true},
		{" 7 ", 0, 7 * time.Second, true},
		{"-1", 0, 0, false},
		{"junk", 0, 0, false},
		{"3600", time.Minute, time.Minute, true},
		{"99999999999999", 0, (1 << 31) * time.Second, true},
		{now.Add(90 * time.Second).UTC().Format(http.TimeFormat), 0, 90 * time.Second, true},
		{now.Add(-time.Hour).UTC().Format(http.TimeFormat), 0, 0, true},
	}
	for _, tc := range cases {
		got, ok := RetryAfter(tc.in, now, tc.limit)
		if got != tc.want || ok != tc.ok {
			t.Errorf("RetryAfter(%q, %v) = %v, %v; want %v, %v", tc.in, tc.limit, got, ok, tc.want, tc.ok)
		}
	}
}

func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"", "7", "-1", "Wed, 21 Oct 2015 07:28:00 GMT", "1e9"} {
		f.Add(s)
	}
	now := time.Now()
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := RetryAfter(s, now, time.Hour)
		if d < 0 || d > time.Hour || (!ok && d != 0) {
			t.Fatalf("RetryAfter(%q) = %v, %v", s, d, ok)
		}
	})
}
