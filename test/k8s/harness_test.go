package k8s

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/kubernetes"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/grpclog"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/api/apitesting"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apiserver/pkg/apis/example"
	examplev1 "k8s.io/apiserver/pkg/apis/example/v1"
	"k8s.io/apiserver/pkg/features"
	"k8s.io/apiserver/pkg/storage"
	"k8s.io/apiserver/pkg/storage/etcd3"
	etcdfeature "k8s.io/apiserver/pkg/storage/feature"
	storagetesting "k8s.io/apiserver/pkg/storage/testing"
	"k8s.io/apiserver/pkg/storage/value"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/utils/clock"

	"github.com/concorddb/concord/internal/server"
	"github.com/concorddb/concord/test/etcdtest"
)

// system is one server under test, shared by every case of the binary.
type system struct {
	name      string
	endpoints []string
	// noLeases, when not empty, says why this system cannot run a case
	// that attaches objects to a lease (a TTL); see probeLeases.
	noLeases string
	// checker is this system's etcd feature support checker: apiserver
	// keeps one process-wide, filled by the first store's Status calls,
	// and a test binary that talks to two systems must not let one's
	// answers stand for the other's.
	checker etcdfeature.FeatureSupportChecker
}

var (
	etcdSys, concordSys *system
	systems             []*system
	// prefixSeq numbers the stores the cases build; see setup.
	prefixSeq atomic.Int64
)

// progressNotifyInterval is the watch progress notification interval of
// both systems: apiserver's ProgressNotify and bookmark tests run etcd with
// 1s (watcher_test.go) and wait a few seconds for one.
const progressNotifyInterval = time.Second

// readyTimeout bounds the wait for a fresh system's first write.
const readyTimeout = 30 * time.Second

var (
	scheme = runtime.NewScheme()
	codecs = serializer.NewCodecFactory(scheme)
)

