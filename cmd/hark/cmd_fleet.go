package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/hark-audio/hark/config"
	"github.com/hark-audio/hark/fleet"
)

// fleetSubcommands is the synopsis of each `hark fleet` subcommand, for its help.
var fleetSubcommands = []struct{ name, synopsis, what string }{
	{"ls", "fleet ls [--device ID | --group NAME] [--json]", "the table of devices from their retained availability, state and health"},
	{"get", "fleet get (--device ID | --group NAME | --all) [KEY] [--timeout D] [--json]", "each device's configuration (or one KEY of it)"},
	{"set", "fleet set (--device ID | --group NAME | --all) KEY=VALUE... | '{json}' [--timeout D] [--json]", "change configuration; each device validates, persists and answers"},
	{"mute", "fleet mute (--device ID | --group NAME | --all) on|off [--timeout D] [--json]", "mute or unmute"},
	{"watch", "fleet watch [--device ID | --group NAME] [--for D] [--json]", "follow transcripts, events and availability across devices"},
}

// cmdFleet is the operator's side of a fleet: it connects with the same broker settings
// (config keys, HARK_* environment, password sources) as the daemon.
func cmdFleet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	sub := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub, args = args[0], args[1:]
	}
	known := false
	for _, s := range fleetSubcommands {
		known = known || s.name == sub
	}
	if !known {
		fs := newFlags("fleet", stdout, stderr)
		fs.Usage = func() { fleetUsage(fs.Output()) }
		if sub == "" {
			if _, err := parseInterspersed(fs, args); err != nil {
				return usageError(fs, err)
			}
		} else {
			fmt.Fprintf(stderr, "hark fleet: unknown subcommand %q\n", sub)
		}
		return usageError(fs, nil)
	}

	fs := newFlags("fleet "+sub, stdout, stderr)
	for _, sc := range fleetSubcommands {
		if sc.name == sub {
			fs.Usage = func() {
				w := fs.Output()
				fmt.Fprintf(w, "usage: hark %s\n\n%s.\n\nflags:\n", sc.synopsis, sc.what)
				printDefaults(fs)
			}
		}
	}
	file := fs.String("config", defaultConfigFile(), "configuration file whose mqtt.* settings to use (default $HARK_CONFIG)")
	broker := fs.String("broker", "", "broker URL, or a comma-separated list of a cluster's nodes (default mqtt.broker)")
	device := fs.String("device", "", "one device, by its device_id")
	group := fs.String("group", "", "the devices listing this name in mqtt.groups")
	all := false
	if sub != "ls" && sub != "watch" {
		fs.BoolVar(&all, "all", false, "every device under mqtt.topic_prefix")
	}
	asJSON := fs.Bool("json", false, "JSON output (one object; JSON lines for watch)")
	timeout := 5 * time.Second
	var follow time.Duration
	switch sub {
	case "get", "set", "mute":
		fs.DurationVar(&timeout, "timeout", timeout, "how long to wait for the devices' answers")
	case "watch":
		fs.DurationVar(&follow, "for", 0, "stop after this long (default: until interrupted)")
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return usageError(fs, err)
	}
	target := fleet.Target{Device: *device, Group: *group, All: all}
	n := 0
	for _, set := range []bool{target.Device != "", target.Group != "", target.All} {
		if set {
			n++
		}
	}
	switch {
	case n > 1:
		fmt.Fprintf(stderr, "hark fleet %s: give one of --device, --group or --all\n", sub)
		return usageError(fs, nil)
	case n == 0 && sub != "ls" && sub != "watch":
		fmt.Fprintf(stderr, "hark fleet %s: say who: --device ID, --group NAME or --all\n", sub)
		return usageError(fs, nil)
	}

	// What to send, checked before connecting.
	var op string
	var fields map[string]any
	switch sub {
	case "get":
		op = "config/get"
		if len(pos) > 1 {
			fmt.Fprintf(stderr, "hark fleet get: at most one KEY\n")
			return usageError(fs, nil)
		}
	case "set":
		op = "config/set"
		partial, err := parseSetArgs(pos)
		if err != nil {
			fmt.Fprintf(stderr, "hark fleet set: %v\n", err)
			return usageError(fs, nil)
		}
		fields = map[string]any{"config": partial}
	case "mute":
		op = "mute"
		if len(pos) != 1 {
			fmt.Fprintf(stderr, "hark fleet mute: say on or off\n")
			return usageError(fs, nil)
		}
		var on bool
		switch strings.ToLower(pos[0]) {
		case "on", "true", "yes", "1":
			on = true
		case "off", "false", "no", "0":
		default:
			fmt.Fprintf(stderr, "hark fleet mute: %q is not on or off\n", pos[0])
			return usageError(fs, nil)
		}
		fields = map[string]any{"muted": on}
	default:
		if len(pos) > 0 {
			fmt.Fprintf(stderr, "hark fleet %s: unexpected argument %q\n", sub, pos[0])
			return usageError(fs, nil)
		}
	}

	o, err := fleetOptions(*file, *broker)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	conn, err := fleet.Connect(ctx, o)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	defer conn.Close()

	switch sub {
	case "ls":
		devs, err := conn.List(ctx)
		if err != nil {
			return &exitError{code: 1, err: err}
		}
		devs = filterDevices(devs, target)
		if *asJSON {
			return writeJSON(stdout, map[string]any{"broker": conn.Broker(), "devices": nonNilDevices(devs)})
		}
		printDevices(stdout, devs, time.Now())
		return nil
	case "watch":
		if follow > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, follow)
			defer cancel()
		}
		enc := json.NewEncoder(stdout)
		return conn.Watch(ctx, target, func(m fleet.Message) {
			if *asJSON {
				_ = enc.Encode(m)
				return
			}
			fmt.Fprintln(stdout, watchLine(m))
		})
	}

	answers, err := conn.Request(ctx, target, op, fields, timeout)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	key := ""
	if sub == "get" && len(pos) == 1 {
		key = pos[0]
	}
	failed := 0
	for _, a := range answers {
		if a.Failed() {
			failed++
		}
	}
	if *asJSON {
		if err := writeJSON(stdout, map[string]any{"op": op, "answers": answers, "failed": failed}); err != nil {
			return err
		}
	} else {
		printAnswers(stdout, answers, key)
	}
	switch {
	case len(answers) == 0:
		return &exitError{code: 1, err: errors.New("no device answered (none is known under this topic prefix)")}
	case failed > 0:
		return &exitError{code: 1, err: fmt.Errorf("%d of %d devices failed or did not answer", failed, len(answers))}
	}
	return nil
}

func fleetUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: hark fleet SUBCOMMAND [flags]\n\nsubcommands:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, s := range fleetSubcommands {
		fmt.Fprintf(tw, "  %s\t%s\n", strings.TrimPrefix(s.synopsis, "fleet "), s.what)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nThe broker and credentials come from the configuration (mqtt.*, HARK_MQTT_*, the\nmqtt-password credential or HARK_MQTT_PASSWORD), as for `hark run`. `hark fleet SUB -h`\nlists a subcommand's flags. Exit status: 0 when every device answered ok, 1 otherwise.")
}

// fleetOptions reads the broker settings as the daemon does.
func fleetOptions(file, broker string) (fleet.Options, error) {
	l, err := config.Load(config.Options{File: file, NoRemote: true})
	if err != nil {
		return fleet.Options{}, fmt.Errorf("invalid configuration: %w", err)
	}
	m := l.Config.MQTT
	if broker == "" {
		broker = m.Broker
	}
	if broker == "" {
		return fleet.Options{}, errors.New("no broker: set mqtt.broker (or HARK_MQTT_BROKER), or give --broker")
	}
	password, _, err := config.Secret(m.PasswordFile, "mqtt-password", "HARK_MQTT_PASSWORD", nil)
	if err != nil {
		return fleet.Options{}, fmt.Errorf("mqtt password: %w", err)
	}
	return fleet.Options{Broker: broker, Username: m.Username, Password: password,
		CAFile: m.CAFile, CertFile: m.CertFile, KeyFile: m.KeyFile, TopicPrefix: m.TopicPrefix}, nil
}

// parseSetArgs builds the partial configuration of `fleet set`: one JSON object, or
// KEY=VALUE pairs with dotted keys and YAML values (6, true, nova-3, [a, b]).
func parseSetArgs(args []string) (map[string]any, error) {
	if len(args) == 0 {
		return nil, errors.New("nothing to set: give KEY=VALUE pairs or a JSON object")
	}
	if len(args) == 1 && strings.HasPrefix(strings.TrimSpace(args[0]), "{") {
		var m map[string]any
		if err := json.Unmarshal([]byte(args[0]), &m); err != nil {
			return nil, errors.New("the argument is not a JSON object")
		}
		return m, nil
	}
	out := map[string]any{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not KEY=VALUE", a)
		}
		var val any
		if err := yaml.Unmarshal([]byte(v), &val); err != nil {
			return nil, fmt.Errorf("value of %s: not a YAML value", k)
		}
		if v == "" {
			val = ""
		}
		parts := strings.Split(k, ".")
		m := out
		for _, p := range parts[:len(parts)-1] {
			next, ok := m[p].(map[string]any)
			if !ok {
				if _, taken := m[p]; taken {
					return nil, fmt.Errorf("%s is set both as a value and as a section", k)
				}
				next = map[string]any{}
				m[p] = next
			}
			m = next
		}
		if _, dup := m[parts[len(parts)-1]]; dup {
			return nil, fmt.Errorf("%s is given twice", k)
		}
		m[parts[len(parts)-1]] = val
	}
	return out, nil
}

