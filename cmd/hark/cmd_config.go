package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/hark-audio/hark/agent"
	"github.com/hark-audio/hark/config"
)

// cmdConfig implements `hark config check`: load with every layer (defaults, file, HARK_*
// environment, persisted remote changes), validate, and print the effective configuration
// (redacted) with the source of each value, plus where each secret would come from (never
// the secret). A bad configuration exits 1 with an error naming the key.
func cmdConfig(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "check" {
		fs := newFlags("config", stdout, stderr)
		if len(args) > 0 && strings.HasPrefix(args[0], "-") {
			// hark config --help (or a flag before the subcommand)
			if _, err := parseInterspersed(fs, args); err != nil {
				return usageError(fs, err)
			}
		}
		return usageError(fs, nil)
	}
	fs := newFlags("config check", stdout, stderr)
	file := fs.String("config", defaultConfigFile(), "configuration file (default $HARK_CONFIG)")
	stateDir := fs.String("state-dir", "", "state directory whose persisted remote changes to apply, as the service does\n(the service's is /var/lib/hark; default $STATE_DIRECTORY or the user's state directory)")
	quiet := fs.Bool("q", false, "only validate: print nothing but errors and warnings")
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return usageError(fs, err)
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "hark config check: unexpected argument %q\n", pos[0])
		return usageError(fs, nil)
	}
	env := os.Environ()
	if *stateDir != "" {
		env = slices.DeleteFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "STATE_DIRECTORY=") })
		env = append(env, "STATE_DIRECTORY="+*stateDir)
	}
	l, err := config.Load(config.Options{File: *file, Environ: env})
	if err == nil {
		err = agent.Check(l, env) // what `hark run` refuses beyond the schema
	}
	if err != nil {
		return &exitError{code: 1, err: fmt.Errorf("invalid configuration: %w", err)}
	}
	for _, w := range l.Warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	if *quiet {
		return nil
	}
	src := "built-in defaults"
	if l.File != "" {
		src = l.File
	}
	fmt.Fprintf(stdout, "# configuration OK (%s); effective values, secrets redacted:\n", src)
	fmt.Fprint(stdout, l.Explain())
	if keys := l.RemoteKeys(); len(keys) > 0 {
		fmt.Fprintf(stdout, "# %d value(s) set remotely, persisted in %s/%s\n", len(keys), l.Config.StateDir, config.RemoteFileName)
	}
	c := l.Config
	secretLine(stdout, env, "deepgram API key", c.Deepgram.APIKeyFile, "deepgram-api-key", "DEEPGRAM_API_KEY")
	if c.MQTT.Broker != "" && c.MQTT.Username != "" {
		secretLine(stdout, env, "MQTT password", c.MQTT.PasswordFile, "mqtt-password", "HARK_MQTT_PASSWORD")
	}
	return nil
}

// secretLine says where a secret would come from, never what it is. Run outside the
// service there is no $CREDENTIALS_DIRECTORY, so the packaged credential file is named too.
func secretLine(w io.Writer, env []string, what, file, cred, envName string) {
	_, from, err := config.Secret(file, cred, envName, env)
	switch {
	case err != nil:
		fmt.Fprintf(w, "# %s: cannot read: %v\n", what, err)
	case from != "":
		fmt.Fprintf(w, "# %s: from %s\n", what, from)
	default:
		fmt.Fprintf(w, "# %s: not set here (the service reads the systemd credential %s, from /etc/hark/credentials/%s)\n", what, cred, cred)
	}
}

// defaultConfigFile is $HARK_CONFIG, else "" (defaults only). The packaged unit passes
// --config /etc/hark/hark.yaml explicitly.
func defaultConfigFile() string {
	return lookupEnv("HARK_CONFIG")
}
