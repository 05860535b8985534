// Package config is hark's configuration: the schema, its defaults, strict decoding that
// names the offending key in every error, validation, the layering of defaults, file,
// environment and persisted remote changes (remembering where each value came from),
// redaction for display, and the rules for what may be changed remotely.
//
// The same code validates the file at start, a reload on SIGHUP and a remote change over
// MQTT, so a value accepted in one place is accepted in all.
package config

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/hark-audio/hark/mqttlink"
	"github.com/hark-audio/hark/vad"
	"gopkg.in/yaml.v3"
)

// Config is the whole configuration. Every key is optional; unknown keys are an error.
type Config struct {
	DeviceID string     `yaml:"device_id" json:"device_id"`
	StateDir string     `yaml:"state_dir" json:"state_dir"`
	Capture  Capture    `yaml:"capture" json:"capture"`
	VAD      vad.Config `yaml:"vad" json:"vad"`
	Deepgram Deepgram   `yaml:"deepgram" json:"deepgram"`
	MQTT     MQTT       `yaml:"mqtt" json:"mqtt"`
	Spool    Spool      `yaml:"spool" json:"spool"`
	Log      Log        `yaml:"log" json:"log"`
	Remote   Remote     `yaml:"remote" json:"remote"`
}

// Capture selects where audio comes from.
type Capture struct {
	// Device is a capture device name (substring match) or id; "" is the system default.
	Device string `yaml:"device" json:"device"`
	// Input replaces the microphone: a WAV file path, or "-" for raw s16le 16 kHz mono on stdin.
	Input string `yaml:"input" json:"input"`
	// SampleRate is the capture rate. Only 16000 is accepted: the pipeline runs at 16 kHz
	// and the audio system converts from the device's own rate (kept as a key so that
	// configurations that spell it out stay valid).
	SampleRate int `yaml:"sample_rate" json:"sample_rate"`
	// Backend is auto, alsa, pulseaudio or null.
	Backend string `yaml:"backend" json:"backend"`
	// Realtime paces file and stdin input at real time; false reads as fast as possible.
	Realtime bool `yaml:"realtime" json:"realtime"`
	// RingMS is the capture ring's capacity; overflow drops the oldest audio.
	RingMS int `yaml:"ring_ms" json:"ring_ms"`
}

// Deepgram holds the speech-to-text service settings.
type Deepgram struct {
	URL string `yaml:"url" json:"url"`
	// PrerecordedURL defaults to URL with wss→https, ws→http.
	PrerecordedURL string `yaml:"prerecorded_url" json:"prerecorded_url"`
	// APIKeyFile holds the key; else $CREDENTIALS_DIRECTORY/deepgram-api-key, else $DEEPGRAM_API_KEY.
	APIKeyFile string `yaml:"api_key_file" json:"api_key_file"`
	// TokenFile holds a short-lived Deepgram token (JWT, sent as "Bearer") instead of an API
	// key, re-read at every connection and upload so an external refresher can replace it;
	// else $CREDENTIALS_DIRECTORY/deepgram-token. When a token is configured it is used.
	TokenFile   string `yaml:"token_file" json:"token_file"`
	Model       string `yaml:"model" json:"model"`
	Language    string `yaml:"language" json:"language"`
	Punctuate   bool   `yaml:"punctuate" json:"punctuate"`
	SmartFormat bool   `yaml:"smart_format" json:"smart_format"`
	// InterimResults asks for interim results and publishes them on <base>/transcript/interim.
	InterimResults bool `yaml:"interim_results" json:"interim_results"`
	// EndpointingMS is the silence before speech_final; 0 sends endpointing=false.
	EndpointingMS int `yaml:"endpointing_ms" json:"endpointing_ms"`
	// UtteranceEndMS enables UtteranceEnd messages (needs interim_results); 0 = off.
	UtteranceEndMS  int      `yaml:"utterance_end_ms" json:"utterance_end_ms"`
	VADEvents       bool     `yaml:"vad_events" json:"vad_events"`
	Diarize         bool     `yaml:"diarize" json:"diarize"`
	Numerals        bool     `yaml:"numerals" json:"numerals"`
	FillerWords     bool     `yaml:"filler_words" json:"filler_words"`
	ProfanityFilter bool     `yaml:"profanity_filter" json:"profanity_filter"`
	Keyterm         []string `yaml:"keyterm" json:"keyterm"`   // nova-3
	Keywords        []string `yaml:"keywords" json:"keywords"` // nova-2 and older
	Redact          []string `yaml:"redact" json:"redact"`
	Tag             []string `yaml:"tag" json:"tag"`
	// Extra holds further query options passed through as given (key → value). It never
	// replaces an option hark sets, and options that send audio or results elsewhere
	// (callback) are refused; remotely it can be changed only if remote.allow lists it.
	Extra map[string]string `yaml:"extra" json:"extra"`
	// KeepAlive is the longest the writer stays silent while connected (< 10 s).
	KeepAlive Duration `yaml:"keepalive" json:"keepalive"`
	// IdleClose closes the stream gracefully after this much silence (0 = keep it open);
	// it reopens at the next speech onset.
	IdleClose Duration `yaml:"idle_close" json:"idle_close"`
	// ConnectTimeout bounds the websocket handshake.
	ConnectTimeout Duration `yaml:"connect_timeout" json:"connect_timeout"`
	// ResultTimeout is no longer used: a service that sends nothing for silence or leaves
	// a Finalize unanswered is healthy, and dead connections are found by websocket
	// ping/pong and write deadlines. The key is still accepted (and validated) so that
	// existing configuration files load.
	ResultTimeout Duration `yaml:"result_timeout" json:"result_timeout"`
}

