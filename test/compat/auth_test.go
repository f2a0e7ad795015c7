package compat

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/concorddb/concord/internal/server"
	"github.com/concorddb/concord/test/etcdtest"
)

// authTokenTTL is both systems' --auth-token-ttl in the auth scenario,
// short so that a token's expiry is seen.
const authTokenTTL = 2 * time.Second

// authLog records what a client sees of each step: ok, or the error's
// gRPC code and message, with the values a step read.
type authLog struct {
	t     *testing.T
	lines []string
}

func (l *authLog) add(step string, err error, got ...any) {
	line := step + ": ok"
	if err != nil {
		if s, ok := status.FromError(err); ok {
			line = fmt.Sprintf("%s: %v %s", step, s.Code(), s.Message())
		} else {
			line = fmt.Sprintf("%s: %v", step, err)
		}
	}
	for _, g := range got {
		line += fmt.Sprintf(" %v", g)
	}
	l.lines = append(l.lines, line)
	if os.Getenv("COMPAT_VERBOSE") != "" {
		l.t.Logf("%s %s", time.Now().Format("15:04:05.000"), line)
	}
}

// authClient connects as user (no user: ""), to one endpoint, with
// clientv3's own retries on expired tokens.
func authClient(t *testing.T, ep, user, password string) (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, Username: user, Password: password, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { cli.Close() })
	return cli, nil
}

