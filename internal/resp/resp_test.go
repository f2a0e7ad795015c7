package resp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/redis/go-redis/v9"

	"github.com/concorddb/concord/internal/ap"
	"github.com/concorddb/concord/internal/storage"
)

// startServer runs a RESP server over a one-node AP engine on an
// in-memory Pebble, and returns its address.
func startServer(t *testing.T) string {
	t.Helper()
	eng, err := storage.Open("ap", storage.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	node, err := ap.New(ap.Config{ID: 1, Local: ap.NewLocal(eng), Members: ap.Solo(1), Peers: ap.NoPeers{}, Keyspace: ap.DefaultKeyspace()})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{Store: node, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		node.Close()
		if err := eng.Close(); err != nil {
			t.Error(err)
		}
	})
	return l.Addr().String()
}

func client(t *testing.T, addr string, proto int) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, Protocol: proto, DisableIdentity: true})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestGoRedisCommands(t *testing.T) {
	addr := startServer(t)
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprint("RESP", proto), func(t *testing.T) {
			ctx := context.Background()
			c := client(t, addr, proto)
			if err := c.FlushDB(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			must := func(err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}
			must(c.Set(ctx, "k", "v", 0).Err())
			if v, err := c.Get(ctx, "k").Result(); err != nil || v != "v" {
				t.Fatalf("GET: %q %v", v, err)
			}
			if _, err := c.Get(ctx, "nokey").Result(); !errors.Is(err, redis.Nil) {
				t.Fatalf("GET of a missing key: %v", err)
			}
			if v, err := c.Incr(ctx, "n").Result(); err != nil || v != 1 {
				t.Fatalf("INCR: %d %v", v, err)
			}
			if v, err := c.IncrByFloat(ctx, "n", 0.25).Result(); err != nil || v != 1.25 {
				t.Fatalf("INCRBYFLOAT: %v %v", v, err)
			}
			if n, err := c.SAdd(ctx, "s", "a", "b", "c").Result(); err != nil || n != 3 {
				t.Fatalf("SADD: %d %v", n, err)
			}
			must(c.SRem(ctx, "s", "b").Err())
			ms, err := c.SMembers(ctx, "s").Result()
			sort.Strings(ms)
			if err != nil || !slices.Equal(ms, []string{"a", "c"}) {
				t.Fatalf("SMEMBERS: %v %v", ms, err)
			}
			must(c.HSet(ctx, "h", "f", "1", "g", "x").Err())
			if m, err := c.HGetAll(ctx, "h").Result(); err != nil || !reflect.DeepEqual(m, map[string]string{"f": "1", "g": "x"}) {
				t.Fatalf("HGETALL: %v %v", m, err)
			}
			if v, err := c.HIncrBy(ctx, "h", "f", 41).Result(); err != nil || v != 42 {
				t.Fatalf("HINCRBY: %d %v", v, err)
			}
			if err := c.Get(ctx, "s").Err(); err == nil || !strings.HasPrefix(err.Error(), "WRONGTYPE") {
				t.Fatalf("GET of a set: %v", err)
			}
			must(c.Expire(ctx, "k", time.Hour).Err())
			if d, err := c.TTL(ctx, "k").Result(); err != nil || d != time.Hour {
				t.Fatalf("TTL: %v %v", d, err)
			}
			must(c.Set(ctx, "short", "v", 50*time.Millisecond).Err())
			time.Sleep(80 * time.Millisecond)
			if n, err := c.Exists(ctx, "short").Result(); err != nil || n != 0 {
				t.Fatalf("expired key exists: %d %v", n, err)
			}
			if typ, err := c.Type(ctx, "h").Result(); err != nil || typ != "hash" {
				t.Fatalf("TYPE: %q %v", typ, err)
			}
			keys, err := scanAll(ctx, c, "*", 2)
			if err != nil || !slices.Equal(keys, []string{"h", "k", "n", "s"}) {
				t.Fatalf("SCAN: %v %v", keys, err)
			}
			if keys, err := scanAll(ctx, c, "[hk]", 1); err != nil || !slices.Equal(keys, []string{"h", "k"}) {
				t.Fatalf("SCAN MATCH: %v %v", keys, err)
			}
			if err := c.Do(ctx, "CLUSTER", "INFO").Err(); err == nil || !strings.HasPrefix(err.Error(), "ERR unknown command 'CLUSTER'") {
				t.Fatalf("unknown command: %v", err)
			}
			info, err := c.Info(ctx).Result()
			if err != nil || !strings.Contains(info, "redis_version:") {
				t.Fatalf("INFO: %q %v", info, err)
			}
			must(c.FlushDB(ctx).Err())
			if n, err := c.DBSize(ctx).Result(); err == nil {
				t.Fatalf("DBSIZE is not served, yet answered %d", n)
			}
			if keys, err := scanAll(ctx, c, "*", 10); err != nil || len(keys) != 0 {
				t.Fatalf("keys after FLUSHDB: %v %v", keys, err)
			}
		})
	}
}

