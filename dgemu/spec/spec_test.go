package spec

import (
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"strings"
	"testing"
)

// The copies are the published files, unchanged (see deepgram/README.md).
func TestFilesUnchanged(t *testing.T) {
	for name, want := range map[string]string{
		"asyncapi.yml": "e0a6401dc8c7b2cd48a1d7a2e1dc538742e7184b0ab2e69ed682ce401f787b78",
		"openapi.yml":  "c5fed7b393898e93a41354f2124f799f28d5c4d796a17ec217cf4e2cf771e416",
	} {
		b, err := Raw(name)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		if got := hex.EncodeToString(sum[:]); got != want {
			t.Errorf("%s: sha256 %s, README says %s", name, got, want)
		}
	}
}

// Every schema the tests rely on uses only keywords the validator implements.
func TestSchemasWithinSubset(t *testing.T) {
	for _, n := range []string{"ListenV1_ListenV1Results", "ListenV1_ListenV1Metadata",
		"ListenV1_ListenV1UtteranceEnd", "ListenV1_ListenV1SpeechStarted", "ListenV1_ListenV1Finalize",
		"ListenV1_ListenV1CloseStream", "ListenV1_ListenV1KeepAlive"} {
		if _, err := AsyncAPI().Schema(n); err != nil {
			t.Error(err)
		}
	}
	for _, n := range []string{"listen_v1_media_transcribe_Response_200", "ListenV1Response",
		"ErrorResponse", "ErrorResponseLegacyError", "GrantV1Response"} {
		if _, err := OpenAPI().Schema(n); err != nil {
			t.Error(err)
		}
	}
	if len(LiveParams()) < 20 || len(PrerecordedParams()) < 20 {
		t.Fatalf("parameter lists too short: %d live, %d pre-recorded", len(LiveParams()), len(PrerecordedParams()))
	}
}

// The validator must be able to fail: each of these violates the schema in one way.
func TestValidatorRejects(t *testing.T) {
	res := AsyncAPI().MustSchema("ListenV1_ListenV1Results")
	good := `{"type":"Results","channel_index":[0,1],"duration":1.5,"start":0,"is_final":true,
		"channel":{"alternatives":[{"transcript":"hi","confidence":0.9,"words":[{"word":"hi","start":0,"end":0.5,"confidence":0.9}]}]},
		"metadata":{"request_id":"r","model_uuid":"u","model_info":{"name":"n","version":"v","arch":"a"}}}`
	if err := res.ValidateJSON([]byte(good)); err != nil {
		t.Fatalf("valid message refused: %v", err)
	}
	for name, bad := range map[string]string{
		"wrong type value":   strings.Replace(good, `"type":"Results"`, `"type":"Result"`, 1),
		"missing start":      strings.Replace(good, `"start":0,`, ``, 1),
		"string duration":    strings.Replace(good, `"duration":1.5`, `"duration":"1.5"`, 1),
		"float channel":      strings.Replace(good, `[0,1]`, `[0.5,1]`, 1),
		"word without end":   strings.Replace(good, `"end":0.5,`, ``, 1),
		"model_info no arch": strings.Replace(good, `,"arch":"a"`, ``, 1),
		"not an object":      `[]`,
		"trailing data":      good + ` {}`,
	} {
		if err := res.ValidateJSON([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	md := AsyncAPI().MustSchema("ListenV1_ListenV1Metadata")
	if err := md.ValidateJSON([]byte(`{"type":"Metadata","transaction_key":"deprecated","request_id":"not-a-uuid","sha256":"","created":"x","duration":0,"channels":0}`)); err == nil {
		t.Error("request_id that is not a UUID accepted")
	}
	// oneOf must match exactly one branch.
	r200 := OpenAPI().MustSchema("listen_v1_media_transcribe_Response_200")
	if err := r200.ValidateJSON([]byte(`{"request_id":"8f2a64b3-ff27-4b4d-9a3b-46d6ee9f7c4c"}`)); err != nil {
		t.Errorf("callback answer refused: %v", err)
	}
	if err := r200.ValidateJSON([]byte(`{"metadata":{}}`)); err == nil {
		t.Error("incomplete response accepted")
	}
	x, _ := res.Undocumented([]byte(strings.Replace(good, `"is_final":true`, `"is_final":true,"bogus":1`, 1)))
	if len(x) != 1 || x[0] != "$.bogus" {
		t.Errorf("undocumented members: %v, want [$.bogus]", x)
	}
}

func TestParamsCheck(t *testing.T) {
	live := LiveParams()
	ok := url.Values{"model": {"nova-3"}, "punctuate": {"true"}, "keyterm": {"a", "b"}, "endpointing": {"300"}}
	if errs := live.Check(ok); len(errs) > 0 {
		t.Errorf("valid query refused: %v", errs)
	}
	for name, q := range map[string]url.Values{
		"unknown parameter": {"no_such_option": {"1"}},
		"bad boolean":       {"punctuate": {"yes"}},
		"bad encoding":      {"encoding": {"mp3"}},
		"bad model":         {"model": {"nova-9"}},
	} {
		if errs := live.Check(q); len(errs) == 0 {
			t.Errorf("%s: accepted", name)
		}
	}
	pre := PrerecordedParams()
	if errs := pre.Check(url.Values{"utterances": {"true"}, "utt_split": {"0.8"}, "tag": {"a", "b"}}); len(errs) > 0 {
		t.Errorf("valid pre-recorded query refused: %v", errs)
	}
	if errs := pre.Check(url.Values{"utterances": {"maybe"}}); len(errs) == 0 {
		t.Error("bad boolean accepted")
	}
	// model is "a known model or any string" (a custom model id).
	if errs := pre.Check(url.Values{"model": {"nova-3"}, "version": {"latest"}}); len(errs) > 0 {
		t.Errorf("open enum refused: %v", errs)
	}
	if errs := pre.Check(url.Values{"model": {"my-custom-model"}}); len(errs) > 0 {
		t.Errorf("open enum refused a custom model: %v", errs)
	}
}
