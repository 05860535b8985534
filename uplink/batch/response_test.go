package batch

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/hark-audio/hark/transcript"
)

const goodResponse = `{"metadata":{"transaction_key":"deprecated","request_id":"3aa10412-aaaa","sha256":"5324",
"created":"2025-07-16T23:57:37.934Z","duration":17.57,"channels":1,"models":["m"],"model_info":{"m":{"name":"x"}}},
"results":{"channels":[{"alternatives":[{"transcript":"Yep. Sure.","confidence":0.9995,
"words":[{"word":"yep","start":5.6,"end":6.1,"confidence":0.998,"punctuated_word":"Yep."},
{"word":"sure","start":6.2,"end":6.5,"confidence":0.9,"punctuated_word":"Sure.","speaker":1}]}]}],
"utterances":[{"start":0.42,"end":5.43,"confidence":0.88,"channel":0,"transcript":"x","words":[],"id":"u"}]}}`

var responseSeeds = []struct {
	body string
	ok   bool
}{
	{goodResponse, true},
	{`{"metadata":{"request_id":"r","duration":1},"results":{"channels":[{"alternatives":[{"transcript":"","confidence":0,"words":[]}]}]}}`, true},
	// Unusable answers, not empty transcripts (issue 11, item 12): no channel, no alternative.
	{`{"metadata":{"request_id":"r","duration":1},"results":{"channels":[]}}`, false},
	{`{"metadata":{"request_id":"r"},"results":{"channels":[{"alternatives":[]}]}}`, false},
	// A callback's acknowledgement (item 2).
	{`{"request_id":"8f2a64b3-ff27-4b4d-9a3b-46d6ee9f7c4c"}`, false},
	{`{"metadata":{},"results":{}}`, false},
	{`{"err_code":"Bad Request","err_msg":"x"}`, false},
	{`{"metadata":{},"results":{"channels":[{"alternatives":[{"words":[{"word":"a","start":2,"end":1}]}]}]}}`, false},
	{`{"metadata":{},"results":{"channels":[{"alternatives":[{"words":[{"word":"a","start":-1,"end":1}]}]}]}}`, false},
	{`{"metadata":{},"results":{"channels":[{"alternatives":[{"words":[{"word":"a","start":1,"end":1e300}]}]}]}}`, false},
	{`{"metadata":{"duration":-3},"results":{"channels":[]}}`, false},
	{`not json`, false},
	{``, false},
}

func TestParseResponse(t *testing.T) {
	for i, tc := range responseSeeds {
		_, err := ParseResponse([]byte(tc.body))
		if (err == nil) != tc.ok {
			t.Errorf("seed %d: err %v", i, err)
		}
	}
}

func TestToUtterance(t *testing.T) {
	r, err := ParseResponse([]byte(goodResponse))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 11, 21, 6, 0, 0, 0, time.UTC)
	u := r.ToUtterance(start, 10*time.Second, "kitchen")
	if u.Text != "Yep. Sure." || u.Source != transcript.SourceSpool || u.RequestID != "3aa10412-aaaa" || u.DeviceID != "kitchen" {
		t.Fatalf("utterance %+v", u)
	}
	if len(u.Words) != 2 || !u.Words[0].Start.Equal(start.Add(5600*time.Millisecond)) || !u.Words[1].End.Equal(start.Add(6500*time.Millisecond)) {
		t.Fatalf("words %+v", u.Words)
	}
	if !u.Start.Equal(u.Words[0].Start) || !u.End.Equal(u.Words[1].End) || u.Words[1].Speaker == nil || *u.Words[1].Speaker != 1 || u.Words[0].Punctuated != "Yep." {
		t.Fatalf("utterance times/fields %+v", u)
	}
	empty, _ := ParseResponse([]byte(responseSeeds[1].body))
	e := empty.ToUtterance(start, 2*time.Second, "d")
	if e.Text != "" || !e.Start.Equal(start) || !e.End.Equal(start.Add(2*time.Second)) {
		t.Fatalf("empty %+v", e)
	}
}

