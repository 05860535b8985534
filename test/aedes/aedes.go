// Package aedes runs a real clustered MQTT broker for tests: nodes of the Aedes broker
// (npm aedes, pinned with mqemitter-redis and aedes-persistence-redis in this directory's
// package-lock.json) sharing subscriptions, persistent sessions, retained messages and the
// message flow through one Debian redis-server on a Unix socket in the test's temporary
// directory. Everything is stopped when the test ends.
//
// Tests skip, saying why, when node or redis-server is not installed;
// scripts/install-test-deps.sh installs both and runs `npm ci` here, as CI does.
//
//	c := aedes.Start(t, 2)
//	c.Nodes[0].URL() // mqtt://127.0.0.1:PORT
//	c.Nodes[0].Kill(t)
package aedes

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Cluster is a Redis server and the broker nodes sharing it.
type Cluster struct {
	Nodes  []*Node
	socket string
}

// Node is one Aedes process.
type Node struct {
	ID   string
	port int
	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	log  bytes.Buffer
}

// Dir is this package's directory (broker.mjs, package.json, node_modules).
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}

// Start starts redis-server and n broker nodes, or skips the test when node or
// redis-server is missing.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed (scripts/install-test-deps.sh installs it): the clustered-broker test needs it for Aedes")
	}
	redisBin, err := exec.LookPath("redis-server")
	if err != nil {
		if _, e := os.Stat("/usr/bin/redis-server"); e != nil {
			t.Skip("redis-server is not installed (scripts/install-test-deps.sh installs it): the Aedes cluster shares its state through it")
		}
		redisBin = "/usr/bin/redis-server"
	}
	if _, err := os.Stat(filepath.Join(Dir(), "node_modules", "aedes", "package.json")); err != nil {
		t.Fatalf("test/aedes/node_modules is missing: run scripts/install-test-deps.sh (or `npm ci` in %s)", Dir())
	}
	// A short directory: a Unix socket path is limited to 108 bytes.
	dir, err := os.MkdirTemp("", "hark-aedes-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c := &Cluster{socket: filepath.Join(dir, "redis.sock")}
	redis := exec.Command(redisBin, "--port", "0", "--unixsocket", c.socket, "--unixsocketperm", "700",
		"--save", "", "--appendonly", "no", "--dir", dir)
	var redisLog bytes.Buffer
	redis.Stdout, redis.Stderr = &redisLog, &redisLog
	if err := redis.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	t.Cleanup(func() {
		redis.Process.Kill()
		redis.Wait()
	})
	if err := waitRedis(c.socket, 10*time.Second); err != nil {
		t.Fatalf("redis-server did not come up: %v\n%s", err, redisLog.String())
	}
	for i := range n {
		c.Nodes = append(c.Nodes, startNode(t, nodeBin, c.socket, fmt.Sprintf("node%d", i+1)))
	}
	return c
}

// waitRedis pings the server until it answers (it has no readiness signal of its own).
func waitRedis(socket string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		conn, err := net.DialTimeout("unix", socket, time.Second)
		if err == nil {
			conn.SetDeadline(time.Now().Add(time.Second))
			_, err = conn.Write([]byte("PING\r\n"))
			var line string
			if err == nil {
				line, err = bufio.NewReader(conn).ReadString('\n')
			}
			conn.Close()
			if err == nil && strings.HasPrefix(line, "+PONG") {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func startNode(t testing.TB, nodeBin, socket, id string) *Node {
	t.Helper()
	n := &Node{ID: id, done: make(chan struct{})}
	n.cmd = exec.Command(nodeBin, "broker.mjs", socket, id)
	n.cmd.Dir = Dir()
	n.cmd.Stderr = (*nodeLog)(n)
	out, err := n.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.cmd.Start(); err != nil {
		t.Fatalf("start aedes %s: %v", id, err)
	}
	go func() {
		n.cmd.Wait()
		close(n.done)
	}()
	t.Cleanup(func() {
		n.cmd.Process.Kill()
		<-n.done
		if t.Failed() {
			t.Logf("aedes %s log:\n%s", id, n.Log())
		}
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
	}()
	select {
	case l := <-lines:
		if _, err := fmt.Sscanf(l, "listening %d", &n.port); err != nil {
			t.Fatalf("aedes %s printed %q", id, l)
		}
	case <-n.done:
		t.Fatalf("aedes %s exited at start: %s", id, n.Log())
	case <-time.After(30 * time.Second):
		t.Fatalf("aedes %s did not start within 30 s: %s", id, n.Log())
	}
	return n
}

type nodeLog Node

func (l *nodeLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.log.Write(p)
}

// Log is what the node wrote on stderr.
func (n *Node) Log() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.log.String()
}

// URL is the node's broker URL.
func (n *Node) URL() string { return fmt.Sprintf("mqtt://127.0.0.1:%d", n.port) }

// Kill ends the node with SIGKILL, as a crashed machine would: its clients' connections
// break without a DISCONNECT.
func (n *Node) Kill(t testing.TB) {
	n.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-n.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("aedes %s did not die", n.ID)
	}
}

// Pause stops the node (SIGSTOP): connections stay open but nothing is answered.
func (n *Node) Pause() { n.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume continues a paused node.
func (n *Node) Resume() { n.cmd.Process.Signal(syscall.SIGCONT) }
