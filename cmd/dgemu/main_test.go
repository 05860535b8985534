package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hark-audio/hark/audio"
)

// TestMainServesAndStops runs the command as a user would: fixture, key, ready file; a
// client streams the demo sample; cancelling the context stops it with status 0.
func TestMainServesAndStops(t *testing.T) {
	dir := t.TempDir()
	ready := filepath.Join(dir, "url")
	keyFile := filepath.Join(dir, "key")
	os.WriteFile(keyFile, []byte("k123\n"), 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"--addr", "127.0.0.1:0", "--print-url", "--ready-file", ready,
			"--key-file", keyFile, "--fixture", "../../testdata/demo/sample.txt", "--realtime-limit", "0"}, pw, &stderr)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("no URL printed: %v\n%s", err, stderr.String())
	}
	u := strings.TrimSpace(line)
	if b, _ := os.ReadFile(ready); strings.TrimSpace(string(b)) != u || !strings.HasPrefix(u, "ws://127.0.0.1:") {
		t.Fatalf("ready file %q, printed %q", b, u)
	}
	go io.Copy(io.Discard, pr)

	f, err := os.Open("../../testdata/demo/sample.wav")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	wr, err := audio.NewWAVReader(f)
	if err != nil {
		t.Fatal(err)
	}
	pcm, _ := io.ReadAll(wr)
	conn, resp, err := websocket.DefaultDialer.Dial(u+"?model=nova-3&encoding=linear16&sample_rate=16000&punctuate=true",
		http.Header{"Authorization": {"Token k123"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	reqID := resp.Header.Get("dg-request-id")
	for off := 0; off < len(pcm); off += 3200 {
		conn.WriteMessage(websocket.BinaryMessage, pcm[off:min(off+3200, len(pcm))])
	}
	conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"CloseStream"}`))
	var finals []string
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		var m struct {
			Type    string `json:"type"`
			IsFinal bool   `json:"is_final"`
			Channel struct {
				Alternatives []struct{ Transcript string }
			}
		}
		if err := conn.ReadJSON(&m); err != nil {
			if !websocket.IsCloseError(err, 1000) {
				t.Fatalf("read: %v", err)
			}
			break
		}
		if m.IsFinal && m.Channel.Alternatives[0].Transcript != "" {
			finals = append(finals, m.Channel.Alternatives[0].Transcript)
		}
	}
	txt, _ := os.ReadFile("../../testdata/demo/sample.txt")
	if strings.Join(finals, "\n") != strings.TrimSpace(string(txt)) {
		t.Errorf("finals %q", finals)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("did not stop")
	}
	logs := stderr.String()
	if !strings.Contains(logs, reqID) || !strings.Contains(logs, "close_code=1000") || strings.Contains(logs, "k123") {
		t.Errorf("logs:\n%s", logs)
	}
}

func TestMainBadFlags(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main(context.Background(), []string{"--nope"}, &out, &errb); code != 2 {
		t.Errorf("exit %d", code)
	}
	if code := Main(context.Background(), []string{"--fixture", "/does/not/exist"}, &out, &errb); code != 2 {
		t.Errorf("exit %d", code)
	}
	if code := Main(context.Background(), []string{"-h"}, &out, &errb); code != 0 {
		t.Errorf("-h exit %d", code)
	}
}
