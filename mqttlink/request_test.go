package mqttlink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// echoHandler is the handler of the request tests: "echo" returns the body, "fail" an error,
// "panic" panics, "nodata" returns nothing, "unencodable" returns a value JSON cannot encode.
func echoHandler(_ context.Context, op string, body []byte) (any, error) {
	switch op {
	case "echo", "config/get":
		if IsPlain(body) {
			return map[string]string{"plain": string(body)}, nil
		}
		return json.RawMessage(body), nil
	case "fail":
		return nil, errors.New("refused: bad value")
	case "panic":
		panic("handler bug")
	case "nodata":
		return nil, nil
	case "unencodable":
		return func() {}, nil
	}
	return nil, errors.New("unknown op " + op)
}

type responseJSON struct {
	Transaction json.RawMessage `json:"transaction"`
	Status      string          `json:"status"`
	Error       string          `json:"error"`
	Data        json.RawMessage `json:"data"`
}

var requestCases = []struct {
	name     string
	op       string
	payload  string
	retained bool
	status   string
	errHas   string
	tx       string // expected raw transaction in the response, "" = absent
}{
	{"string transaction", "echo", `{"transaction":"abc-1","x":1}`, false, "ok", "", `"abc-1"`},
	{"number transaction", "echo", `{"transaction":42}`, false, "ok", "", `42`},
	{"object transaction verbatim", "echo", `{"transaction": { "id" : [1, 2],"by":"<ops>" } }`, false, "ok", "", `{ "id" : [1, 2],"by":"<ops>" }`},
	{"null transaction", "echo", `{"transaction":null}`, false, "ok", "", `null`},
	{"no transaction", "echo", `{"x":true}`, false, "ok", "", ""},
	{"empty payload", "config/get", ``, false, "ok", "", ""},
	{"whitespace payload", "config/get", " \n\t", false, "ok", "", ""},
	{"case of key matters", "echo", `{"Transaction":"x"}`, false, "ok", "", ""},
	{"handler error", "fail", `{"transaction":"t"}`, false, "error", "refused: bad value", `"t"`},
	{"handler panic", "panic", `{"transaction":"t"}`, false, "error", "internal error", `"t"`},
	{"no data", "nodata", `{}`, false, "ok", "", ""},
	{"unencodable data", "unencodable", `{"transaction":1}`, false, "error", "encode response data", `1`},
	{"unknown op", "nope", `{}`, false, "error", "unknown op", ""},
	{"malformed JSON", "echo", `{"transaction":"t",`, false, "error", "malformed request", ""},
	{"truncated", "echo", `{`, false, "error", "malformed request", ""},
	{"plain text", "echo", ` ON
`, false, "ok", "", ""},
	{"plain words", "echo", `mute please`, false, "ok", "", ""},
	{"array is plain", "echo", `[1,2]`, false, "ok", "", ""},
	{"JSON string is plain", "echo", `"hi"`, false, "ok", "", ""},
	{"number is plain", "echo", `1`, false, "ok", "", ""},
	{"plain, not UTF-8", "echo", "\xff\xfe", false, "error", "neither a JSON object nor UTF-8 text", ""},
	{"trailing garbage", "echo", `{"a":1} x`, false, "error", "malformed request", ""},
	{"two objects", "echo", `{"a":1}{"b":2}`, false, "error", "malformed request", ""},
	{"invalid UTF-8 in op", "\xff", `{}`, false, "error", "UTF-8", ""},
	{"empty op", "", `{"transaction":"t"}`, false, "error", "missing operation", ""},
	{"long op", strings.Repeat("a", maxOpBytes+1), `{}`, false, "error", "longer than", ""},
	{"too large", "echo", `{"transaction":"t","pad":"` + strings.Repeat("x", MaxRequestBytes) + `"}`, false, "error", "exceeds the limit", ""},
	{"retained", "echo", `{"transaction":"r"}`, true, "error", "retained request refused", `"r"`},
}

func TestServeTable(t *testing.T) {
	for _, tc := range requestCases {
		t.Run(tc.name, func(t *testing.T) {
			resp, _ := serve(context.Background(), echoHandler, tc.op, []byte(tc.payload), retainedTopic(tc.op, tc.retained))
			checkResponse(t, resp, tc.status, tc.errHas, tc.tx)
			if tc.status == "ok" && tc.op == "echo" {
				var r responseJSON
				json.Unmarshal(resp, &r)
				if !json.Valid(r.Data) {
					t.Fatalf("data %q", r.Data)
				}
			}
		})
	}
}

func retainedTopic(op string, retained bool) string {
	if retained {
		return "harktest/dev/request/" + op
	}
	return ""
}

func checkResponse(t *testing.T, resp []byte, status, errHas, tx string) {
	t.Helper()
	var r responseJSON
	if err := json.Unmarshal(resp, &r); err != nil {
		t.Fatalf("response %q is not JSON: %v", resp, err)
	}
	if r.Status != status {
		t.Fatalf("status %q, want %q (response %s)", r.Status, status, resp)
	}
	if errHas != "" && !strings.Contains(r.Error, errHas) {
		t.Fatalf("error %q does not contain %q", r.Error, errHas)
	}
	if status == "ok" && r.Error != "" {
		t.Fatalf("ok response with error %q", r.Error)
	}
	if tx == "" {
		if bytes.Contains(resp, []byte(`"transaction"`)) {
			t.Fatalf("transaction present in %s", resp)
		}
	} else if !bytes.HasPrefix(resp, []byte(`{"transaction":`+tx+`,`)) {
		t.Fatalf("transaction not echoed verbatim: %s, want %s", resp, tx)
	}
}

func TestNoHandler(t *testing.T) {
	resp, err := serve(context.Background(), nil, "mute", []byte(`{"transaction":"a","muted":true}`), "")
	if !errors.Is(err, errNoHandler) {
		t.Fatalf("err %v", err)
	}
	checkResponse(t, resp, "error", "not handled", `"a"`)
}

// FuzzServe: whatever arrives on a request topic, the answer is one JSON object with status
// ok or error, the transaction echoed byte for byte when the envelope parsed, and no panic.
func FuzzServe(f *testing.F) {
	for _, tc := range requestCases {
		if len(tc.payload) < 4096 {
			f.Add(tc.op, []byte(tc.payload), tc.retained)
		}
	}
	f.Fuzz(func(t *testing.T, op string, payload []byte, retained bool) {
		resp, _ := serve(context.Background(), echoHandler, op, payload, retainedTopic(op, retained))
		var r responseJSON
		if err := json.Unmarshal(resp, &r); err != nil {
			t.Fatalf("response %q is not JSON: %v", resp, err)
		}
		if r.Status != "ok" && r.Status != "error" {
			t.Fatalf("status %q", r.Status)
		}
		if r.Status == "error" && r.Error == "" {
			t.Fatalf("error response without error: %s", resp)
		}
		req, err := parseRequest(op, payload)
		if err == nil && req.transaction != nil {
			if !bytes.HasPrefix(resp, append([]byte(`{"transaction":`), req.transaction...)) {
				t.Fatalf("transaction %q not echoed in %s", req.transaction, resp)
			}
		}
		if err == nil && !(isJSONObject(req.body) || IsPlain(req.body) && utf8.Valid(req.body)) {
			t.Fatalf("accepted body %q is neither a JSON object nor plain text", req.body)
		}
	})
}
