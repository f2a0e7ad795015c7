package auth

import (
	"bytes"
	"slices"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/protobuf/proto"

	"github.com/concorddb/concord/internal/concordpb/metapb"
)

// The root user and role, as etcd's: auth can only be enabled once the
// root user exists and holds the root role, and the root role may do
// everything.
const (
	RootUser = "root"
	RootRole = "root"
)

// Permission types, as etcd's authpb.Permission_Type.
const (
	PermRead      = 0
	PermWrite     = 1
	PermReadWrite = 2
)

// initialRevision is the auth revision of a store never changed (etcd
// starts at 1 too).
const initialRevision = 1

// Change is one change of the auth state: it edits st in place and
// reports whether it changed anything (a change that changes nothing,
// such as enabling auth twice, keeps the revision), or an etcd error
// with st left as it was for the caller to discard.
type Change func(st *metapb.AuthState) (changed bool, err error)

// newState is the state of a cluster whose auth was never touched.
func newState() *metapb.AuthState { return &metapb.AuthState{Revision: initialRevision} }

func findUser(st *metapb.AuthState, name string) (int, *metapb.AuthUser) {
	i, ok := slices.BinarySearchFunc(st.GetUsers(), name, func(u *metapb.AuthUser, n string) int { return strings.Compare(u.GetName(), n) })
	if !ok {
		return i, nil
	}
	return i, st.GetUsers()[i]
}

func findRole(st *metapb.AuthState, name string) (int, *metapb.AuthRole) {
	i, ok := slices.BinarySearchFunc(st.GetRoles(), name, func(r *metapb.AuthRole, n string) int { return strings.Compare(r.GetName(), n) })
	if !ok {
		return i, nil
	}
	return i, st.GetRoles()[i]
}

func hasRole(u *metapb.AuthUser, role string) bool {
	_, ok := slices.BinarySearch(u.GetRoles(), role)
	return ok
}

// Enable turns auth on: refused unless the root user exists with the root
// role; a new token secret makes tokens of an earlier enabled period
// invalid. Enabling it twice does nothing (etcd's too).
func Enable(secret []byte) Change {
	return func(st *metapb.AuthState) (bool, error) {
		if st.GetEnabled() {
			return false, nil
		}
		_, u := findUser(st, RootUser)
		if u == nil {
			return false, rpctypes.ErrGRPCRootUserNotExist
		}
		if !hasRole(u, RootRole) {
			return false, rpctypes.ErrGRPCRootRoleNotExist
		}
		st.Enabled = true
		st.TokenSecret = secret
		return true, nil
	}
}

// Disable turns auth off.
func Disable() Change {
	return func(st *metapb.AuthState) (bool, error) {
		if !st.GetEnabled() {
			return false, nil
		}
		st.Enabled = false
		return true, nil
	}
}

// UserAdd adds a user whose password hash the caller computed (nil for a
// no-password user).
func UserAdd(name string, hash []byte, noPassword bool) Change {
	return func(st *metapb.AuthState) (bool, error) {
		if name == "" {
			return false, rpctypes.ErrGRPCUserEmpty
		}
		i, u := findUser(st, name)
		if u != nil {
			return false, rpctypes.ErrGRPCUserAlreadyExist
		}
		// The revision this change gets: tokens from before it (of a user
		// of the same name deleted earlier) are not this user's.
		nu := &metapb.AuthUser{Name: name, NoPassword: noPassword, TokensFrom: st.GetRevision() + 1}
		if !noPassword {
			nu.Password = hash
		}
		st.Users = slices.Insert(st.Users, i, nu)
		return true, nil
	}
}

// UserDelete deletes a user; the root user only while auth is disabled.
func UserDelete(name string) Change {
	return func(st *metapb.AuthState) (bool, error) {
		if st.GetEnabled() && name == RootUser {
			return false, rpctypes.ErrGRPCInvalidAuthMgmt
		}
		i, u := findUser(st, name)
		if u == nil {
			return false, rpctypes.ErrGRPCUserNotFound
		}
		st.Users = slices.Delete(st.Users, i, i+1)
		return true, nil
	}
}

// UserChangePassword sets a user's password hash and ends its tokens. A
// no-password user keeps having none.
func UserChangePassword(name string, hash []byte) Change {
	return func(st *metapb.AuthState) (bool, error) {
		_, u := findUser(st, name)
		if u == nil {
			return false, rpctypes.ErrGRPCUserNotFound
		}
		if !u.GetNoPassword() {
			u.Password = hash
		}
		u.TokensFrom = st.GetRevision() + 1
		return true, nil
	}
}

