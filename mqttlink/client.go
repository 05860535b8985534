package mqttlink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/hark-audio/hark/internal/backoff"
	"github.com/hark-audio/hark/internal/logging"
	"github.com/hark-audio/hark/transcript"
)

// Options configure a Client. Broker, TopicPrefix, DeviceID and QueueDir are required.
type Options struct {
	// Broker is one URL (tcp://host:1883, ssl://host:8883, mqtts://..., ws://..., wss://...)
	// or a comma-separated list of the nodes of one clustered broker: each connection tries
	// them in order and uses the first that accepts it (ParseBrokers).
	Broker   string
	ClientID string // unique on the broker; default "hark-" + InstanceID(TopicPrefix, DeviceID)
	Username string
	Password string // never logged, never in an error

	CAFile, CertFile, KeyFile string // TLS: trust anchors, client certificate (needs an ssl/mqtts/wss broker URL)

	TopicPrefix, DeviceID string // <base> = TopicPrefix/DeviceID

	// Groups name the groups this device belongs to: besides <base>/request/<op> it takes
	// <prefix>/fleet/request/<op> and <prefix>/group/<name>/request/<op> for each of them,
	// answering on its own <base>/response/<op>.
	Groups []string

	QueueDir string // on-disk transcript queue (the agent passes <state_dir>/mqtt-queue)
	QueueMax int    // transcripts kept while the broker is unreachable; default 1000

	Discovery       bool   // publish Home Assistant discovery
	DiscoveryPrefix string // default "homeassistant"
	// AnnouncedFile records the retained topics published (discovery included), so that
	// those a later configuration no longer publishes (discovery off, another device id or
	// topic prefix) are cleared from the broker; "" keeps no record.
	AnnouncedFile string

	Logger  *slog.Logger // default: discard
	Handler Handler      // remote requests; nil answers every request with an error
	Version string       // device software version in discovery

	// Tuning; zero means the default. Tests shorten them.
	ConnectRetryInterval time.Duration // first delay of the (re)connection backoff (internal/backoff, jittered); default 1s
	MaxReconnectInterval time.Duration // cap of that backoff; default 30s
	ConnectTimeout       time.Duration // TCP+TLS+CONNACK; default 10s
	KeepAlive            time.Duration // default 30s
	AckTimeout           time.Duration // a QoS 1 publish without PUBACK after this is sent again; default 30s
}

// Stats are the client's gauges and counters (part of the agent's health payload).
type Stats struct {
	Connected       bool   `json:"connected"`
	Broker          string `json:"broker,omitempty"` // the broker URL connected to (of mqtt.broker's list)
	ConnectAttempts uint64 `json:"connect_attempts"` // dials of a broker URL, successful or not
	Connects        uint64 `json:"connects"`
	Reconnects      uint64 `json:"reconnects"` // connections after the first
	ConnectFailures uint64 `json:"connect_failures"`
	QueueEntries    int    `json:"queue_entries"` // transcripts waiting on disk
	QueueBytes      int64  `json:"queue_bytes"`
	QueueDropped    uint64 `json:"queue_dropped"` // oldest transcripts evicted because the queue was full
	QueueCorrupt    uint64 `json:"queue_corrupt"` // unreadable queue entries discarded
	QueueRefused    uint64 `json:"queue_refused"` // transcripts refused: the queue's disk did not keep up
	Delivered       uint64 `json:"delivered"`     // transcripts acknowledged by the broker
	Outbox          int    `json:"outbox"`        // events and responses waiting
	OutboxDropped   uint64 `json:"outbox_dropped"`
	InterimDropped  uint64 `json:"interim_dropped"`
	Requests        uint64 `json:"requests"`
	RequestsBusy    uint64 `json:"requests_busy"`
	LastError       string `json:"last_error,omitempty"` // last connection error
}

// ErrClosed is returned by PublishTranscript after Close.
var ErrClosed = errors.New("mqtt client closed")

const (
	defaultQueueMax        = 1000
	outboxMax              = 256 // events and responses held while offline
	interimMax             = 8   // interim results are only worth sending fresh
	requestQueue           = 16  // requests waiting for the handler before "busy"
	defaultDiscoveryPrefix = "homeassistant"
	flushMax               = 10 * time.Second // Close's flush when ctx has no earlier deadline
	closeConnectWait       = 3 * time.Second  // Close's wait for a connection under way, with messages pending
)

type outMsg struct {
	id      uint64
	topic   string
	payload []byte
	kind    string // "event", "response"
}

type retainedMsg struct {
	topic   string
	payload []byte
	version uint64 // bumped by every Set
	sent    uint64 // version acknowledged on the current connection; 0 = must (re)send
}

type topics struct {
	availability, state, config, health, transcript, interim, event string
	requestFilter, requestPrefix, responsePrefix, haStatus          string
	// fleet and group request prefixes (each "<...>/request/"), subscribed with "#".
	sharedPrefixes []string
}