func filterDevices(devs []fleet.Device, t fleet.Target) []fleet.Device {
	var out []fleet.Device
	for _, d := range devs {
		if t.Device != "" && d.ID != t.Device {
			continue
		}
		if t.Group != "" && !containsString(d.Groups, t.Group) {
			continue
		}
		out = append(out, d)
	}
	return out
}

func containsString(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func nonNilDevices(d []fleet.Device) []fleet.Device {
	if d == nil {
		return []fleet.Device{}
	}
	return d
}

func printDevices(w io.Writer, devs []fleet.Device, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tONLINE\tVERSION\tUPLINK\tSPOOL\tQUEUE\tLAST TRANSCRIPT\tCPU\tRSS\tBROKER")
	online := 0
	for _, d := range devs {
		on := d.Availability
		if on == "" {
			on = "?"
		}
		if d.Online() {
			online++
		}
		last := "-"
		if !d.LastTranscript.IsZero() {
			last = shortAge(now.Sub(d.LastTranscript)) + " ago"
		}
		uplink := dash(d.Uplink)
		if d.Muted {
			uplink += " (muted)"
		}
		// An offline device's last health is history: its CPU, memory and broker are not
		// shown as if current (--json keeps them, with health_at).
		rss, cpu, broker := "-", "-", "-"
		if d.Online() && !d.HealthAt.IsZero() {
			rss = fmt.Sprintf("%.1f MiB", float64(d.RSSBytes)/(1<<20))
			cpu = fmt.Sprintf("%.1f%%", d.CPUPercent)
			broker = dash(d.Broker)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n", d.ID, on, dash(d.Version), uplink, d.Spool, d.Queue, last, cpu, rss, broker)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d devices, %d online\n", len(devs), online)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func shortAge(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}

func printAnswers(w io.Writer, answers []fleet.Answer, key string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tRESULT\tDETAIL")
	for _, a := range answers {
		detail := ""
		switch a.Status {
		case "ok":
			detail = answerDetail(a.Data, key)
		case "error":
			detail = a.Error
		case "no_answer":
			a.Status = "no answer"
			if a.Offline {
				detail = "offline (the broker delivers the request when it returns, if its session persists)"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", a.Device, a.Status, oneLine(detail))
	}
	tw.Flush()
}

// answerDetail summarises an ok answer: the changed keys of a set, the value of KEY for
// a get, else the data as compact JSON.
func answerDetail(data json.RawMessage, key string) string {
	var m map[string]any
	if json.Unmarshal(data, &m) != nil {
		return string(data)
	}
	if key != "" {
		v, ok := lookupKey(m["config"], key)
		if !ok {
			return "(no key " + key + ")"
		}
		b, _ := json.Marshal(v)
		return string(b)
	}
	if changed, ok := m["changed"]; ok {
		c, _ := json.Marshal(changed)
		r, _ := json.Marshal(m["restart_required"])
		return "changed " + string(c) + ", restart required " + string(r)
	}
	return string(data)
}

func lookupKey(v any, key string) (any, bool) {
	for _, p := range strings.Split(key, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[p]; !ok {
			return nil, false
		}
	}
	return v, true
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// watchLine is a message as one line for people: device, kind, and the text of a
// transcript or the type of an event.
func watchLine(m fleet.Message) string {
	switch m.Kind {
	case "transcript":
		var u struct {
			Text   string `json:"text"`
			Source string `json:"source"`
			Seq    int64  `json:"seq"`
		}
		if json.Unmarshal(m.Payload, &u) == nil {
			return fmt.Sprintf("%s\ttranscript\t#%d %s\t%q", m.Device, u.Seq, u.Source, u.Text)
		}
	case "event":
		var e map[string]any
		if json.Unmarshal(m.Payload, &e) == nil {
			typ, _ := e["type"].(string)
			delete(e, "type")
			delete(e, "at")
			rest, _ := json.Marshal(e)
			if len(e) == 0 {
				return fmt.Sprintf("%s\tevent\t%s", m.Device, typ)
			}
			return fmt.Sprintf("%s\tevent\t%s\t%s", m.Device, typ, rest)
		}
	case "availability":
		var s string
		_ = json.Unmarshal(m.Payload, &s)
		return fmt.Sprintf("%s\tavailability\t%s", m.Device, s)
	}
	return fmt.Sprintf("%s\t%s\t%s", m.Device, m.Kind, m.Payload)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
