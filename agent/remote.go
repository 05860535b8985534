package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hark-audio/hark/config"
	"github.com/hark-audio/hark/mqttlink"
	"github.com/hark-audio/hark/uplink/live"
)

// handleRequest answers <base>/request/<op>. It runs on the MQTT client's request worker,
// never on paho's own goroutines. body is a JSON object, or a plain payload (ON, OFF, true,
// false) for the simple commands; errors are written for the person who sent the request
// and never carry Go's decoding messages.
func (a *Agent) handleRequest(ctx context.Context, op string, body []byte) (any, error) {
	switch op {
	case "config/get":
		return a.configData(), nil
	case "config/set":
		const want = `expected {"config": {partial configuration}}`
		fields, err := requestFields(body, want)
		if err != nil {
			return nil, err
		}
		cfg, ok := fields["config"]
		if !ok || string(cfg) == "null" {
			return nil, errors.New(`missing "config": ` + want)
		}
		return a.ApplyRemote(cfg)
	case "mute":
		const want = `expected ON or OFF, true or false, or {"muted": true}`
		var raw, discardRaw []byte
		if mqttlink.IsPlain(body) {
			raw = body
		} else {
			fields, err := requestFields(body, want)
			if err != nil {
				return nil, err
			}
			if raw = fields["muted"]; raw == nil {
				return nil, errors.New(`missing "muted": ` + want)
			}
			discardRaw = fields["discard_spool"]
		}
		muted, ok := parseSwitch(raw)
		if !ok {
			return nil, fmt.Errorf("%s, got %s", want, quoteForError(raw))
		}
		discard := false
		if discardRaw != nil {
			if discard, ok = parseSwitch(discardRaw); !ok {
				return nil, fmt.Errorf(`"discard_spool" expects true or false, got %s`, quoteForError(discardRaw))
			}
			if discard && !muted {
				return nil, errors.New(`"discard_spool" goes with "muted": true (it drops what a mute holds)`)
			}
		}
		if err := a.SetMuted(muted); err != nil {
			return nil, err
		}
		if discard {
			return map[string]any{"muted": muted, "discarded": a.DiscardSpool()}, nil
		}
		return map[string]bool{"muted": muted}, nil
	default:
		return nil, fmt.Errorf("unknown request %q (known: config/get, config/set, mute)", op)
	}
}

// requestFields splits a request that must be a JSON object into its fields.
func requestFields(body []byte, want string) (map[string]json.RawMessage, error) {
	var fields map[string]json.RawMessage
	if mqttlink.IsPlain(body) || json.Unmarshal(body, &fields) != nil {
		return nil, fmt.Errorf("%s, got %s", want, quoteForError(body))
	}
	return fields, nil
}

// parseSwitch reads an on/off value the ways people send one: a JSON boolean, 1 or 0, or
// the words ON/OFF, true/false, yes/no (any case), bare or as a JSON string.
func parseSwitch(raw []byte) (bool, bool) {
	s := strings.TrimSpace(string(raw))
	if unq, err := strconv.Unquote(s); err == nil && strings.HasPrefix(s, `"`) {
		s = strings.TrimSpace(unq)
	}
	switch strings.ToLower(s) {
	case "on", "true", "1", "yes":
		return true, true
	case "off", "false", "0", "no":
		return false, true
	}
	return false, false
}

// quoteForError shows (the start of) what was received, for an error message.
func quoteForError(b []byte) string {
	const max = 60
	s := string(b)
	if len(s) > max {
		s = s[:max] + "..."
	}
	return strconv.Quote(s)
}

func (a *Agent) configData() map[string]any {
	a.mu.Lock()
	l := a.loaded
	a.mu.Unlock()
	var cfg any
	_ = json.Unmarshal(l.Config.JSON(), &cfg)
	src := map[string]string{}
	for _, k := range config.Keys() {
		if s := l.Source(k); s != config.SourceDefault {
			src[k] = s
		}
	}
	return map[string]any{"config": cfg, "sources": src}
}

