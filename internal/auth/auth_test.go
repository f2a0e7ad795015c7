package auth

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/metadata"

	"github.com/concorddb/concord/internal/concordpb/metapb"
)

// memRecord is a Backend holding the record in memory, as the meta range
// would: CAS is atomic.
type memRecord struct {
	mu    sync.Mutex
	raw   []byte
	casN  int
	casFn func() // runs inside CAS before it compares, to race it
}

func (m *memRecord) Load(context.Context) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.raw, nil
}

func (m *memRecord) CAS(_ context.Context, expect, value []byte) (bool, []byte, error) {
	if f := m.casFn; f != nil {
		m.casFn = nil
		f()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.casN++
	if !bytes.Equal(m.raw, expect) {
		return false, m.raw, nil
	}
	m.raw = value
	return true, nil, nil
}

func (m *memRecord) Broadcast(context.Context, uint64) {}

func mustUpdate(t *testing.T, s *Store, ch Change) {
	t.Helper()
	if _, err := s.Update(context.Background(), ch); err != nil {
		t.Fatal(err)
	}
}

// Permissions of several roles merge: a range is allowed when their union
// covers it, and a key when any covers it.
func TestPermissionsMergeAcrossRoles(t *testing.T) {
	st := newState()
	for _, ch := range []Change{
		UserAdd("u", []byte("h"), false), RoleAdd("a"), RoleAdd("b"),
		RoleGrantPermission("a", &metapb.AuthPermission{Type: PermReadWrite, Key: []byte("b"), RangeEnd: []byte("d")}),
		RoleGrantPermission("b", &metapb.AuthPermission{Type: PermRead, Key: []byte("d"), RangeEnd: []byte("f")}),
		RoleGrantPermission("b", &metapb.AuthPermission{Type: PermWrite, Key: []byte("k")}),
		RoleGrantPermission("b", &metapb.AuthPermission{Type: PermRead, Key: []byte("x"), RangeEnd: []byte{0}}),
		UserGrantRole("u", "a"), UserGrantRole("u", "b"),
	} {
		if _, err := ch(st); err != nil {
			t.Fatal(err)
		}
	}
	up := buildPerms(st)["u"]
	for _, c := range []struct {
		typ      int32
		key, end string
		want     bool
	}{
		{PermRead, "b", "", true},
		{PermRead, "b", "f", true}, // two roles, touching spans
		{PermRead, "b", "g", false},
		{PermWrite, "b", "f", false}, // write only up to d
		{PermWrite, "c", "d", true},
		{PermWrite, "k", "", true},
		{PermWrite, "k", "k\x00", true},
		{PermWrite, "k", "l", false},
		{PermRead, "k", "", false},
		{PermRead, "x", "\x00", true},
		{PermRead, "zzzz", "", true},
		{PermRead, "w", "\x00", false},
		{PermRead, "a", "", false},
	} {
		var end []byte
		if c.end != "" {
			end = []byte(c.end)
		}
		if got := up.allowed(c.typ, []byte(c.key), end); got != c.want {
			t.Errorf("type %d on [%q, %q): %v, want %v", c.typ, c.key, c.end, got, c.want)
		}
	}
}

// Two gateways changing the state at once both win: the one that loses
// the compare-and-swap applies its change again on the winner's state.
func TestConcurrentChangesAreNotLost(t *testing.T) {
	rec := &memRecord{}
	a, b := NewStore(Config{Backend: rec}), NewStore(Config{Backend: rec})
	mustUpdate(t, a, RoleAdd("first"))
	// b loads, then a changes the record before b's swap.
	rec.casFn = func() { mustUpdate(t, a, RoleAdd("racer")) }
	mustUpdate(t, b, RoleAdd("second"))
	if err := a.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range a.State().GetRoles() {
		names = append(names, r.GetName())
	}
	if len(names) != 3 {
		t.Fatalf("roles after the race: %v, want first, racer and second", names)
	}
	if got := a.Revision(); got != 4 {
		t.Fatalf("revision %d after three changes from 1", got)
	}
	// A change that fails leaves the record alone.
	if _, err := b.Update(context.Background(), RoleAdd("first")); err != rpctypes.ErrGRPCRoleAlreadyExist {
		t.Fatalf("adding an existing role: %v", err)
	}
}

func enableRoot(t *testing.T, s *Store) {
	t.Helper()
	h, err := s.HashPassword("pw")
	if err != nil {
		t.Fatal(err)
	}
	mustUpdate(t, s, UserAdd(RootUser, h, false))
	mustUpdate(t, s, UserGrantRole(RootUser, RootRole))
	mustUpdate(t, s, Enable(NewSecret()))
}

func tokenCtx(tok string) context.Context {
	return metadata.NewIncomingContext(context.Background(), metadata.Pairs("token", tok))
}

// A simple token works on another node, lives TokenTTL past its last use,
// and dies with a password change or with auth disabled and enabled again.
func TestSimpleTokens(t *testing.T) {
	rec := &memRecord{}
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	a := NewStore(Config{Backend: rec, BcryptCost: 4, TokenTTL: 10 * time.Second, Now: clock})
	b := NewStore(Config{Backend: rec, BcryptCost: 4, TokenTTL: 10 * time.Second, Now: clock})
	enableRoot(t, a)
	tok, err := a.Authenticate(context.Background(), RootUser, "pw")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(context.Background(), RootUser, "nope"); err != rpctypes.ErrGRPCAuthFailed {
		t.Fatalf("wrong password: %v", err)
	}
	if err := b.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	info, err := b.Identify(tokenCtx(tok))
	if err != nil || info.User != RootUser {
		t.Fatalf("another node's token: %v %v", info, err)
	}
	if err := b.Admin(info); err != nil {
		t.Fatalf("root is no admin: %v", err)
	}
	// A user b has not heard of yet: the token's revision makes b load.
	h, _ := a.HashPassword("upw")
	mustUpdate(t, a, UserAdd("u", h, false))
	utok, err := a.Authenticate(context.Background(), "u", "upw")
	if err != nil {
		t.Fatal(err)
	}
	if info, err := b.Identify(tokenCtx(utok)); err != nil || info.User != "u" {
		t.Fatalf("a token of a user newer than this node's copy: %v %v", info, err)
	}
	now = now.Add(8 * time.Second)
	if _, err := a.Identify(tokenCtx(tok)); err != nil {
		t.Fatalf("used within its TTL: %v", err)
	}
	now = now.Add(8 * time.Second) // 16 s after issue, 8 s after last use on a
	if _, err := a.Identify(tokenCtx(tok)); err != nil {
		t.Fatalf("used within its TTL of its last use: %v", err)
	}
	now = now.Add(11 * time.Second)
	if _, err := a.Identify(tokenCtx(tok)); err != rpctypes.ErrGRPCInvalidAuthToken {
		t.Fatalf("past its TTL: %v", err)
	}
	tok, _ = a.Authenticate(context.Background(), RootUser, "pw")
	h, _ = a.HashPassword("pw2")
	mustUpdate(t, a, UserChangePassword(RootUser, h))
	if _, err := a.Identify(tokenCtx(tok)); err != rpctypes.ErrGRPCInvalidAuthToken {
		t.Fatalf("after a password change: %v", err)
	}
	tok, _ = a.Authenticate(context.Background(), RootUser, "pw2")
	mustUpdate(t, a, Disable())
	mustUpdate(t, a, Enable(NewSecret()))
	if _, err := a.Identify(tokenCtx(tok)); err != rpctypes.ErrGRPCInvalidAuthToken {
		t.Fatalf("after disable and enable: %v", err)
	}
	if _, err := a.Identify(tokenCtx(tok + "x")); err != rpctypes.ErrGRPCInvalidAuthToken {
		t.Fatalf("a forged token: %v", err)
	}
}

// A JWT carries etcd's claims; one issued before a change of the auth
// state is refused as old (clients then sign in again), an expired one as
// invalid.
func TestJWT(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	privDER, _ := x509.MarshalECPrivateKey(key)
	pubDER, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	priv, pub := filepath.Join(dir, "k"), filepath.Join(dir, "k.pub")
	os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: privDER}), 0o600)
	os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o600)
	j, err := ParseTokenOption("jwt,pub-key=" + pub + ",priv-key=" + priv + ",sign-method=ES256,ttl=1m")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	s := NewStore(Config{Backend: &memRecord{}, BcryptCost: 4, JWT: j, Now: func() time.Time { return now }})
	enableRoot(t, s)
	tok, err := s.Authenticate(context.Background(), RootUser, "pw")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Identify(tokenCtx(tok))
	if err != nil || info.User != RootUser || s.Allowed(info, PermWrite, []byte("k"), nil) != nil {
		t.Fatalf("fresh jwt: %v %v", info, err)
	}
	mustUpdate(t, s, RoleAdd("r"))
	info, _ = s.Identify(tokenCtx(tok))
	if err := s.Allowed(info, PermRead, []byte("k"), nil); err != rpctypes.ErrGRPCAuthOldRevision {
		t.Fatalf("jwt from before a change: %v", err)
	}
	now = now.Add(2 * time.Minute)
	if _, err := s.Identify(tokenCtx(tok)); err != rpctypes.ErrGRPCInvalidAuthToken {
		t.Fatalf("expired jwt: %v", err)
	}
	for _, bad := range []string{"jwt", "jwt,sign-method=ES256", "jwt,pub-key=" + pub + ",sign-method=HS256", "jwt,pub-key=" + pub + ",sign-method=ES256,ttl=x", "simple,x", "other"} {
		if _, err := ParseTokenOption(bad); err == nil {
			t.Errorf("--auth-token %q accepted", bad)
		}
	}
}