// Client is hark's MQTT connection. Its Publish and Set methods never block on the network.
type Client struct {
	o       Options
	log     *slog.Logger
	base    string
	t       topics
	queue   *diskQueue
	pc      mqtt.Client
	link    *link
	disc    []discoveryMsg
	connTok mqtt.Token
	lostCh  chan struct{} // poked by onConnectionLost: the connector dials again
	session *sessionWatch

	wake     chan struct{} // pokes the publisher
	qwake    chan struct{} // pokes the transcript sender
	qwrite   chan struct{} // pokes the queue writer
	progress chan struct{} // something was acknowledged (Close's flush waits on it)
	reqs     chan inbound
	closed   chan struct{} // closed when Close begins

	mu        sync.Mutex
	announced []string       // retained topics recorded in o.AnnouncedFile
	retained  []*retainedMsg // in (re)send order: state, config, health, discovery
	byTopic   map[string]*retainedMsg
	outbox    []outMsg
	outboxID  uint64
	interim   []outMsg
	outDrops  uint64 // drops in the current episode, for the recovery log line
	lastError string
	dialing   string // broker URL of the attempt under way (paho's notification)
	broker    string // broker URL of the current connection, "" while down

	connects, reconnects, connFailures, failStreak atomic.Uint64
	delivered, outboxDropped, interimDropped       atomic.Uint64
	connectAttempts                                atomic.Uint64
	requests, requestsBusy, queueDropEpisode       atomic.Uint64
	busyLog                                        *logging.Repeater // "handler busy": once, then counted
	downSince                                      atomic.Int64

	started, closing atomic.Bool
	ctx              context.Context
	cancel           context.CancelFunc
	wg               sync.WaitGroup
	closeOnce        sync.Once
	closeErr         error
}

type inbound struct {
	topic    string // the request topic (own, group or fleet)
	op       string
	payload  []byte
	retained bool
}

// New validates the options, opens the transcript queue and prepares the connection. It
// does not touch the network; Start does.
func New(o Options) (*Client, error) {
	brokers, tlsCfg, err := o.prepare()
	if err != nil {
		return nil, err
	}
	q, err := openQueue(o.QueueDir, o.QueueMax)
	if err != nil {
		return nil, err
	}
	// A dropped queue entry is a transcript lost: said once with the file, then counted.
	q.corruptLog = logging.NewRepeater(o.Logger, "unreadable transcript queue entry dropped", 0)
	base := strings.TrimSuffix(o.TopicPrefix, "/") + "/" + o.DeviceID
	c := &Client{
		o: o, log: o.Logger, base: base, queue: q, lostCh: make(chan struct{}, 1), link: newLink(), session: newSessionWatch(o.Logger, o.ClientID),
		wake: make(chan struct{}, 1), qwake: make(chan struct{}, 1), qwrite: make(chan struct{}, 1), progress: make(chan struct{}, 1),
		reqs: make(chan inbound, requestQueue), closed: make(chan struct{}),
		byTopic: map[string]*retainedMsg{},
		t: topics{
			availability: base + "/availability", state: base + "/state", config: base + "/config",
			health: base + "/health", transcript: base + "/transcript", interim: base + "/transcript/interim",
			event: base + "/event", requestFilter: base + "/request/#", requestPrefix: base + "/request/",
			responsePrefix: base + "/response/", haStatus: o.DiscoveryPrefix + "/status",
		},
	}
	prefix := strings.TrimSuffix(o.TopicPrefix, "/")
	c.t.sharedPrefixes = append(c.t.sharedPrefixes, prefix+"/"+FleetLevel+"/request/")
	for _, g := range o.Groups {
		c.t.sharedPrefixes = append(c.t.sharedPrefixes, prefix+"/"+GroupLevel+"/"+g+"/request/")
	}
	c.busyLog = logging.NewRepeater(o.Logger, "request refused: handler busy", 0)
	for _, t := range []string{c.t.state, c.t.config, c.t.health} {
		c.addRetained(t)
	}
	if o.Discovery {
		c.disc = discoveryMessages(o.DiscoveryPrefix, base, o.TopicPrefix, o.DeviceID, o.Version)
		for _, d := range c.disc {
			c.addRetained(d.topic).payload = d.payload
			c.byTopic[d.topic].version = 1
		}
	}
	if c.announced, err = readAnnounced(o.AnnouncedFile); err != nil {
		// Unreadable: start a new record. Topics it held may stay on the broker.
		c.log.Warn("cannot read the record of retained topics published; starting a new one", "err", err)
	}
	if st := q.Stats(); st.entries > 0 || st.dropped > 0 {
		c.log.Info("transcripts queued from a previous run", "entries", st.entries, "evicted_over_queue_max", st.dropped)
	}

	po := mqtt.NewClientOptions()
	for _, b := range brokers {
		po.AddBroker(b.URL) // paho tries them in this order on every connection
	}
	po.SetClientID(o.ClientID).
		SetUsername(o.Username).
		SetPassword(o.Password).
		// A persistent session: the broker keeps our subscription (and QoS 1 requests sent to
		// us) across short disconnections. It is not what keeps transcripts safe; the disk
		// queue is, since a broker without persistence forgets sessions when it restarts.
		SetCleanSession(false).
		SetStore(nullStore{}). // see nullStore: our queues re-send, paho must not
		// Subscriptions are made in OnConnect on every connection, so stored SUBSCRIBE
		// packets need not be resumed.
		SetResumeSubs(false).
		// In order: requests must run in the order sent (mute on, mute off). Safe because the
		// only message handler never blocks (it hands requests to a bounded queue).
		SetOrderMatters(true).
		// Our connector goroutine (re)connects, with internal/backoff's jittered delays:
		// paho's own retry and reconnect use fixed or doubling delays without jitter, so a
		// fleet that lost its broker would come back in lockstep.
		SetConnectRetry(false).
		SetAutoReconnect(false).
		SetConnectTimeout(o.ConnectTimeout).
		SetKeepAlive(o.KeepAlive).
		SetPingTimeout(10*time.Second).
		SetWriteTimeout(10*time.Second).
		SetProtocolVersion(4).
		SetWill(c.t.availability, "offline", 1, true).
		SetDefaultPublishHandler(c.onMessage).
		SetOnConnectHandler(c.onConnect).
		SetConnectionLostHandler(c.onConnectionLost).
		SetReconnectingHandler(c.onReconnecting).
		SetConnectionNotificationHandler(c.onNotification)
	if tlsCfg != nil {
		po.SetTLSConfig(tlsCfg)
	}
	c.pc = mqtt.NewClient(po)
	return c, nil
}