// MQTT holds the broker connection and topic settings.
type MQTT struct {
	// Broker is e.g. tcp://localhost:1883 or ssl://host:8883; "" disables MQTT and
	// transcripts are printed as JSON lines on stdout.
	Broker      string `yaml:"broker" json:"broker"`
	TopicPrefix string `yaml:"topic_prefix" json:"topic_prefix"`
	// ClientID must be unique on the broker; default "hark-<device_id>" under the default
	// topic prefix, else derived from the prefix and the device id (mqttlink.InstanceID).
	ClientID string `yaml:"client_id" json:"client_id"`
	Username string `yaml:"username" json:"username"`
	// PasswordFile holds the password; else $CREDENTIALS_DIRECTORY/mqtt-password, else $HARK_MQTT_PASSWORD.
	PasswordFile string `yaml:"password_file" json:"password_file"`
	CAFile       string `yaml:"ca_file" json:"ca_file"`
	CertFile     string `yaml:"cert_file" json:"cert_file"`
	KeyFile      string `yaml:"key_file" json:"key_file"`
	// QueueMax bounds the transcripts kept (on disk) while the broker is unreachable.
	QueueMax int `yaml:"queue_max" json:"queue_max"`
	// HealthInterval is the period of the retained health message.
	HealthInterval Duration `yaml:"health_interval" json:"health_interval"`
	// Discovery publishes Home Assistant discovery under DiscoveryPrefix.
	Discovery       bool   `yaml:"discovery" json:"discovery"`
	DiscoveryPrefix string `yaml:"discovery_prefix" json:"discovery_prefix"`
	// Groups name the groups the device belongs to: it also takes the requests sent to
	// <topic_prefix>/group/<name>/request/<op> (and, always, <topic_prefix>/fleet/request/<op>).
	Groups []string `yaml:"groups" json:"groups"`
}

// Spool bounds the on-disk store of speech that could not be streamed.
type Spool struct {
	Dir string `yaml:"dir" json:"dir"` // default <state_dir>/spool
	// MaxBytes bounds the spool; the oldest utterances are evicted (and counted) first.
	MaxBytes int64 `yaml:"max_bytes" json:"max_bytes"`
	// MaxAge evicts utterances older than this.
	MaxAge Duration `yaml:"max_age" json:"max_age"`
	// Concurrency is how many uploads run at once.
	Concurrency int `yaml:"concurrency" json:"concurrency"`
}

// Log selects log format and level.
type Log struct {
	Level  string `yaml:"level" json:"level"`   // debug, info, warn, error
	Format string `yaml:"format" json:"format"` // auto (text; no timestamps under journald), text, json
}

// Remote governs configuration changes over MQTT. Only the local file can set it.
type Remote struct {
	// Enabled accepts config/set requests.
	Enabled bool `yaml:"enabled" json:"enabled"`
	// Allow lists sensitive keys (see SensitiveKeys) the file permits to change remotely.
	Allow []string `yaml:"allow" json:"allow"`
}

// Default returns the built-in defaults. DeviceID and directories that depend on the
// environment are filled in by Load.
func Default() Config {
	return Config{
		Capture: Capture{SampleRate: 16000, Backend: "auto", Realtime: true, RingMS: 5000},
		VAD:     vad.DefaultConfig(),
		Deepgram: Deepgram{
			URL: "wss://api.deepgram.com/v1/listen", Model: "nova-3", Language: "en",
			Punctuate: true, SmartFormat: true, EndpointingMS: 300,
			KeepAlive: Duration(4 * time.Second), IdleClose: Duration(30 * time.Second),
			ConnectTimeout: Duration(10 * time.Second), ResultTimeout: Duration(15 * time.Second),
		},
		MQTT: MQTT{TopicPrefix: mqttlink.DefaultTopicPrefix, QueueMax: 1000, HealthInterval: Duration(60 * time.Second),
			Discovery: true, DiscoveryPrefix: "homeassistant"},
		Spool:  Spool{MaxBytes: 256 << 20, MaxAge: Duration(7 * 24 * time.Hour), Concurrency: 2},
		Log:    Log{Level: "info", Format: "auto"},
		Remote: Remote{Enabled: true},
	}
}

// Duration is a time.Duration written as a Go duration string ("30s", "1m30s") in YAML
// and JSON.
type Duration time.Duration

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML accepts a duration string with a unit.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a duration such as \"30s\"")
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("expected a duration such as \"30s\", got %q", n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// MarshalJSON writes the duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }
