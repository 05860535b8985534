// Package spec holds Deepgram's published API specifications, the AsyncAPI document of the
// live websocket and the OpenAPI document of the REST API (copied unchanged into
// spec/deepgram, see its README), and a validator of the JSON Schema subset they use. Tests
// check the emulator's messages and the query parameters hark builds against them: the
// reference nobody here wrote.
//
// The validator implements exactly the keywords the documents use (type, properties,
// required, items, enum, oneOf, anyOf, allOf, additionalProperties, $ref, format) and refuses
// a schema with any other constraint keyword rather than silently accepting everything, so a
// future spec that adds "minimum" fails loudly here instead of passing unchecked.
//
//	s := spec.AsyncAPI().MustSchema("ListenV1_ListenV1Results")
//	if err := s.ValidateJSON(frame); err != nil { ... }
//	extra := s.Undocumented(frame) // fields the spec does not declare, by JSON path
package spec

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
)

//go:embed deepgram/asyncapi.yml deepgram/openapi.yml
var files embed.FS

// Doc is one parsed specification document.
type Doc struct {
	Name string
	root map[string]any
}

var (
	asyncOnce, openOnce sync.Once
	asyncDoc, openDoc   *Doc
)

// AsyncAPI is the live websocket specification (asyncapi.yml).
func AsyncAPI() *Doc {
	asyncOnce.Do(func() { asyncDoc = mustLoad("deepgram/asyncapi.yml") })
	return asyncDoc
}

// OpenAPI is the REST specification (openapi.yml).
func OpenAPI() *Doc {
	openOnce.Do(func() { openDoc = mustLoad("deepgram/openapi.yml") })
	return openDoc
}

// Raw returns the embedded file (for checksums).
func Raw(name string) ([]byte, error) { return files.ReadFile("deepgram/" + name) }

func mustLoad(name string) *Doc {
	b, err := files.ReadFile(name)
	if err != nil {
		panic(err)
	}
	var v any
	if err := yaml.Unmarshal(b, &v); err != nil {
		panic(fmt.Sprintf("spec: parse %s: %v", name, err))
	}
	m, ok := normalize(v).(map[string]any)
	if !ok {
		panic(fmt.Sprintf("spec: %s is not a mapping", name))
	}
	return &Doc{Name: name, root: m}
}

// normalize turns YAML's decoded values into JSON's: string-keyed maps, float64 numbers.
func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = normalize(e)
		}
		return x
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = normalize(e)
		}
		return m
	case []any:
		for i, e := range x {
			x[i] = normalize(e)
		}
		return x
	case int:
		return float64(x)
	case int64:
		return float64(x)
	case uint64:
		return float64(x)
	}
	return v
}

// Lookup resolves a JSON pointer ("#/components/schemas/X" or "/paths/~1v1~1listen/post").
func (d *Doc) Lookup(pointer string) (any, error) {
	p := strings.TrimPrefix(pointer, "#")
	var cur any = d.root
	if p == "" {
		return cur, nil
	}
	for _, tok := range strings.Split(strings.TrimPrefix(p, "/"), "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		if u, err := url.PathUnescape(tok); err == nil {
			tok = u
		}
		switch c := cur.(type) {
		case map[string]any:
			next, ok := c[tok]
			if !ok {
				return nil, fmt.Errorf("%s: %q not found (at %q)", d.Name, pointer, tok)
			}
			cur = next
		case []any:
			var i int
			if _, err := fmt.Sscanf(tok, "%d", &i); err != nil || i < 0 || i >= len(c) {
				return nil, fmt.Errorf("%s: %q: bad index %q", d.Name, pointer, tok)
			}
			cur = c[i]
		default:
			return nil, fmt.Errorf("%s: %q: cannot descend into %T at %q", d.Name, pointer, cur, tok)
		}
	}
	return cur, nil
}

// Schema is a schema of the document, by name under components/schemas or by pointer.
type Schema struct {
	doc  *Doc
	node any
	Ptr  string
}

// Schema returns components/schemas/name, or the node at a pointer starting with "#/".
func (d *Doc) Schema(nameOrPointer string) (*Schema, error) {
	p := nameOrPointer
	if !strings.HasPrefix(p, "#/") {
		p = "#/components/schemas/" + p
	}
	n, err := d.Lookup(p)
	if err != nil {
		return nil, err
	}
	s := &Schema{doc: d, node: n, Ptr: p}
	if err := s.Check(); err != nil {
		return nil, err
	}
	return s, nil
}

// MustSchema is Schema for tests and package-level variables.
func (d *Doc) MustSchema(nameOrPointer string) *Schema {
	s, err := d.Schema(nameOrPointer)
	if err != nil {
		panic(err)
	}
	return s
}

