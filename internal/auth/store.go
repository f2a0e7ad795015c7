package auth

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/concorddb/concord/internal/concordpb/metapb"
)

// Backend is where the auth record lives (the meta range) and how the
// other nodes hear of a change.
type Backend interface {
	// Load reads the auth record, linearizably; nil if it was never
	// written.
	Load(ctx context.Context) ([]byte, error)
	// CAS writes value if the record is expect now (nil: absent), and
	// otherwise returns the record as it is.
	CAS(ctx context.Context, expect, value []byte) (swapped bool, current []byte, err error)
	// Broadcast asks every other node to load the record if its copy is
	// older than generation, and returns once each reachable one did (or
	// ctx ends).
	Broadcast(ctx context.Context, generation uint64)
}

// Config configures a Store.
type Config struct {
	Backend Backend
	// JWT, when set, makes tokens JWTs (--auth-token jwt,...); nil: simple
	// tokens.
	JWT *JWT
	// TokenTTL is a simple token's life after its last use
	// (DefaultTokenTTL if 0).
	TokenTTL time.Duration
	// BcryptCost hashes passwords (bcrypt.DefaultCost, etcd's default, if
	// 0).
	BcryptCost int
	// CommonName, when set, returns the common name of the verified client
	// certificate of the call in ctx: with --client-cert-auth a call with
	// no token is that user's (etcd's rule).
	CommonName func(ctx context.Context) (string, bool)
	// RefreshInterval is how often the copy is loaded again on its own
	// (DefaultRefreshInterval if 0).
	RefreshInterval time.Duration
	Logger          *slog.Logger
	// Now is the clock for token lifetimes (time.Now if nil).
	Now func() time.Time
}

// DefaultRefreshInterval bounds how stale a node's copy is when it missed
// a change's broadcast.
const DefaultRefreshInterval = time.Second

// broadcastTimeout bounds how long a change waits for the other nodes.
const broadcastTimeout = 2 * time.Second

// maxTrackedTokens bounds the simple tokens whose last use a node tracks:
// at it the expired ones are dropped, then any (a token no longer tracked
// counts from its issue again, and its client signs in anew once that is
// past the TTL).
const maxTrackedTokens = 1 << 16

// maxUpdateAttempts bounds the compare-and-swaps of one change that lose
// to other changes.
const maxUpdateAttempts = 64

// Info is who a request is from: the user and the auth revision its
// permissions were looked up at (etcd's AuthInfo).
type Info struct {
	User     string
	Revision uint64
}

// view is one auth state with what checks need of it. Immutable.
type view struct {
	raw   []byte
	st    *metapb.AuthState
	perms map[string]*userPerms
}

// Store is a node's copy of the auth state, its changes and its checks.
// Safe for concurrent use.
type Store struct {
	cfg Config
	// cur is the newest state this node loaded; its generation never
	// goes down.
	cur atomic.Pointer[view]
	// loadMu makes loads one at a time, so a burst of refreshes costs one
	// read.
	loadMu sync.Mutex
	tokens struct {
		sync.Mutex
		// lastUse is the last use this node saw of each simple token.
		lastUse map[string]time.Time
	}
}

// NewStore returns a store with the state of a cluster whose auth was
// never changed; Refresh (or Run) loads the real one.
func NewStore(cfg Config) *Store {
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = DefaultTokenTTL
	}
	if cfg.BcryptCost == 0 {
		cfg.BcryptCost = bcrypt.DefaultCost
	}
	if cfg.RefreshInterval <= 0 {
		cfg.RefreshInterval = DefaultRefreshInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Store{cfg: cfg}
	s.cur.Store(newView(nil, newState()))
	s.tokens.lastUse = map[string]time.Time{}
	return s
}

// ValidateBcryptCost reports a --bcrypt-cost bcrypt refuses.
func ValidateBcryptCost(c int) error {
	if c < bcrypt.MinCost || c > bcrypt.MaxCost {
		return fmt.Errorf("auth: --bcrypt-cost %d is not in [%d, %d]", c, bcrypt.MinCost, bcrypt.MaxCost)
	}
	return nil
}

func newView(raw []byte, st *metapb.AuthState) *view {
	return &view{raw: raw, st: st, perms: buildPerms(st)}
}

// decode turns a record into a view (nil raw: the initial state).
func decode(raw []byte) (*view, error) {
	if raw == nil {
		return newView(nil, newState()), nil
	}
	st := &metapb.AuthState{}
	if err := proto.Unmarshal(raw, st); err != nil {
		return nil, fmt.Errorf("auth: decode the auth record: %w", err)
	}
	return newView(raw, st), nil
}

