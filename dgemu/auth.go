package dgemu

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Authentication as the service does it (OpenAPI securitySchemes: ApiKeyAuth and JwtAuth):
//
//   - "Authorization: Token <API key>": the scheme word in any case (the Go SDK sends
//     "token"). A JWT under Token is refused.
//   - "Authorization: Bearer <JWT>": a short-lived token from POST /v1/auth/grant, valid
//     until it expires (checked at the handshake only: an open stream outlives its token).
//     An API key under Bearer is refused.
//   - Live only, for clients that cannot set headers: "Sec-WebSocket-Protocol: token, KEY"
//     or "bearer, JWT", answered with the subprotocol "token" or "bearer".
//
// Tokens are HS256 JWTs signed with a per-server random secret: only this emulator's
// grant endpoint (or IssueToken) makes valid ones.

// Auth methods reported in SessionInfo.AuthMethod.
const (
	AuthToken             = "token"
	AuthBearer            = "bearer"
	AuthTokenSubprotocol  = "subprotocol" // "token, KEY"
	AuthBearerSubprotocol = "bearer-subprotocol"
)

const (
	defaultGrantTTL   = 30 * time.Second
	maxGrantTTL       = time.Hour
	grantPath         = "/v1/auth/grant"
	jwtHeaderHS256    = `{"alg":"HS256","typ":"JWT"}`
	maxGrantBodyBytes = 4 << 10
	subprotocolToken  = "token"
	subprotocolBearer = "bearer"
)

type jwtClaims struct {
	Sub string `json:"sub"`
	Iat int64  `json:"iat"`
	Exp int64  `json:"exp"`
	Jti string `json:"jti"`
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// IssueToken returns a short-lived JWT accepted as "Bearer" until ttl has passed, as the
// grant endpoint would issue (ttl <= 0 gives a token that is already expired, for tests).
func (s *Server) IssueToken(ttl time.Duration) string {
	now := time.Now()
	var id [8]byte
	_, _ = rand.Read(id[:])
	c := jwtClaims{Sub: "dgemu", Iat: now.Unix(), Exp: now.Add(ttl).Unix(), Jti: b64(id[:])}
	if ttl <= 0 {
		c.Exp = now.Add(ttl).Unix() - 1
	}
	body, _ := json.Marshal(c)
	unsigned := b64([]byte(jwtHeaderHS256)) + "." + b64(body)
	return unsigned + "." + s.sign(unsigned)
}

func (s *Server) sign(unsigned string) string {
	m := hmac.New(sha256.New, s.jwtSecret[:])
	m.Write([]byte(unsigned))
	return b64(m.Sum(nil))
}

// looksLikeJWT: three base64url segments, the shape the service tells tokens from keys by.
func looksLikeJWT(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return false
	}
	for _, p := range parts {
		if p == "" {
			return false
		}
		if _, err := base64.RawURLEncoding.DecodeString(p); err != nil {
			return false
		}
	}
	return true
}

// checkJWT verifies a token's signature and expiry.
func (s *Server) checkJWT(tok string, now time.Time) error {
	if !looksLikeJWT(tok) {
		return errors.New("not a JWT")
	}
	i := strings.LastIndexByte(tok, '.')
	if !hmac.Equal([]byte(s.sign(tok[:i])), []byte(tok[i+1:])) {
		return errors.New("bad signature")
	}
	parts := strings.Split(tok, ".")
	hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
	if string(hb) != jwtHeaderHS256 {
		return errors.New("unexpected JWT header")
	}
	cb, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var c jwtClaims
	if err := json.Unmarshal(cb, &c); err != nil {
		return fmt.Errorf("claims: %w", err)
	}
	if now.Unix() >= c.Exp {
		return errors.New("expired")
	}
	return nil
}

// credential is what a request presented.
type credential struct {
	method string // AuthToken, AuthBearer, AuthTokenSubprotocol, AuthBearerSubprotocol; "" if none
	secret string
}