// Check validates the options exactly as New does (reading the TLS files, which must
// load) without opening the queue or touching the network: `hark config check` uses it so
// that it refuses what `hark run` would.
func Check(o Options) error {
	_, _, err := o.prepare()
	return err
}

// prepare validates o and fills in its defaults.
func (o *Options) prepare() ([]Broker, *tls.Config, error) {
	if o.Broker == "" {
		return nil, nil, errors.New("no broker address")
	}
	brokers, err := ParseBrokers(o.Broker)
	if err != nil {
		return nil, nil, fmt.Errorf("broker address %q: %w", redactURL(o.Broker), err)
	}
	urls := make([]string, len(brokers))
	for i, b := range brokers {
		urls[i] = b.URL
	}
	o.Broker = strings.Join(urls, ",") // what is dialled, and shown in logs
	if o.TopicPrefix == "" || strings.ContainsAny(o.TopicPrefix, "+#\x00") {
		return nil, nil, fmt.Errorf("topic prefix %q must be non-empty, without + or #", o.TopicPrefix)
	}
	if o.DeviceID == "" || strings.ContainsAny(o.DeviceID, "+#/\x00") {
		return nil, nil, fmt.Errorf("device id %q must be non-empty, without +, # or /", o.DeviceID)
	}
	if ReservedID(o.DeviceID) {
		return nil, nil, fmt.Errorf("device id %q is reserved (fleet and group requests use it)", o.DeviceID)
	}
	if o.QueueDir == "" {
		return nil, nil, errors.New("no queue directory")
	}
	if o.QueueMax <= 0 {
		o.QueueMax = defaultQueueMax
	}
	if o.DiscoveryPrefix == "" {
		o.DiscoveryPrefix = defaultDiscoveryPrefix
	}
	if strings.ContainsAny(o.DiscoveryPrefix, "+#\x00") {
		return nil, nil, fmt.Errorf("discovery prefix %q must not contain + or #", o.DiscoveryPrefix)
	}
	if o.ClientID == "" {
		o.ClientID = "hark-" + InstanceID(o.TopicPrefix, o.DeviceID)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	for _, g := range o.Groups {
		if g == "" || strings.ContainsAny(g, "+#/\x00") {
			return nil, nil, fmt.Errorf("group %q must be non-empty, without +, # or /", g)
		}
	}
	setDefault(&o.ConnectRetryInterval, time.Second)
	setDefault(&o.MaxReconnectInterval, 30*time.Second)
	setDefault(&o.ConnectTimeout, 10*time.Second)
	setDefault(&o.KeepAlive, 30*time.Second)
	setDefault(&o.AckTimeout, 30*time.Second)
	tlsCfg, err := TLSConfig(o.CAFile, o.CertFile, o.KeyFile, brokers[0])
	if err != nil {
		return nil, nil, err
	}
	return brokers, tlsCfg, nil
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}

func (c *Client) addRetained(topic string) *retainedMsg {
	m := &retainedMsg{topic: topic}
	c.retained = append(c.retained, m)
	c.byTopic[topic] = m
	return m
}

// TLSConfig is the TLS configuration for broker b from the CA, client certificate and key
// files ("" each when unused): nil when none is set. `hark fleet` uses it too, so that it
// connects as the daemon does.
func TLSConfig(caFile, certFile, keyFile string, b Broker) (*tls.Config, error) {
	o := struct{ CAFile, CertFile, KeyFile string }{caFile, certFile, keyFile}
	if o.CAFile == "" && o.CertFile == "" && o.KeyFile == "" {
		return nil, nil
	}
	if !b.TLS {
		return nil, errors.New(ErrTLSFilesWithoutTLS)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", o.CAFile)
		}
		cfg.RootCAs = pool
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, errors.New("a client certificate needs both a certificate file and a key file")
	}
	if o.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// redactURL drops any userinfo from a broker URL before it is shown.
func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		u.User = url.User("xxxxx")
		return u.String()
	}
	if i := strings.Index(s, "@"); i >= 0 {
		return "xxxxx" + s[i:]
	}
	return s
}

