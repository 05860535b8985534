package agent

import (
	"fmt"

	"github.com/hark-audio/hark/config"
	"github.com/hark-audio/hark/mqttlink"
)

// Check reports what would stop Run at start that the configuration alone decides, beyond
// what config.Load validates: a secret file it names that cannot be read, and MQTT settings
// the client cannot use (its TLS files must load). `hark run` and `hark config check` both
// call it, so the check refuses whatever the daemon would. What depends on the machine the
// service runs on (its systemd credentials, the microphone) is not judged here.
func Check(l *config.Loaded, environ []string) error {
	cfg := l.Config
	if _, _, err := config.Secret(cfg.Deepgram.APIKeyFile, "deepgram-api-key", "DEEPGRAM_API_KEY", environ); err != nil {
		return &ConfigError{&config.Error{Key: "deepgram.api_key_file", Msg: err.Error(), Source: l.Source("deepgram.api_key_file")}}
	}
	if cfg.MQTT.Broker == "" {
		return nil
	}
	if _, _, err := config.Secret(cfg.MQTT.PasswordFile, "mqtt-password", "HARK_MQTT_PASSWORD", environ); err != nil {
		return &ConfigError{&config.Error{Key: "mqtt.password_file", Msg: err.Error(), Source: l.Source("mqtt.password_file")}}
	}
	if err := mqttlink.Check(mqttOptions(cfg, "")); err != nil {
		return &ConfigError{fmt.Errorf("mqtt: %w", err)}
	}
	return nil
}