func scanAll(ctx context.Context, c *redis.Client, match string, count int64) ([]string, error) {
	var out []string
	var cursor uint64
	for {
		keys, next, err := c.Scan(ctx, cursor, match, count).Result()
		if err != nil {
			return nil, err
		}
		out = append(out, keys...)
		if next == 0 {
			sort.Strings(out)
			return out, nil
		}
		cursor = next
	}
}

func TestHello(t *testing.T) {
	addr := startServer(t)
	c := client(t, addr, 2)
	ctx := context.Background()
	v, err := c.Do(ctx, "HELLO", "3").Result()
	if err != nil {
		t.Fatal(err)
	}
	m, ok := v.(map[any]any)
	if !ok || m["proto"] != int64(3) || m["server"] != "redis" {
		t.Fatalf("HELLO 3: %#v", v)
	}
	if err := c.Do(ctx, "HELLO", "4").Err(); err == nil || !strings.HasPrefix(err.Error(), "NOPROTO") {
		t.Fatalf("HELLO 4: %v", err)
	}
}

func TestGlob(t *testing.T) {
	for _, tc := range []struct {
		p, s string
		want bool
	}{
		{"*", "", true}, {"a*", "abc", true}, {"a*c", "abxc", true}, {"a*c", "abx", false},
		{"?b", "ab", true}, {"?b", "b", false}, {"[a-c]x", "bx", true}, {"[^a-c]x", "bx", false},
		{"[^a-c]x", "dx", true}, {`\*`, "*", true}, {`\*`, "a", false}, {"h[ae]llo", "hello", true},
		{"h[ae]llo", "hillo", false}, {"*a*b*", "xxaxxbxx", true}, {"[abc", "b", true},
	} {
		if got := globMatch(tc.p, tc.s); got != tc.want {
			t.Errorf("globMatch(%q, %q) = %v", tc.p, tc.s, got)
		}
	}
}

