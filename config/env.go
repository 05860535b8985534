package config

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// applyEnv applies HARK_<KEY> variables. Each value is read as the type of the key it sets,
// never as YAML: a string key takes the text verbatim ("-", "null", "kitchen #2", "007"),
// booleans, numbers and durations are parsed, a list is comma-separated ("a, b") or a flow
// list ("[a, b]"), a mapping is "k=v,k2=v2" or "{k: v}". An error names the key and the
// variable; unknown HARK_ variables are warnings.
func applyEnv(c *Config, env []string, set map[string]string) ([]string, error) {
	byName := map[string]leaf{}
	for _, l := range leaves() {
		byName[EnvName(l.path)] = l
	}
	var warnings []string
	for _, kv := range env {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, "HARK_") {
			continue
		}
		l, known := byName[name]
		if !known {
			if !envReserved[name] {
				warnings = append(warnings, fmt.Sprintf("environment variable %s is not a configuration key; ignored", name))
			}
			continue
		}
		v, err := envValue(l.typ, val)
		if err != nil {
			return nil, &Error{Key: l.path, Msg: err.Error(), Source: "env " + name}
		}
		leafValue(c, l).Set(v)
		set[l.path] = "env " + name
	}
	return warnings, nil
}

// envValue parses s as a value of type t (see applyEnv).
func envValue(t reflect.Type, s string) (reflect.Value, error) {
	v := reflect.New(t).Elem()
	trimmed := strings.TrimSpace(s)
	if t == durationType {
		d, err := time.ParseDuration(trimmed)
		if err != nil {
			return v, fmt.Errorf("expected a duration such as \"30s\", got %q", s)
		}
		v.SetInt(int64(d))
		return v, nil
	}
	switch t.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		switch strings.ToLower(trimmed) {
		case "true", "1", "yes", "on":
			v.SetBool(true)
		case "false", "0", "no", "off":
		default:
			return v, fmt.Errorf("expected true or false, got %q", s)
		}
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(trimmed, 10, t.Bits())
		if err != nil {
			return v, fmt.Errorf("expected an integer, got %q", s)
		}
		v.SetInt(n)
	case reflect.Float64:
		f, err := strconv.ParseFloat(trimmed, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return v, fmt.Errorf("expected a number, got %q", s)
		}
		v.SetFloat(f)
	case reflect.Slice:
		if t.Elem().Kind() != reflect.String {
			return v, fmt.Errorf("cannot be set from the environment")
		}
		if strings.HasPrefix(trimmed, "[") || strings.HasPrefix(trimmed, "{") {
			return flowValue(t, trimmed, "a list of strings such as \"a, b\" or \"[a, b]\"")
		}
		list := []string{}
		for _, item := range strings.Split(s, ",") {
			if item = strings.TrimSpace(item); item != "" {
				list = append(list, item)
			}
		}
		return reflect.ValueOf(list), nil
	case reflect.Map:
		if t.Key().Kind() != reflect.String || t.Elem().Kind() != reflect.String {
			return v, fmt.Errorf("cannot be set from the environment")
		}
		if strings.HasPrefix(trimmed, "{") || strings.HasPrefix(trimmed, "[") {
			return flowValue(t, trimmed, "key=value pairs such as \"a=1,b=2\" or \"{a: 1}\"")
		}
		m := map[string]string{}
		for _, item := range strings.Split(s, ",") {
			if strings.TrimSpace(item) == "" {
				continue
			}
			k, val, ok := strings.Cut(item, "=")
			if k = strings.TrimSpace(k); !ok || k == "" {
				return v, fmt.Errorf("expected key=value pairs such as \"a=1,b=2\", got %q", s)
			}
			m[k] = strings.TrimSpace(val)
		}
		return reflect.ValueOf(m), nil
	default:
		// A new kind of key needs a rule here; TestEnvEveryKey catches it.
		return v, fmt.Errorf("cannot be set from the environment")
	}
	return v, nil
}

// flowValue decodes a YAML flow list or mapping ("[a, b]", "{a: 1}") into a value of type t.
func flowValue(t reflect.Type, s, want string) (reflect.Value, error) {
	v := reflect.New(t)
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(s), &n); err != nil || len(n.Content) != 1 || n.Content[0].Kind == yaml.ScalarNode {
		return v.Elem(), fmt.Errorf("expected %s, got %q", want, s)
	}
	if err := n.Content[0].Decode(v.Interface()); err != nil {
		return v.Elem(), fmt.Errorf("expected %s, got %q", want, s)
	}
	switch {
	case t.Kind() == reflect.Slice && v.Elem().IsNil():
		v.Elem().Set(reflect.MakeSlice(t, 0, 0))
	case t.Kind() == reflect.Map && v.Elem().IsNil():
		v.Elem().Set(reflect.MakeMap(t))
	}
	return v.Elem(), nil
}
