// Package fleet is the operator's side of a fleet of hark devices on one MQTT broker (or
// one clustered broker): the table of devices built from their retained availability,
// state, health and configuration; one request sent to a device, a group or the whole
// fleet, with every device's answer collected by its transaction; and a feed of
// transcripts and events across devices. `hark fleet` is its command line.
//
// It speaks only what docs/mqtt.md documents: <prefix>/<device>/{availability, state,
// health, config, transcript, event, response/<op>} and the request topics
// <prefix>/<device>/request/<op>, <prefix>/group/<name>/request/<op> and
// <prefix>/fleet/request/<op>.
//
// MQTT 3.1.1 has no "end of retained messages" marker, so a snapshot of the retained
// topics ends when a marker message, published by this client after its subscription
// was acknowledged, comes back: the broker delivers the retained messages of a
// subscription before anything published after it.
package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/hark-audio/hark/internal/redact"
	"github.com/hark-audio/hark/mqttlink"
)

// Options configure a connection. Broker and TopicPrefix are required.
type Options struct {
	Broker   string // one URL or a comma-separated list (mqttlink.ParseBrokers)
	Username string
	Password string // never shown

	CAFile, CertFile, KeyFile string

	TopicPrefix string
	ClientID    string        // default "hark-fleet-<random>": several operators may run at once
	Timeout     time.Duration // connection (and snapshot) bound; default 10s
}

// Conn is a connection of the operator's tool to the broker.
type Conn struct {
	o      Options
	prefix string
	pc     mqtt.Client
	broker string // connected URL, for messages

	mu   sync.Mutex
	subs map[string]*delivery // filter -> its consumer (one per call)
}

// delivery is where one call's messages go until it cancels its subscription: a queue
// that paho's router goroutine appends to without ever waiting (it must go on reading
// acknowledgements while a call waits for one), and a pump that hands the messages to the
// call in order. A large fleet's retained messages are never dropped.
type delivery struct {
	ch     chan mqtt.Message
	done   chan struct{}
	notify chan struct{}
	mu     sync.Mutex
	q      []mqtt.Message
}

func newDelivery() *delivery {
	d := &delivery{ch: make(chan mqtt.Message), done: make(chan struct{}), notify: make(chan struct{}, 1)}
	go d.pump()
	return d
}

func (d *delivery) push(m mqtt.Message) {
	d.mu.Lock()
	d.q = append(d.q, m)
	d.mu.Unlock()
	select {
	case d.notify <- struct{}{}:
	default:
	}
}

func (d *delivery) pump() {
	for {
		d.mu.Lock()
		if len(d.q) == 0 {
			d.mu.Unlock()
			select {
			case <-d.notify:
				continue
			case <-d.done:
				return
			}
		}
		m := d.q[0]
		d.q = d.q[1:]
		d.mu.Unlock()
		select {
		case d.ch <- m:
		case <-d.done:
			return
		}
	}
}

// Connect dials the broker (the URLs in order) with a clean session: the tool keeps no
// state on the broker.
func Connect(ctx context.Context, o Options) (*Conn, error) {
	brokers, err := mqttlink.ParseBrokers(o.Broker)
	if err != nil {
		return nil, fmt.Errorf("broker address %q: %w", redactList(o.Broker), err)
	}
	if o.TopicPrefix == "" || strings.ContainsAny(o.TopicPrefix, "+#\x00") {
		return nil, fmt.Errorf("topic prefix %q must be non-empty, without + or #", o.TopicPrefix)
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.ClientID == "" {
		o.ClientID = "hark-fleet-" + randomHex(6)
	}
	tlsCfg, err := mqttlink.TLSConfig(o.CAFile, o.CertFile, o.KeyFile, brokers[0])
	if err != nil {
		return nil, err
	}
	c := &Conn{o: o, prefix: strings.TrimSuffix(o.TopicPrefix, "/"), subs: map[string]*delivery{}}
	po := mqtt.NewClientOptions()
	for _, b := range brokers {
		po.AddBroker(b.URL)
	}
	var dialing string
	var dmu sync.Mutex
	po.SetClientID(o.ClientID).SetUsername(o.Username).SetPassword(o.Password).
		SetCleanSession(true).SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(o.Timeout).SetOrderMatters(true).
		SetDefaultPublishHandler(c.route).
		SetConnectionNotificationHandler(func(_ mqtt.Client, n mqtt.ConnectionNotification) {
			if b, ok := n.(mqtt.ConnectionNotificationBroker); ok && b.Broker != nil {
				dmu.Lock()
				dialing = b.Broker.String()
				dmu.Unlock()
			}
		})
	if tlsCfg != nil {
		po.SetTLSConfig(tlsCfg)
	}
	c.pc = mqtt.NewClient(po)
	tok := c.pc.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		c.pc.Disconnect(0)
		return nil, ctx.Err()
	}
	if err := tok.Error(); err != nil {
		return nil, fmt.Errorf("connect to %s: %s", redactList(o.Broker), redact.Text(err.Error(), 300, o.Password))
	}
	dmu.Lock()
	c.broker = dialing
	dmu.Unlock()
	return c, nil
}

