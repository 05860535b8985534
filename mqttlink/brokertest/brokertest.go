// Package brokertest runs a real mosquitto broker for tests: on a free port of 127.0.0.1, with
// a generated configuration in the test's temporary directory, stopped when the test ends.
// It can stop, kill and restart the broker on the same port (to test reconnection and
// queueing), serve TLS with a test CA and require client certificates, and require a
// username and password. Tests skip, saying why, when mosquitto is not installed
// (scripts/install-test-deps.sh installs it).
//
//	b := brokertest.Start(t)
//	c, _ := mqttlink.New(mqttlink.Options{Broker: b.URL(), ...})
//	b.Restart(t)
package brokertest

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"crypto/pbkdf2"
)

// Config shapes the broker. The zero value is a plain TCP listener, anonymous access and
// persistence on (so sessions and retained messages survive Restart, as on a real
// installation).
type Config struct {
	// TLS makes the listener TLS with the server certificate of these files.
	TLS *TLSFiles
	// RequireCertificate makes clients present a certificate signed by TLS.CA.
	RequireCertificate bool
	// PasswordFile (see WritePasswordFile) requires a username and password.
	PasswordFile string
	// NoPersistence models a broker that forgets sessions and retained messages on restart.
	NoPersistence bool
	// Extra is appended to the generated configuration.
	Extra string
}

// Broker is a running (or stopped) mosquitto.
type Broker struct {
	cfg  Config
	dir  string
	bin  string
	port int

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	log    bytes.Buffer
}

// Binary returns the mosquitto executable, or "" if it is not installed.
func Binary() string {
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p
		}
	}
	return ""
}

// Start starts a broker with the default Config.
func Start(t testing.TB) *Broker { return StartConfig(t, Config{}) }

// StartConfig starts a broker; it is stopped when the test ends.
func StartConfig(t testing.TB, cfg Config) *Broker {
	t.Helper()
	bin := Binary()
	if bin == "" {
		t.Skip("mosquitto is not installed (scripts/install-test-deps.sh installs it)")
	}
	b := &Broker{cfg: cfg, dir: t.TempDir(), bin: bin}
	t.Cleanup(func() { b.stop(syscall.SIGTERM) })
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if b.port, err = freePort(); err != nil {
			t.Fatalf("brokertest: %v", err)
		}
		if err = b.start(); err == nil {
			return b
		}
		// Another process may have taken the port between our probe and mosquitto's bind.
	}
	t.Fatalf("brokertest: start mosquitto: %v", err)
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (b *Broker) config() string {
	var s strings.Builder
	fmt.Fprintf(&s, "listener %d 127.0.0.1\n", b.port)
	if b.cfg.PasswordFile != "" {
		fmt.Fprintf(&s, "allow_anonymous false\npassword_file %s\n", b.cfg.PasswordFile)
	} else {
		s.WriteString("allow_anonymous true\n")
	}
	if f := b.cfg.TLS; f != nil {
		fmt.Fprintf(&s, "cafile %s\ncertfile %s\nkeyfile %s\n", f.CA, f.ServerCert, f.ServerKey)
		fmt.Fprintf(&s, "require_certificate %t\n", b.cfg.RequireCertificate)
	}
	if b.cfg.NoPersistence {
		s.WriteString("persistence false\n")
	} else {
		fmt.Fprintf(&s, "persistence true\npersistence_location %s/\n", b.dir)
	}
	// As root mosquitto would switch to the "mosquitto" user, who cannot read the test's
	// temporary directory.
	if os.Geteuid() == 0 {
		s.WriteString("user root\n")
	}
	s.WriteString("log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\n")
	s.WriteString("connection_messages true\nlog_timestamp_format %H:%M:%S\n")
	s.WriteString(b.cfg.Extra)
	return s.String()
}