// Every change of the running configuration goes through ApplyRemote (MQTT config/set) or
// Reload (SIGHUP), and both hold a.changes from reading the current configuration to
// adopting the next: changes apply one at a time, in the order they arrive, each on top of
// the one before. Without it a reload that read the file before a remote change was saved
// and adopted after it dropped the change from the running configuration, and a remote
// change computed on the configuration from before a reload undid the reload.

// ApplyRemote validates a partial configuration with the same code as the file, persists
// it under the state directory, applies what can be applied live and reports the rest.
func (a *Agent) ApplyRemote(partial []byte) (any, error) {
	a.changes.Lock()
	defer a.changes.Unlock()
	a.mu.Lock()
	cur := a.loaded
	a.mu.Unlock()
	next, changed, err := cur.ApplyRemote(partial)
	if err != nil {
		return nil, err
	}
	if err := next.SaveRemote(); err != nil {
		return nil, fmt.Errorf("configuration valid but not saved, so not applied: %w", err)
	}
	restart := a.adopt(next, changed)
	a.log.Info("remote configuration applied", "changed", changed, "restart_required", restart)
	a.event("config_changed", time.Now(), map[string]any{"changed": changed, "source": "remote"})
	return map[string]any{"changed": nonNil(changed), "restart_required": nonNil(restart)}, nil
}

// Reload re-reads the configuration (SIGHUP). On error the running configuration stays.
func (a *Agent) Reload(opts config.Options) error {
	a.changes.Lock()
	defer a.changes.Unlock()
	next, err := config.Load(opts)
	if err != nil {
		return err
	}
	for _, w := range next.Warnings {
		a.log.Warn(w)
	}
	a.mu.Lock()
	cur := a.loaded
	a.mu.Unlock()
	changed := config.Changed(cur.Config, next.Config)
	restart := a.adopt(next, changed)
	a.log.Info("configuration reloaded", "changed", changed, "restart_required", restart)
	a.event("config_changed", time.Now(), map[string]any{"changed": nonNil(changed), "source": "reload"})
	return nil
}

// liveKeys are applied while running; everything else needs a restart.
func liveKey(k string) bool {
	switch {
	case strings.HasPrefix(k, "vad."), k == "log.level":
		return true
	case strings.HasPrefix(k, "deepgram."):
		return !slices.Contains([]string{"deepgram.url", "deepgram.prerecorded_url", "deepgram.api_key_file",
			"deepgram.keepalive", "deepgram.idle_close", "deepgram.connect_timeout", "deepgram.result_timeout"}, k)
	}
	return false
}

// adopt makes next the running configuration, applies the live keys and returns the keys
// that take effect only after a restart.
func (a *Agent) adopt(next *config.Loaded, changed []string) []string {
	a.mu.Lock()
	a.loaded = next
	uplink := a.uplink // nil until capture is open
	a.mu.Unlock()
	cfg := next.Config
	var restart []string
	vadChanged, dgChanged := false, false
	for _, k := range changed {
		switch {
		case !liveKey(k):
			restart = append(restart, k)
		case strings.HasPrefix(k, "vad."):
			vadChanged = true
		case strings.HasPrefix(k, "deepgram."):
			dgChanged = true
		case k == "log.level" && a.opts.LevelVar != nil:
			var lv slog.Level
			if err := lv.UnmarshalText([]byte(cfg.Log.Level)); err == nil {
				a.opts.LevelVar.Set(lv)
			}
		}
	}
	if vadChanged {
		// Replaces any change the audio loop has not picked up yet (only the newest
		// matters) without ever blocking: the loop may not be running yet, and a reload
		// and a remote change may race here.
		v := cfg.VAD
		a.vadNext.Store(&v)
	}
	if dgChanged && uplink != nil {
		uplink.SetOptions(live.Query(cfg.Deepgram))
	}
	if a.pub != nil {
		a.pub.SetConfig(cfg.JSON())
	}
	return restart
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