// authScenario runs etcd's auth API through clientv3 against a fresh
// cluster: endpoints[0] for the root user's changes, the last endpoint for
// the other users, so that on a cluster of several nodes a change made
// through one node must be in force on another at once.
func authScenario(t *testing.T, endpoints []string) []string {
	l := &authLog{t: t}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	adminEP, userEP := endpoints[0], endpoints[len(endpoints)-1]
	anon, err := authClient(t, adminEP, "", "")
	if err != nil {
		t.Fatal(err)
	}
	st, err := anon.AuthStatus(ctx)
	l.add("status before", err, statusOf(st))
	_, err = anon.AuthEnable(ctx)
	l.add("enable without root", err)
	_, err = anon.UserAdd(ctx, "root", "rootpw")
	l.add("add root", err)
	_, err = anon.AuthEnable(ctx)
	l.add("enable without the root role", err)
	_, err = anon.UserGrantRole(ctx, "root", "root")
	l.add("grant root the root role before it exists", err)
	_, err = anon.RoleAdd(ctx, "root")
	l.add("add role root", err)
	_, err = anon.UserGrantRole(ctx, "root", "root")
	l.add("grant root the root role", err)
	st, err = anon.AuthStatus(ctx)
	l.add("status before enable", err, statusOf(st))
	_, err = anon.AuthEnable(ctx)
	l.add("enable", err)
	_, err = anon.AuthEnable(ctx)
	l.add("enable again, no user", err)

	// Without a user, KV and admin calls are refused; status, member list
	// and lease grants are not.
	_, err = anon.Put(ctx, "k", "v")
	l.add("anonymous put", err)
	_, err = anon.Get(ctx, "k")
	l.add("anonymous get", err)
	_, err = anon.UserList(ctx)
	l.add("anonymous user list", err)
	st, err = anon.AuthStatus(ctx)
	l.add("anonymous status", err, statusOf(st))
	_, err = anon.MemberList(ctx)
	l.add("anonymous member list", err)
	_, err = anon.Status(ctx, adminEP)
	l.add("anonymous endpoint status", err)

	_, err = authClient(t, adminEP, "root", "wrong")
	l.add("root with a wrong password", err)
	root, err := authClient(t, adminEP, "root", "rootpw")
	l.add("root signs in", err)
	if err != nil {
		t.Fatalf("%v\n%s", err, strings.Join(l.lines, "\n"))
	}
	_, err = root.Put(ctx, "k", "root")
	l.add("root put", err)
	for _, name := range []string{"alice", "alice", ""} {
		_, err = root.UserAdd(ctx, name, "alicepw")
		l.add("add user "+name, err)
	}
	for _, name := range []string{"r1", "r1", "", "r2"} {
		_, err = root.RoleAdd(ctx, name)
		l.add("add role "+name, err)
	}
	grant := func(role, key, end string, typ clientv3.PermissionType) {
		_, err := root.RoleGrantPermission(ctx, role, key, end, typ)
		l.add(fmt.Sprintf("grant %s %v [%q,%q)", role, typ, key, end), err)
	}
	grant("r1", "/a/", clientv3.GetPrefixRangeEnd("/a/"), clientv3.PermissionType(clientv3.PermReadWrite))
	grant("r1", "k", "", clientv3.PermissionType(clientv3.PermRead))
	grant("r1", "w1", "w5", clientv3.PermissionType(clientv3.PermWrite))
	grant("r2", "w5", "w9", clientv3.PermissionType(clientv3.PermWrite))
	grant("r2", "from", "\x00", clientv3.PermissionType(clientv3.PermRead))
	grant("r1", "z", "a", clientv3.PermissionType(clientv3.PermRead))
	grant("r1", "", "", clientv3.PermissionType(clientv3.PermRead))
	grant("nope", "x", "", clientv3.PermissionType(clientv3.PermRead))
	grant("r1", "k", "", clientv3.PermissionType(clientv3.PermReadWrite)) // changes the type
	grant("r1", "k", "", clientv3.PermissionType(clientv3.PermRead))
	rg, err := root.RoleGet(ctx, "r1")
	l.add("get role r1", err, permsString(rg))
	rg, err = root.RoleGet(ctx, "root")
	l.add("get role root", err, permsString(rg))
	_, err = root.RoleGet(ctx, "nope")
	l.add("get role nope", err)
	for _, g := range [][2]string{{"alice", "r1"}, {"alice", "r1"}, {"alice", "r2"}, {"bob", "r1"}, {"alice", "nope"}} {
		_, err = root.UserGrantRole(ctx, g[0], g[1])
		l.add("grant "+g[0]+" "+g[1], err)
	}
	ug, err := root.UserGet(ctx, "alice")
	l.add("get user alice", err, rolesOf(ug))
	ul, err := root.UserList(ctx)
	l.add("user list", err, usersOf(ul))
	rl, err := root.RoleList(ctx)
	l.add("role list", err, roleListOf(rl))

	alice, err := authClient(t, userEP, "alice", "alicepw")
	l.add("alice signs in", err)
	if err != nil {
		t.Fatalf("%v\n%s", err, strings.Join(l.lines, "\n"))
	}
	kvSteps := []struct {
		name string
		op   clientv3.Op
	}{
		{"put /a/x", clientv3.OpPut("/a/x", "1")},
		{"get /a/ prefix", clientv3.OpGet("/a/", clientv3.WithPrefix())},
		{"put k (read only)", clientv3.OpPut("k", "2")},
		{"get k", clientv3.OpGet("k")},
		{"get [k, l)", clientv3.OpGet("k", clientv3.WithRange("l"))},
		{"put w2", clientv3.OpPut("w2", "3")},
		{"put w2 with prev kv", clientv3.OpPut("w2", "3", clientv3.WithPrevKV())},
		{"get w2", clientv3.OpGet("w2")},
		{"put w7 (r2)", clientv3.OpPut("w7", "4")},
		{"delete [w1, w9) across both roles", clientv3.OpDelete("w1", clientv3.WithRange("w9"))},
		{"delete [w1, wa)", clientv3.OpDelete("w1", clientv3.WithRange("wa"))},
		{"delete [w1, w5) with prev kv", clientv3.OpDelete("w1", clientv3.WithRange("w5"), clientv3.WithPrevKV())},
		{"get from key from", clientv3.OpGet("from", clientv3.WithFromKey())},
		{"get from key fro", clientv3.OpGet("fro", clientv3.WithFromKey())},
		{"get zzz (from-key permission)", clientv3.OpGet("zzz")},
		{"get everything", clientv3.OpGet("", clientv3.WithFromKey())},
	}
	for _, s := range kvSteps {
		_, err := alice.Do(ctx, s.op)
		l.add("alice "+s.name, err)
	}
	txn := func(name string, cmps []clientv3.Cmp, then ...clientv3.Op) {
		_, err := alice.Txn(ctx).If(cmps...).Then(then...).Commit()
		l.add("alice txn "+name, err)
	}
	txn("compare k, put /a/y", []clientv3.Cmp{clientv3.Compare(clientv3.Value("k"), "=", "root")}, clientv3.OpPut("/a/y", "1"))
	txn("compare /b, put /a/y", []clientv3.Cmp{clientv3.Compare(clientv3.Version("/b"), "=", 0)}, clientv3.OpPut("/a/y", "1"))
	txn("put k", nil, clientv3.OpPut("k", "1"))
	txn("nested put w9", nil, clientv3.OpTxn(nil, []clientv3.Op{clientv3.OpPut("w9", "1")}, nil))
	txn("nested get /a/", nil, clientv3.OpTxn(nil, []clientv3.Op{clientv3.OpGet("/a/", clientv3.WithPrefix())}, nil))

	// Watches: allowed on a readable range, refused (created and
	// canceled) elsewhere.
	for _, w := range []struct{ name, key, end string }{{"/a/ prefix", "/a/", clientv3.GetPrefixRangeEnd("/a/")}, {"w2 (write only)", "w2", ""}} {
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		var opts []clientv3.OpOption
		if w.end != "" {
			opts = append(opts, clientv3.WithRange(w.end))
		}
		wch := alice.Watch(wctx, w.key, append(opts, clientv3.WithCreatedNotify())...)
		resp := <-wch
		l.add("alice watch "+w.name, resp.Err(), resp.Canceled)
		wcancel()
	}

	// Leases: anyone grants; revoking and TimeToLive need permissions on
	// the keys attached.
	lg, err := root.Grant(ctx, 60)
	l.add("root grants a lease", err)
	_, err = root.Put(ctx, "rootonly", "v", clientv3.WithLease(lg.ID))
	l.add("root puts rootonly with it", err)
	_, err = alice.TimeToLive(ctx, lg.ID, clientv3.WithAttachedKeys())
	l.add("alice time-to-live of root's lease", err)
	_, err = alice.Revoke(ctx, lg.ID)
	l.add("alice revokes root's lease", err)
	_, err = alice.KeepAliveOnce(ctx, lg.ID)
	l.add("alice keeps root's lease alive", err)
	alg, err := alice.Grant(ctx, 60)
	l.add("alice grants a lease", err)
	_, err = alice.Put(ctx, "/a/leased", "v", clientv3.WithLease(alg.ID))
	l.add("alice puts /a/leased with it", err)
	_, err = alice.KeepAliveOnce(ctx, alg.ID)
	l.add("alice keeps her lease alive", err)
	_, err = alice.Revoke(ctx, alg.ID)
	l.add("alice revokes her lease", err)

	// Admin calls.
	_, err = alice.UserList(ctx)
	l.add("alice user list", err)
	ug, err = alice.UserGet(ctx, "alice")
	l.add("alice gets herself", err, rolesOf(ug))
	_, err = alice.UserGet(ctx, "root")
	l.add("alice gets root", err)
	rg, err = alice.RoleGet(ctx, "r2")
	l.add("alice gets her role r2", err, permsString(rg))
	_, err = alice.RoleGet(ctx, "root")
	l.add("alice gets role root", err)
	_, err = alice.UserAdd(ctx, "eve", "x")
	l.add("alice adds a user", err)
	_, err = alice.Defragment(ctx, userEP)
	l.add("alice defragments", err)
	_, err = alice.HashKV(ctx, userEP, 0)
	l.add("alice hashes", err)
	_, err = alice.MemberList(ctx)
	l.add("alice member list", err)
	_, err = alice.AuthDisable(ctx)
	l.add("alice disables auth", err)

	// Permission changes are in force at once, on every node.
	_, err = root.RoleRevokePermission(ctx, "r1", "/a/", clientv3.GetPrefixRangeEnd("/a/"))
	l.add("revoke r1 /a/", err)
	_, err = root.RoleRevokePermission(ctx, "r1", "/a/", clientv3.GetPrefixRangeEnd("/a/"))
	l.add("revoke r1 /a/ again", err)
	_, err = root.RoleRevokePermission(ctx, "nope", "/a/", "")
	l.add("revoke from role nope", err)
	_, err = alice.Put(ctx, "/a/x", "after revoke")
	l.add("alice put /a/x after the revoke", err)
	_, err = root.UserRevokeRole(ctx, "alice", "r2")
	l.add("revoke r2 from alice", err)
	_, err = root.UserRevokeRole(ctx, "alice", "r2")
	l.add("revoke r2 from alice again", err)
	_, err = alice.Put(ctx, "w7", "after revoke")
	l.add("alice put w7 after losing r2", err)
	_, err = root.RoleDelete(ctx, "r1")
	l.add("delete role r1", err)
	ug, err = root.UserGet(ctx, "alice")
	l.add("alice's roles after r1 is deleted", err, rolesOf(ug))
	_, err = alice.Get(ctx, "k")
	l.add("alice get k after r1 is deleted", err)

	// The root user and role cannot be taken apart while auth is on.
	_, err = root.UserDelete(ctx, "root")
	l.add("delete root", err)
	_, err = root.UserRevokeRole(ctx, "root", "root")
	l.add("revoke root from root", err)
	_, err = root.RoleDelete(ctx, "root")
	l.add("delete role root", err)

	// Passwords and tokens.
	_, err = root.UserChangePassword(ctx, "alice", "newpw")
	l.add("change alice's password", err)
	_, err = root.UserChangePassword(ctx, "bob", "x")
	l.add("change bob's password", err)
	_, err = authClient(t, userEP, "alice", "alicepw")
	l.add("alice with her old password", err)
	_, err = authClient(t, userEP, "alice", "newpw")
	l.add("alice with her new password", err)
	_, err = root.UserAddWithOptions(ctx, "cert", "", &clientv3.UserAddOptions{NoPassword: true})
	l.add("add no-password user cert", err)
	_, err = authClient(t, userEP, "cert", "")
	l.add("cert signs in with no password", err)
	_, err = authClient(t, userEP, "cert", "x")
	l.add("cert signs in with a password", err)
	ttlStep(ctx, l, root, userEP)
	_, err = root.UserDelete(ctx, "alice")
	l.add("delete alice", err)
	_, err = root.UserDelete(ctx, "alice")
	l.add("delete alice again", err)
	_, err = alice.Get(ctx, "k")
	l.add("alice's client after she is deleted", err)

	_, err = root.AuthDisable(ctx)
	l.add("disable", err)
	_, err = anon.Put(ctx, "k", "anon")
	l.add("anonymous put after disable", err)
	_, err = root.AuthDisable(ctx)
	l.add("disable again", err)
	ul, err = anon.UserList(ctx)
	l.add("user list after disable", err, usersOf(ul))
	_, err = anon.UserDelete(ctx, "root")
	l.add("delete root after disable", err)
	st, err = anon.AuthStatus(ctx)
	l.add("status after disable", err, statusOf(st))
	return l.lines
}

