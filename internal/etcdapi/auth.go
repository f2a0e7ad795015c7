package etcdapi

import (
	"context"
	"strings"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/concorddb/concord/internal/auth"
	"github.com/concorddb/concord/internal/concordpb/metapb"
)

// authServer is etcd's Auth service over an auth.Store. Changes need the
// root role once auth is on (etcd's needAdminPermission); UserGet is also
// open to the user itself, RoleGet to holders of the role.
type authServer struct {
	pb.UnimplementedAuthServer
	a   *auth.Store
	cfg Config
}

var _ pb.AuthServer = (*authServer)(nil)

// authError passes the auth store's etcd errors (gRPC statuses) as they
// are and translates the backend's.
func authError(err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	return toGRPCError(err)
}

// admin checks that the caller holds the root role.
func (s *authServer) admin(ctx context.Context) error {
	info, err := s.a.Identify(ctx)
	if err != nil {
		return err
	}
	return s.a.Admin(info)
}

// change runs an admin's change of the auth state.
func (s *authServer) change(ctx context.Context, ch auth.Change) (*pb.ResponseHeader, error) {
	if err := s.admin(ctx); err != nil {
		return nil, err
	}
	if _, err := s.a.Update(ctx, ch); err != nil {
		return nil, authError(err)
	}
	return header(s.cfg, Header{}), nil
}

func (s *authServer) AuthEnable(ctx context.Context, _ *pb.AuthEnableRequest) (*pb.AuthEnableResponse, error) {
	h, err := s.change(ctx, auth.Enable(auth.NewSecret()))
	if err != nil {
		return nil, err
	}
	return &pb.AuthEnableResponse{Header: h}, nil
}

func (s *authServer) AuthDisable(ctx context.Context, _ *pb.AuthDisableRequest) (*pb.AuthDisableResponse, error) {
	h, err := s.change(ctx, auth.Disable())
	if err != nil {
		return nil, err
	}
	return &pb.AuthDisableResponse{Header: h}, nil
}

func (s *authServer) AuthStatus(ctx context.Context, _ *pb.AuthStatusRequest) (*pb.AuthStatusResponse, error) {
	if err := s.a.Refresh(ctx); err != nil {
		return nil, authError(err)
	}
	st := s.a.State()
	return &pb.AuthStatusResponse{Header: header(s.cfg, Header{}), Enabled: st.GetEnabled(), AuthRevision: st.GetRevision()}, nil
}

func (s *authServer) Authenticate(ctx context.Context, r *pb.AuthenticateRequest) (*pb.AuthenticateResponse, error) {
	tok, err := s.a.Authenticate(ctx, r.GetName(), r.GetPassword())
	if err != nil {
		return nil, authError(err)
	}
	return &pb.AuthenticateResponse{Header: header(s.cfg, Header{}), Token: tok}, nil
}

// password turns a request's password (or its client-side hash) into the
// hash to store; none for a no-password user.
func (s *authServer) password(password, hashed string, noPassword bool) ([]byte, error) {
	if noPassword {
		return nil, nil
	}
	if hashed != "" {
		return auth.DecodeHashedPassword(hashed)
	}
	return s.a.HashPassword(password)
}

func (s *authServer) UserAdd(ctx context.Context, r *pb.AuthUserAddRequest) (*pb.AuthUserAddResponse, error) {
	if err := s.admin(ctx); err != nil {
		return nil, err
	}
	noPassword := r.GetOptions().GetNoPassword()
	hash, err := s.password(r.GetPassword(), r.GetHashedPassword(), noPassword)
	if err != nil {
		return nil, err
	}
	h, err := s.change(ctx, auth.UserAdd(r.GetName(), hash, noPassword))
	if err != nil {
		return nil, err
	}
	return &pb.AuthUserAddResponse{Header: h}, nil
}

func (s *authServer) UserGet(ctx context.Context, r *pb.AuthUserGetRequest) (*pb.AuthUserGetResponse, error) {
	info, err := s.a.Identify(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.a.Admin(info); err != nil && (info == nil || info.User != r.GetName()) {
		return nil, err
	}
	if err := s.a.Refresh(ctx); err != nil {
		return nil, authError(err)
	}
	roles, err := auth.UserRoles(s.a.State(), r.GetName())
	if err != nil {
		return nil, err
	}
	return &pb.AuthUserGetResponse{Header: header(s.cfg, Header{}), Roles: roles}, nil
}

func (s *authServer) UserList(ctx context.Context, _ *pb.AuthUserListRequest) (*pb.AuthUserListResponse, error) {
	if err := s.admin(ctx); err != nil {
		return nil, err
	}
	if err := s.a.Refresh(ctx); err != nil {
		return nil, authError(err)
	}
	out := &pb.AuthUserListResponse{Header: header(s.cfg, Header{})}
	for _, u := range s.a.State().GetUsers() {
		out.Users = append(out.Users, u.GetName())
	}
	return out, nil
}

func (s *authServer) UserDelete(ctx context.Context, r *pb.AuthUserDeleteRequest) (*pb.AuthUserDeleteResponse, error) {
	h, err := s.change(ctx, auth.UserDelete(r.GetName()))
	if err != nil {
		return nil, err
	}
	return &pb.AuthUserDeleteResponse{Header: h}, nil
}

func (s *authServer) UserChangePassword(ctx context.Context, r *pb.AuthUserChangePasswordRequest) (*pb.AuthUserChangePasswordResponse, error) {
	if err := s.admin(ctx); err != nil {
		return nil, err
	}
	// A no-password user keeps none whatever is given; hashing for it
	// would only cost time.
	noPassword := false
	for _, u := range s.a.State().GetUsers() {
		if u.GetName() == r.GetName() {
			noPassword = u.GetNoPassword()
		}
	}
	hash, err := s.password(r.GetPassword(), r.GetHashedPassword(), noPassword)
	if err != nil {
		return nil, err
	}
	h, err := s.change(ctx, auth.UserChangePassword(r.GetName(), hash))
	if err != nil {
		return nil, err
	}
	return &pb.AuthUserChangePasswordResponse{Header: h}, nil
}

func (s *authServer) UserGrantRole(ctx context.Context, r *pb.AuthUserGrantRoleRequest) (*pb.AuthUserGrantRoleResponse, error) {
	h, err := s.change(ctx, auth.UserGrantRole(r.GetUser(), r.GetRole()))
	if err != nil {
		return nil, err
	}
	return &pb.AuthUserGrantRoleResponse{Header: h}, nil
}

func (s *authServer) UserRevokeRole(ctx context.Context, r *pb.AuthUserRevokeRoleRequest) (*pb.AuthUserRevokeRoleResponse, error) {
	h, err := s.change(ctx, auth.UserRevokeRole(r.GetName(), r.GetRole()))
	if err != nil {
		return nil, err
	}
	return &pb.AuthUserRevokeRoleResponse{Header: h}, nil
}

func (s *authServer) RoleAdd(ctx context.Context, r *pb.AuthRoleAddRequest) (*pb.AuthRoleAddResponse, error) {
	h, err := s.change(ctx, auth.RoleAdd(r.GetName()))
	if err != nil {
		return nil, err
	}
	return &pb.AuthRoleAddResponse{Header: h}, nil
}

func (s *authServer) RoleGet(ctx context.Context, r *pb.AuthRoleGetRequest) (*pb.AuthRoleGetResponse, error) {
	info, err := s.a.Identify(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.a.Admin(info); err != nil && (info == nil || !s.a.HasRole(info.User, r.GetRole())) {
		return nil, err
	}
	if err := s.a.Refresh(ctx); err != nil {
		return nil, authError(err)
	}
	perms, err := auth.RolePerms(s.a.State(), r.GetRole())
	if err != nil {
		return nil, err
	}
	out := &pb.AuthRoleGetResponse{Header: header(s.cfg, Header{})}
	for _, p := range perms {
		out.Perm = append(out.Perm, &authpb.Permission{PermType: authpb.Permission_Type(p.GetType()), Key: p.GetKey(), RangeEnd: p.GetRangeEnd()})
	}
	return out, nil
}

func (s *authServer) RoleList(ctx context.Context, _ *pb.AuthRoleListRequest) (*pb.AuthRoleListResponse, error) {
	if err := s.admin(ctx); err != nil {
		return nil, err
	}
	if err := s.a.Refresh(ctx); err != nil {
		return nil, authError(err)
	}
	out := &pb.AuthRoleListResponse{Header: header(s.cfg, Header{})}
	for _, r := range s.a.State().GetRoles() {
		out.Roles = append(out.Roles, r.GetName())
	}
	return out, nil
}

func (s *authServer) RoleDelete(ctx context.Context, r *pb.AuthRoleDeleteRequest) (*pb.AuthRoleDeleteResponse, error) {
	h, err := s.change(ctx, auth.RoleDelete(r.GetRole()))
	if err != nil {
		return nil, err
	}
	return &pb.AuthRoleDeleteResponse{Header: h}, nil
}

func (s *authServer) RoleGrantPermission(ctx context.Context, r *pb.AuthRoleGrantPermissionRequest) (*pb.AuthRoleGrantPermissionResponse, error) {
	var perm *metapb.AuthPermission
	if p := r.GetPerm(); p != nil {
		perm = &metapb.AuthPermission{Type: int32(p.GetPermType()), Key: p.GetKey(), RangeEnd: p.GetRangeEnd()}
	}
	h, err := s.change(ctx, auth.RoleGrantPermission(r.GetName(), perm))
	if err != nil {
		return nil, err
	}
	return &pb.AuthRoleGrantPermissionResponse{Header: h}, nil
}

func (s *authServer) RoleRevokePermission(ctx context.Context, r *pb.AuthRoleRevokePermissionRequest) (*pb.AuthRoleRevokePermissionResponse, error) {
	h, err := s.change(ctx, auth.RoleRevokePermission(r.GetRole(), r.GetKey(), r.GetRangeEnd()))
	if err != nil {
		return nil, err
	}
	return &pb.AuthRoleRevokePermissionResponse{Header: h}, nil
}

// The checks of every other service's calls, as etcd makes them. Unary
// calls are checked by authUnary before their handler runs; the
// Snapshot stream by authStream when it opens, keepalives one by one;
// watches when each is created (watch.go).

// authUnary checks a unary call's permissions. Every call but the Auth
// service's own names its caller first, as etcd's requests do (an invalid
// token is refused whatever the call); the Auth service checks its calls
// itself, and Authenticate must work with an expired token still attached
// (clientv3 sends it when it signs in again).
func (cfg Config) authUnary(ctx context.Context, req any, si *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	a := cfg.Auth
	if !a.Enabled() || strings.HasPrefix(si.FullMethod, authServicePrefix) {
		return handler(ctx, req)
	}
	info, err := a.Identify(ctx)
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(si.FullMethod, adminServicePrefix) || strings.HasPrefix(si.FullMethod, apAdminServicePrefix) {
		err = a.Admin(info)
	} else {
		err = cfg.checkCall(ctx, a, info, req)
	}
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// authServicePrefix is the method path prefix of etcd's Auth service.
const authServicePrefix = "/etcdserverpb.Auth/"

// adminServicePrefix is the method path prefix of Concord's own operator
// service on the client port (range split and merge, decommission, ...):
// with auth on, only the root role may call it.
const adminServicePrefix = "/concordpb.Admin/"

// apAdminServicePrefix is that of the AP keyspaces' operator service
// (concord keyspace), which needs the root role too.
const apAdminServicePrefix = "/concordpb.APAdmin/"

// checkCall is etcd's check of one request.
func (cfg Config) checkCall(ctx context.Context, a *auth.Store, info *auth.Info, req any) error {
	switch r := req.(type) {
	case *pb.RangeRequest:
		return a.Allowed(info, auth.PermRead, r.GetKey(), r.GetRangeEnd())
	case *pb.PutRequest:
		if err := a.Allowed(info, auth.PermWrite, r.GetKey(), nil); err != nil {
			return err
		}
		if r.GetLease() != 0 {
			if err := cfg.leaseKeysAllowed(ctx, a, info, r.GetLease(), auth.PermWrite, false); err != nil {
				return err
			}
		}
		if r.GetPrevKv() {
			return a.Allowed(info, auth.PermRead, r.GetKey(), nil)
		}
		return nil
	case *pb.DeleteRangeRequest:
		if err := a.Allowed(info, auth.PermWrite, r.GetKey(), r.GetRangeEnd()); err != nil {
			return err
		}
		if r.GetPrevKv() {
			return a.Allowed(info, auth.PermRead, r.GetKey(), r.GetRangeEnd())
		}
		return nil
	case *pb.TxnRequest:
		return txnAllowed(a, info, r)
	case *pb.LeaseRevokeRequest:
		return cfg.leaseKeysAllowed(ctx, a, info, r.GetID(), auth.PermWrite, false)
	case *pb.LeaseTimeToLiveRequest:
		return cfg.leaseKeysAllowed(ctx, a, info, r.GetID(), auth.PermRead, true)
	case *pb.StatusRequest, *pb.MemberListRequest:
		return a.RequireUser(info)
	case *pb.AlarmRequest:
		if r.GetAction() == pb.AlarmRequest_GET {
			return a.RequireUser(info)
		}
		return a.Admin(info)
	case *pb.DefragmentRequest, *pb.HashRequest, *pb.HashKVRequest, *pb.MoveLeaderRequest, *pb.DowngradeRequest,
		*pb.MemberAddRequest, *pb.MemberRemoveRequest, *pb.MemberUpdateRequest, *pb.MemberPromoteRequest:
		return a.Admin(info)
	}
	return nil
}

// txnAllowed checks a txn's compares for reading and its branches' ops,
// nested txns included (etcd's checkTxnAuth).
func txnAllowed(a *auth.Store, info *auth.Info, r *pb.TxnRequest) error {
	for _, c := range r.GetCompare() {
		if err := a.Allowed(info, auth.PermRead, c.GetKey(), c.GetRangeEnd()); err != nil {
			return err
		}
	}
	for _, ops := range [][]*pb.RequestOp{r.GetSuccess(), r.GetFailure()} {
		for _, op := range ops {
			var err error
			switch {
			case op.GetRequestRange() != nil:
				rr := op.GetRequestRange()
				err = a.Allowed(info, auth.PermRead, rr.GetKey(), rr.GetRangeEnd())
			case op.GetRequestPut() != nil:
				err = a.Allowed(info, auth.PermWrite, op.GetRequestPut().GetKey(), nil)
			case op.GetRequestDeleteRange() != nil:
				d := op.GetRequestDeleteRange()
				if d.GetPrevKv() {
					err = a.Allowed(info, auth.PermRead, d.GetKey(), d.GetRangeEnd())
				}
				if err == nil {
					err = a.Allowed(info, auth.PermWrite, d.GetKey(), d.GetRangeEnd())
				}
			case op.GetRequestTxn() != nil:
				err = txnAllowed(a, info, op.GetRequestTxn())
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// leaseKeysAllowed checks typ on every key attached to lease id, as etcd
// does for revoking (write), renewing (write) and TimeToLive (read); root
// may do all. needUser refuses a call with no user even if the lease has
// no keys (etcd's TimeToLive and keepalive checks; its revoke only checks
// keys).
func (cfg Config) leaseKeysAllowed(ctx context.Context, a *auth.Store, info *auth.Info, id int64, typ int32, needUser bool) error {
	if needUser && info == nil {
		return a.RequireUser(info)
	}
	if a.Admin(info) == nil || cfg.LeaseKeys == nil {
		return nil
	}
	ks, err := cfg.LeaseKeys(ctx, id)
	if err != nil {
		return nil // no such lease: the call itself says so
	}
	for _, k := range ks {
		if err := a.Allowed(info, typ, k, nil); err != nil {
			return err
		}
	}
	return nil
}

// authStream checks the streams: Snapshot needs the root role; every
// keepalive request needs write on the lease's keys.
func (cfg Config) authStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	a := cfg.Auth
	switch info.FullMethod {
	case "/etcdserverpb.Maintenance/Snapshot":
		if a.Enabled() {
			ai, err := a.Identify(ss.Context())
			if err != nil {
				return err
			}
			if err := a.Admin(ai); err != nil {
				return err
			}
		}
	case "/etcdserverpb.Lease/LeaseKeepAlive":
		ss = &keepAliveAuth{ServerStream: ss, cfg: cfg}
	}
	return handler(srv, ss)
}

// keepAliveAuth checks each keepalive request as it is received; a
// refused one ends the stream with the error, as etcd's.
type keepAliveAuth struct {
	grpc.ServerStream
	cfg Config
}

func (s *keepAliveAuth) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	a := s.cfg.Auth
	r, ok := m.(*pb.LeaseKeepAliveRequest)
	if !ok || !a.Enabled() {
		return nil
	}
	ctx := s.Context()
	info, err := a.Identify(ctx)
	if err != nil {
		return err
	}
	return s.cfg.leaseKeysAllowed(ctx, a, info, r.GetID(), auth.PermWrite, true)
}

// watchAllowed checks a watch's creation: read on its range.
func (cfg Config) watchAllowed(ctx context.Context, key, rangeEnd []byte) error {
	a := cfg.Auth
	if a == nil || !a.Enabled() {
		return nil
	}
	info, err := a.Identify(ctx)
	if err != nil {
		return err
	}
	return a.Allowed(info, auth.PermRead, key, rangeEnd)
}