// Base is the topic base, <prefix>/<device_id>.
func (c *Client) Base() string { return c.base }

// Start connects in the background and starts the senders. It returns at once; a broker
// that is down is retried for ever. The connection lives until Close, not until ctx ends:
// the agent's graceful stop publishes its last transcripts after its run context is
// cancelled, and Close flushes them. Calling Start twice, or after Close, does nothing.
func (c *Client) Start(ctx context.Context) {
	if c.closing.Load() || !c.started.CompareAndSwap(false, true) {
		return
	}
	c.ctx, c.cancel = context.WithCancel(context.WithoutCancel(ctx))
	c.downSince.Store(time.Now().UnixNano())
	c.wg.Add(5)
	go c.publisher(c.ctx)
	go c.sender(c.ctx)
	go c.requestWorker(c.ctx)
	go c.queueWriter(c.ctx)
	c.log.Debug("connecting to broker", "broker", redactURL(c.o.Broker), "client_id", c.o.ClientID)
	go c.connector(c.ctx)
}

// connector owns the connection: it dials (paho tries every broker URL in order), and
// after a failed attempt or a lost connection dials again after a delay from
// internal/backoff: from ConnectRetryInterval, doubling to MaxReconnectInterval, jittered,
// so that a fleet whose broker restarted does not reconnect in lockstep. A lost connection
// waits the first delay too: the broker that just went away is rarely back at once, and
// its cluster peer takes the devices more gently spread out.
func (c *Client) connector(ctx context.Context) {
	defer c.wg.Done()
	p := backoff.Policy{Min: c.o.ConnectRetryInterval, Max: c.o.MaxReconnectInterval}
	failures := 0
	check := time.NewTicker(max(c.o.KeepAlive, time.Second))
	defer check.Stop()
	for ctx.Err() == nil {
		select { // a loss reported by a connection before this one is stale
		case <-c.lostCh:
		default:
		}
		tok := c.pc.Connect()
		c.mu.Lock()
		c.connTok = tok
		c.mu.Unlock()
		select {
		case <-tok.Done():
		case <-ctx.Done():
			return // Close waits for the token
		}
		if tok.Error() != nil {
			failures++
		} else {
			up := time.Now()
			c.waitLost(ctx, check.C)
			// A connection cut right after it opened (a session taken over, a broker
			// closing on us) backs off as a failed attempt would; one that lasted starts
			// again from the first delay.
			if time.Since(up) < shortSession {
				failures++
			} else {
				failures = 0
			}
		}
		t := time.NewTimer(p.Delay(max(failures-1, 0)))
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
}

// waitLost returns when the connection is lost (paho's OnConnectionLost), or, should that
// callback never come, when paho reports the client disconnected at a periodic check.
func (c *Client) waitLost(ctx context.Context, check <-chan time.Time) {
	for {
		select {
		case <-c.lostCh:
			return
		case <-check:
			if !c.pc.IsConnected() {
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// paho callbacks: each returns at once.

func (c *Client) isOpen() bool { return c.pc.IsConnectionOpen() }

func (c *Client) onConnect(mqtt.Client) {
	if !c.link.markUp(c.isOpen) {
		return
	}
	c.mu.Lock()
	c.broker = c.dialing
	broker := c.broker
	c.mu.Unlock()
	n := c.connects.Add(1)
	down := time.Duration(time.Now().UnixNano() - c.downSince.Load())
	failed := c.failStreak.Swap(0)
	quiet := c.session.up()
	switch {
	case n == 1:
		c.log.Info("connected to broker", "broker", redactURL(broker), "client_id", c.o.ClientID, "failed_attempts", failed)
	case quiet:
		c.reconnects.Add(1)
		c.log.Debug("reconnected to broker", "broker", redactURL(broker), "down_for", down.Round(time.Millisecond), "failed_attempts", failed)
	default:
		c.reconnects.Add(1)
		c.log.Info("reconnected to broker", "broker", redactURL(broker), "down_for", down.Round(time.Millisecond), "failed_attempts", failed)
	}
	poke(c.wake)
	poke(c.qwake)
}

func (c *Client) onConnectionLost(_ mqtt.Client, err error) {
	poke(c.lostCh)
	if c.link.markDown(c.isOpen) {
		c.lost(err)
		return
	}
	// onReconnecting recorded the loss first (paho runs this callback on a goroutine of its
	// own); keep paho's reason unless the session watch found a better one.
	if err != nil && c.LastError() != errSessionTakenOver.Error() {
		c.setLastError(err)
	}
}

func (c *Client) onReconnecting(mqtt.Client, *mqtt.ClientOptions) {
	if c.link.markDown(c.isOpen) {
		c.lost(nil)
	}
}

// lost records a lost connection (err is paho's reason, nil when not known yet) and logs
// it, once per storm of reconnections.
func (c *Client) lost(err error) {
	c.downSince.Store(time.Now().UnixNano())
	c.mu.Lock()
	c.broker = ""
	c.mu.Unlock()
	cause, quiet := c.session.down()
	if cause != nil {
		err = cause // paho's own error is a bare EOF; the session watch says why
	}
	c.setLastError(err)
	attrs := []any{}
	if err != nil {
		attrs = append(attrs, "err", err)
	}
	if quiet {
		c.log.Debug("connection to broker lost; reconnecting", attrs...)
	} else {
		c.log.Warn("connection to broker lost; reconnecting", attrs...)
	}
}

func (c *Client) onNotification(_ mqtt.Client, n mqtt.ConnectionNotification) {
	if b, ok := n.(mqtt.ConnectionNotificationBroker); ok && b.Broker != nil {
		// paho dials the URLs in order; the one it reports last before OnConnect is the one
		// connected to.
		c.connectAttempts.Add(1)
		c.mu.Lock()
		c.dialing = b.Broker.String()
		c.mu.Unlock()
		return
	}
	f, ok := n.(mqtt.ConnectionNotificationFailed)
	if !ok {
		return
	}
	c.connFailures.Add(1)
	c.setLastError(f.Reason)
	// A failure that repeats is logged once; the recovery line carries the count.
	if c.failStreak.Add(1) == 1 {
		c.log.Warn("cannot connect to broker; retrying in the background", "broker", redactURL(c.o.Broker), "err", f.Reason)
	} else {
		c.log.Debug("broker connection attempt failed", "attempts", c.failStreak.Load(), "err", f.Reason)
	}
}

func (c *Client) setLastError(err error) {
	if err == nil {
		return
	}
	c.mu.Lock()
	c.lastError = err.Error()
	c.mu.Unlock()
}

// onMessage is paho's only message handler. It runs on paho's router goroutine, so it never
// blocks: requests go to a bounded queue, and a full queue is answered "busy".
func (c *Client) onMessage(_ mqtt.Client, m mqtt.Message) {
	topic := m.Topic()
	op, isRequest := c.requestOp(topic)
	switch {
	case isRequest && len(m.Payload()) == 0:
		// A zero-byte message is how MQTT clears a retained message (mosquitto_pub -r -n),
		// which is what an operator does with a refused retained request; it reaches
		// subscribers too, and is not a request.
		c.log.Debug("empty message on a request topic ignored (a retained request being cleared)", "topic", topic)
	case isRequest:
		c.requests.Add(1)
		in := inbound{topic: topic, op: op, payload: m.Payload(), retained: m.Retained()}
		select {
		case c.reqs <- in:
			c.busyLog.OK()
		default:
			n := c.requestsBusy.Add(1)
			req, _ := parseRequest(in.op, in.payload)
			c.enqueue(c.t.responsePrefix+in.op, buildResponse(req.transaction, nil, errBusy), "response")
			// A flood would write a line per request: the first is logged, the rest counted
			// (requests_busy in health) and summarised.
			c.busyLog.Fail(errBusy, "op", in.op, "requests_busy", n)
		}
	case topic == c.t.haStatus:
		// Home Assistant's birth message: it may have lost our discovery (restart without
		// retained messages), so send it again.
		if strings.TrimSpace(string(m.Payload())) == "online" && len(c.disc) > 0 {
			c.mu.Lock()
			for _, d := range c.disc {
				c.byTopic[d.topic].sent = 0
			}
			c.mu.Unlock()
			poke(c.wake)
			c.log.Debug("home assistant online: re-sending discovery")
		}
	}
}

// requestOp maps a request topic, the device's own, its fleet's or one of its groups', to
// the operation: the topic's remainder after ".../request/".
func (c *Client) requestOp(topic string) (string, bool) {
	if op, ok := strings.CutPrefix(topic, c.t.requestPrefix); ok {
		return op, true
	}
	for _, p := range c.t.sharedPrefixes {
		if op, ok := strings.CutPrefix(topic, p); ok {
			return op, true
		}
	}
	return "", false
}

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (c *Client) requestWorker(ctx context.Context) {
	defer c.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case in := <-c.reqs:
			retainedTopic := ""
			if in.retained {
				retainedTopic = in.topic
			}
			resp, err := serve(ctx, c.o.Handler, in.op, in.payload, retainedTopic)
			var pe *panicError
			var re *retainedError
			switch {
			case errors.As(err, &re):
				c.log.Warn("retained request refused; clear it from the broker", "topic", re.topic,
					"clear_with", "mosquitto_pub -r -n -t '"+re.topic+"'")
			case errors.As(err, &pe):
				c.log.Error("request handler panicked", "op", in.op, "panic", fmt.Sprint(pe.v), "stack", string(pe.stack))
			case err != nil:
				c.log.Debug("request failed", "op", in.op, "err", err)
			default:
				c.log.Debug("request handled", "op", in.op)
			}
			c.enqueue(c.t.responsePrefix+in.op, resp, "response")
		}
	}
}

// Publishing API. None of these waits for the network.

// PublishTranscript hands the utterance to the on-disk queue and returns without waiting
// for the disk: the queue writer appends it (fsync'd) and only then the sender delivers it,
// in order at QoS 1, removing each entry only after its PUBACK (at-least-once: an entry in
// flight when the connection drops is sent again). Close writes what was handed over before
// it returns. When the queue holds QueueMax entries the oldest is evicted and counted.
func (c *Client) PublishTranscript(u transcript.Utterance) error {
	if c.closing.Load() {
		return ErrClosed
	}
	b, err := json.Marshal(u)
	if err != nil {
		return fmt.Errorf("encode transcript: %w", err)
	}
	if err := c.queue.Push(b); err != nil {
		return err
	}
	poke(c.qwrite)
	return nil
}

// PublishInterim sends an interim result at QoS 0; it is dropped (and counted) when the
// broker is not connected.
func (c *Client) PublishInterim(v any) {
	if c.closing.Load() || !c.link.state().up {
		c.interimDropped.Add(1)
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		c.log.Error("encode interim", "err", err)
		return
	}
	c.mu.Lock()
	if len(c.interim) >= interimMax {
		c.interim = c.interim[1:]
		c.interimDropped.Add(1)
	}
	c.interim = append(c.interim, outMsg{topic: c.t.interim, payload: b})
	c.mu.Unlock()
	poke(c.wake)
}

// PublishEvent sends an event at QoS 1. While the broker is away events wait in a bounded
// queue (oldest dropped and counted).
func (c *Client) PublishEvent(v any) {
	if c.closing.Load() {
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		c.log.Error("encode event", "err", err)
		return
	}
	c.enqueue(c.t.event, b, "event")
}

func (c *Client) enqueue(topic string, payload []byte, kind string) {
	c.mu.Lock()
	if len(c.outbox) >= outboxMax {
		dropped := c.outbox[0]
		c.outbox = c.outbox[1:]
		c.outboxDropped.Add(1)
		c.outDrops++
		if c.outDrops == 1 {
			c.log.Warn("outgoing queue full while the broker is away: dropping the oldest", "kind", dropped.kind, "max", outboxMax)
		}
	}
	c.outboxID++
	c.outbox = append(c.outbox, outMsg{id: c.outboxID, topic: topic, payload: payload, kind: kind})
	c.mu.Unlock()
	poke(c.wake)
}

// SetState sets the retained <base>/state; the latest value is re-sent on every connection.
func (c *Client) SetState(v any) { c.setRetainedJSON(c.t.state, v) }

// SetConfig sets the retained <base>/config (already redacted by the caller).
func (c *Client) SetConfig(b []byte) { c.setRetained(c.t.config, append([]byte(nil), b...)) }

// PublishHealth sets the retained <base>/health.
func (c *Client) PublishHealth(v any) { c.setRetainedJSON(c.t.health, v) }

func (c *Client) setRetainedJSON(topic string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		c.log.Error("encode retained message", "topic", topic, "err", err)
		return
	}
	c.setRetained(topic, b)
}

func (c *Client) setRetained(topic string, b []byte) {
	if c.closing.Load() {
		return
	}
	c.mu.Lock()
	m := c.byTopic[topic]
	m.payload = b
	m.version++
	c.mu.Unlock()
	poke(c.wake)
}

// Stats returns a snapshot of the counters.
func (c *Client) Stats() Stats {
	qs := c.queue.Stats()
	c.mu.Lock()
	outbox, lastErr, broker := len(c.outbox), c.lastError, c.broker
	c.mu.Unlock()
	up := c.link.state().up
	if !up {
		broker = ""
	}
	return Stats{
		Connected: up, Broker: redactURL(broker), ConnectAttempts: c.connectAttempts.Load(),
		Connects: c.connects.Load(), Reconnects: c.reconnects.Load(),
		ConnectFailures: c.connFailures.Load(),
		QueueEntries:    qs.entries + qs.pending, QueueBytes: qs.bytes, QueueDropped: qs.dropped,
		QueueCorrupt: qs.corrupt, QueueRefused: c.queue.hand.refused.Load(),
		Delivered: c.delivered.Load(), Outbox: outbox, OutboxDropped: c.outboxDropped.Load(),
		InterimDropped: c.interimDropped.Load(), Requests: c.requests.Load(), RequestsBusy: c.requestsBusy.Load(),
		LastError: lastErr,
	}
}

// LastError is the last connection error seen (for the agent's state), "" if none.
func (c *Client) LastError() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastError
}

// AwaitConnection waits until the client is connected and announced (subscribed to requests,
// "online" published), ctx ends (its error) or the client is closed (ErrClosed).
func (c *Client) AwaitConnection(ctx context.Context) error {
	for {
		if c.closing.Load() {
			return ErrClosed
		}
		s := c.link.state()
		if s.ready {
			return nil
		}
		select {
		case <-s.readyCh:
		case <-c.closed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

var (
	errConnLost    = errors.New("connection lost before PUBACK")
	errReconnected = errors.New("acknowledgement not trusted: the connection was re-established meanwhile")
	errAckTimeout  = errors.New("no PUBACK in time")
)

// await waits for a QoS 1 token (or SUBACK) without ever blocking for ever.
func (c *Client) await(ctx context.Context, tok mqtt.Token, s linkState) error {
	t := time.NewTimer(c.o.AckTimeout)
	defer t.Stop()
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return err
		}
		if c.link.generation() != s.gen {
			return errReconnected
		}
		return nil
	case <-s.downCh:
		return errConnLost
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return errAckTimeout
	}
}

// pace waits d, or less if the connection drops or ctx ends: a back-off between retries
// that never delays a reconnection.
func pace(ctx context.Context, d time.Duration, down <-chan struct{}) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-down:
	case <-ctx.Done():
	}
}