// ttlStep shows a simple token's life: used at once it works, unused for
// longer than the TTL it is refused.
func ttlStep(ctx context.Context, l *authLog, root *clientv3.Client, ep string) {
	_, err := root.UserAdd(ctx, "tok", "tokpw")
	l.add("add user tok", err)
	_, err = root.UserGrantRole(ctx, "tok", "root")
	l.add("grant tok root", err)
	raw, err := authClient(l.t, ep, "", "")
	if err != nil {
		l.add("raw client", err)
		return
	}
	conn := raw.ActiveConnection()
	resp, err := pb.NewAuthClient(conn).Authenticate(ctx, &pb.AuthenticateRequest{Name: "tok", Password: "tokpw"})
	l.add("tok authenticates", err)
	if err != nil {
		return
	}
	kv := pb.NewKVClient(conn)
	with := metadata.NewOutgoingContext(ctx, metadata.Pairs("token", resp.GetToken()))
	_, err = kv.Range(with, &pb.RangeRequest{Key: []byte("k")})
	l.add("tok's token at once", err)
	_, err = kv.Range(metadata.NewOutgoingContext(ctx, metadata.Pairs("token", resp.GetToken()+"x")), &pb.RangeRequest{Key: []byte("k")})
	l.add("a forged token", err)
	time.Sleep(authTokenTTL + 2*time.Second)
	_, err = kv.Range(with, &pb.RangeRequest{Key: []byte("k")})
	l.add("tok's token past its TTL", err)
}

