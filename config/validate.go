package config

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/hark-audio/hark/audio"
	"github.com/hark-audio/hark/mqttlink"
	"github.com/hark-audio/hark/vad"
)

// validDeviceID: 1-64 of [A-Za-z0-9_-]. A loop, not a regexp: compiling `{1,64}` at package
// init was a third of the CPU instructions of starting any hark command.
func validDeviceID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Validate checks every section. The error is an *Error naming the key.
func (c Config) Validate() error {
	bad := func(key, format string, a ...any) error { return &Error{Key: key, Msg: fmt.Sprintf(format, a...)} }
	if !validDeviceID(c.DeviceID) {
		return bad("device_id", "%q must be 1-64 letters, digits, '-' or '_' (it is part of MQTT topics)", c.DeviceID)
	}
	if mqttlink.ReservedID(c.DeviceID) {
		return bad("device_id", "%q is reserved: <topic_prefix>/%s/... addresses several devices; choose another id", c.DeviceID, strings.ToLower(c.DeviceID))
	}
	if c.StateDir == "" {
		return bad("state_dir", "must not be empty")
	}
	cp := c.Capture
	if cp.SampleRate != audio.SampleRate {
		// The whole pipeline (VAD, gate, stream, spool) runs at 16 kHz, and the capture is
		// always opened at 16 kHz with the audio system converting from the device's own
		// rate; a different value would be shown as in effect and silently ignored.
		return bad("capture.sample_rate", "%d is not supported: hark captures at %d Hz and the audio system converts from the device's own rate (a 48 kHz microphone works as it is); remove the key", cp.SampleRate, audio.SampleRate)
	}
	switch cp.Backend {
	case "auto", "alsa", "pulseaudio", "null":
	default:
		return bad("capture.backend", "%q is not one of auto, alsa, pulseaudio, null", cp.Backend)
	}
	if cp.RingMS < 200 || cp.RingMS > 60000 {
		return bad("capture.ring_ms", "%d is out of range [200, 60000]", cp.RingMS)
	}
	if err := c.VAD.Validate(); err != nil {
		var fe *vad.FieldError
		if errors.As(err, &fe) {
			return bad("vad."+fe.Key, "%s", fe.Msg)
		}
		return bad("vad", "%v", err)
	}
	if err := validateDeepgram(c.Deepgram); err != nil {
		return err
	}
	m := c.MQTT
	if m.Broker != "" {
		// The same function the MQTT client dials with: what passes here can be used.
		// A comma-separated list names the nodes of one clustered broker.
		bs, err := mqttlink.ParseBrokers(m.Broker)
		if err != nil {
			return bad("mqtt.broker", "%q: %v", redactBrokers(m.Broker), err)
		}
		for _, f := range []struct{ key, v string }{{"mqtt.ca_file", m.CAFile}, {"mqtt.cert_file", m.CertFile}, {"mqtt.key_file", m.KeyFile}} {
			if f.v != "" && !bs[0].TLS {
				return bad(f.key, "%s", mqttlink.ErrTLSFilesWithoutTLS)
			}
		}
	}
	if why := checkTopicPrefix(m.TopicPrefix); why != "" {
		return bad("mqtt.topic_prefix", "%s", why)
	}
	if m.TopicPrefix == "" || strings.ContainsAny(m.TopicPrefix, "+#") || strings.HasPrefix(m.TopicPrefix, "/") || strings.HasSuffix(m.TopicPrefix, "/") {
		return bad("mqtt.topic_prefix", "%q must be non-empty, without + or #, and not start or end with /", m.TopicPrefix)
	}
	if m.ClientID == "" || len(m.ClientID) > 128 {
		return bad("mqtt.client_id", "must be 1-128 characters")
	}
	if (m.CertFile == "") != (m.KeyFile == "") {
		return bad("mqtt.cert_file", "cert_file and key_file go together")
	}
	if m.QueueMax < 1 || m.QueueMax > 1000000 {
		return bad("mqtt.queue_max", "%d is out of range [1, 1000000]", m.QueueMax)
	}
	if m.HealthInterval.D() < time.Second || m.HealthInterval.D() > 24*time.Hour {
		return bad("mqtt.health_interval", "%s is out of range [1s, 24h]", m.HealthInterval)
	}
	if why := checkTopicPrefix(m.DiscoveryPrefix); why != "" {
		return bad("mqtt.discovery_prefix", "%s", why)
	}
	if m.DiscoveryPrefix == "" || strings.ContainsAny(m.DiscoveryPrefix, "+#") {
		return bad("mqtt.discovery_prefix", "%q must be non-empty, without + or #", m.DiscoveryPrefix)
	}
	if err := validateGroups(m.Groups); err != nil {
		return err
	}
	s := c.Spool
	if s.MaxBytes < 64<<10 {
		return bad("spool.max_bytes", "%d is below the minimum of 65536", s.MaxBytes)
	}
	if s.MaxAge.D() < time.Minute {
		return bad("spool.max_age", "%s is below the minimum of 1m", s.MaxAge)
	}
	if s.Concurrency < 1 || s.Concurrency > 8 {
		return bad("spool.concurrency", "%d is out of range [1, 8]", s.Concurrency)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return bad("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "auto", "text", "json":
	default:
		return bad("log.format", "%q is not one of auto, text, json", c.Log.Format)
	}
	for _, k := range c.Remote.Allow {
		if !isSensitive(k) {
			return bad("remote.allow", "%q is not a sensitive key (those are: %s)", k, strings.Join(SensitiveKeys, ", "))
		}
	}
	return nil
}

func validateDeepgram(d Deepgram) error {
	bad := func(key, format string, a ...any) error {
		return &Error{Key: "deepgram." + key, Msg: fmt.Sprintf(format, a...)}
	}
	u, err := url.Parse(d.URL)
	if err != nil || u.Host == "" || (u.Scheme != "ws" && u.Scheme != "wss") {
		return bad("url", "%q is not a ws:// or wss:// URL", Redact(d.URL))
	}
	if u.User != nil {
		return bad("url", "must not carry credentials; use deepgram.api_key_file")
	}
	p, err := url.Parse(d.PrerecordedURL)
	if err != nil || p.Host == "" || (p.Scheme != "http" && p.Scheme != "https") {
		return bad("prerecorded_url", "%q is not an http:// or https:// URL", Redact(d.PrerecordedURL))
	}
	if p.User != nil {
		return bad("prerecorded_url", "must not carry credentials; use deepgram.api_key_file or deepgram.token_file")
	}
	if d.Model == "" {
		return bad("model", "must not be empty (an omitted model means an old default)")
	}
	if d.Language == "" {
		return bad("language", "must not be empty")
	}
	if d.EndpointingMS < 0 || d.EndpointingMS > 60000 {
		return bad("endpointing_ms", "%d is out of range [0, 60000] (0 turns endpointing off)", d.EndpointingMS)
	}
	if d.UtteranceEndMS != 0 {
		if d.UtteranceEndMS < 1000 || d.UtteranceEndMS > 60000 {
			return bad("utterance_end_ms", "%d is out of range [1000, 60000] (0 turns it off)", d.UtteranceEndMS)
		}
		if !d.InterimResults {
			return bad("utterance_end_ms", "needs deepgram.interim_results: true")
		}
	}
	nova3 := strings.HasPrefix(d.Model, "nova-3")
	if len(d.Keywords) > 0 && nova3 {
		return bad("keywords", "not supported by %s; use deepgram.keyterm", d.Model)
	}
	if len(d.Keyterm) > 0 && !nova3 {
		return bad("keyterm", "only supported by nova-3 models; use deepgram.keywords with %s", d.Model)
	}
	if err := validateExtra(d.Extra); err != nil {
		return bad("extra", "%s", err)
	}
	if d.KeepAlive.D() < time.Second || d.KeepAlive.D() > 9*time.Second {
		return bad("keepalive", "%s is out of range [1s, 9s] (the service closes after about 10 s of nothing)", d.KeepAlive)
	}
	if d.IdleClose != 0 && d.IdleClose.D() < 10*time.Second {
		return bad("idle_close", "%s is below 10s (0 keeps the stream open)", d.IdleClose)
	}
	if d.ConnectTimeout.D() < time.Second || d.ConnectTimeout.D() > time.Minute {
		return bad("connect_timeout", "%s is out of range [1s, 1m]", d.ConnectTimeout)
	}
	if d.ResultTimeout.D() < 3*time.Second || d.ResultTimeout.D() > 5*time.Minute {
		return bad("result_timeout", "%s is out of range [3s, 5m]", d.ResultTimeout)
	}
	return nil
}

// maxGroups bounds mqtt.groups: each is one more subscription on the broker.
const maxGroups = 32

// validateGroups checks mqtt.groups: each name a topic level as a device id is, no repeats.
func validateGroups(groups []string) error {
	if len(groups) > maxGroups {
		return &Error{Key: "mqtt.groups", Msg: fmt.Sprintf("%d groups, more than the limit of %d", len(groups), maxGroups)}
	}
	seen := map[string]bool{}
	for _, g := range groups {
		if !validDeviceID(g) {
			return &Error{Key: "mqtt.groups", Msg: fmt.Sprintf("%q must be 1-64 letters, digits, '-' or '_' (it is part of MQTT topics)", g)}
		}
		if seen[g] {
			return &Error{Key: "mqtt.groups", Msg: fmt.Sprintf("%q is listed twice", g)}
		}
		seen[g] = true
	}
	return nil
}

// redactBrokers is Redact for each URL of a comma-separated broker list.
func redactBrokers(s string) string {
	items := strings.Split(s, ",")
	for i, it := range items {
		items[i] = Redact(it)
	}
	return strings.Join(items, ",")
}