func init() {
	metav1.AddToGroupVersion(scheme, metav1.SchemeGroupVersion)
	utilruntime.Must(example.AddToScheme(scheme))
	utilruntime.Must(examplev1.AddToScheme(scheme))
}

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	// grpclog: errors only. apiserver's klog errors (a watch ending in an
	// error, a failed transformation) stay on stderr, which go test shows
	// for a failing run: they say what the store saw.
	grpclog.SetLoggerV2(grpclog.NewLoggerV2(io.Discard, io.Discard, os.Stderr))

	dir, err := os.MkdirTemp("", "concord-k8s-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)

	etcd, err := startEtcd(dir + "/etcd")
	if err != nil {
		fmt.Fprintln(os.Stderr, "k8s: start etcd:", err)
		return 1
	}
	defer etcd.Close()

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cluster, err := server.StartLocalCluster(3, dir+"/concord", server.LocalOptions{
		Logger: quiet,
		Tune: func(_ int, c *server.Config) {
			c.WatchProgressNotifyInterval = progressNotifyInterval
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "k8s: start concord:", err)
		return 1
	}
	defer cluster.Stop()

	etcdSys = &system{name: "etcd", endpoints: []string{etcd.Clients[0].Addr().String()}}
	concordSys = &system{name: "concord", endpoints: cluster.ClientAddrs()}
	systems = []*system{etcdSys, concordSys}
	for _, s := range systems {
		s.checker = etcdfeature.NewDefaultFeatureSupportChecker()
		if err := s.waitReady(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if err := s.probeLeases(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}

// startEtcd starts a single-member etcd configured as apiserver's
// testserver.NewTestConfig configures one (no fsync, errors-only logs), with
// progressNotifyInterval, on loopback.
func startEtcd(dir string) (*embed.Etcd, error) {
	return etcdtest.Start("k8s", dir, func(cfg *embed.Config) {
		cfg.UnsafeNoFsync = true
		cfg.WatchProgressNotifyInterval = progressNotifyInterval
	})
}

func (s *system) newClient() (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:   s.endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
}

// waitReady writes one key until a write succeeds, so that no case sees the
// errors of a cluster still electing its leaders.
func (s *system) waitReady() error {
	cli, err := s.newClient()
	if err != nil {
		return fmt.Errorf("k8s: %s client: %w", s.name, err)
	}
	defer cli.Close()
	deadline := time.Now().Add(readyTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_, err := cli.Put(ctx, "/k8s-ready", "1")
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("k8s: %s not ready: %w", s.name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// probeLeases grants and revokes one lease. A system that answers
// Unimplemented has no leases (yet): the cases that create objects with a
// TTL skip on it, saying so. Any other error stops the run.
func (s *system) probeLeases() error {
	cli, err := s.newClient()
	if err != nil {
		return fmt.Errorf("k8s: %s client: %w", s.name, err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Grant(ctx, 60)
	if status.Code(err) == codes.Unimplemented {
		s.noLeases = fmt.Sprintf("%s has no leases yet (Lease.Grant answers %v); objects with a TTL need them", s.name, err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("k8s: %s lease probe: %w", s.name, err)
	}
	if _, err := cli.Revoke(ctx, resp.ID); err != nil {
		return fmt.Errorf("k8s: %s lease probe revoke: %w", s.name, err)
	}
	return nil
}

// useChecker makes s's feature support checker apiserver's process-wide
// one for the rest of t; fresh gives t a new one, as the tests of
// pkg/storage/etcd3 that switch RangeStream on and off do.
func (s *system) useChecker(t *testing.T, fresh bool) {
	orig := etcdfeature.DefaultFeatureSupportChecker
	if fresh {
		etcdfeature.DefaultFeatureSupportChecker = etcdfeature.NewDefaultFeatureSupportChecker()
	} else {
		etcdfeature.DefaultFeatureSupportChecker = s.checker
	}
	t.Cleanup(func() { etcdfeature.DefaultFeatureSupportChecker = orig })
}

// podsResource is the resource every case's store serves.
var podsResource = schema.GroupResource{Resource: "pods"}

// testPrefix is the transformer prefix of stored values, as in
// pkg/storage/etcd3's tests.
const testPrefix = "test!"

// env is one case's store and what the suite's hooks need from it.
type env struct {
	ctx    context.Context
	sys    *system
	client *kubernetes.Client
	// store is etcd3.New's store; its concrete type is unexported.
	store storage.Interface
	codec runtime.Codec
	// pathPrefix is the store's etcd key prefix, unique to the case.
	pathPrefix string
	// base is the default prefix transformer (nil if the case gave its
	// own); tr is what the store and its watcher call, so that the suite
	// can swap transformers under them.
	base *storagetesting.PrefixTransformer
	tr   *switchTransformer
	// kv and lists record the store's requests.
	kv    *storagetesting.KVRecorder
	lists *storagetesting.KubernetesRecorder
}

type setupOptions struct {
	// root builds the store at etcd's root, as pkg/storage/etcd3's tests
	// do, instead of under a prefix of the case's own.
	root        bool
	codec       runtime.Codec
	transformer value.Transformer
	leaseConfig etcd3.LeaseManagerConfig
}

type setupOption func(*setupOptions)

// withRoot is for the cases that compare storage keys, not store keys,
// with what they expect: "/pods/..." in etcd. They share that prefix with
// no other case, and setup clears it first.
func withRoot() setupOption {
	return func(o *setupOptions) { o.root = true }
}

func withCodec(c runtime.Codec) setupOption {
	return func(o *setupOptions) { o.codec = c }
}

func withTransformer(tr value.Transformer) setupOption {
	return func(o *setupOptions) { o.transformer = tr }
}

func newTestCodec() runtime.Codec {
	return apitesting.TestCodec(codecs, examplev1.SchemeGroupVersion)
}

// setup builds a store for one case on s, as pkg/storage/etcd3's testSetup
// does: a client of its own wrapped in the suite's recorders, a compactor,
// the example codec, a "test!" prefix transformer, a lease manager that
// reuses a lease for 1s. Feature gates the case sets must be set before.
func setup(t *testing.T, s *system, opts ...setupOption) *env {
	t.Helper()
	o := setupOptions{codec: newTestCodec()}
	o.leaseConfig = etcd3.NewDefaultLeaseManagerConfig()
	// apiserver's tests wait at most 30s (wait.ForeverTestTimeout) for a
	// lease to be reused or not; its default reuse is a minute.
	o.leaseConfig.ReuseDurationSeconds = 1
	for _, opt := range opts {
		opt(&o)
	}
	e := &env{ctx: context.Background(), sys: s, codec: o.codec}
	if o.transformer == nil {
		e.base = storagetesting.NewPrefixTransformer([]byte(testPrefix), false)
		o.transformer = e.base
	}
	e.tr = &switchTransformer{}
	e.tr.set(o.transformer)

	client, err := kubernetes.New(clientv3.Config{
		Endpoints:   s.endpoints,
		DialTimeout: 10 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	e.lists = storagetesting.NewKubernetesRecorder(client.Kubernetes)
	e.kv = storagetesting.NewKVRecorder(client.KV, e.lists)
	client.KV = e.kv
	client.Kubernetes = e.lists
	e.client = client

	e.pathPrefix = fmt.Sprintf("/k8s-%06d/", prefixSeq.Add(1))
	if o.root {
		e.pathPrefix = "/"
		if _, err := client.KV.Delete(e.ctx, "/pods/", clientv3.WithPrefix()); err != nil {
			t.Fatalf("clear /pods/: %v", err)
		}
		e.kv.GetReadsAndReset()
	}
	versioner := storage.APIObjectVersioner{}
	compactor := etcd3.NewCompactor(client.Client, 0, clock.RealClock{}, nil)
	t.Cleanup(compactor.Stop)
	st, err := etcd3.New(client, compactor, o.codec,
		func() runtime.Object { return &example.Pod{} },
		func() runtime.Object { return &example.PodList{} },
		e.pathPrefix, "/pods/", podsResource,
		e.tr, o.leaseConfig, etcd3.NewDefaultDecoder(o.codec, versioner), versioner)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	e.store = st
	return e
}

// switchTransformer is the transformer a store is built with; the suite's
// UpdatePrefixTransformer and UpdateTransformer hooks swap what it calls,
// which pkg/storage/etcd3's tests do by assigning the store's unexported
// fields.
type switchTransformer struct {
	mu  sync.RWMutex
	cur value.Transformer
}

func (s *switchTransformer) get() value.Transformer {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cur
}

func (s *switchTransformer) set(tr value.Transformer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur = tr
}

func (s *switchTransformer) TransformFromStorage(ctx context.Context, data []byte, dataCtx value.Context) ([]byte, bool, error) {
	return s.get().TransformFromStorage(ctx, data, dataCtx)
}

func (s *switchTransformer) TransformToStorage(ctx context.Context, data []byte, dataCtx value.Context) ([]byte, error) {
	return s.get().TransformToStorage(ctx, data, dataCtx)
}

var _ value.Transformer = (*switchTransformer)(nil)

// prefixStore is storagetesting.InterfaceWithPrefixTransformer over a
// case's store built with the default prefix transformer.
type prefixStore struct {
	storage.Interface
	e *env
}

func (s prefixStore) UpdatePrefixTransformer(modifier storagetesting.PrefixTransformerModifier) func() {
	cp := *s.e.base
	s.e.tr.set(modifier(&cp))
	return func() { s.e.tr.set(s.e.base) }
}

func (e *env) withPrefixTransformer() storagetesting.InterfaceWithPrefixTransformer {
	if e.base == nil {
		panic("k8s: a store with its own transformer has no prefix transformer to update")
	}
	return prefixStore{Interface: e.store, e: e}
}

// overrideStore is storagetesting.InterfaceWithTransformerOverride: delegate
// serves the calls (it may wrap the case's store), e's transformer is the
// one swapped.
type overrideStore struct {
	storage.Interface
	e *env
}

func (s overrideStore) UpdateTransformer(modifier storagetesting.TransformerModifier) func() {
	orig := s.e.tr.get()
	s.e.tr.set(modifier(orig))
	return func() { s.e.tr.set(orig) }
}

func (e *env) withTransformerOverride(delegate storage.Interface) storagetesting.InterfaceWithTransformerOverride {
	return overrideStore{Interface: delegate, e: e}
}

// checkStoredObject is the suite's KeyValidation: the stored value of key
// decodes (behind the transformer prefix) to an object with neither a
// resource version nor a self link.
func (e *env) checkStoredObject() storagetesting.KeyValidation {
	return func(ctx context.Context, t *testing.T, key string) {
		etcdKey := path.Join(e.pathPrefix, key)
		resp, err := e.client.KV.Get(ctx, etcdKey)
		if err != nil {
			t.Fatalf("get %s: %v", etcdKey, err)
		}
		if len(resp.Kvs) == 0 {
			t.Fatalf("no value stored at %s", etcdKey)
		}
		raw := resp.Kvs[0].Value
		if len(raw) < len(testPrefix) || string(raw[:len(testPrefix)]) != testPrefix {
			t.Fatalf("value at %s lacks the transformer prefix %q: %q", etcdKey, testPrefix, raw)
		}
		decoded, err := runtime.Decode(e.codec, raw[len(testPrefix):])
		if err != nil {
			t.Fatalf("decode the value at %s: %v\n%s", etcdKey, err, raw)
		}
		pod := decoded.(*example.Pod)
		if pod.ResourceVersion != "" {
			t.Errorf("stored object at %s has resource version %q, want none", etcdKey, pod.ResourceVersion)
		}
		//lint:ignore SA1019 the store must not persist the legacy field, as apiserver's own etcd3 tests check
		if pod.SelfLink != "" {
			t.Errorf("stored object at %s has self link %q, want none", etcdKey, pod.SelfLink) //lint:ignore SA1019 as above
		}
	}
}

// maxListLimit is etcd3's maxLimit: the largest page the store asks for
// while it doubles its page size to fill a filtered list.
const maxListLimit = 10000

// checkCalls is the suite's CallsValidation: how many objects the
// transformer read and how many Range (or RangeStream) requests the store
// sent, n+1 for page sizes doubling from pageSize until they cover the
// objects read.
func (e *env) checkCalls() storagetesting.CallsValidation {
	return func(t *testing.T, pageSize, estimatedProcessedObjects uint64) {
		if reads := e.base.GetReadsAndReset(); reads != estimatedProcessedObjects {
			t.Errorf("transformer read %d objects, want %d", reads, estimatedProcessedObjects)
		}
		wantCalls := uint64(1)
		if pageSize != 0 {
			limit := pageSize
			for sum := uint64(1); sum < estimatedProcessedObjects; {
				limit = min(limit*2, maxListLimit)
				sum += limit
				wantCalls++
			}
		}
		if calls := e.kv.GetReadsAndReset() + e.kv.GetStreamReadsAndReset(); calls != wantCalls {
			t.Fatalf("store sent %d reads, want %d", calls, wantCalls)
		}
	}
}

// increaseRV is the suite's IncreaseRVFunc: one write outside every store.
func (e *env) increaseRV() storagetesting.IncreaseRVFunc {
	return func(ctx context.Context, t *testing.T) int64 {
		resp, err := e.client.KV.Put(ctx, "increaseRV", "ok")
		if err != nil {
			t.Fatalf("increase the revision: %v", err)
		}
		return resp.Header.Revision
	}
}

// compaction is the suite's Compaction: etcd3.Compact at the resource
// version, then, when ListFromCacheSnapshot makes the compactor watch the
// compact key, a wait for the store to see it. Compact is a compare-and-swap
// on the compact key's version; on the shared systems other cases have
// compacted before, so the version is read first (apiserver's tests start
// from a new etcd, where it is 0).
func (e *env) compaction() storagetesting.Compaction {
	return func(ctx context.Context, t *testing.T, resourceVersion string) {
		rv, err := storage.APIObjectVersioner{}.ParseResourceVersion(resourceVersion)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := e.client.Client.KV.Get(ctx, compactRevKey)
		if err != nil {
			t.Fatalf("get %s: %v", compactRevKey, err)
		}
		var version int64
		if len(resp.Kvs) > 0 {
			version = resp.Kvs[0].Version
		}
		next, _, compacted, err := etcd3.Compact(ctx, e.client.Client, version, int64(rv))
		if err != nil {
			t.Fatalf("compact at %d: %v", rv, err)
		}
		if next != version+1 || compacted != int64(rv) {
			t.Fatalf("compact at %d: the compact key moved from version %d to %d (revision %d) under the case", rv, version, next, compacted)
		}
		if !utilfeature.DefaultFeatureGate.Enabled(features.ListFromCacheSnapshot) {
			return
		}
		deadline := time.Now().Add(30 * time.Second)
		for e.store.CompactRevision() != int64(rv) {
			if time.Now().After(deadline) {
				t.Fatalf("the store's compactor saw revision %d, not %d, after 30s", e.store.CompactRevision(), rv)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// compactRevKey is where etcd3.Compact keeps the last compaction (etcd3's
// compactRevKey).
const compactRevKey = "compact_rev_key"

// resourceKeys lists the keys under the store's resource prefix, as the
// store's own (unexported) getKeys does for its size estimator.
func (e *env) resourceKeys(ctx context.Context) ([]string, error) {
	resp, err := e.client.KV.Get(ctx, e.pathPrefix+"pods/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key))
	}
	return keys, nil
}

// enableSizeEstimation turns on the store's object size estimation.
func (e *env) enableSizeEstimation(t *testing.T) {
	est, ok := e.store.(interface {
		EnableResourceSizeEstimation(storage.KeysFunc) error
	})
	if !ok {
		t.Fatalf("%T has no EnableResourceSizeEstimation", e.store)
	}
	if err := est.EnableResourceSizeEstimation(e.resourceKeys); err != nil {
		t.Fatal(err)
	}
}

// failingTransformer fails every read with err.
type failingTransformer struct {
	value.Transformer
	err error
}

func (f failingTransformer) TransformFromStorage(context.Context, []byte, value.Context) ([]byte, bool, error) {
	return nil, false, f.err
}

// newCorruptObjectError returns the error etcd3 gives an untransformable
// object, its unexported corruptObjectError, made through the exported
// decorator that makes it.
func newCorruptObjectError() error {
	tr := etcd3.WithCorruptObjErrorHandlingTransformer(failingTransformer{err: errors.New("bits flipped")})
	_, _, err := tr.TransformFromStorage(context.Background(), nil, value.DefaultContext(""))
	if err == nil {
		panic("k8s: a failing transformer did not fail")
	}
	return err
}

// failSwitch is a transformer or codec that fails reads while on, as
// pkg/storage/etcd3's testTransformer and testCodec do.
type failSwitch struct{ on atomic.Bool }

func (f *failSwitch) setFailing(on bool) { f.on.Store(on) }

type switchedTransformer struct {
	value.Transformer
	*failSwitch
}

func (s switchedTransformer) TransformFromStorage(ctx context.Context, data []byte, dataCtx value.Context) ([]byte, bool, error) {
	if s.on.Load() {
		return nil, false, errors.New("synthetic error")
	}
	return s.Transformer.TransformFromStorage(ctx, data, dataCtx)
}

type switchedCodec struct {
	runtime.Codec
	*failSwitch
}

func (s switchedCodec) Decode(data []byte, defaults *schema.GroupVersionKind, into runtime.Object) (runtime.Object, *schema.GroupVersionKind, error) {
	if s.on.Load() {
		return nil, nil, errors.New("synthetic error")
	}
	return s.Codec.Decode(data, defaults, into)
}
