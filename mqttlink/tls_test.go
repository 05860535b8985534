package mqttlink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hark-audio/hark/mqttlink/brokertest"
)

// testTLS is the test subscriber's TLS configuration: the test CA and the client certificate.
func testTLS(t *testing.T, f brokertest.TLSFiles) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(f.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	cert, err := tls.LoadX509KeyPair(f.ClientCert, f.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// TestTLSAndPassword: a TLS listener that requires a client certificate and a password.
// The right credentials deliver; a wrong password or a missing certificate never connects,
// yet every method returns at once; the password appears in no log line.
func TestTLSAndPassword(t *testing.T) {
	checkLeaks(t)
	dir := t.TempDir()
	files := brokertest.GenerateTLS(t, dir)
	pwFile := filepath.Join(dir, "passwd")
	const user, password = "hark", "correct horse battery staple"
	brokertest.WritePasswordFile(t, pwFile, user, password)
	b := brokertest.StartConfig(t, brokertest.Config{TLS: &files, RequireCertificate: true, PasswordFile: pwFile})
	if !strings.HasPrefix(b.URL(), "ssl://") {
		t.Fatalf("URL %s", b.URL())
	}

	lb := &logBuffer{}
	o := testOptions(t, b.URL())
	o.Logger = testLoggerTo(lb)
	o.CAFile, o.CertFile, o.KeyFile = files.CA, files.ClientCert, files.ClientKey
	o.Username, o.Password = user, password
	base := o.TopicPrefix + "/" + o.DeviceID
	s := subscribe(t, b.URL(), map[string]byte{base + "/transcript": 1}, subOpts{tls: &files, user: user, pass: password})
	c := startClient(t, o)
	awaitConn(t, c)
	if err := c.PublishTranscript(utterance(1)); err != nil {
		t.Fatal(err)
	}
	collectSeqs(t, s, base+"/transcript", 1, seqRange(1, 1))

	refused := func(name string, mut func(*Options)) {
		t.Run(name, func(t *testing.T) {
			lb := &logBuffer{}
			o := testOptions(t, b.URL())
			o.Logger = testLoggerTo(lb)
			o.CAFile, o.CertFile, o.KeyFile = files.CA, files.ClientCert, files.ClientKey
			o.Username, o.Password = user, password
			mut(&o)
			c := startClient(t, o)
			// Wait for two refused attempts (the second must be logged at debug only).
			deadline := time.Now().Add(waitFor)
			for c.Stats().ConnectFailures < 2 {
				if time.Now().After(deadline) {
					t.Fatalf("no refused attempts: %+v", c.Stats())
				}
				time.Sleep(10 * time.Millisecond) // pacing a poll of a counter
			}
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			if err := c.AwaitConnection(ctx); err == nil {
				t.Fatal("connected")
			}
			if err := c.PublishTranscript(utterance(1)); err != nil {
				t.Fatal(err)
			}
			c.SetState(map[string]int{"x": 1})
			c.PublishEvent(map[string]int{"x": 1})
			if st := c.Stats(); st.Connected || st.ConnectFailures == 0 || st.QueueEntries != 1 {
				t.Fatalf("stats %+v", st)
			}
			closeClient(t, c)
			if strings.Contains(lb.String(), "battery staple") || strings.Contains(lb.String(), "wrong-secret") {
				t.Fatalf("password in the log:\n%s", lb.String())
			}
			if n := strings.Count(lb.String(), "cannot connect to broker"); n != 1 {
				t.Fatalf("connection failure logged %d times, want once with later attempts at debug:\n%s", n, lb.String())
			}
		})
	}
	refused("wrong password", func(o *Options) { o.Password = "wrong-secret" })
	refused("no client certificate", func(o *Options) { o.CertFile, o.KeyFile = "", "" })
	refused("unknown CA", func(o *Options) {
		other := brokertest.GenerateTLS(t, t.TempDir())
		o.CAFile = other.CA
	})

	closeClient(t, c)
	if strings.Contains(lb.String(), password) {
		t.Fatalf("password in the log:\n%s", lb.String())
	}
}