func permsString(r *clientv3.AuthRoleGetResponse) string {
	if r == nil {
		return "-"
	}
	var out []string
	for _, p := range r.Perm {
		out = append(out, fmt.Sprintf("%v[%q,%q)", p.PermType, p.Key, p.RangeEnd))
	}
	return strings.Join(out, " ")
}

// TestAuthMatchesEtcd runs the auth scenario on a fresh etcd 3.7.3 and a
// fresh 3-node Concord cluster, both with a 2 s token TTL, and compares
// what clients saw, step by step.
func TestAuthMatchesEtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts clusters of its own")
	}
	dir := t.TempDir()
	etcd, err := etcdtest.Start("auth", dir+"/etcd", func(c *embed.Config) {
		c.AuthTokenTTL = uint(authTokenTTL / time.Second)
		c.BcryptCost = 4
	})
	if err != nil {
		t.Fatal(err)
	}
	defer etcd.Close()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("COMPAT_VERBOSE") != "" {
		quiet = slog.Default()
	}
	cc, err := server.StartLocalCluster(3, dir+"/concord", server.LocalOptions{Logger: quiet, Tune: func(_ int, c *server.Config) {
		c.AuthTokenTTL = authTokenTTL
		c.BcryptCost = 4
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Stop()
	var e []string
	if os.Getenv("COMPAT_AUTH_NO_ETCD") == "" {
		e = authScenario(t, []string{etcd.Clients[0].Addr().String()})
	}
	t.Logf("etcd:\n  %s", strings.Join(e, "\n  "))
	c := authScenario(t, cc.ClientAddrs())
	if strings.Join(e, "\n") != strings.Join(c, "\n") {
		var diff []string
		for i := 0; i < max(len(e), len(c)); i++ {
			var el, cl string
			if i < len(e) {
				el = e[i]
			}
			if i < len(c) {
				cl = c[i]
			}
			if el != cl {
				diff = append(diff, fmt.Sprintf("etcd:    %s\nconcord: %s", el, cl))
			}
		}
		t.Errorf("auth differs from etcd in %d steps:\n%s", len(diff), strings.Join(diff, "\n"))
	}
}

func statusOf(r *clientv3.AuthStatusResponse) string {
	if r == nil {
		return "-"
	}
	return fmt.Sprintf("enabled=%v revision=%d", r.Enabled, r.AuthRevision)
}

func rolesOf(r *clientv3.AuthUserGetResponse) []string {
	if r == nil {
		return nil
	}
	return r.Roles
}

func usersOf(r *clientv3.AuthUserListResponse) []string {
	if r == nil {
		return nil
	}
	return r.Users
}

func roleListOf(r *clientv3.AuthRoleListResponse) []string {
	if r == nil {
		return nil
	}
	return r.Roles
}
