package auth

import (
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// DefaultTokenTTL is etcd's --auth-token-ttl default.
const DefaultTokenTTL = 300 * time.Second

// simpleTokenVersion is the first byte of a simple token's payload.
const simpleTokenVersion = 1

// simpleToken is what a simple token says.
type simpleToken struct {
	user     string
	revision uint64    // the auth revision it was issued at
	issued   time.Time // millisecond precision
	nonce    uint64
}

// encodeSimpleToken signs t with secret.
func encodeSimpleToken(t simpleToken, secret []byte) string {
	b := []byte{simpleTokenVersion}
	b = binary.BigEndian.AppendUint64(b, t.revision)
	b = binary.BigEndian.AppendUint64(b, uint64(t.issued.UnixMilli()))
	b = binary.BigEndian.AppendUint64(b, t.nonce)
	b = binary.AppendUvarint(b, uint64(len(t.user)))
	b = append(b, t.user...)
	m := hmac.New(sha256.New, secret)
	m.Write(b)
	return base64.RawURLEncoding.EncodeToString(m.Sum(b))
}

// errBadToken is any token that is not one of ours, or not signed with
// the secret.
var errBadToken = errors.New("auth: invalid token")

// decodeSimpleToken checks s's signature against secret and returns what
// it says.
func decodeSimpleToken(s string, secret []byte) (simpleToken, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(raw) < 1+24+1+sha256.Size || raw[0] != simpleTokenVersion {
		return simpleToken{}, errBadToken
	}
	body, mac := raw[:len(raw)-sha256.Size], raw[len(raw)-sha256.Size:]
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	if !hmac.Equal(m.Sum(nil), mac) {
		return simpleToken{}, errBadToken
	}
	t := simpleToken{
		revision: binary.BigEndian.Uint64(body[1:9]),
		issued:   time.UnixMilli(int64(binary.BigEndian.Uint64(body[9:17]))),
		nonce:    binary.BigEndian.Uint64(body[17:25]),
	}
	n, w := binary.Uvarint(body[25:])
	if w <= 0 || n != uint64(len(body)-25-w) {
		return simpleToken{}, errBadToken
	}
	t.user = string(body[25+w:])
	return t, nil
}

// newSecret draws a token secret.
func newSecret() []byte {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return b
}

// JWT is the --auth-token jwt,... configuration: etcd's options
// pub-key, priv-key, sign-method and ttl.
type JWT struct {
	Method  jwt.SigningMethod
	Public  crypto.PublicKey
	Private crypto.PrivateKey // nil: this node verifies tokens but issues none
	TTL     time.Duration
}

// jwtClaims are etcd's: the user, the auth revision and the expiry.
type jwtClaims struct {
	Username string `json:"username"`
	Revision uint64 `json:"revision"`
	jwt.RegisteredClaims
}

func (j *JWT) issue(user string, rev uint64, now time.Time) (string, error) {
	if j.Private == nil {
		return "", errors.New("auth: no jwt private key (priv-key) on this node to sign tokens with")
	}
	c := jwtClaims{Username: user, Revision: rev, RegisteredClaims: jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(now.Add(j.TTL))}}
	return jwt.NewWithClaims(j.Method, c).SignedString(j.Private)
}

func (j *JWT) verify(s string, now time.Time) (user string, rev uint64, err error) {
	var c jwtClaims
	_, err = jwt.ParseWithClaims(s, &c, func(*jwt.Token) (any, error) { return j.Public, nil },
		jwt.WithValidMethods([]string{j.Method.Alg()}), jwt.WithTimeFunc(func() time.Time { return now }), jwt.WithExpirationRequired())
	if err != nil || c.Username == "" {
		return "", 0, errBadToken
	}
	return c.Username, c.Revision, nil
}

// ParseTokenOption parses etcd's --auth-token: "simple" (nil JWT) or
// "jwt,pub-key=PATH,priv-key=PATH,sign-method=ALG[,ttl=DURATION]"
// (priv-key may be left out on a node that only verifies).
func ParseTokenOption(s string) (*JWT, error) {
	parts := strings.Split(s, ",")
	switch parts[0] {
	case "simple":
		if len(parts) > 1 {
			return nil, fmt.Errorf("auth: --auth-token simple takes no options, got %q", s)
		}
		return nil, nil
	case "jwt":
	default:
		return nil, fmt.Errorf("auth: --auth-token %q: want simple or jwt,OPTIONS", s)
	}
	opts := map[string]string{}
	for _, p := range parts[1:] {
		k, v, ok := strings.Cut(p, "=")
		if !ok || v == "" {
			return nil, fmt.Errorf("auth: --auth-token option %q is not key=value", p)
		}
		switch k {
		case "pub-key", "priv-key", "sign-method", "ttl":
		default:
			return nil, fmt.Errorf("auth: --auth-token: unknown option %q", k)
		}
		opts[k] = v
	}
	j := &JWT{TTL: 5 * time.Minute}
	if v, ok := opts["ttl"]; ok {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("auth: --auth-token ttl %q is not a positive duration", v)
		}
		j.TTL = d
	}
	j.Method = jwt.GetSigningMethod(opts["sign-method"])
	if j.Method == nil {
		return nil, fmt.Errorf("auth: --auth-token: sign-method %q is not one of RS256..512, PS256..512, ES256..512, EdDSA", opts["sign-method"])
	}
	if opts["pub-key"] == "" {
		return nil, errors.New("auth: --auth-token jwt needs pub-key=PATH")
	}
	pub, err := os.ReadFile(opts["pub-key"])
	if err != nil {
		return nil, fmt.Errorf("auth: --auth-token pub-key: %w", err)
	}
	var priv []byte
	if p := opts["priv-key"]; p != "" {
		if priv, err = os.ReadFile(p); err != nil {
			return nil, fmt.Errorf("auth: --auth-token priv-key: %w", err)
		}
	}
	switch j.Method.(type) {
	case *jwt.SigningMethodRSA, *jwt.SigningMethodRSAPSS:
		if j.Public, err = jwt.ParseRSAPublicKeyFromPEM(pub); err == nil && priv != nil {
			j.Private, err = jwt.ParseRSAPrivateKeyFromPEM(priv)
		}
	case *jwt.SigningMethodECDSA:
		if j.Public, err = jwt.ParseECPublicKeyFromPEM(pub); err == nil && priv != nil {
			j.Private, err = jwt.ParseECPrivateKeyFromPEM(priv)
		}
	case *jwt.SigningMethodEd25519:
		if j.Public, err = jwt.ParseEdPublicKeyFromPEM(pub); err == nil && priv != nil {
			j.Private, err = jwt.ParseEdPrivateKeyFromPEM(priv)
		}
	default:
		return nil, fmt.Errorf("auth: --auth-token: sign-method %q needs a key pair (HMAC methods are not supported)", opts["sign-method"])
	}
	if err != nil {
		return nil, fmt.Errorf("auth: --auth-token keys for %s: %w", j.Method.Alg(), err)
	}
	return j, nil
}