// install makes v the copy if it is newer.
func (s *Store) install(v *view) {
	for {
		old := s.cur.Load()
		if v.st.GetGeneration() <= old.st.GetGeneration() && old.raw != nil {
			return
		}
		if s.cur.CompareAndSwap(old, v) {
			if old.st.GetEnabled() != v.st.GetEnabled() {
				s.cfg.Logger.Info("auth state loaded", "enabled", v.st.GetEnabled(), "revision", v.st.GetRevision())
			}
			return
		}
	}
}

// Refresh loads the record and installs it if newer.
func (s *Store) Refresh(ctx context.Context) error {
	s.loadMu.Lock()
	defer s.loadMu.Unlock()
	raw, err := s.cfg.Backend.Load(ctx)
	if err != nil {
		return err
	}
	v, err := decode(raw)
	if err != nil {
		return err
	}
	s.install(v)
	return nil
}

// EnsureRevision loads the record if the copy is below rev.
func (s *Store) EnsureRevision(ctx context.Context, rev uint64) error {
	if s.Revision() >= rev {
		return nil
	}
	return s.Refresh(ctx)
}

// EnsureGeneration loads the record if the copy is older than gen (an
// AuthRefresh from the node that made a change).
func (s *Store) EnsureGeneration(ctx context.Context, gen uint64) error {
	if s.Generation() >= gen {
		return nil
	}
	return s.Refresh(ctx)
}

// Generation counts the writes of the auth record this node's copy has
// seen.
func (s *Store) Generation() uint64 { return s.cur.Load().st.GetGeneration() }

// Run refreshes the copy every RefreshInterval until ctx ends.
func (s *Store) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.RefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := s.Refresh(rctx); err != nil && ctx.Err() == nil {
			s.cfg.Logger.Debug("auth refresh failed", "err", err)
		}
		cancel()
	}
}

// Enabled reports whether auth is on in this node's copy.
func (s *Store) Enabled() bool { return s.cur.Load().st.GetEnabled() }

// Revision is the auth revision of this node's copy.
func (s *Store) Revision() uint64 { return s.cur.Load().st.GetRevision() }

// Update applies ch to the current state and writes it back; on a lost
// race it applies ch again to the winner's state. It returns the
// revision after the change, once every reachable node has it.
func (s *Store) Update(ctx context.Context, ch Change) (uint64, error) {
	if err := s.Refresh(ctx); err != nil {
		return 0, err
	}
	v := s.cur.Load()
	for attempt := 0; ; attempt++ {
		if attempt == maxUpdateAttempts {
			return 0, status.Errorf(codes.Unavailable, "etcdserver: auth change lost %d races to other changes; retry", attempt)
		}
		st := proto.CloneOf(v.st)
		changed, err := ch(st)
		if err != nil {
			return 0, err
		}
		if !changed {
			return st.GetRevision(), nil
		}
		st.Generation++
		if !st.GetEnabled() || v.st.GetEnabled() {
			// Every change moves the revision but enabling auth (etcd's
			// AuthEnable keeps it).
			st.Revision++
		}
		raw, err := proto.Marshal(st)
		if err != nil {
			return 0, err
		}
		ok, cur, err := s.cfg.Backend.CAS(ctx, v.raw, raw)
		if err != nil {
			return 0, err
		}
		if ok {
			s.install(newView(raw, st))
			bctx, cancel := context.WithTimeout(ctx, broadcastTimeout)
			s.cfg.Backend.Broadcast(bctx, st.GetGeneration())
			cancel()
			return st.GetRevision(), nil
		}
		if v, err = decode(cur); err != nil {
			return 0, err
		}
		s.install(v)
	}
}

// HashPassword hashes a password for UserAdd and UserChangePassword.
func (s *Store) HashPassword(password string) ([]byte, error) {
	return bcrypt.GenerateFromPassword([]byte(password), s.cfg.BcryptCost)
}

// DecodeHashedPassword takes a client's own bcrypt hash (etcd's
// hashed_password: base64 of the hash).
func DecodeHashedPassword(h string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(h)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, "etcdserver: hashed_password is not base64")
	}
	if _, err := bcrypt.Cost(b); err != nil {
		return nil, status.Error(codes.InvalidArgument, "etcdserver: hashed_password is not a bcrypt hash")
	}
	return b, nil
}

// errNoPasswordUser is etcd's answer to a password given for a user that
// has none (it has no gRPC code of its own there either).
var errNoPasswordUser = status.Error(codes.Unknown, "auth: authentication failed, password was given for no password user")