// sender delivers the transcript queue in order, one message in flight: the next entry is
// sent only after the broker acknowledged the previous one, so a reconnection can never
// reorder them.
func (c *Client) sender(ctx context.Context) {
	defer c.wg.Done()
	failures := 0
	for ctx.Err() == nil {
		s := c.link.state()
		if !s.up {
			select {
			case <-s.upCh:
			case <-ctx.Done():
			}
			continue
		}
		e, ok := c.queue.Peek()
		if !ok {
			if n := c.queueDropEpisode.Swap(0); n > 0 {
				c.log.Info("transcript queue drained", "dropped_while_full", n)
			}
			select {
			case <-c.qwake:
			case <-s.downCh:
			case <-ctx.Done():
			}
			continue
		}
		err := c.await(ctx, c.pc.Publish(c.t.transcript, 1, false, e.data), s)
		if err == nil {
			c.queue.Remove(e.seq)
			c.delivered.Add(1)
			poke(c.progress)
			failures = 0
			continue
		}
		if ctx.Err() != nil {
			return
		}
		failures++
		c.log.Debug("transcript not acknowledged; will send again", "queue_seq", e.seq, "attempt", failures, "err", err)
		if errors.Is(err, errConnLost) || errors.Is(err, errReconnected) {
			continue // the next connection re-sends it at once
		}
		pace(ctx, min(time.Duration(failures)*200*time.Millisecond, 5*time.Second), s.downCh)
	}
}