// UserGrantRole grants a role (the root role always exists for this).
// Granting a role the user has does nothing.
func UserGrantRole(user, role string) Change {
	return func(st *metapb.AuthState) (bool, error) {
		_, u := findUser(st, user)
		if u == nil {
			return false, rpctypes.ErrGRPCUserNotFound
		}
		if role != RootRole {
			if _, r := findRole(st, role); r == nil {
				return false, rpctypes.ErrGRPCRoleNotFound
			}
		}
		i, ok := slices.BinarySearch(u.GetRoles(), role)
		if ok {
			return false, nil
		}
		u.Roles = slices.Insert(u.Roles, i, role)
		return true, nil
	}
}

// UserRevokeRole revokes a role the user holds; root keeps the root role
// while auth is enabled.
func UserRevokeRole(user, role string) Change {
	return func(st *metapb.AuthState) (bool, error) {
		if st.GetEnabled() && user == RootUser && role == RootRole {
			return false, rpctypes.ErrGRPCInvalidAuthMgmt
		}
		_, u := findUser(st, user)
		if u == nil {
			return false, rpctypes.ErrGRPCUserNotFound
		}
		i, ok := slices.BinarySearch(u.GetRoles(), role)
		if !ok {
			return false, rpctypes.ErrGRPCRoleNotGranted
		}
		u.Roles = slices.Delete(u.Roles, i, i+1)
		return true, nil
	}
}

// RoleAdd adds a role with no permissions.
func RoleAdd(name string) Change {
	return func(st *metapb.AuthState) (bool, error) {
		if name == "" {
			return false, rpctypes.ErrGRPCRoleEmpty
		}
		i, r := findRole(st, name)
		if r != nil {
			return false, rpctypes.ErrGRPCRoleAlreadyExist
		}
		st.Roles = slices.Insert(st.Roles, i, &metapb.AuthRole{Name: name})
		return true, nil
	}
}

// RoleDelete deletes a role and revokes it from every user; the root role
// only while auth is disabled.
func RoleDelete(name string) Change {
	return func(st *metapb.AuthState) (bool, error) {
		if st.GetEnabled() && name == RootRole {
			return false, rpctypes.ErrGRPCInvalidAuthMgmt
		}
		i, r := findRole(st, name)
		if r == nil {
			return false, rpctypes.ErrGRPCRoleNotFound
		}
		st.Roles = slices.Delete(st.Roles, i, i+1)
		for _, u := range st.GetUsers() {
			if j, ok := slices.BinarySearch(u.GetRoles(), name); ok {
				u.Roles = slices.Delete(u.Roles, j, j+1)
			}
		}
		return true, nil
	}
}

// RoleGrantPermission grants (or changes the type of) a permission on a
// key or range. A range must be valid: key not empty, and range_end empty
// (the key), "\x00" (every key from key on) or above key.
func RoleGrantPermission(role string, perm *metapb.AuthPermission) Change {
	return func(st *metapb.AuthState) (bool, error) {
		if perm == nil {
			return false, rpctypes.ErrGRPCPermissionNotGiven
		}
		if !validPermRange(perm.GetKey(), perm.GetRangeEnd()) {
			return false, rpctypes.ErrGRPCInvalidAuthMgmt
		}
		_, r := findRole(st, role)
		if r == nil {
			return false, rpctypes.ErrGRPCRoleNotFound
		}
		for _, p := range r.GetPerms() {
			if bytes.Equal(p.GetKey(), perm.GetKey()) && bytes.Equal(p.GetRangeEnd(), perm.GetRangeEnd()) {
				p.Type = perm.GetType()
				return true, nil
			}
		}
		i, _ := slices.BinarySearchFunc(r.GetPerms(), perm.GetKey(), func(p *metapb.AuthPermission, k []byte) int { return bytes.Compare(p.GetKey(), k) })
		r.Perms = slices.Insert(r.Perms, i, proto.CloneOf(perm))
		return true, nil
	}
}

// RoleRevokePermission revokes the permission on exactly key and
// rangeEnd.
func RoleRevokePermission(role string, key, rangeEnd []byte) Change {
	return func(st *metapb.AuthState) (bool, error) {
		_, r := findRole(st, role)
		if r == nil {
			return false, rpctypes.ErrGRPCRoleNotFound
		}
		for i, p := range r.GetPerms() {
			if bytes.Equal(p.GetKey(), key) && bytes.Equal(p.GetRangeEnd(), rangeEnd) {
				r.Perms = slices.Delete(r.Perms, i, i+1)
				return true, nil
			}
		}
		return false, rpctypes.ErrGRPCPermissionNotGranted
	}
}

// validPermRange is etcd's rule for a permission's range.
func validPermRange(key, end []byte) bool {
	if len(key) == 0 {
		return false
	}
	return len(end) == 0 || bytes.Compare(key, end) < 0 || (len(end) == 1 && end[0] == 0)
}

// rootPerm is what etcd reports as the root role's permission:
// readwrite on every key.
var rootPerm = &metapb.AuthPermission{Type: PermReadWrite, Key: []byte{}, RangeEnd: []byte{0}}