func FuzzParseResponse(f *testing.F) {
	for _, tc := range responseSeeds {
		f.Add([]byte(tc.body))
	}
	start := time.Date(2026, 11, 21, 6, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseResponse(b)
		if err != nil {
			return
		}
		u := r.ToUtterance(start, time.Second, "d")
		for _, w := range u.Words {
			if w.Start.Before(start) || w.End.Before(w.Start) || w.End.After(start.Add(25*time.Hour)) {
				t.Fatalf("word times out of range: %+v", w)
			}
		}
		if _, err := u.MarshalJSON(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestBackoffRetryAfterCapped(t *testing.T) {
	c := NewClient(ClientConfig{MaxRetryAfter: 5 * time.Second})
	mk := func(status int, ra string) *http.Response {
		return &http.Response{StatusCode: status, Header: http.Header{"Retry-After": {ra}}}
	}
	now := time.Now()
	for _, tc := range []struct {
		resp     *http.Response
		min, max time.Duration
	}{
		{mk(429, "2"), 2 * time.Second, 2 * time.Second},
		{mk(503, "3600"), 5 * time.Second, 5 * time.Second},
		{mk(429, now.Add(time.Hour).UTC().Format(http.TimeFormat)), 5 * time.Second, 5 * time.Second},
		{mk(429, "soon"), 50 * time.Millisecond, 100 * time.Millisecond},
		{mk(500, "2"), 50 * time.Millisecond, 100 * time.Millisecond}, // Retry-After only on 429/503
		{nil, 50 * time.Millisecond, 100 * time.Millisecond},
	} {
		got := c.backoff(100*time.Millisecond, time.Second, 0, tc.resp)
		if got < tc.min || got > tc.max {
			t.Errorf("%v: %v not in [%v, %v]", tc.resp, got, tc.min, tc.max)
		}
	}
}

func TestCheckRetry(t *testing.T) {
	ctx := context.Background()
	for status, want := range map[int]bool{200: false, 400: false, 401: false, 402: false, 403: false,
		404: false, 408: true, 411: false, 413: false, 429: true, 500: true, 501: false, 502: true, 503: true, 504: true} {
		got, _ := checkRetry(ctx, &http.Response{StatusCode: status}, nil)
		if got != want {
			t.Errorf("%d: retry %v", status, got)
		}
	}
	if got, _ := checkRetry(ctx, nil, &url.Error{Op: "Post", URL: "http://x", Err: errors.New("connection refused")}); !got {
		t.Error("connection error not retried")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if got, _ := checkRetry(cctx, nil, errors.New("x")); got {
		t.Error("retry after cancel")
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want Class
	}{
		{&APIError{Status: 401}, ClassAuth},
		{&APIError{Status: 402}, ClassAuth},
		{&APIError{Status: 403}, ClassAuth},
		{&APIError{Status: 400, Code: "Bad Request", Message: "Bad Request: failed to process audio: corrupt or unsupported data"}, ClassBadAudio},
		// Only a 400 that says the audio is unreadable is about the file (item 1).
		{&APIError{Status: 400, Code: "Bad Request", Message: "No such model/language/tier combination found."}, ClassConfig},
		{&APIError{Status: 400, Code: "Bad Request"}, ClassConfig},
		{&APIError{Status: 400, Code: "INVALID_QUERY_PARAMETER"}, ClassConfig},
		{&APIError{Status: 413}, ClassBadAudio},
		{&APIError{Status: 415}, ClassBadAudio},
		{&APIError{Status: 404}, ClassConfig},
		{&APIError{Status: 408}, ClassTransient},
		{&APIError{Status: 429}, ClassTransient},
		{&APIError{Status: 503}, ClassTransient},
		{&APIError{Status: 501}, ClassConfig},
		{&NetError{Err: errors.New("refused")}, ClassTransient},
		{&NetError{Err: context.DeadlineExceeded, Timeout: true}, ClassTransient},
		{fmt.Errorf("upload: %w", context.Canceled), ClassCanceled},
		{errors.New("open audio file: no such file"), ClassLocal},
		{fmt.Errorf("%w: no results", ErrBadResponse), ClassUnusable},
	} {
		if got := Classify(tc.err); got != tc.want {
			t.Errorf("%v: %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestPrerecordedOptions(t *testing.T) {
	live := url.Values{"encoding": {"linear16"}, "sample_rate": {"16000"}, "channels": {"1"}, "interim_results": {"true"},
		"endpointing": {"300"}, "model": {"nova-3"}, "keyterm": {"a", "b"}, "smart_format": {"true"}}
	got := PrerecordedOptions(live)
	if got.Encode() != "keyterm=a&keyterm=b&model=nova-3&smart_format=true" {
		t.Fatalf("got %s", got.Encode())
	}
	if live.Get("encoding") == "" {
		t.Fatal("input modified")
	}
}