// annotations carry no constraint; every other keyword must be implemented below.
var annotations = map[string]bool{
	"description": true, "title": true, "default": true, "examples": true, "example": true,
	"deprecated": true, "readOnly": true, "writeOnly": true, "x-fern-type-name": true,
}

var implemented = map[string]bool{
	"type": true, "properties": true, "required": true, "items": true, "enum": true, "const": true,
	"oneOf": true, "anyOf": true, "allOf": true, "additionalProperties": true, "$ref": true, "format": true,
}

// Check walks the schema and everything it references and reports a keyword this
// validator does not implement, or a $ref that does not resolve.
func (s *Schema) Check() error {
	seen := map[string]bool{}
	var walk func(n any, at string) error
	walk = func(n any, at string) error {
		m, ok := n.(map[string]any)
		if !ok {
			if _, isBool := n.(bool); isBool {
				return nil
			}
			return fmt.Errorf("%s: schema at %s is a %T", s.doc.Name, at, n)
		}
		for k, v := range m {
			switch {
			case annotations[k] || strings.HasPrefix(k, "x-"):
			case !implemented[k]:
				return fmt.Errorf("%s: schema at %s uses %q, which the validator does not implement", s.doc.Name, at, k)
			case k == "$ref":
				for sib := range m {
					if sib != "$ref" && !annotations[sib] && !strings.HasPrefix(sib, "x-") {
						return fmt.Errorf("%s: schema at %s has %q beside $ref, which the validator does not combine", s.doc.Name, at, sib)
					}
				}
				ref, _ := v.(string)
				if seen[ref] {
					continue
				}
				seen[ref] = true
				t, err := s.doc.Lookup(ref)
				if err != nil {
					return err
				}
				if err := walk(t, ref); err != nil {
					return err
				}
			case k == "properties":
				props, _ := v.(map[string]any)
				for name, p := range props {
					if err := walk(p, at+"/properties/"+name); err != nil {
						return err
					}
				}
			case k == "items" || k == "additionalProperties":
				if err := walk(v, at+"/"+k); err != nil {
					return err
				}
			case k == "oneOf" || k == "anyOf" || k == "allOf":
				list, _ := v.([]any)
				for i, sub := range list {
					if err := walk(sub, fmt.Sprintf("%s/%s/%d", at, k, i)); err != nil {
						return err
					}
				}
			case k == "format":
				if f, _ := v.(string); !knownFormat(f) {
					return fmt.Errorf("%s: schema at %s has format %q, which the validator does not know", s.doc.Name, at, f)
				}
			}
		}
		return nil
	}
	return walk(s.node, s.Ptr)
}

// ValidateJSON decodes b and validates it.
func (s *Schema) ValidateJSON(b []byte) error {
	v, err := decode(b)
	if err != nil {
		return err
	}
	return s.Validate(v)
}

// Validate validates a decoded JSON value (as from json.Decoder with UseNumber, or plain
// float64 numbers).
func (s *Schema) Validate(v any) error {
	var errs []string
	s.validate(s.node, v, "$", &errs, nil)
	if len(errs) > 0 {
		sort.Strings(errs)
		return fmt.Errorf("%s %s: %s", s.doc.Name, s.Ptr, strings.Join(errs, "; "))
	}
	return nil
}

// Undocumented lists the JSON paths of object members that no schema on the way declares
// (and no additionalProperties admits): the service's extensions beyond the published
// spec, or an emulator's inventions. The value should be valid (see Validate).
func (s *Schema) Undocumented(b []byte) ([]string, error) {
	v, err := decode(b)
	if err != nil {
		return nil, err
	}
	var errs, extra []string
	s.validate(s.node, v, "$", &errs, &extra)
	sort.Strings(extra)
	return extra, nil
}

func decode(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	if d.More() {
		return nil, errors.New("not JSON: trailing data")
	}
	return v, nil
}