func (c credential) bearer() bool {
	return c.method == AuthBearer || c.method == AuthBearerSubprotocol
}

// presented reads the Authorization header, or on the live endpoint the subprotocol form.
func presented(r *http.Request, live bool) credential {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
		switch strings.ToLower(scheme) {
		case "token":
			return credential{AuthToken, strings.TrimSpace(rest)}
		case "bearer":
			return credential{AuthBearer, strings.TrimSpace(rest)}
		}
		return credential{}
	}
	if !live {
		return credential{}
	}
	var protos []string
	for _, h := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(h, ",") {
			protos = append(protos, strings.TrimSpace(p))
		}
	}
	for i := 0; i+1 < len(protos); i++ {
		switch strings.ToLower(protos[i]) {
		case subprotocolToken:
			return credential{AuthTokenSubprotocol, protos[i+1]}
		case subprotocolBearer:
			return credential{AuthBearerSubprotocol, protos[i+1]}
		}
	}
	return credential{}
}

// authenticate checks what the request presented: an API key under Token (Config.APIKey,
// or any non-empty value that is not a JWT when none is configured), or a valid,
// unexpired token from this server under Bearer.
func (s *Server) authenticate(r *http.Request, live bool) (method string, ok bool) {
	c := presented(r, live)
	if c.secret == "" {
		return c.method, false
	}
	if c.bearer() {
		return c.method, s.checkJWT(c.secret, time.Now()) == nil
	}
	if looksLikeJWT(c.secret) {
		return c.method, false // a token is not an API key
	}
	if s.cfg.APIKey != "" && c.secret != s.cfg.APIKey {
		return c.method, false
	}
	return c.method, true
}

// serveGrant is POST /v1/auth/grant: an API key (Token) buys a JWT valid ttl_seconds
// (default 30, at most 3600).
func (s *Server) serveGrant(w http.ResponseWriter, r *http.Request) {
	reqID := uuid.NewString()
	w.Header().Set("dg-request-id", reqID)
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		refuse(w, reqID, Refusal{Status: http.StatusMethodNotAllowed, Code: "METHOD_NOT_ALLOWED", Message: "method not allowed"})
		return
	}
	c := presented(r, false)
	if c.method != AuthToken {
		// Tokens cannot mint tokens; only an API key can.
		refuse(w, reqID, Refusal{Status: http.StatusUnauthorized})
		return
	}
	if _, ok := s.authenticate(r, false); !ok {
		refuse(w, reqID, Refusal{Status: http.StatusUnauthorized})
		return
	}
	ttl := defaultGrantTTL
	b, err := io.ReadAll(io.LimitReader(r.Body, maxGrantBodyBytes))
	if err != nil {
		return
	}
	if len(strings.TrimSpace(string(b))) > 0 {
		var req struct {
			TTLSeconds *float64 `json:"ttl_seconds"`
		}
		if err := json.Unmarshal(b, &req); err != nil {
			refuse(w, reqID, Refusal{Status: http.StatusBadRequest, Code: "INVALID_JSON", Message: "the body must be JSON {\"ttl_seconds\": N}"})
			return
		}
		if req.TTLSeconds != nil {
			v := *req.TTLSeconds
			if math.IsNaN(v) || v < 1 || v > maxGrantTTL.Seconds() {
				refuse(w, reqID, Refusal{Status: http.StatusBadRequest, Code: "INVALID_QUERY_PARAMETER", Message: "ttl_seconds must be between 1 and 3600"})
				return
			}
			ttl = time.Duration(v * float64(time.Second))
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(struct {
		AccessToken string  `json:"access_token"`
		ExpiresIn   float64 `json:"expires_in"`
	}{s.IssueToken(ttl), ttl.Seconds()})
	s.log.Info("token granted", "request_id", reqID, "ttl", ttl)
}
