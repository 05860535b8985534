package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"sync"

	"github.com/hark-audio/hark/config"
	"github.com/hark-audio/hark/mqttlink"
	"github.com/hark-audio/hark/transcript"
)

// publisher is where results go: MQTT when a broker is configured, else stdout.
// Every method returns promptly whatever the network does.
type publisher interface {
	PublishTranscript(transcript.Utterance) error
	PublishInterim(v any)
	PublishEvent(v any)
	SetState(v any)
	SetConfig(b []byte)
	PublishHealth(v any)
	Close(ctx context.Context) error
}

// stdoutPublisher prints each final utterance as one JSON line (the transcript payload);
// state, events and health go nowhere (they are logged by their producers).
type stdoutPublisher struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *stdoutPublisher) PublishTranscript(u transcript.Utterance) error {
	b, err := json.Marshal(u)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	_, err = fmt.Fprintf(p.w, "%s\n", b)
	return err
}

func (p *stdoutPublisher) PublishInterim(any)          {}
func (p *stdoutPublisher) PublishEvent(any)            {}
func (p *stdoutPublisher) SetState(any)                {}
func (p *stdoutPublisher) SetConfig([]byte)            {}
func (p *stdoutPublisher) PublishHealth(any)           {}
func (p *stdoutPublisher) Close(context.Context) error { return nil }

// mqttPublisher adds Stats to the MQTT client for the health payload.
type mqttPublisher struct{ *mqttlink.Client }

func (m mqttPublisher) Stats() any { return m.Client.Stats() }

// newPublisher builds the publisher without starting it: Run assigns it first, so the
// request handler (which publishes) never sees it unset.
func (a *Agent) newPublisher(cfg config.Config) (publisher, error) {
	if cfg.MQTT.Broker == "" {
		return &stdoutPublisher{w: a.opts.Stdout}, nil
	}
	password, from, err := config.Secret(cfg.MQTT.PasswordFile, "mqtt-password", "HARK_MQTT_PASSWORD", a.opts.Environ)
	if err != nil {
		return nil, &ConfigError{fmt.Errorf("mqtt password: %w", err)}
	}
	if password != "" {
		a.log.Info("mqtt password loaded", "from", from)
	}
	o := mqttOptions(cfg, password)
	o.Logger, o.Version, o.Handler = a.opts.Logger.With("component", "mqtt"), a.opts.Version, a.handleRequest
	c, err := mqttlink.New(o)
	if err != nil {
		return nil, &ConfigError{fmt.Errorf("mqtt: %w", err)}
	}
	return mqttPublisher{c}, nil
}

// mqttOptions maps the configuration onto the MQTT client's options: one place, used by
// Run and by Check.
func mqttOptions(cfg config.Config, password string) mqttlink.Options {
	return mqttlink.Options{
		Broker: cfg.MQTT.Broker, ClientID: cfg.MQTT.ClientID, Username: cfg.MQTT.Username, Password: password,
		CAFile: cfg.MQTT.CAFile, CertFile: cfg.MQTT.CertFile, KeyFile: cfg.MQTT.KeyFile,
		TopicPrefix: cfg.MQTT.TopicPrefix, DeviceID: cfg.DeviceID, Groups: cfg.MQTT.Groups,
		QueueDir: filepath.Join(cfg.StateDir, "mqtt-queue"), QueueMax: cfg.MQTT.QueueMax,
		Discovery: cfg.MQTT.Discovery, DiscoveryPrefix: cfg.MQTT.DiscoveryPrefix,
		AnnouncedFile: filepath.Join(cfg.StateDir, "mqtt-announced.json"),
	}
}