// Authenticate checks a user's password and returns a token for it.
func (s *Store) Authenticate(ctx context.Context, name, password string) (string, error) {
	if err := s.Refresh(ctx); err != nil {
		return "", err
	}
	v := s.cur.Load()
	if !v.st.GetEnabled() {
		return "", rpctypes.ErrGRPCAuthNotEnabled
	}
	_, u := findUser(v.st, name)
	if u == nil {
		return "", rpctypes.ErrGRPCAuthFailed
	}
	if u.GetNoPassword() {
		return "", errNoPasswordUser
	}
	if bcrypt.CompareHashAndPassword(u.GetPassword(), []byte(password)) != nil {
		s.cfg.Logger.Info("invalid password", "user", name)
		return "", rpctypes.ErrGRPCAuthFailed
	}
	return s.issue(v, name)
}

// IssueToken returns a token for user without a password: for the node's
// own calls on behalf of a caller already identified otherwise (a client
// certificate naming the user, with --client-cert-auth). Errors:
// ErrAuthNotEnabled, ErrUserNotFound.
func (s *Store) IssueToken(user string) (string, error) {
	v := s.cur.Load()
	if !v.st.GetEnabled() {
		return "", rpctypes.ErrGRPCAuthNotEnabled
	}
	if _, u := findUser(v.st, user); u == nil {
		return "", rpctypes.ErrGRPCUserNotFound
	}
	return s.issue(v, user)
}

// issue makes a token for name at v's revision.
func (s *Store) issue(v *view, name string) (string, error) {
	now := s.cfg.Now()
	rev := v.st.GetRevision()
	if s.cfg.JWT != nil {
		return s.cfg.JWT.issue(name, rev, now)
	}
	t := encodeSimpleToken(simpleToken{user: name, revision: rev, issued: now, nonce: binary.LittleEndian.Uint64(newSecret())}, v.st.GetTokenSecret())
	s.tokens.Lock()
	s.noteUseLocked(t, now)
	s.tokens.Unlock()
	return t, nil
}

// tokenFromContext returns the token a call carries (clientv3's "token"
// metadata, or the JSON gateway's Authorization header), if any.
func tokenFromContext(ctx context.Context) (string, bool) {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return "", false
	}
	ts := md.Get(rpctypes.TokenFieldNameGRPC)
	if len(ts) == 0 {
		ts = md.Get(rpctypes.TokenFieldNameSwagger)
	}
	if len(ts) == 0 {
		return "", false
	}
	t := strings.TrimPrefix(ts[0], "Bearer ")
	return t, t != ""
}

// Identify returns who the call in ctx is from: nil with auth disabled,
// or with no token and no certificate user; ErrInvalidAuthToken for a
// token that is not valid (now).
func (s *Store) Identify(ctx context.Context) (*Info, error) {
	v := s.cur.Load()
	if !v.st.GetEnabled() {
		return nil, nil
	}
	tok, ok := tokenFromContext(ctx)
	if !ok {
		if s.cfg.CommonName == nil {
			return nil, nil
		}
		if md, _ := metadata.FromIncomingContext(ctx); len(md.Get("grpcgateway-accept")) > 0 {
			// The JSON gateway's own connection: its certificate names
			// the gateway, not the HTTP client.
			return nil, nil
		}
		cn, ok := s.cfg.CommonName(ctx)
		if !ok || cn == "" {
			return nil, nil
		}
		return &Info{User: cn, Revision: v.st.GetRevision()}, nil
	}
	now := s.cfg.Now()
	if s.cfg.JWT != nil {
		user, rev, err := s.cfg.JWT.verify(tok, now)
		if err != nil {
			return nil, rpctypes.ErrGRPCInvalidAuthToken
		}
		if rev > v.st.GetRevision() {
			if err := s.EnsureRevision(ctx, rev); err != nil {
				return nil, err
			}
		}
		return &Info{User: user, Revision: rev}, nil
	}
	t, err := decodeSimpleToken(tok, v.st.GetTokenSecret())
	if err != nil {
		return nil, rpctypes.ErrGRPCInvalidAuthToken
	}
	if t.revision > v.st.GetRevision() {
		// Issued by a node that has a newer state than this copy.
		if err := s.EnsureRevision(ctx, t.revision); err != nil {
			return nil, err
		}
		v = s.cur.Load()
	}
	_, u := findUser(v.st, t.user)
	if u == nil || u.GetTokensFrom() > t.revision {
		return nil, rpctypes.ErrGRPCInvalidAuthToken
	}
	s.tokens.Lock()
	last, seen := s.tokens.lastUse[tok]
	if !seen || last.Before(t.issued) {
		last = t.issued
	}
	if now.Sub(last) > s.cfg.TokenTTL {
		delete(s.tokens.lastUse, tok)
		s.tokens.Unlock()
		return nil, rpctypes.ErrGRPCInvalidAuthToken
	}
	s.noteUseLocked(tok, now)
	s.tokens.Unlock()
	return &Info{User: t.user, Revision: v.st.GetRevision()}, nil
}

