package logging

import (
	"context"
	"log/slog"
	"strings"
)

// Redacted replaces the value of an attribute whose name looks like a secret.
const Redacted = "REDACTED"

// secretWords are name segments that mark an attribute as secret ("api_key", "token",
// "mqtt.password", "Authorization").
var secretWords = map[string]bool{
	"key": true, "apikey": true, "token": true, "password": true, "passwd": true, "pass": true,
	"secret": true, "authorization": true, "auth": true, "credential": true, "credentials": true,
}

// notSecretLast are final segments that make a secret-sounding name a reference to a secret
// rather than the secret itself ("api_key_file" is a path, "password_from" a description).
var notSecretLast = map[string]bool{"file": true, "path": true, "from": true, "source": true, "set": true, "len": true, "name": true}

// IsSecretKey reports whether an attribute name looks like it holds a secret.
func IsSecretKey(name string) bool {
	segs := strings.FieldsFunc(strings.ToLower(name), func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9')
	})
	if len(segs) == 0 || notSecretLast[segs[len(segs)-1]] {
		return false
	}
	for _, s := range segs {
		if secretWords[s] {
			return true
		}
	}
	return false
}

// RedactHandler wraps a handler and replaces the values of attributes named like secrets
// (see IsSecretKey), at any depth of groups, including attributes added with With.
type RedactHandler struct{ inner slog.Handler }

// NewRedactHandler wraps h.
func NewRedactHandler(h slog.Handler) *RedactHandler { return &RedactHandler{inner: h} }

// Enabled implements slog.Handler.
func (h *RedactHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

// Handle implements slog.Handler.
func (h *RedactHandler) Handle(ctx context.Context, r slog.Record) error {
	dirty := false
	r.Attrs(func(a slog.Attr) bool {
		if needsRedaction(a) {
			dirty = true
			return false
		}
		return true
	})
	if !dirty {
		return h.inner.Handle(ctx, r) // the common case allocates nothing extra
	}
	nr := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		nr.AddAttrs(redactAttr(a))
		return true
	})
	return h.inner.Handle(ctx, nr)
}

// WithAttrs implements slog.Handler.
func (h *RedactHandler) WithAttrs(as []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		out[i] = redactAttr(a)
	}
	return &RedactHandler{inner: h.inner.WithAttrs(out)}
}

// WithGroup implements slog.Handler.
func (h *RedactHandler) WithGroup(name string) slog.Handler {
	return &RedactHandler{inner: h.inner.WithGroup(name)}
}

func needsRedaction(a slog.Attr) bool {
	if IsSecretKey(a.Key) {
		return true
	}
	if a.Value.Kind() == slog.KindLogValuer {
		a.Value = a.Value.Resolve()
	}
	if a.Value.Kind() == slog.KindGroup {
		for _, g := range a.Value.Group() {
			if needsRedaction(g) {
				return true
			}
		}
	}
	return false
}

func redactAttr(a slog.Attr) slog.Attr {
	if IsSecretKey(a.Key) {
		return slog.String(a.Key, Redacted)
	}
	if a.Value.Kind() == slog.KindLogValuer {
		a.Value = a.Value.Resolve()
	}
	if a.Value.Kind() == slog.KindGroup {
		g := a.Value.Group()
		out := make([]slog.Attr, len(g))
		for i, x := range g {
			out[i] = redactAttr(x)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(out...)}
	}
	return a
}
