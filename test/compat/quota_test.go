package compat

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc/status"

	"github.com/concorddb/concord/internal/server"
	"github.com/concorddb/concord/test/etcdtest"
)

// outcome is what a call answered, as a client sees it: the gRPC code and
// message, or "ok".
func outcome(err error) string {
	if err == nil {
		return "ok"
	}
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) { // clientv3's form of etcd's own errors
		return fmt.Sprintf("%v: %s", ee.Code(), ee.Error())
	}
	s, _ := status.FromError(err)
	return fmt.Sprintf("%v: %s", s.Code(), s.Message())
}

// quotaRun fills a system past its quota and records what the calls etcd's
// NOSPACE alarm governs answer, then disarms (the system is still over
// its quota) and records the next put.
func quotaRun(t *testing.T, cli *clientv3.Client) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	raw := make([]byte, 48<<10)
	var full error
	n := 0
	for ; n < 2000 && full == nil; n++ {
		rand.Read(raw)
		_, full = cli.Put(ctx, fmt.Sprintf("/quota/%05d", n), base64.StdEncoding.EncodeToString(raw))
	}
	if full == nil {
		t.Fatal("no error after 2000 puts of 64 KiB")
	}
	// Concord's other nodes see the alarm within its refresh interval.
	time.Sleep(time.Second)
	alarms, err := cli.AlarmList(ctx)
	var listed []string
	if err == nil {
		for _, a := range alarms.Alarms {
			listed = append(listed, a.Alarm.String())
		}
	}
	_, putErr := cli.Put(ctx, "/quota/more", "v")
	_, txnPutErr := cli.Txn(ctx).Then(clientv3.OpPut("/quota/txn", "v")).Commit()
	_, txnGetErr := cli.Txn(ctx).Then(clientv3.OpGet("/quota/00000")).Commit()
	_, grantErr := cli.Grant(ctx, 60)
	_, getErr := cli.Get(ctx, "/quota/00000")
	_, delErr := cli.Delete(ctx, "/quota/00001")
	_, disarmErr := cli.AlarmDisarm(ctx, &clientv3.AlarmMember{})
	time.Sleep(time.Second)
	_, afterDisarm := cli.Put(ctx, "/quota/after-disarm", "v")
	return []string{
		"the put that filled it: " + outcome(full),
		fmt.Sprintf("alarm list: %v (%s)", listed, outcome(err)),
		"put: " + outcome(putErr),
		"txn with a put: " + outcome(txnPutErr),
		"read-only txn: " + outcome(txnGetErr),
		"lease grant: " + outcome(grantErr),
		"get: " + outcome(getErr),
		"delete: " + outcome(delErr),
		"disarm: " + outcome(disarmErr),
		"put after a disarm, still over quota: " + outcome(afterDisarm),
	}
}

// Past its quota, Concord answers the calls etcd's NOSPACE alarm governs
// as etcd 3.7.3 does: the same codes and messages, the same alarm list.
// Each system is its own (a full one would disturb the shared fixtures):
// etcd with a 4 MiB --quota-backend-bytes, and a one-node Concord with a
// 4 MiB quota on its engine.
func TestQuotaMatchesEtcd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	etcd, err := etcdtest.Start("quota", dir+"/etcd", func(c *embed.Config) { c.QuotaBackendBytes = 4 << 20 })
	if err != nil {
		t.Fatal(err)
	}
	defer etcd.Close()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cc, err := server.StartLocalCluster(1, dir+"/concord", server.LocalOptions{Logger: quiet, Tune: func(_ int, c *server.Config) {
		c.QuotaBackendBytes = 4 << 20
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Stop()
	var got [2][]string
	for i, eps := range [][]string{{etcd.Clients[0].Addr().String()}, cc.ClientAddrs()} {
		cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		got[i] = quotaRun(t, cli)
	}
	for i := range got[0] {
		if got[0][i] != got[1][i] {
			t.Errorf("etcd:    %s\nconcord: %s", got[0][i], got[1][i])
		}
	}
	if t.Failed() {
		return
	}
	for _, line := range got[0] {
		t.Log(line)
	}
}