type work struct {
	topic    string
	payload  []byte
	qos      byte
	retained bool
	ret      *retainedMsg // retained: which one, and the version sent
	version  uint64
	outID    uint64 // outbox entry
}

// nextWork picks what the publisher sends next: interim results (fresh or useless), then
// retained messages (latest value only), then events and responses in order.
func (c *Client) nextWork() (work, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.interim) > 0 {
		m := c.interim[0]
		c.interim = c.interim[1:]
		return work{topic: m.topic, payload: m.payload}, true
	}
	for _, r := range c.retained {
		if r.version != 0 && r.sent != r.version {
			return work{topic: r.topic, payload: r.payload, qos: 1, retained: true, ret: r, version: r.version}, true
		}
	}
	if len(c.outbox) > 0 {
		m := c.outbox[0]
		return work{topic: m.topic, payload: m.payload, qos: 1, outID: m.id}, true
	}
	if c.outDrops > 0 {
		c.log.Info("outgoing queue drained", "dropped_while_full", c.outDrops)
		c.outDrops = 0
	}
	return work{}, false
}

func (c *Client) workDone(w work) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case w.ret != nil:
		w.ret.sent = max(w.ret.sent, w.version)
	case w.outID != 0:
		if len(c.outbox) > 0 && c.outbox[0].id == w.outID {
			c.outbox = c.outbox[1:]
		}
	}
}

