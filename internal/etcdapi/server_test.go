package etcdapi

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/concordpb/metapb"
)

const (
	testClusterID = 0xc1
	testMemberID  = 0x2a
)

// testCluster is one gateway on a loopback port over a fake backend, with an
// etcd client and a raw gRPC connection (no clientv3 retries) to it.
type testCluster struct {
	fake *fakeBackend
	cli  *clientv3.Client
	raw  *grpc.ClientConn
}

func start(t *testing.T, cfg Config) *testCluster {
	t.Helper()
	fake := newFakeBackend()
	addr := serve(t, cfg, fake)
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{addr},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return &testCluster{fake: fake, cli: cli, raw: dialRaw(t, addr)}
}

// serve serves b on a loopback port until the test ends and returns its
// address.
func serve(t *testing.T, cfg Config, b Backend) string {
	t.Helper()
	cfg.ClusterID, cfg.MemberID = testClusterID, testMemberID
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(ServerOptions(cfg)...)
	Register(srv, b, cfg)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return lis.Addr().String()
}

// dialRaw returns a raw gRPC connection (no clientv3 retries) to addr.
func dialRaw(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	raw, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Close() })
	return raw
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func checkHeader(t *testing.T, h *pb.ResponseHeader, rev int64) {
	t.Helper()
	if h.GetClusterId() != testClusterID || h.GetMemberId() != testMemberID || h.GetRevision() != rev || h.GetRaftTerm() != fakeRaftTerm {
		t.Fatalf("header %v, want cluster %d member %d revision %d term %d", h, testClusterID, testMemberID, rev, fakeRaftTerm)
	}
}

func keysOf(resp *clientv3.GetResponse) string {
	var ks []string
	for _, kv := range resp.Kvs {
		ks = append(ks, string(kv.Key)+"="+string(kv.Value))
	}
	return strings.Join(ks, ",")
}

