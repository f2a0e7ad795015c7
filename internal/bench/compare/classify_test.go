package compare

import "testing"

// TestClassify pins the rule order on stacks taken from real profiles of
// both systems (leaf first): the innermost costly thing a stack is inside
// decides, whatever called it.
func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		stack []string
		want  string
	}{
		{[]string{"syscall.Syscall", "syscall.Fdatasync", "github.com/cockroachdb/pebble/v2/wal.(*LogWriter).flushPending", "github.com/concorddb/concord/internal/storage.(*Batch).Commit", "github.com/concorddb/concord/internal/store.(*Store).processReady"}, CompFsync},
		{[]string{"github.com/cockroachdb/pebble/v2.(*memTable).apply", "github.com/concorddb/concord/internal/storage.(*Batch).Commit", "github.com/concorddb/concord/internal/store.(*Store).processReady"}, CompLogAppend},
		{[]string{"go.etcd.io/raft/v3.(*raft).Step", "github.com/concorddb/concord/internal/store.(*Store).processReady"}, CompRaft},
		{[]string{"runtime.memmove", "github.com/cockroachdb/pebble/v2.(*DB).runCompaction", "github.com/cockroachdb/pebble/v2.(*DB).compact1"}, CompCompaction},
		{[]string{"runtime.scanobject", "runtime.gcDrain", "runtime.gcBgMarkWorker"}, CompGC},
		{[]string{"runtime.scanobject", "runtime.gcAssistAlloc", "runtime.mallocgc", "github.com/concorddb/concord/internal/replica.(*Replica).Apply"}, CompGC},
		{[]string{"runtime.mallocgc", "github.com/concorddb/concord/internal/storage.MVCCGet", "github.com/concorddb/concord/internal/replica.(*Replica).Read", "github.com/concorddb/concord/internal/router.ServeForward.func3"}, CompRead},
		{[]string{"google.golang.org/grpc.(*Server).sendResponse", "github.com/concorddb/concord/internal/router.ServeForward"}, CompForward},
		{[]string{"google.golang.org/protobuf/internal/impl.(*MessageInfo).unmarshal", "github.com/concorddb/concord/internal/transport.(*Transport).ServeRaft"}, CompTransport},
		{[]string{"google.golang.org/grpc/internal/transport.(*http2Server).operateHeaders", "google.golang.org/grpc.(*Server).serveStreams"}, CompClient},
		{[]string{"go.etcd.io/etcd/server/v3/storage/wal.(*encoder).encode", "go.etcd.io/etcd/server/v3/storage/wal.(*WAL).Save", "go.etcd.io/etcd/server/v3/etcdserver.(*raftNode).start.func1"}, CompLogAppend},
		{[]string{"go.etcd.io/bbolt.(*Tx).Commit", "go.etcd.io/etcd/server/v3/storage/backend.(*backend).run"}, CompApply},
		{[]string{"go.etcd.io/etcd/server/v3/etcdserver/api/rafthttp.(*streamReader).decodeLoop"}, CompTransport},
		{[]string{"runtime.findRunnable", "runtime.schedule", "runtime.mcall"}, CompRuntime},
		{[]string{"crypto/sha256.block", "main.main"}, CompOther},
	} {
		if got := Classify(tc.stack); got != tc.want {
			t.Errorf("Classify(%v) = %q, want %q", tc.stack, got, tc.want)
		}
	}
}