// sideBySide is a command script whose replies a real redis-server and
// Concord must give alike (set members compared sorted: their order is
// Redis's hash order).
var sideBySide = [][]string{
	{"PING"}, {"PING", "hi"}, {"INCRBYFLOAT", "fx", "0.1"}, {"INCRBYFLOAT", "fx", "0.1"}, {"INCRBYFLOAT", "fx", "0.1"}, {"GET", "fx"}, {"INCRBYFLOAT", "fx", "-0.3"}, {"GET", "fx"}, {"INCRBYFLOAT", "fx", "1e2"},
	{"SET", "a", "1"}, {"GET", "a"}, {"INCR", "a"}, {"INCRBY", "a", "10"}, {"DECR", "a"}, {"DECRBY", "a", "3"},
	{"GET", "a"}, {"INCRBYFLOAT", "a", "1.5"}, {"GET", "a"}, {"INCR", "a"}, {"INCRBYFLOAT", "a", "-0.5"}, {"INCR", "a"}, {"GET", "a"},
	{"SET", "b", "abc"}, {"INCR", "b"}, {"INCRBYFLOAT", "b", "1"}, {"INCRBY", "b", "x"},
	{"SET", "big", "9223372036854775807"}, {"INCR", "big"}, {"DECRBY", "big", "-9223372036854775808"},
	{"SET", "small", "-9223372036854775808"}, {"DECR", "small"}, {"INCRBYFLOAT", "a", "abc"},
	{"SET", "c", "v", "EX", "100"}, {"TTL", "c"}, {"PERSIST", "c"}, {"TTL", "c"}, {"PERSIST", "c"}, {"TTL", "nokey"},
	{"SET", "c", "w", "NX"}, {"GET", "c"}, {"SET", "d", "v", "XX"}, {"GET", "d"}, {"SET", "d", "v", "NX"}, {"GET", "d"},
	{"SET", "d", "v2", "XX", "GET"}, {"SET", "e", "v", "PX", "100000"}, {"TTL", "e"}, {"EXPIRE", "e", "50"}, {"TTL", "e"},
	{"EXPIRE", "e", "60", "LT"}, {"TTL", "e"}, {"EXPIRE", "e", "60", "GT"}, {"TTL", "e"}, {"EXPIRE", "e", "70", "NX"},
	{"SET", "e", "v", "KEEPTTL"}, {"TTL", "e"}, {"SET", "e", "v"}, {"TTL", "e"},
	{"EXPIRE", "nokey", "10"}, {"MSET", "m1", "a", "m2", "b"}, {"MGET", "m1", "m2", "nokey"}, {"MSET", "m1"},
	{"EXISTS", "m1", "m2", "nokey", "m1"}, {"DEL", "m1", "nokey"}, {"EXISTS", "m1"},
	{"SADD", "s", "x", "y", "z"}, {"SADD", "s", "x"}, {"SREM", "s", "y", "w"}, {"SMEMBERS", "s"}, {"SISMEMBER", "s", "x"},
	{"SISMEMBER", "s", "y"}, {"SCARD", "s"}, {"SCARD", "nokey"}, {"SMEMBERS", "nokey"}, {"GET", "s"}, {"INCR", "s"},
	{"HSET", "h", "f1", "v1"}, {"HSET", "h", "f1", "v3", "f2", "v2"}, {"HGET", "h", "f1"}, {"HGET", "h", "nof"},
	{"HDEL", "h", "f2", "nof"}, {"HGETALL", "h"}, {"HINCRBY", "h", "n", "5"}, {"HINCRBY", "h", "f1", "1"},
	{"HGET", "h", "n"}, {"HSET", "h", "odd"}, {"HGETALL", "nokey"},
	{"TYPE", "h"}, {"TYPE", "s"}, {"TYPE", "a"}, {"TYPE", "nokey"}, {"SADD", "a", "x"}, {"HSET", "s", "f", "v"}, {"SISMEMBER", "h", "x"},
	{"SET", "s", "now-a-string"}, {"TYPE", "s"},
	{"SELECT", "1"}, {"GET", "a"}, {"SELECT", "99"}, {"SELECT", "x"}, {"SELECT", "0"}, {"GET", "a"},
	{"FOOBAR", "x", "y"}, {"GET"}, {"SET", "k", "v", "EX", "0"}, {"SET", "k", "v", "EX", "abc"}, {"SET", "k", "v", "NX", "XX"},
	{"SET", "k", "v", "BOGUS"}, {"EXPIRE", "a", "-1"}, {"EXISTS", "a"}, {"DEL", "s", "h"}, {"FLUSHDB"}, {"EXISTS", "d", "e"},
}