// validate appends to errs the ways v violates schema n; with extra non-nil it also
// collects undocumented members.
func (s *Schema) validate(n any, v any, path string, errs *[]string, extra *[]string) {
	if b, ok := n.(bool); ok {
		if !b {
			*errs = append(*errs, path+": not allowed")
		}
		return
	}
	m, _ := n.(map[string]any)
	if ref, ok := m["$ref"].(string); ok {
		t, err := s.doc.Lookup(ref)
		if err != nil {
			*errs = append(*errs, path+": "+err.Error())
			return
		}
		// Check made sure $ref has only annotations beside it.
		s.validate(t, v, path, errs, extra)
		return
	}
	if t, ok := m["type"]; ok {
		if !typeMatches(t, v) {
			*errs = append(*errs, fmt.Sprintf("%s: %s is not of type %v", path, describe(v), t))
			return
		}
	}
	if e, ok := m["enum"].([]any); ok {
		found := false
		for _, c := range e {
			if equal(c, v) {
				found = true
				break
			}
		}
		if !found {
			*errs = append(*errs, fmt.Sprintf("%s: %s is not one of %v", path, describe(v), e))
		}
	}
	if c, ok := m["const"]; ok && !equal(c, v) {
		*errs = append(*errs, fmt.Sprintf("%s: %s is not %v", path, describe(v), c))
	}
	if f, ok := m["format"].(string); ok {
		if str, isStr := v.(string); isStr {
			if err := checkFormat(f, str); err != nil {
				*errs = append(*errs, fmt.Sprintf("%s: %q is not a valid %s: %v", path, str, f, err))
			}
		}
	}
	for _, kw := range []string{"allOf", "anyOf", "oneOf"} {
		list, ok := m[kw].([]any)
		if !ok {
			continue
		}
		var passed int
		var firstExtra []string
		var branchErrs []string
		for i, sub := range list {
			var e, x []string
			var xp *[]string
			if extra != nil {
				xp = &x
			}
			s.validate(sub, v, path, &e, xp)
			if len(e) == 0 {
				passed++
				if passed == 1 {
					firstExtra = x
				} else if kw == "allOf" {
					firstExtra = intersect(firstExtra, x)
				}
			} else {
				branchErrs = append(branchErrs, fmt.Sprintf("[%d] %s", i, strings.Join(e, ", ")))
			}
		}
		switch {
		case kw == "allOf" && passed != len(list):
			*errs = append(*errs, fmt.Sprintf("%s: allOf: %s", path, strings.Join(branchErrs, " | ")))
		case kw == "anyOf" && passed == 0:
			*errs = append(*errs, fmt.Sprintf("%s: anyOf: no branch matches: %s", path, strings.Join(branchErrs, " | ")))
		case kw == "oneOf" && passed == 0:
			*errs = append(*errs, fmt.Sprintf("%s: oneOf: no branch matches: %s", path, strings.Join(branchErrs, " | ")))
		case kw == "oneOf" && passed > 1 && !s.openEnum(list):
			*errs = append(*errs, fmt.Sprintf("%s: oneOf: %d branches match (exactly one must)", path, passed))
		}
		if extra != nil && passed > 0 {
			*extra = append(*extra, firstExtra...)
		}
	}
	switch x := v.(type) {
	case map[string]any:
		props, hasProps := m["properties"].(map[string]any)
		if req, ok := m["required"].([]any); ok {
			for _, r := range req {
				name, _ := r.(string)
				if _, ok := x[name]; !ok {
					*errs = append(*errs, fmt.Sprintf("%s: required member %q is missing", path, name))
				}
			}
		}
		ap, hasAP := m["additionalProperties"]
		for _, k := range sortedKeys(x) {
			sub := path + "." + k
			if p, ok := props[k]; ok {
				s.validate(p, x[k], sub, errs, extra)
				continue
			}
			switch {
			case hasAP:
				s.validate(ap, x[k], sub, errs, extra)
			case hasProps && extra != nil && !composite(m):
				*extra = append(*extra, sub)
			}
		}
	case []any:
		if it, ok := m["items"]; ok {
			for i, e := range x {
				s.validate(it, e, fmt.Sprintf("%s[%d]", path, i), errs, extra)
			}
		}
	}
}

// composite schemas (oneOf...) leave undocumented members to the branch that matched.
func composite(m map[string]any) bool {
	_, a := m["oneOf"]
	_, b := m["anyOf"]
	_, c := m["allOf"]
	return a || b || c
}

func intersect(a, b []string) []string {
	in := map[string]bool{}
	for _, x := range b {
		in[x] = true
	}
	var out []string
	for _, x := range a {
		if in[x] {
			out = append(out, x)
		}
	}
	return out
}

func sortedKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func typeMatches(t any, v any) bool {
	if list, ok := t.([]any); ok {
		for _, e := range list {
			if typeMatches(e, v) {
				return true
			}
		}
		return false
	}
	name, _ := t.(string)
	switch name {
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "null":
		return v == nil
	case "number":
		_, ok := number(v)
		return ok
	case "integer":
		f, ok := number(v)
		return ok && f == math.Trunc(f) && !math.IsInf(f, 0)
	}
	return false
}

func number(v any) (float64, bool) {
	switch x := v.(type) {
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case float64:
		return x, true
	}
	return 0, false
}