// Broker is the URL of the broker connected to.
func (c *Conn) Broker() string { return redact.URL(c.broker) }

// Close disconnects.
func (c *Conn) Close() { c.pc.Disconnect(250) }

// route queues a message for the consumer of the subscription it matches. It runs on
// paho's router goroutine and never waits.
func (c *Conn) route(_ mqtt.Client, m mqtt.Message) {
	var d *delivery
	c.mu.Lock()
	for filter, s := range c.subs {
		if match(filter, m.Topic()) {
			d = s
			break
		}
	}
	c.mu.Unlock()
	if d != nil {
		d.push(m)
	}
}

// match reports whether topic matches an MQTT filter with + and #.
func match(filter, topic string) bool {
	f, t := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, l := range f {
		if l == "#" {
			return true
		}
		if i >= len(t) || (l != "+" && l != t[i]) {
			return false
		}
	}
	return len(f) == len(t)
}

// subscribe subscribes to filters at QoS 1, delivering every message to one channel.
func (c *Conn) subscribe(ctx context.Context, filters ...string) (<-chan mqtt.Message, func(), error) {
	d := newDelivery()
	m := map[string]byte{}
	c.mu.Lock()
	for _, f := range filters {
		c.subs[f] = d
		m[f] = 1
	}
	c.mu.Unlock()
	var once sync.Once
	cancel := func() {
		once.Do(func() {
			close(d.done)
			c.mu.Lock()
			for _, f := range filters {
				delete(c.subs, f)
			}
			c.mu.Unlock()
			c.pc.Unsubscribe(filters...)
		})
	}
	tok := c.pc.SubscribeMultiple(m, nil)
	if err := wait(ctx, tok, c.o.Timeout); err != nil {
		cancel()
		return nil, nil, fmt.Errorf("subscribe: %w", err)
	}
	return d.ch, cancel, nil
}

func wait(ctx context.Context, tok mqtt.Token, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return errors.New("no answer from the broker in time")
	}
}

// Device is one row of the fleet table.
type Device struct {
	ID             string    `json:"device"`
	Availability   string    `json:"availability"` // online, offline, or "" when not published
	Version        string    `json:"version,omitempty"`
	Pipeline       string    `json:"pipeline,omitempty"`
	Uplink         string    `json:"uplink,omitempty"`
	Muted          bool      `json:"muted"`
	Spool          int       `json:"spool_entries"`
	Queue          int       `json:"mqtt_queue_entries"`
	Broker         string    `json:"broker,omitempty"`
	LastTranscript time.Time `json:"last_transcript_at,omitzero"`
	CPUPercent     float64   `json:"cpu_pct"`
	RSSBytes       int64     `json:"rss_bytes"`
	HealthAt       time.Time `json:"health_at,omitzero"`
	Groups         []string  `json:"groups,omitempty"`
}

// Online reports whether the device's availability is "online".
func (d Device) Online() bool { return d.Availability == "online" }

// snapshot reads the retained messages under the filters until the marker comes back.
func (c *Conn) snapshot(ctx context.Context, filters []string, each func(mqtt.Message)) error {
	marker := c.prefix + "/" + mqttlink.FleetLevel + "/snapshot/" + randomHex(8)
	ch, cancel, err := c.subscribe(ctx, append(filters, marker)...)
	if err != nil {
		return err
	}
	defer cancel()
	// QoS 1 and not retained: on Mosquitto it comes back after the retained messages the
	// subscription above delivers. Aedes streams retained messages from its persistence
	// after the SUBACK, so there the marker can overtake them (seen with Redis persistence
	// on a slower Node): after the marker, what still arrives within settle is taken too.
	if err := wait(ctx, c.pc.Publish(marker, 1, false, "end"), c.o.Timeout); err != nil {
		return fmt.Errorf("publish snapshot marker: %w", err)
	}
	t := time.NewTimer(c.o.Timeout)
	defer t.Stop()
	var quiet <-chan time.Time // armed once the marker is back
	var settleT *time.Timer
	defer func() {
		if settleT != nil {
			settleT.Stop()
		}
	}()
	for {
		select {
		case m := <-ch:
			if m.Topic() == marker {
				settleT = time.NewTimer(settle)
				quiet = settleT.C
				continue
			}
			each(m)
			if settleT != nil {
				settleT.Reset(settle)
			}
		case <-quiet:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			if quiet != nil {
				return nil // retained messages still trickling in at the deadline: take what came
			}
			return errors.New("the broker did not deliver the retained messages in time")
		}
	}
}

