package uplink

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// maxTokenBytes bounds a token file: Deepgram's JWTs are well under 2 KiB.
const maxTokenBytes = 16 << 10

// Authorization returns the Authorization header value for a request to Deepgram and the
// secret it carries (for scrubbing text that might echo it). With tokenFile set, the
// short-lived JWT in that file is sent as "Bearer <JWT>", read afresh on every call so
// that whatever refreshes the file (Deepgram's tokens live 30 s by default) is picked up
// at the next connection or upload; otherwise the API key as "Token <key>". Neither the
// error nor anything else here contains the secret.
func Authorization(apiKey, tokenFile string) (header, secret string, err error) {
	if tokenFile != "" {
		tok, err := readToken(tokenFile)
		if err != nil {
			return "", "", err
		}
		return "Bearer " + tok, tok, nil
	}
	if apiKey == "" {
		return "", "", errors.New("no Deepgram API key or token")
	}
	return "Token " + apiKey, apiKey, nil
}

func readToken(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("deepgram token file: %w", unwrapPath(err))
	}
	defer f.Close()
	b := make([]byte, maxTokenBytes+1)
	n, err := f.Read(b)
	if err != nil && n == 0 {
		return "", fmt.Errorf("deepgram token file %s: empty or unreadable", path)
	}
	if n > maxTokenBytes {
		return "", fmt.Errorf("deepgram token file %s: larger than %d bytes, not a token", path, maxTokenBytes)
	}
	tok := strings.TrimSpace(string(b[:n]))
	if tok == "" {
		return "", fmt.Errorf("deepgram token file %s is empty", path)
	}
	if strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("deepgram token file %s: not a single token", path)
	}
	return tok, nil
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}