// publisher owns everything but transcripts: the announcement on each connection
// (subscriptions, online, then every retained message again), retained updates, events,
// responses and interim results.
func (c *Client) publisher(ctx context.Context) {
	defer c.wg.Done()
	var announced uint64
	failures := 0
	for ctx.Err() == nil {
		s := c.link.state()
		if !s.up {
			select {
			case <-s.upCh:
			case <-ctx.Done():
			}
			continue
		}
		if s.gen != announced {
			if err := c.announce(ctx, s); err != nil {
				if ctx.Err() != nil {
					return
				}
				failures++
				c.log.Debug("announcing the connection failed; retrying", "err", err)
				pace(ctx, min(time.Duration(failures)*200*time.Millisecond, 5*time.Second), s.downCh)
				continue
			}
			announced = s.gen
			failures = 0
			c.link.markReady(s.gen)
		}
		w, ok := c.nextWork()
		if !ok {
			select {
			case <-c.wake:
			case <-s.downCh:
			case <-ctx.Done():
			}
			continue
		}
		tok := c.pc.Publish(w.topic, w.qos, w.retained, w.payload)
		if w.qos == 0 {
			continue // fire and forget; paho writes it in order with the rest
		}
		if err := c.await(ctx, tok, s); err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			c.log.Debug("publish not acknowledged; will send again", "topic", w.topic, "err", err)
			if !errors.Is(err, errConnLost) && !errors.Is(err, errReconnected) {
				pace(ctx, min(time.Duration(failures)*200*time.Millisecond, 5*time.Second), s.downCh)
			}
			continue
		}
		failures = 0
		c.workDone(w)
		poke(c.progress)
	}
}

