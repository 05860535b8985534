package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/hark-audio/hark/mqttlink"
)

// Target is who a request goes to: exactly one of Device, Group, All.
type Target struct {
	Device string
	Group  string
	All    bool
}

func (t Target) check() error {
	n := 0
	for _, set := range []bool{t.Device != "", t.Group != "", t.All} {
		if set {
			n++
		}
	}
	if n != 1 {
		return errors.New("give exactly one of a device, a group or all")
	}
	for _, s := range []string{t.Device, t.Group} {
		if strings.ContainsAny(s, "+#/\x00") {
			return fmt.Errorf("%q must not contain +, #, / or NUL", s)
		}
	}
	if mqttlink.ReservedID(t.Device) {
		return fmt.Errorf("%q is a reserved name, not a device", t.Device)
	}
	return nil
}

// Topic is the request topic for op.
func (c *Conn) Topic(t Target, op string) string {
	switch {
	case t.All:
		return c.prefix + "/" + mqttlink.FleetLevel + "/request/" + op
	case t.Group != "":
		return c.prefix + "/" + mqttlink.GroupLevel + "/" + t.Group + "/request/" + op
	default:
		return c.prefix + "/" + t.Device + "/request/" + op
	}
}

// Answer is one device's outcome.
type Answer struct {
	Device string          `json:"device"`
	Status string          `json:"status"` // ok, error, no_answer
	Error  string          `json:"error,omitempty"`
	Data   json.RawMessage `json:"data,omitempty"`
	// Offline: the device's retained availability said offline when the request was sent
	// (a device with a persistent session still gets it from the broker when it returns).
	Offline bool `json:"offline,omitempty"`
}

// Failed reports whether the answer is not ok.
func (a Answer) Failed() bool { return a.Status != "ok" }

// Request sends one request (fields, plus a transaction this call chooses, as a JSON
// object) to the target and collects the devices' answers on their <base>/response/<op>
// until every expected device answered or timeout passed. The devices expected are those
// the retained topics show: the device itself; for a group, those whose retained
// configuration lists it; for all, every device with a retained availability. A device
// that answers without being expected is reported too. Answers are sorted by device.
func (c *Conn) Request(ctx context.Context, t Target, op string, fields map[string]any, timeout time.Duration) ([]Answer, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	if op == "" || strings.ContainsAny(op, "+#\x00") {
		return nil, fmt.Errorf("operation %q is not valid", op)
	}
	// The responses are subscribed first, so that no answer can come before the
	// subscription; the roster is read from the retained topics in the same snapshot.
	respFilter := c.prefix + "/+/response/" + op
	if t.Device != "" {
		respFilter = c.prefix + "/" + t.Device + "/response/" + op
	}
	resp, cancel, err := c.subscribe(ctx, respFilter)
	if err != nil {
		return nil, err
	}
	defer cancel()
	expected := map[string]*Device{}
	if t.Device != "" {
		expected[t.Device] = &Device{ID: t.Device}
	}
	devs := map[string]*Device{}
	err = c.snapshot(ctx, []string{c.prefix + "/+/availability", c.prefix + "/+/config"}, func(m mqtt.Message) {
		id, leaf, ok := c.split(m.Topic())
		if !ok || len(m.Payload()) == 0 {
			return
		}
		d := devs[id]
		if d == nil {
			d = &Device{ID: id}
			devs[id] = d
		}
		parseInto(d, leaf, m.Payload())
	})
	if err != nil {
		return nil, err
	}
	for id, d := range devs {
		switch {
		case t.Device != "" && id == t.Device:
			expected[id] = d
		case t.All && d.Availability != "":
			expected[id] = d
		case t.Group != "" && slices.Contains(d.Groups, t.Group):
			expected[id] = d
		}
	}

	txn := "fleet-" + randomHex(8)
	body := map[string]any{}
	for k, v := range fields {
		body[k] = v
	}
	body["transaction"] = txn
	payload, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	// Not retained: a retained request would run again at every reconnection (and
	// devices refuse it).
	if err := wait(ctx, c.pc.Publish(c.Topic(t, op), 1, false, payload), c.o.Timeout); err != nil {
		return nil, fmt.Errorf("publish request: %w", err)
	}

	answers := map[string]Answer{}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	pending := func() bool {
		for id := range expected {
			if _, ok := answers[id]; !ok {
				return true
			}
		}
		return len(expected) == 0 // nobody known: wait for whoever answers
	}
collect:
	for pending() {
		select {
		case m := <-resp:
			id, _, ok := c.split(m.Topic())
			if !ok {
				continue
			}
			var r struct {
				Transaction json.RawMessage `json:"transaction"`
				Status      string          `json:"status"`
				Error       string          `json:"error"`
				Data        json.RawMessage `json:"data"`
			}
			if json.Unmarshal(m.Payload(), &r) != nil {
				continue
			}
			var got string
			if json.Unmarshal(r.Transaction, &got) != nil || got != txn {
				continue // another operator's request, or an old answer
			}
			a := Answer{Device: id, Status: r.Status, Error: r.Error, Data: r.Data}
			if a.Status != "ok" && a.Status != "error" {
				a.Status, a.Error = "error", fmt.Sprintf("unexpected status %q", r.Status)
			}
			answers[id] = a
		case <-deadline.C:
			break collect
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	for id, d := range expected {
		if _, ok := answers[id]; !ok {
			answers[id] = Answer{Device: id, Status: "no_answer", Offline: d.Availability == "offline"}
		}
	}
	out := make([]Answer, 0, len(answers))
	for _, a := range answers {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Device < out[j].Device })
	return out, nil
}

// Message is one transcript or event seen by Watch.
type Message struct {
	Device  string          `json:"device"`
	Kind    string          `json:"kind"` // transcript, event, availability
	Payload json.RawMessage `json:"payload"`
}

// Watch follows transcripts, events and availability changes of the target's devices
// (every device when t is the zero Target) until ctx ends, calling each for every message
// in arrival order. A group's members are learnt from the retained configurations, and
// followed as they change. Retained availability at subscription is not reported (it is
// the present, not news); later changes are.
func (c *Conn) Watch(ctx context.Context, t Target, each func(Message)) error {
	if (t != Target{}) {
		if err := t.check(); err != nil {
			return err
		}
	}
	dev := "+"
	if t.Device != "" {
		dev = t.Device
	}
	filters := []string{c.prefix + "/" + dev + "/transcript", c.prefix + "/" + dev + "/event",
		c.prefix + "/" + dev + "/availability", c.prefix + "/" + dev + "/config"}
	ch, cancel, err := c.subscribe(ctx, filters...)
	if err != nil {
		return err
	}
	defer cancel()
	members := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-ch:
			id, leaf, ok := c.split(m.Topic())
			if !ok {
				continue
			}
			if leaf == "config" {
				var d Device
				parseInto(&d, leaf, m.Payload())
				members[id] = t.Group != "" && slices.Contains(d.Groups, t.Group)
				continue
			}
			if t.Group != "" && !members[id] {
				continue
			}
			if leaf == "availability" && m.Retained() {
				continue
			}
			p := m.Payload()
			if leaf == "availability" {
				p, _ = json.Marshal(strings.TrimSpace(string(p)))
			} else if !json.Valid(p) {
				continue
			}
			each(Message{Device: id, Kind: leaf, Payload: p})
		}
	}
}

func sortDevices(d []Device) {
	sort.Slice(d, func(i, j int) bool { return d[i].ID < d[j].ID })
}