func TestPutGetDelete(t *testing.T) {
	tc := start(t, Config{})
	ctx := testCtx(t)
	for _, k := range []string{"a", "b/1", "b/2", "b/3", "c"} {
		if _, err := tc.cli.Put(ctx, k, "v"+k); err != nil {
			t.Fatal(err)
		}
	}
	// Revisions start at 1; five puts make 6.
	put, err := tc.cli.Put(ctx, "a", "v2", clientv3.WithPrevKV())
	if err != nil {
		t.Fatal(err)
	}
	checkHeader(t, put.Header, 7)
	if put.PrevKv == nil || string(put.PrevKv.Value) != "va" || put.PrevKv.ModRevision != 2 || put.PrevKv.CreateRevision != 2 || put.PrevKv.Version != 1 {
		t.Fatalf("prev kv %v", put.PrevKv)
	}

	get, err := tc.cli.Get(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	checkHeader(t, get.Header, 7)
	if len(get.Kvs) != 1 || string(get.Kvs[0].Value) != "v2" || get.Kvs[0].Version != 2 || get.Kvs[0].ModRevision != 7 || get.Kvs[0].CreateRevision != 2 || get.Count != 1 {
		t.Fatalf("get a: %v", get)
	}

	for _, tt := range []struct {
		name string
		key  string
		opts []clientv3.OpOption
		want string
	}{
		{"prefix", "b/", []clientv3.OpOption{clientv3.WithPrefix()}, "b/1=vb/1,b/2=vb/2,b/3=vb/3"},
		{"from key", "b/2", []clientv3.OpOption{clientv3.WithFromKey()}, "b/2=vb/2,b/3=vb/3,c=vc"},
		{"range end", "a", []clientv3.OpOption{clientv3.WithRange("b/3")}, "a=v2,b/1=vb/1,b/2=vb/2"},
		{"missing", "zz", nil, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := tc.cli.Get(ctx, tt.key, tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if got := keysOf(resp); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}

	del, err := tc.cli.Delete(ctx, "a", clientv3.WithPrevKV())
	if err != nil {
		t.Fatal(err)
	}
	checkHeader(t, del.Header, 8)
	if del.Deleted != 1 || len(del.PrevKvs) != 1 || string(del.PrevKvs[0].Value) != "v2" {
		t.Fatalf("delete a: %v", del)
	}
	del, err = tc.cli.Delete(ctx, "b/", clientv3.WithPrefix(), clientv3.WithPrevKV())
	if err != nil {
		t.Fatal(err)
	}
	if del.Deleted != 3 || len(del.PrevKvs) != 3 || string(del.PrevKvs[2].Key) != "b/3" {
		t.Fatalf("delete prefix: %v", del)
	}
	last, _ := tc.fake.last()
	want := &kvpb.RequestOp{Request: &kvpb.RequestOp_DeleteRange{DeleteRange: &kvpb.DeleteRangeRequest{
		Key: []byte("b/"), RangeEnd: []byte("b0"), PrevKv: true,
	}}}
	if !proto.Equal(last, want) {
		t.Fatalf("backend got %v, want %v", last, want)
	}
}

// TestRangeOptionsReachBackend checks that every RangeRequest field clientv3
// can set arrives in the concordpb request unchanged.
func TestRangeOptionsReachBackend(t *testing.T) {
	tc := start(t, Config{})
	ctx := testCtx(t)
	for _, k := range []string{"k1", "k2", "k3"} {
		if _, err := tc.cli.Put(ctx, k, "v"); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := tc.cli.Get(ctx, "k", clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortDescend),
		clientv3.WithLimit(2), clientv3.WithRev(4), clientv3.WithSerializable(), clientv3.WithKeysOnly(),
		clientv3.WithMinModRev(2), clientv3.WithMaxModRev(9), clientv3.WithMinCreateRev(3), clientv3.WithMaxCreateRev(8))
	if err != nil {
		t.Fatal(err)
	}
	if !resp.More || resp.Count != 3 || len(resp.Kvs) != 2 || len(resp.Kvs[0].Value) != 0 {
		t.Fatalf("response %v", resp)
	}
	last, _ := tc.fake.last()
	want := &kvpb.RequestOp{Request: &kvpb.RequestOp_Range{Range: &kvpb.RangeRequest{
		Key: []byte("k"), RangeEnd: []byte("l"), Limit: 2, Revision: 4,
		SortOrder: kvpb.SortOrder_SORT_DESCEND, SortTarget: kvpb.SortTarget_SORT_BY_MOD,
		Serializable: true, KeysOnly: true,
		MinModRevision: 2, MaxModRevision: 9, MinCreateRevision: 3, MaxCreateRevision: 8,
	}}}
	if !proto.Equal(last, want) {
		t.Fatalf("backend got %v\nwant %v", last, want)
	}

	count, err := tc.cli.Get(ctx, "k", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if count.Count != 3 || len(count.Kvs) != 0 {
		t.Fatalf("count only: %v", count)
	}
	if last, _ := tc.fake.last(); !last.GetRange().GetCountOnly() {
		t.Fatalf("count_only lost: %v", last)
	}
}

func TestTxn(t *testing.T) {
	tc := start(t, Config{})
	ctx := testCtx(t)
	if _, err := tc.cli.Put(ctx, "a", "1", clientv3.WithLease(0x55)); err != nil { // rev 2
		t.Fatal(err)
	}
	resp, err := tc.cli.Txn(ctx).If(
		clientv3.Compare(clientv3.Value("a"), "=", "1"),
		clientv3.Compare(clientv3.Version("a"), ">", 0),
		clientv3.Compare(clientv3.CreateRevision("a"), "=", 2),
		clientv3.Compare(clientv3.ModRevision("a"), "<", 10),
		clientv3.Compare(clientv3.LeaseValue("a"), "!=", 0),
	).Then(
		clientv3.OpPut("b", "2", clientv3.WithPrevKV()),
		clientv3.OpGet("a"),
		clientv3.OpTxn(
			[]clientv3.Cmp{clientv3.Compare(clientv3.Value("b"), "=", "nope")},
			[]clientv3.Op{clientv3.OpPut("c", "then")},
			[]clientv3.Op{clientv3.OpPut("c", "else"), clientv3.OpDelete("a", clientv3.WithPrevKV())},
		),
	).Else(
		clientv3.OpDelete("a"),
	).Commit()
	if err != nil {
		t.Fatal(err)
	}
	checkHeader(t, resp.Header, 3)
	if !resp.Succeeded || len(resp.Responses) != 3 {
		t.Fatalf("txn: %v", resp)
	}
	if h := resp.Responses[0].GetResponsePut().GetHeader(); h.GetRevision() != 3 || h.GetClusterId() != 0 {
		t.Fatalf("nested header %v, want revision only", h)
	}
	if got := resp.Responses[1].GetResponseRange().GetKvs(); len(got) != 1 || string(got[0].Value) != "1" || got[0].Lease != 0x55 {
		t.Fatalf("nested get: %v", got)
	}
	nested := resp.Responses[2].GetResponseTxn()
	// etcd sets the revision of the top-level txn's header only.
	if nested.GetSucceeded() || len(nested.GetResponses()) != 2 || nested.GetHeader() == nil || nested.GetHeader().GetRevision() != 0 {
		t.Fatalf("nested txn: %v", nested)
	}
	if prev := nested.Responses[1].GetResponseDeleteRange().GetPrevKvs(); len(prev) != 1 || string(prev[0].Value) != "1" {
		t.Fatalf("nested delete prev: %v", prev)
	}

	last, _ := tc.fake.last()
	txn := last.GetTxn()
	if len(txn.GetCompare()) != 5 {
		t.Fatalf("compares: %v", txn)
	}
	wantCmp := &kvpb.Compare{Result: kvpb.CompareResult_COMPARE_EQUAL, Target: kvpb.CompareTarget_COMPARE_VALUE,
		Key: []byte("a"), TargetUnion: &kvpb.Compare_Value{Value: []byte("1")}}
	if !proto.Equal(txn.Compare[0], wantCmp) {
		t.Fatalf("compare 0: %v", txn.Compare[0])
	}
	wantLease := &kvpb.Compare{Result: kvpb.CompareResult_COMPARE_NOT_EQUAL, Target: kvpb.CompareTarget_COMPARE_LEASE,
		Key: []byte("a"), TargetUnion: &kvpb.Compare_Lease{Lease: 0}}
	if !proto.Equal(txn.Compare[4], wantLease) {
		t.Fatalf("compare 4: %v", txn.Compare[4])
	}
	if len(txn.GetSuccess()) != 3 || len(txn.GetFailure()) != 1 || len(txn.Success[2].GetTxn().GetFailure()) != 2 {
		t.Fatalf("branches: %v", txn)
	}
	if !txn.Success[0].GetPut().GetPrevKv() || !txn.Success[2].GetTxn().Failure[1].GetDeleteRange().GetPrevKv() {
		t.Fatalf("prev_kv flags lost: %v", txn)
	}
}

func TestValidationErrors(t *testing.T) {
	tc := start(t, Config{MaxTxnOps: 4})
	ctx := testCtx(t)
	tooMany := make([]clientv3.Op, 5)
	for i := range tooMany {
		tooMany[i] = clientv3.OpPut(string(rune('a'+i)), "v")
	}
	for _, tt := range []struct {
		name string
		do   func() error
		want error
	}{
		{"empty key put", func() error { _, err := tc.cli.Put(ctx, "", "v"); return err }, rpctypes.ErrEmptyKey},
		{"empty key get", func() error { _, err := tc.cli.Get(ctx, ""); return err }, rpctypes.ErrEmptyKey},
		{"empty key delete", func() error { _, err := tc.cli.Delete(ctx, ""); return err }, rpctypes.ErrEmptyKey},
		{"empty key compare", func() error {
			_, err := tc.cli.Txn(ctx).If(clientv3.Compare(clientv3.Version(""), "=", 0)).Commit()
			return err
		}, rpctypes.ErrEmptyKey},
		{"too large", func() error {
			_, err := tc.cli.Put(ctx, "big", strings.Repeat("x", DefaultMaxRequestBytes+1))
			return err
		}, rpctypes.ErrRequestTooLarge},
		{"too many ops", func() error { _, err := tc.cli.Txn(ctx).Then(tooMany...).Commit(); return err }, rpctypes.ErrTooManyOps},
		{"duplicate key", func() error {
			_, err := tc.cli.Txn(ctx).Then(clientv3.OpPut("a", "1"), clientv3.OpPut("a", "2")).Commit()
			return err
		}, rpctypes.ErrDuplicateKey},
		{"put under delete", func() error {
			_, err := tc.cli.Txn(ctx).Then(clientv3.OpDelete("a", clientv3.WithPrefix()), clientv3.OpPut("ab", "2")).Commit()
			return err
		}, rpctypes.ErrDuplicateKey},
		{"ignore value with value", func() error { _, err := tc.cli.Put(ctx, "a", "v", clientv3.WithIgnoreValue()); return err }, rpctypes.ErrValueProvided},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.do(); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
	if _, calls := tc.fake.last(); calls != 0 {
		t.Fatalf("invalid requests reached the backend %d times", calls)
	}
}

// TestBackendErrors drives each backend error through a raw connection (no
// clientv3 retries) and checks the exact status the client receives.
func TestBackendErrors(t *testing.T) {
	tc := start(t, Config{})
	kv := pb.NewKVClient(tc.raw)
	for _, tt := range []struct {
		err  error
		want error
	}{
		{kvpb.Errorf(kvpb.ErrorCode_NOT_LEADER, "not leader"), rpctypes.ErrGRPCNoLeader},
		{kvpb.Errorf(kvpb.ErrorCode_COMPACTED, "compacted"), rpctypes.ErrGRPCCompacted},
		{kvpb.Errorf(kvpb.ErrorCode_LEASE_NOT_FOUND, "x"), rpctypes.ErrGRPCLeaseNotFound},
		{kvpb.Errorf(kvpb.ErrorCode_AMBIGUOUS, "x"), rpctypes.ErrGRPCTimeout},
		{kvpb.Errorf(kvpb.ErrorCode_INVALID_ARGUMENT, "etcdserver: key not found"), rpctypes.ErrGRPCKeyNotFound},
		{context.DeadlineExceeded, rpctypes.ErrGRPCTimeout},
		// A bound on the path was full: the client sees which.
		{status.Error(codes.ResourceExhausted, "router: forward stream to node 2 full: 8192 requests await answers (bound maxForwardPending)"),
			status.Error(codes.ResourceExhausted, "router: forward stream to node 2 full: 8192 requests await answers (bound maxForwardPending)")},
	} {
		t.Run(tt.err.Error(), func(t *testing.T) {
			tc.fake.setErr(tt.err)
			_, err := kv.Put(testCtx(t), &pb.PutRequest{Key: []byte("k")})
			if status.Code(err) != status.Code(tt.want) || status.Convert(err).Message() != status.Convert(tt.want).Message() {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

// heldBackend holds every Do of key "held" until release is closed, saying
// on entered that one arrived; other keys pass.
type heldBackend struct {
	*fakeBackend
	entered chan struct{}
	release chan struct{}
}

func (h heldBackend) Do(ctx context.Context, op *kvpb.RequestOp) (*kvpb.ResponseOp, Header, error) {
	if string(op.GetPut().GetKey()) == "held" {
		h.entered <- struct{}{}
		select {
		case <-h.release:
		case <-ctx.Done():
			return nil, Header{}, ctx.Err()
		}
	}
	return h.fakeBackend.Do(ctx, op)
}

// A connection holds at most MaxConcurrentStreams calls in flight on the
// server; a call past them waits in the client (here until its deadline)
// and never reaches the backend, and calls go through again once the held
// ones end.
func TestMaxConcurrentStreams(t *testing.T) {
	const bound = 2
	held := heldBackend{newFakeBackend(), make(chan struct{}, bound+1), make(chan struct{})}
	kv := pb.NewKVClient(dialRaw(t, serve(t, Config{MaxConcurrentStreams: bound}, held)))
	// The first call brings the server's stream bound to the client.
	if _, err := kv.Put(testCtx(t), &pb.PutRequest{Key: []byte("k")}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, bound)
	for range bound {
		go func() {
			_, err := kv.Put(testCtx(t), &pb.PutRequest{Key: []byte("held")})
			done <- err
		}()
	}
	for range bound {
		<-held.entered
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	_, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("k")})
	cancel()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("a call past the stream bound: %v, want it to wait out its deadline", err)
	}
	if _, calls := held.last(); calls != 1 {
		t.Fatalf("the backend served %d calls, want 1 (the held ones wait, the one past the bound never arrives)", calls)
	}
	close(held.release)
	for range bound {
		if err := <-done; err != nil {
			t.Fatalf("a held call: %v", err)
		}
	}
	for range 2 * bound {
		if _, err := kv.Put(testCtx(t), &pb.PutRequest{Key: []byte("k")}); err != nil {
			t.Fatalf("a call after the held ones ended: %v", err)
		}
	}
}

// TestNoLeader checks what clientv3 users see when the backend has no
// leader. clientv3 does not retry a Put that reached the server; it does
// retry a Get on Unavailable until its context ends, so a Get may end with
// either error.
func TestNoLeader(t *testing.T) {
	tc := start(t, Config{})
	tc.fake.setErr(&kvpb.Error{Code: kvpb.ErrorCode_NOT_LEADER, LeaderHint: 3})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := tc.cli.Put(ctx, "k", "v")
	if !errors.Is(err, rpctypes.ErrNoLeader) || err.Error() != "etcdserver: no leader" {
		t.Fatalf("put: got %v, want etcdserver: no leader", err)
	}

	ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = tc.cli.Get(ctx, "k")
	if !errors.Is(err, rpctypes.ErrNoLeader) && status.Code(err) != codes.DeadlineExceeded && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("get: got %v, want no leader or deadline", err)
	}
	if _, calls := tc.fake.last(); calls < 2 {
		t.Fatalf("backend saw %d calls, want put and get", calls)
	}
}

func TestMembershipErrors(t *testing.T) {
	tc := start(t, Config{})
	ctx := testCtx(t)
	if _, err := pb.NewClusterClient(tc.raw).MemberAdd(ctx, &pb.MemberAddRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("member add without URLs: %v", err)
	}
	if _, err := tc.cli.MemberRemove(ctx, 77); err == nil || err.Error() != "etcdserver: member not found" {
		t.Fatalf("member remove of an unknown id: %v", err)
	}
}

func TestStatusAndMembers(t *testing.T) {
	tc := start(t, Config{Version: "3.7.1"})
	ctx := testCtx(t)
	tc.fake.mu.Lock()
	tc.fake.mu.status = Status{Leader: 3, RaftTerm: 9, RaftIndex: 100, RaftAppliedIndex: 99, DBSize: 4096, DBSizeInUse: 2048, IsLearner: true}
	tc.fake.mu.members = []*metapb.NodeRecord{
		{NodeId: 1, Name: "n1", PeerUrls: []string{"http://10.0.0.1:2380"}, ClientUrls: []string{"http://10.0.0.1:2379"}, HttpUrl: "http://10.0.0.1:8080"},
		{NodeId: 3, Name: "n3", PeerUrls: []string{"http://10.0.0.3:2380"}, ClientUrls: []string{"http://10.0.0.3:2379", "http://n3:2379"}},
	}
	tc.fake.mu.Unlock()

	st, err := tc.cli.Status(ctx, tc.cli.Endpoints()[0])
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != "3.7.1" || st.Leader != 3 || st.RaftTerm != 9 || st.RaftIndex != 100 || st.RaftAppliedIndex != 99 ||
		st.DbSize != 4096 || st.DbSizeInUse != 2048 || !st.IsLearner || len(st.Errors) != 0 ||
		st.Header.ClusterId != testClusterID || st.Header.MemberId != testMemberID || st.Header.RaftTerm != 9 {
		t.Fatalf("status %v", st)
	}

	ml, err := tc.cli.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ml.Members) != 2 || ml.Header.ClusterId != testClusterID || ml.Header.MemberId != testMemberID {
		t.Fatalf("members %v", ml)
	}
	m := ml.Members[1]
	if m.ID != 3 || m.Name != "n3" || len(m.PeerURLs) != 1 || m.PeerURLs[0] != "http://10.0.0.3:2380" || len(m.ClientURLs) != 2 || m.ClientURLs[1] != "http://n3:2379" {
		t.Fatalf("member %v", m)
	}

	tc.fake.mu.Lock()
	tc.fake.mu.status.Leader = 0
	tc.fake.mu.Unlock()
	st, err = tc.cli.Status(ctx, tc.cli.Endpoints()[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Errors) != 1 || st.Errors[0] != "etcdserver: no leader" {
		t.Fatalf("status errors without leader: %v", st.Errors)
	}

	alarms, err := tc.cli.AlarmList(ctx)
	if err != nil || len(alarms.Alarms) != 0 {
		t.Fatalf("alarms %v, %v", alarms, err)
	}
	if _, err := tc.cli.AlarmDisarm(ctx, &clientv3.AlarmMember{}); err != nil {
		t.Fatalf("disarm: %v", err)
	}
}