func equal(a, b any) bool {
	if fa, ok := number(a); ok {
		fb, ok := number(b)
		return ok && fa == fb
	}
	switch x := a.(type) {
	case string, bool, nil:
		return a == b
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equal(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k := range x {
			if !equal(x[k], y[k]) {
				return false
			}
		}
		return true
	}
	return false
}

func describe(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 60 {
		return string(b[:60]) + "..."
	}
	return string(b)
}

// Formats: the ones that assert are checked; the numeric and binary ones only annotate.
var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func knownFormat(f string) bool {
	switch f {
	case "uuid", "date-time", "date", "uri", "email", "double", "float", "int32", "int64", "binary", "byte":
		return true
	}
	return false
}

func checkFormat(f, s string) error {
	switch f {
	case "uuid":
		if !uuidRE.MatchString(s) {
			return errors.New("not a UUID")
		}
	case "date-time":
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
			return err
		}
	case "date":
		if _, err := time.Parse(time.DateOnly, s); err != nil {
			return err
		}
	case "uri":
		u, err := url.Parse(s)
		if err != nil {
			return err
		}
		if u.Scheme == "" {
			return errors.New("no scheme")
		}
	case "email":
		if !strings.Contains(s, "@") {
			return errors.New("no @")
		}
	}
	return nil
}

// Params are a request's documented query parameters by name.
type Params map[string]*Schema

// LiveParams are the query parameters of the live websocket (AsyncAPI channel /v1/listen).
func LiveParams() Params {
	d := AsyncAPI()
	n, err := d.Lookup("#/channels/~1v1~1listen/bindings/ws/query/properties")
	if err != nil {
		panic(err)
	}
	out := Params{}
	for name := range n.(map[string]any) {
		out[name] = d.MustSchema("#/channels/~1v1~1listen/bindings/ws/query/properties/" + name)
	}
	return out
}

// PrerecordedParams are the query parameters of POST /v1/listen (OpenAPI).
func PrerecordedParams() Params {
	d := OpenAPI()
	n, err := d.Lookup("#/paths/~1v1~1listen/post/parameters")
	if err != nil {
		panic(err)
	}
	out := Params{}
	for i, p := range n.([]any) {
		pm, _ := p.(map[string]any)
		if pm["in"] != "query" {
			continue
		}
		name, _ := pm["name"].(string)
		out[name] = d.MustSchema(fmt.Sprintf("#/paths/~1v1~1listen/post/parameters/%d/schema", i))
	}
	return out
}

// Names lists the parameter names, sorted.
func (p Params) Names() []string {
	out := make([]string, 0, len(p))
	for k := range p {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Check validates a query against the parameter list: every name must be documented and
// every value must fit its schema. Query values are strings on the wire, so a value is
// accepted if it fits as a string, as the boolean or number it spells, or (for an
// array-typed parameter, which repeats: keyterm=a&keyterm=b) as a list. It returns one
// error per offending parameter, sorted.
func (p Params) Check(q url.Values) []error {
	var errs []error
	names := make([]string, 0, len(q))
	for k := range q {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		s, ok := p[k]
		if !ok {
			errs = append(errs, fmt.Errorf("query parameter %q is not in the specification", k))
			continue
		}
		vs := q[k]
		var cands []any
		if len(vs) == 1 {
			cands = append(cands, coerce(vs[0])...)
		}
		list := make([]any, len(vs))
		for i, v := range vs {
			list[i] = v
		}
		cands = append(cands, list)
		var first error
		okAny := false
		for _, c := range cands {
			err := s.Validate(c)
			if err == nil {
				okAny = true
				break
			}
			if first == nil {
				first = err
			}
		}
		if !okAny {
			errs = append(errs, fmt.Errorf("query parameter %s=%q does not fit the specification: %v", k, vs, first))
		}
	}
	return errs
}

func coerce(s string) []any {
	out := []any{s}
	switch s {
	case "true":
		out = append(out, true)
	case "false":
		out = append(out, false)
	}
	if n := json.Number(s); isNumber(s) {
		out = append(out, n)
	}
	return out
}

var numberRE = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

func isNumber(s string) bool { return numberRE.MatchString(s) }

// openEnum recognises the documents' "known values or any string" idiom, written as a oneOf
// of a string enum and a plain {type: string} (the model and version parameters): taken
// literally no known value could ever pass, since it matches both branches. It is read
// as the generator meant it, anyOf. Nothing else is: the error-body oneOf, whose object
// branches overlap the same way, is left to fail (see dgemu's TestErrorBodiesMatchSpec).
func (s *Schema) openEnum(list []any) bool {
	plain, enum := false, false
	for _, b := range list {
		m, _ := b.(map[string]any)
		if ref, ok := m["$ref"].(string); ok {
			t, err := s.doc.Lookup(ref)
			if err != nil {
				return false
			}
			m, _ = t.(map[string]any)
		}
		constraints := 0
		for k := range m {
			if !annotations[k] && !strings.HasPrefix(k, "x-") {
				constraints++
			}
		}
		switch {
		case m["type"] == "string" && constraints == 1:
			plain = true
		case m["type"] == "string" && m["enum"] != nil && constraints == 2:
			enum = true
		default:
			return false
		}
	}
	return plain && enum
}
