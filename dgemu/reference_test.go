package dgemu

import (
	"bytes"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hark-audio/hark/audio"
)

// TestReferenceTranscripts: with a reference, a file holding sentences out of order, and a
// sentence cut in two, is transcribed with each piece's own words; the order-based fixture
// is not consumed.
func TestReferenceTranscripts(t *testing.T) {
	ref, err := LoadReference(filepath.Join("..", "testdata", "demo", "sample.wav"), filepath.Join("..", "testdata", "demo", "sample.json"))
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(Config{Reference: ref, Utterances: []string{"never used"}})
	defer srv.Close()
	piece := func(from, to float64) []int16 { return ref.Samples[int(from*16000):int(to*16000)] }
	silence := make([]int16, 16000)
	s1, s3 := ref.Spans[1], ref.Spans[3]
	mid := s1.Start + 0.45*(s1.End-s1.Start) // between two words' shares (a cut exactly on one is ambiguous)
	var pcm []int16
	pcm = append(pcm, piece(s3.Start-0.2, s3.End+0.2)...) // the last sentence first
	pcm = append(pcm, silence...)
	pcm = append(pcm, piece(s1.Start-0.2, mid)...) // the second sentence, cut in two
	pcm = append(pcm, silence...)
	pcm = append(pcm, piece(mid, s1.End+0.2)...)
	body := append(audio.WAVHeader(len(pcm)*2), audio.AppendPCM(nil, pcm)...)
	req, _ := http.NewRequest("POST", srv.HTTPURL()+"?model=nova-3&punctuate=true&utterances=true", bytes.NewReader(body))
	req.Header.Set("Authorization", "Token k")
	req.Header.Set("Content-Type", "audio/wav")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Results struct {
			Utterances []struct {
				Transcript string `json:"transcript"`
			} `json:"utterances"`
		} `json:"results"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != 200 {
		t.Fatalf("status %d: %v", resp.StatusCode, err)
	}
	var got []string
	for _, u := range r.Results.Utterances {
		got = append(got, u.Transcript)
	}
	if len(got) != 3 || got[0] != s3.Text || got[1]+" "+got[2] != s1.Text || got[1] == "" || got[2] == "" {
		t.Fatalf("utterances %q, want %q then %q split in two", got, s3.Text, s1.Text)
	}
	if strings.Contains(strings.Join(got, " "), "never used") {
		t.Error("the order-based fixture was consumed")
	}
}