func (b *Broker) start() error {
	conf := filepath.Join(b.dir, "mosquitto.conf")
	if err := os.WriteFile(conf, []byte(b.config()), 0o600); err != nil {
		return err
	}
	cmd := exec.Command(b.bin, "-c", conf)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	cmd.Stdout = nil
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", b.bin, err)
	}
	ready := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		// mosquitto announces "mosquitto version X running" once its listeners are open.
		sc := bufio.NewScanner(stderr)
		signalled := false
		for sc.Scan() {
			line := sc.Text()
			b.mu.Lock()
			b.log.WriteString(line + "\n")
			b.mu.Unlock()
			if !signalled && strings.Contains(line, " running") {
				signalled = true
				close(ready)
			}
		}
		_ = cmd.Wait()
		close(exited)
	}()
	select {
	case <-ready:
	case <-exited:
		return fmt.Errorf("mosquitto exited at start:\n%s", b.Log())
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("mosquitto did not start in 15s:\n%s", b.Log())
	}
	b.mu.Lock()
	b.cmd, b.exited = cmd, exited
	b.mu.Unlock()
	return nil
}

// URL is the broker address for clients: tcp://127.0.0.1:PORT, or ssl:// with TLS.
func (b *Broker) URL() string {
	scheme := "tcp"
	if b.cfg.TLS != nil {
		scheme = "ssl"
	}
	return fmt.Sprintf("%s://%s", scheme, b.Addr())
}

// Addr is 127.0.0.1:PORT.
func (b *Broker) Addr() string { return fmt.Sprintf("127.0.0.1:%d", b.port) }

// Log is everything mosquitto logged so far (for failure messages).
func (b *Broker) Log() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.log.String()
}

// Stop stops the broker gracefully (SIGTERM: persistence is saved) and waits for it.
func (b *Broker) Stop(t testing.TB) {
	t.Helper()
	b.stop(syscall.SIGTERM)
}

// Kill stops the broker abruptly (SIGKILL: nothing saved since the last autosave).
func (b *Broker) Kill(t testing.TB) {
	t.Helper()
	b.stop(syscall.SIGKILL)
}

func (b *Broker) stop(sig syscall.Signal) {
	b.mu.Lock()
	cmd, exited := b.cmd, b.exited
	b.cmd, b.exited = nil, nil
	b.mu.Unlock()
	if cmd == nil {
		return
	}
	// mosquitto 2.0.11 sometimes misses a SIGTERM that arrives just after it started, so
	// the signal is repeated until it exits (SIGKILL after 10 s).
	_ = cmd.Process.Signal(sig)
	repeat := time.NewTicker(250 * time.Millisecond)
	defer repeat.Stop()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		select {
		case <-exited:
			return
		case <-repeat.C:
			_ = cmd.Process.Signal(sig)
		case <-deadline.C:
			_ = cmd.Process.Kill()
			<-exited
			return
		}
	}
}

// Running reports whether the broker process is up.
func (b *Broker) Running() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cmd != nil
}

// Restart stops the broker (gracefully) if it runs and starts it again on the same port.
func (b *Broker) Restart(t testing.TB) {
	t.Helper()
	b.stop(syscall.SIGTERM)
	var err error
	// The port is ours, but a restart may briefly race the old socket's teardown.
	for attempt := 0; attempt < 20; attempt++ {
		if err = b.start(); err == nil {
			return
		}
		if !strings.Contains(err.Error(), "in use") {
			break
		}
		time.Sleep(100 * time.Millisecond) // pacing a retry, not waiting for a result
	}
	t.Fatalf("brokertest: restart mosquitto: %v", err)
}

// WritePasswordFile writes a mosquitto password file (PBKDF2-SHA512, the "$7$" format of
// mosquitto 2) for one user, without putting the password on a command line.
func WritePasswordFile(t testing.TB, path, user, password string) {
	t.Helper()
	line, err := PasswordLine(user, password)
	if err != nil {
		t.Fatalf("brokertest: %v", err)
	}
	if err := os.WriteFile(path, []byte(line+"\n"), 0o600); err != nil {
		t.Fatalf("brokertest: %v", err)
	}
}

// PasswordLine is one line of a mosquitto 2 password file.
func PasswordLine(user, password string) (string, error) {
	if strings.ContainsAny(user, ":\n") {
		return "", errors.New("user name must not contain ':' or a newline")
	}
	salt := make([]byte, 12)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	return passwordLine(user, password, salt, 101)
}

func passwordLine(user, password string, salt []byte, iterations int) (string, error) {
	key, err := pbkdf2.Key(sha512.New, password, salt, iterations, sha512.Size)
	if err != nil {
		return "", err
	}
	enc := base64.StdEncoding
	return fmt.Sprintf("%s:$7$%d$%s$%s", user, iterations, enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}
