package config

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// Error is a configuration error naming the key it concerns ("vad.threshold_db").
type Error struct {
	Key    string
	Msg    string
	Source string // where the value came from, when known ("file /etc/hark/hark.yaml line 3")
}

func (e *Error) Error() string {
	s := e.Msg
	if e.Key != "" {
		s = e.Key + ": " + e.Msg
	}
	if e.Source != "" {
		s += " (" + e.Source + ")"
	}
	return s
}

var (
	durationType = reflect.TypeOf(Duration(0))
	// leaves is computed once: the schema is fixed, and a plain map cache raced when
	// goroutines (MQTT handler, reload) called it concurrently on first use.
	leaves = sync.OnceValue(computeLeaves)
)

// leaf is one settable key of the schema.
type leaf struct {
	path  string
	index []int
	typ   reflect.Type
}

// Keys lists every key of the schema in dotted form, sorted.
func Keys() []string {
	var out []string
	for _, l := range leaves() {
		out = append(out, l.path)
	}
	return out
}

func computeLeaves() []leaf {
	t := reflect.TypeOf(Config{})
	var out []leaf
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name := yamlName(f)
			if name == "" {
				continue
			}
			idx := append(append([]int(nil), index...), i)
			if isSection(f.Type) {
				walk(f.Type, prefix+name+".", idx)
				continue
			}
			out = append(out, leaf{path: prefix + name, index: idx, typ: f.Type})
		}
	}
	walk(t, "", nil)
	sort.Slice(out, func(i, j int) bool { return out[i].path < out[j].path })
	return out
}

func isSection(t reflect.Type) bool { return t.Kind() == reflect.Struct && t != durationType }

func yamlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
	if tag == "-" || tag == "" {
		return ""
	}
	return tag
}

// decodeNode applies the keys present in n onto dst (a pointer to Config), recording each
// leaf it sets in set with the given source. Unknown keys and values of the wrong type are
// errors naming the key.
func decodeNode(dst *Config, n *yaml.Node, source string, set map[string]string) error {
	if n == nil || n.Kind == 0 {
		return nil // an empty document (or one holding only comments) parses to a zero node
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil
		}
		n = n.Content[0]
	}
	return decodeValue(reflect.ValueOf(dst).Elem(), n, "", source, set)
}

func decodeValue(v reflect.Value, n *yaml.Node, path, source string, set map[string]string) error {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if isSection(v.Type()) {
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return nil // "vad:" with nothing under it
		}
		if n.Kind != yaml.MappingNode {
			return &Error{Key: strings.TrimSuffix(path, "."), Msg: "expected a mapping of keys", Source: where(source, n)}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if k.Value == "<<" {
				return &Error{Key: path + k.Value, Msg: "YAML merge keys are not supported", Source: where(source, k)}
			}
			fi := fieldByName(v.Type(), k.Value)
			if fi < 0 {
				return &Error{Key: path + k.Value, Msg: "unknown key", Source: where(source, k)}
			}
			if err := decodeValue(v.Field(fi), val, path+k.Value+".", source, set); err != nil {
				return err
			}
		}
		return nil
	}
	key := strings.TrimSuffix(path, ".")
	// Decode into a fresh value so a failed decode leaves dst untouched, and so a list or
	// map replaces the previous layer's value rather than merging into it.
	fresh := reflect.New(v.Type())
	if k := v.Kind(); (k == reflect.Int || k == reflect.Int64) && v.Type() != durationType && n.Kind == yaml.ScalarNode && n.ShortTag() == "!!float" {
		// yaml.v3 would truncate 1.5 to 1 without a word.
		return &Error{Key: key, Msg: typeMsg(v.Type(), n, nil), Source: where(source, n)}
	}
	if err := n.Decode(fresh.Interface()); err != nil {
		return &Error{Key: key, Msg: typeMsg(v.Type(), n, err), Source: where(source, n)}
	}
	v.Set(fresh.Elem())
	if set != nil {
		set[key] = source
	}
	return nil
}

func fieldByName(t reflect.Type, name string) int {
	for i := 0; i < t.NumField(); i++ {
		if yamlName(t.Field(i)) == name {
			return i
		}
	}
	return -1
}

func where(source string, n *yaml.Node) string {
	if source == "" {
		return ""
	}
	if n != nil && n.Line > 0 && strings.HasPrefix(source, "file ") {
		return fmt.Sprintf("%s line %d", source, n.Line)
	}
	return source
}

func typeMsg(t reflect.Type, n *yaml.Node, err error) string {
	if t == durationType {
		return err.Error()
	}
	want := t.Kind().String()
	switch t.Kind() {
	case reflect.Slice:
		want = "a list of " + t.Elem().Kind().String()
	case reflect.Map:
		want = "a mapping of " + t.Elem().Kind().String()
	case reflect.Bool:
		want = "true or false"
	case reflect.Int, reflect.Int64:
		want = "an integer"
	case reflect.Float64:
		want = "a number"
	case reflect.String:
		want = "a string"
	}
	got := n.Value
	if n.Kind == yaml.MappingNode {
		got = "a mapping"
	} else if n.Kind == yaml.SequenceNode {
		got = "a list"
	} else {
		got = fmt.Sprintf("%q", got)
	}
	return fmt.Sprintf("expected %s, got %s", want, got)
}

// parseYAML parses a document (JSON is accepted too, being YAML) into a node.
func parseYAML(b []byte, source string) (*yaml.Node, error) {
	var n yaml.Node
	if err := yaml.Unmarshal(b, &n); err != nil {
		return nil, &Error{Msg: "cannot parse: " + strings.TrimPrefix(err.Error(), "yaml: "), Source: source}
	}
	return &n, nil
}

// leafValue returns the reflect value of a leaf path in c.
func leafValue(c *Config, l leaf) reflect.Value {
	return reflect.ValueOf(c).Elem().FieldByIndex(l.index)
}