// announce runs once per connection: subscribe, publish online, and mark every retained
// message for sending again (the broker may have restarted without persistence).
func (c *Client) announce(ctx context.Context, s linkState) error {
	filters := []string{c.t.requestFilter}
	for _, p := range c.t.sharedPrefixes {
		filters = append(filters, p+"#")
	}
	if len(c.disc) > 0 {
		filters = append(filters, c.t.haStatus)
	}
	// One SUBSCRIBE per filter: Aedes with a shared persistence (aedes-persistence-redis
	// 11, the clustered setup) never acknowledges a SUBSCRIBE of several filters from a
	// persistent session (each filter stores them all, and the stores' completions
	// overwrite each other), and a few more round trips per connection cost nothing.
	for _, f := range filters {
		tok := c.pc.Subscribe(f, 1, nil) // nil: the default handler, onMessage
		if err := c.await(ctx, tok, s); err != nil {
			return fmt.Errorf("subscribe %s: %w", f, err)
		}
		if st, ok := tok.(*mqtt.SubscribeToken); ok {
			for topic, code := range st.Result() {
				if code >= 0x80 {
					c.log.Warn("broker refused subscription (check its ACL)", "topic", topic)
				}
			}
		}
	}
	if err := c.await(ctx, c.pc.Publish(c.t.availability, 1, true, "online"), s); err != nil {
		return fmt.Errorf("publish availability: %w", err)
	}
	if err := c.clearStale(ctx, s); err != nil {
		return err
	}
	c.mu.Lock()
	for _, r := range c.retained {
		r.sent = 0
	}
	c.mu.Unlock()
	return nil
}

// pending counts what Close's flush waits for.
func (c *Client) pending() int {
	qs := c.queue.Stats()
	n := qs.entries + qs.pending
	c.mu.Lock()
	defer c.mu.Unlock()
	n += len(c.outbox)
	for _, r := range c.retained {
		if r.version != 0 && r.sent != r.version {
			n++
		}
	}
	return n
}

// Close stops accepting messages, flushes what it can while ctx allows (only if the broker
// is connected: nothing would drain otherwise; undelivered transcripts stay on disk for the
// next start), publishes availability "offline" (retained), disconnects and waits for
// paho's goroutines. It is idempotent; later calls return the first call's result.
//
// Shutdown order: flush (senders still running) → stop the senders and the request worker
// → offline → DISCONNECT → wait for paho's connect goroutine.
func (c *Client) Close(ctx context.Context) error {
	c.closeOnce.Do(func() { c.closeErr = c.close(ctx) })
	return c.closeErr
}

func (c *Client) close(ctx context.Context) error {
	c.closing.Store(true)
	close(c.closed)
	if !c.started.Load() {
		c.drainHandoff()
		return nil
	}
	// Flush, bounded by ctx and flushMax. A connection that is just coming up (a short run
	// that ends while the first attempt is under way) is waited for briefly, so its
	// transcripts are delivered now rather than at the next start; a broker that is really
	// down costs at most closeConnectWait.
	flush := time.NewTimer(flushMax)
	connectWait := time.NewTimer(closeConnectWait)
	defer connectWait.Stop()
	for c.pending() > 0 {
		s := c.link.state()
		if !s.up {
			select {
			case <-s.upCh:
				continue
			case <-connectWait.C:
			case <-ctx.Done():
			case <-flush.C:
			}
			break
		}
		select {
		case <-c.progress:
			continue
		case <-s.downCh:
		case <-ctx.Done():
		case <-flush.C:
		}
		break
	}
	flush.Stop()
	if n := c.pending(); n > 0 {
		c.log.Info("closing with messages not delivered", "pending", n, "queued_transcripts", c.queue.Stats().entries)
	}
	c.cancel()
	done := make(chan struct{})
	go func() { c.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("close mqtt: request handler still running: %w", ctx.Err())
	}
	// What the queue writer has not written yet is written now, for the next start to
	// deliver (after the writer's write in progress, if the disk holds one up).
	c.drainHandoff()

	s := c.link.state()
	c.link.close()
	c.session.close()
	if s.up {
		tok := c.pc.Publish(c.t.availability, 1, true, "offline")
		t := time.NewTimer(min(remaining(ctx, 5*time.Second), 5*time.Second))
		select {
		case <-tok.Done():
			if e := tok.Error(); e != nil {
				c.log.Debug("publish offline", "err", e)
			}
		case <-t.C:
			c.log.Debug("publish offline: no PUBACK in time")
		case <-ctx.Done():
		}
		t.Stop()
	}
	// paho's Disconnect sends DISCONNECT (when connected) within the quiesce time and may
	// return before its goroutines end: if a connection attempt is under way it stops only
	// when that attempt (dial, backoff sleep) ends. paho offers no signal for that, so wait
	// for the first-connection token and for its status to settle, bounded by ctx.
	c.pc.Disconnect(250)
	c.mu.Lock()
	connTok := c.connTok
	c.mu.Unlock()
	settle := time.NewTicker(10 * time.Millisecond)
	defer settle.Stop()
	for connTok != nil && !isDone(connTok) || c.pc.IsConnected() {
		select {
		case <-settle.C:
			continue
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("close mqtt: connection attempt still running: %w", ctx.Err())
			}
		}
		break
	}
	c.log.Debug("disconnected from broker")
	return err
}

func isDone(tok mqtt.Token) bool {
	select {
	case <-tok.Done():
		return true
	default:
		return false
	}
}

// remaining is the time left before ctx's deadline, or def without one.
func remaining(ctx context.Context, def time.Duration) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return max(time.Until(d), 0)
	}
	return def
}
