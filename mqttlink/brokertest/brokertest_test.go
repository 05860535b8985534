package brokertest

import (
	"encoding/base64"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPasswordLineMatchesMosquittoPasswd re-derives a line made by mosquitto_passwd from its
// salt: our "$7$" encoder must produce the same bytes.
func TestPasswordLineMatchesMosquittoPasswd(t *testing.T) {
	bin, err := exec.LookPath("mosquitto_passwd")
	if err != nil {
		t.Skip("mosquitto_passwd is not installed (package mosquitto)")
	}
	file := filepath.Join(t.TempDir(), "pw")
	// A throw-away test password; real ones never go on a command line.
	if out, err := exec.Command(bin, "-b", "-c", file, "alice", "s3cret").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v: %s", err, out)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(string(b))
	parts := strings.Split(line, "$")
	if len(parts) != 5 || parts[1] != "7" {
		t.Fatalf("unexpected mosquitto_passwd format %q", line)
	}
	salt, err := base64.StdEncoding.DecodeString(parts[3])
	if err != nil {
		t.Fatal(err)
	}
	got, err := passwordLine("alice", "s3cret", salt, 101)
	if err != nil || got != line {
		t.Fatalf("passwordLine = %q, %v; mosquitto_passwd wrote %q", got, err, line)
	}
}

func TestStartStopRestart(t *testing.T) {
	b := Start(t)
	dial := func() error {
		c, err := net.Dial("tcp", b.Addr())
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := dial(); err != nil {
		t.Fatalf("broker not listening: %v", err)
	}
	b.Stop(t)
	if b.Running() {
		t.Fatal("Running after Stop")
	}
	if err := dial(); err == nil {
		t.Fatal("broker still listening after Stop")
	}
	b.Restart(t)
	if err := dial(); err != nil {
		t.Fatalf("broker not listening after Restart: %v\n%s", err, b.Log())
	}
	b.Kill(t)
	if err := dial(); err == nil {
		t.Fatal("broker still listening after Kill")
	}
}