// noteUseLocked records a use of token at now, keeping at most
// maxTrackedTokens. Called with s.tokens held.
func (s *Store) noteUseLocked(token string, now time.Time) {
	if _, ok := s.tokens.lastUse[token]; !ok && len(s.tokens.lastUse) >= maxTrackedTokens {
		for t, last := range s.tokens.lastUse {
			if now.Sub(last) > s.cfg.TokenTTL {
				delete(s.tokens.lastUse, t)
			}
		}
		for t := range s.tokens.lastUse {
			if len(s.tokens.lastUse) < maxTrackedTokens {
				break
			}
			delete(s.tokens.lastUse, t)
		}
	}
	s.tokens.lastUse[token] = now
}

// Allowed checks that info may do typ (PermRead or PermWrite) on key or
// [key, rangeEnd): nil with auth disabled; ErrUserEmpty without a user;
// ErrAuthOldRevision for a token older than the permissions (a JWT after
// a change; the client fetches a new one); ErrPermissionDenied otherwise.
func (s *Store) Allowed(info *Info, typ int32, key, rangeEnd []byte) error {
	v := s.cur.Load()
	if !v.st.GetEnabled() {
		return nil
	}
	if info == nil {
		return rpctypes.ErrGRPCUserEmpty
	}
	if info.Revision < v.st.GetRevision() {
		return rpctypes.ErrGRPCAuthOldRevision
	}
	up := v.perms[info.User]
	if up == nil || !up.allowed(typ, key, rangeEnd) {
		return rpctypes.ErrGRPCPermissionDenied
	}
	return nil
}

// Admin checks that info holds the root role (etcd's IsAdminPermitted).
func (s *Store) Admin(info *Info) error {
	v := s.cur.Load()
	if !v.st.GetEnabled() {
		return nil
	}
	if info == nil || info.User == "" {
		return rpctypes.ErrGRPCUserEmpty
	}
	up := v.perms[info.User]
	if up == nil {
		return rpctypes.ErrGRPCUserNotFound
	}
	if !up.root {
		return rpctypes.ErrGRPCPermissionDenied
	}
	return nil
}

// RequireUser checks that, with auth enabled, the call names a user
// (etcd's requireAuthInfo, for Status and alarm list).
func (s *Store) RequireUser(info *Info) error {
	if s.Enabled() && info == nil {
		return rpctypes.ErrGRPCUserEmpty
	}
	return nil
}

// HasRole reports whether user holds role in this node's copy.
func (s *Store) HasRole(user, role string) bool {
	_, u := findUser(s.cur.Load().st, user)
	return u != nil && hasRole(u, role)
}

// State returns this node's copy, for the read calls (UserGet, RoleList,
// ...); the caller must not modify it. Call Refresh first to read the
// newest.
func (s *Store) State() *metapb.AuthState { return s.cur.Load().st }

// UserRoles returns a user's roles, ErrUserNotFound if there is none.
func UserRoles(st *metapb.AuthState, name string) ([]string, error) {
	_, u := findUser(st, name)
	if u == nil {
		return nil, rpctypes.ErrGRPCUserNotFound
	}
	return append([]string(nil), u.GetRoles()...), nil
}

// RolePerms returns a role's permissions as etcd reports them (the root
// role: readwrite on every key), ErrRoleNotFound if there is none.
func RolePerms(st *metapb.AuthState, name string) ([]*metapb.AuthPermission, error) {
	_, r := findRole(st, name)
	if r == nil {
		return nil, rpctypes.ErrGRPCRoleNotFound
	}
	if name == RootRole {
		return []*metapb.AuthPermission{rootPerm}, nil
	}
	return r.GetPerms(), nil
}

// NewSecret draws the token secret for an Enable.
func NewSecret() []byte { return newSecret() }

// ErrNotEnabled is etcd's answer to calls that need auth on.
var ErrNotEnabled = rpctypes.ErrGRPCAuthNotEnabled

// IsAuthError reports whether err is one of etcd's auth errors (for
// logging at a lower level than real failures).
func IsAuthError(err error) bool {
	for _, e := range []error{rpctypes.ErrGRPCPermissionDenied, rpctypes.ErrGRPCUserEmpty, rpctypes.ErrGRPCInvalidAuthToken, rpctypes.ErrGRPCAuthOldRevision} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