// FuzzSimpleToken: decoding never panics, and accepts only what was
// signed with the secret.
func FuzzSimpleToken(f *testing.F) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	f.Add(encodeSimpleToken(simpleToken{user: "root", revision: 3, issued: time.UnixMilli(5), nonce: 9}, secret))
	f.Add("")
	f.Add("AAAA")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := decodeSimpleToken(s, secret)
		if err != nil {
			return
		}
		if again := encodeSimpleToken(tok, secret); again != s {
			t.Fatalf("accepted %q, which is not the encoding %q of what it says", s, again)
		}
	})
}

// The tokens a node tracks are bounded: past maxTrackedTokens the oldest
// go, and a token no longer tracked still works within its TTL of issue.
func TestTrackedTokensAreBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	s := NewStore(Config{Backend: &memRecord{}, BcryptCost: 4, Now: func() time.Time { return now }})
	enableRoot(t, s)
	first, err := s.Authenticate(context.Background(), RootUser, "pw")
	if err != nil {
		t.Fatal(err)
	}
	s.tokens.Lock()
	for i := range maxTrackedTokens + 10 {
		s.noteUseLocked(fmt.Sprint("t", i), now)
	}
	n := len(s.tokens.lastUse)
	s.tokens.Unlock()
	if n > maxTrackedTokens {
		t.Fatalf("%d tokens tracked, bound %d", n, maxTrackedTokens)
	}
	if _, err := s.Identify(tokenCtx(first)); err != nil {
		t.Fatalf("a token within its TTL of issue, no longer tracked: %v", err)
	}
}