// redisServer starts a real redis-server on a free port, or skips.
func redisServer(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not installed (.ci/run installs it)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr
		}
		if i == 100 {
			t.Fatalf("redis-server did not listen: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// normalise makes a reply comparable: set members sorted.
func normalise(cmd []string, v any) any {
	if strings.EqualFold(cmd[0], "SMEMBERS") {
		if a, ok := v.([]any); ok {
			b := slices.Clone(a)
			sort.Slice(b, func(i, j int) bool { return fmt.Sprint(b[i]) < fmt.Sprint(b[j]) })
			return b
		}
	}
	return v
}

func TestSideBySideWithRedis(t *testing.T) {
	redisAddr := redisServer(t)
	concordAddr := startServer(t)
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprint("RESP", proto), func(t *testing.T) {
			ctx := context.Background()
			r, c := client(t, redisAddr, proto), client(t, concordAddr, proto)
			for _, cl := range []*redis.Client{r, c} {
				if err := cl.FlushAll(ctx).Err(); err != nil && cl == r {
					t.Fatal(err)
				}
				if err := cl.FlushDB(ctx).Err(); err != nil {
					t.Fatal(err)
				}
			}
			for _, cmd := range sideBySide {
				args := make([]any, len(cmd))
				for i, a := range cmd {
					args[i] = a
				}
				want, wantErr := r.Do(ctx, args...).Result()
				got, gotErr := c.Do(ctx, args...).Result()
				if fmt.Sprint(wantErr) != fmt.Sprint(gotErr) {
					t.Errorf("%v: error %v, redis says %v", cmd, gotErr, wantErr)
					continue
				}
				if !reflect.DeepEqual(normalise(cmd, got), normalise(cmd, want)) {
					t.Errorf("%v: %#v, redis says %#v", cmd, got, want)
				}
			}
		})
	}
}

func TestRedisCLI(t *testing.T) {
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Skip("redis-cli not installed (.ci/run installs it)")
	}
	addr := startServer(t)
	host, port, _ := net.SplitHostPort(addr)
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(cli, append([]string{"-h", host, "-p", port}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("redis-cli %v: %v: %s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := run("SET", "greeting", "hello"); got != "OK" {
		t.Fatalf("SET: %q", got)
	}
	if got := run("GET", "greeting"); got != "hello" {
		t.Fatalf("GET: %q", got)
	}
	if got := run("INCRBY", "c", "5"); got != "5" {
		t.Fatalf("INCRBY: %q", got)
	}
	if got := run("-3", "HGETALL", "nokey"); got != "" {
		t.Fatalf("RESP3 HGETALL of nothing: %q", got)
	}
	if got := run("NOSUCH"); !strings.Contains(got, "unknown command 'NOSUCH'") {
		t.Fatalf("unknown command: %q", got)
	}
}

// TestConcordReplica: CONCORD REPLICA answers this node's own state of a
// key, in both protocols.
func TestConcordReplica(t *testing.T) {
	addr := startServer(t)
	ctx := context.Background()
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprint("RESP", proto), func(t *testing.T) {
			c := client(t, addr, proto)
			if err := c.FlushDB(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			if err := c.IncrBy(ctx, "n", 5).Err(); err != nil {
				t.Fatal(err)
			}
			if err := c.SAdd(ctx, "s", "b", "a").Err(); err != nil {
				t.Fatal(err)
			}
			fields := func(key string) map[string]any {
				t.Helper()
				v, err := c.Do(ctx, "concord", "replica", key).Result()
				if err != nil {
					t.Fatal(err)
				}
				out := map[string]any{}
				switch v := v.(type) {
				case []any: // RESP2: a flat array of pairs
					for i := 0; i+1 < len(v); i += 2 {
						out[v[i].(string)] = v[i+1]
					}
				case map[any]any:
					for k, x := range v {
						out[k.(string)] = x
					}
				default:
					t.Fatalf("CONCORD REPLICA %s answered %T %v", key, v, v)
				}
				return out
			}
			n := fields("n")
			if n["node"] != int64(1) || n["preferred"] != int64(1) || n["type"] != "string" || n["value"] != "5" || n["hints"] != int64(0) {
				t.Fatalf("CONCORD REPLICA n = %v", n)
			}
			s := fields("s")
			if s["type"] != "set" || !reflect.DeepEqual(s["value"], []any{"a", "b"}) {
				t.Fatalf("CONCORD REPLICA s = %v", s)
			}
			if none := fields("none"); none["type"] != "none" || none["value"] != nil {
				t.Fatalf("CONCORD REPLICA none = %v", none)
			}
			if err := c.Do(ctx, "concord", "replicas").Err(); err == nil || !strings.Contains(err.Error(), "unknown subcommand") {
				t.Fatalf("CONCORD REPLICAS: %v", err)
			}
		})
	}
}