// settle is how long a snapshot keeps listening after its marker came back for retained
// messages a broker delivers late (see snapshot).
const settle = 300 * time.Millisecond

// List builds the table of devices from their retained availability, state, health and
// configuration, sorted by device id.
func (c *Conn) List(ctx context.Context) ([]Device, error) {
	devs := map[string]*Device{}
	get := func(id string) *Device {
		d := devs[id]
		if d == nil {
			d = &Device{ID: id}
			devs[id] = d
		}
		return d
	}
	var filters []string
	for _, leaf := range []string{"availability", "state", "health", "config"} {
		filters = append(filters, c.prefix+"/+/"+leaf)
	}
	err := c.snapshot(ctx, filters, func(m mqtt.Message) {
		id, leaf, ok := c.split(m.Topic())
		if !ok || len(m.Payload()) == 0 {
			return
		}
		d := get(id)
		parseInto(d, leaf, m.Payload())
	})
	if err != nil {
		return nil, err
	}
	out := make([]Device, 0, len(devs))
	for _, d := range devs {
		out = append(out, *d)
	}
	sortDevices(out)
	return out, nil
}

// split takes <prefix>/<device>/<leaf...> apart; the reserved fleet and group levels are
// not devices.
func (c *Conn) split(topic string) (id, leaf string, ok bool) {
	rest, ok := strings.CutPrefix(topic, c.prefix+"/")
	if !ok {
		return "", "", false
	}
	id, leaf, ok = strings.Cut(rest, "/")
	if !ok || id == "" || mqttlink.ReservedID(id) {
		return "", "", false
	}
	return id, leaf, true
}

// parseInto updates d from one retained payload; what does not parse is left out (a
// device of another version may publish more or less).
func parseInto(d *Device, leaf string, p []byte) {
	switch leaf {
	case "availability":
		d.Availability = strings.TrimSpace(string(p))
	case "state":
		var s struct {
			Pipeline string `json:"pipeline"`
			Muted    bool   `json:"muted"`
			Uplink   struct {
				State string `json:"state"`
			} `json:"uplink"`
			Spool struct {
				Entries int `json:"entries"`
			} `json:"spool"`
		}
		if json.Unmarshal(p, &s) == nil {
			d.Pipeline, d.Muted, d.Uplink, d.Spool = s.Pipeline, s.Muted, s.Uplink.State, s.Spool.Entries
		}
	case "health":
		var h struct {
			At             time.Time `json:"at"`
			Version        string    `json:"version"`
			CPUPercent     float64   `json:"cpu_pct"`
			RSS            int64     `json:"rss_bytes"`
			LastTranscript time.Time `json:"last_transcript_at"`
			MQTT           struct {
				Broker       string `json:"broker"`
				QueueEntries int    `json:"queue_entries"`
			} `json:"mqtt"`
		}
		if json.Unmarshal(p, &h) == nil {
			d.HealthAt, d.Version, d.CPUPercent, d.RSSBytes, d.LastTranscript = h.At, h.Version, h.CPUPercent, h.RSS, h.LastTranscript
			d.Broker, d.Queue = brokerShown(h.MQTT.Broker), h.MQTT.QueueEntries
		}
	case "config":
		var cfg struct {
			MQTT struct {
				Groups []string `json:"groups"`
			} `json:"mqtt"`
		}
		if json.Unmarshal(p, &cfg) == nil {
			d.Groups = cfg.MQTT.Groups
		}
	}
}

// brokerShown is a device's broker URL as the table shows it: redacted, and without
// anything before an '@' that the redaction did not recognise as a URL's user info (a
// device never sends one; anyone able to publish under the prefix could).
func brokerShown(s string) string {
	s = redact.URL(s)
	if i := strings.LastIndexByte(s, '@'); i >= 0 && !strings.Contains(s[:i], redact.Mark) {
		s = s[i+1:]
	}
	return s
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// redactList redacts each URL of a comma-separated broker list.
func redactList(s string) string {
	items := strings.Split(s, ",")
	for i, it := range items {
		items[i] = redact.URL(it)
	}
	return strings.Join(items, ",")
}
