// Package auth owns etcd's authentication and authorization on Concord:
// users, roles and their key permissions, enabling and disabling auth,
// passwords (bcrypt), tokens (simple and JWT) and the permission checks
// every request passes.
//
// The whole auth state is one record in the meta range
// (metapb.AuthState under keys.Auth). Every change (etcd's AuthUserAdd,
// AuthRoleGrantPermission, ...) is a pure function of the state (see
// state.go) applied on a gateway and written back with one
// compare-and-swap of the record: two gateways changing it at once cannot
// lose either change, the loser reads the winner's state and applies its
// change again. Each change bumps the auth revision, as etcd's does.
//
// Every node keeps a copy of the state (Store), from which it checks
// requests without a round trip. A copy is brought up to date:
//   - by the gateway that made a change, before it answers, on every node
//     it can reach (Backend.Broadcast, each node loads the record again);
//   - every RefreshInterval on its own, for a node that was unreachable;
//   - whenever a token names an auth revision newer than the copy.
//
// So a change a client was told of is in force on every reachable node;
// a node cut off from the meta range cannot serve requests anyway, as no
// range answers it.
//
// Tokens. A simple token (etcd's default, --auth-token simple) is signed
// with the state's token secret (HMAC-SHA256), so any node validates one
// that another issued; it names the user and the auth revision it was
// issued at, and a user's tokens issued before its password changed or
// it was deleted and added again are refused. It expires TokenTTL after
// its last use seen by a node (etcd's --auth-token-ttl; a node that never
// saw the token counts from its issue). A new secret is drawn each time
// auth is enabled, so a token from before an `auth disable` never works
// again. A JWT (--auth-token jwt,...) carries etcd's claims (username,
// revision, exp) and is verified with the configured public key; like
// etcd, a JWT issued below the current auth revision is refused with
// ErrAuthOldRevision, and clients fetch a new one.
package auth
