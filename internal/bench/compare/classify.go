package compare

import (
	"strings"

	"github.com/google/pprof/profile"
)

// The components a member's CPU is broken down into, in the order the
// table lists them. Each CPU sample goes to the first rule, in this order,
// that matches its stack, so a component's figure includes the protobuf,
// allocation and syscall work done inside it: fsync inside a log append is
// "fsync", a Raft message decoded by the transport is "raft transport",
// and "gRPC connections and client API" is what is left of a client call
// once its read, proposal, TSO and forwarding are taken out, plus the
// HTTP/2 goroutines of every gRPC connection (frame reader, loopy writer),
// whose stacks name no service: Concord's peer streams (Raft, forwarding)
// write and read there too, where etcd's HTTP/1 rafthttp streams do so in
// frames of their own ("raft transport").
const (
	CompGC          = "GC (background and assists)"
	CompFsync       = "fsync"
	CompCompaction  = "engine compactions and flushes"
	CompLogAppend   = "log append (WAL, Raft entries)"
	CompRead        = "reads (MVCC)"
	CompApply       = "apply and MVCC writes"
	CompPropose     = "propose (batching, waiting)"
	CompTSO         = "TSO"
	CompRaft        = "Raft (state machine, Ready loop)"
	CompTransport   = "raft transport"
	CompForward     = "forwarding between nodes"
	CompClient      = "gRPC connections and client API"
	CompLogging     = "logging"
	CompRuntime     = "Go runtime (scheduler, timers, netpoll)"
	CompOther       = "other"
	concordPkg      = "github.com/concorddb/concord/internal/"
	etcdServerPkg   = "go.etcd.io/etcd/server/v3/"
	pebblePkg       = "github.com/cockroachdb/pebble"
	etcdRaftHTTPPkg = etcdServerPkg + "etcdserver/api/rafthttp."
)

// Components lists every component in table order.
var Components = []string{CompClient, CompForward, CompTSO, CompPropose, CompRaft, CompTransport,
	CompLogAppend, CompFsync, CompApply, CompRead, CompCompaction, CompLogging, CompGC, CompRuntime, CompOther}

// rule assigns a stack (function names, leaf first) to a component.
type rule struct {
	component string
	match     func(stack []string) bool
}

// anyFrame is true if some frame has one of the prefixes or contains one of
// the substrings given as "~sub".
func anyFrame(pats ...string) func([]string) bool {
	return func(stack []string) bool {
		for _, f := range stack {
			for _, p := range pats {
				if sub, ok := strings.CutPrefix(p, "~"); ok {
					if strings.Contains(f, sub) {
						return true
					}
				} else if strings.HasPrefix(f, p) {
					return true
				}
			}
		}
		return false
	}
}

// allOf is true if every matcher is.
func allOf(ms ...func([]string) bool) func([]string) bool {
	return func(stack []string) bool {
		for _, m := range ms {
			if !m(stack) {
				return false
			}
		}
		return true
	}
}

// rules are tried in order; the first that matches takes the sample. The
// names are Concord's and etcd 3.7's functions on each path.
var rules = []rule{
	{CompGC, anyFrame("runtime.gcBgMarkWorker", "runtime.gcAssistAlloc", "runtime.bgsweep", "runtime.bgscavenge", "runtime.sweepone", "runtime.gcStart", "runtime.markroot")},
	{CompFsync, anyFrame("syscall.Fdatasync", "syscall.Fsync", "os.(*File).Sync", "golang.org/x/sys/unix.Fdatasync", "golang.org/x/sys/unix.Fsync", "internal/poll.(*FD).Fsync", "go.etcd.io/etcd/client/pkg/v3/fileutil.Fdatasync")},
	{CompCompaction, anyFrame("~pebble/v2.(*DB).compact", "~pebble/v2.(*DB).flush", "~pebble/v2.(*DB).runCompaction", "~pebble/v2.(*DB).runIngestFlush", "~pebble/v2.(*compaction)")},
	{CompLogAppend, func(s []string) bool {
		return anyFrame(concordPkg+"replica.(*Replica).Persist", concordPkg+"storage.(*Batch).AppendEntries", etcdServerPkg+"storage/wal.")(s) ||
			allOf(anyFrame(concordPkg+"store.(*Store).processReady"), anyFrame(concordPkg+"storage.(*Batch).Commit"))(s)
	}},
	{CompRead, anyFrame(concordPkg+"replica.(*Replica).Read", etcdServerPkg+"etcdserver.(*EtcdServer).Range", etcdServerPkg+"etcdserver/txn.Range", etcdServerPkg+"storage/mvcc.(*readView)")},
	{CompApply, anyFrame(concordPkg+"replica.(*Replica).Apply", etcdServerPkg+"etcdserver.(*EtcdServer).apply", etcdServerPkg+"etcdserver/apply", etcdServerPkg+"storage/backend.", etcdServerPkg+"storage/mvcc.", etcdServerPkg+"etcdserver/txn.")},
	{CompTSO, anyFrame(concordPkg + "tso.")},
	{CompPropose, anyFrame(concordPkg+"replica.(*Replica).Write", concordPkg+"replica.(*Replica).runProposer", etcdServerPkg+"etcdserver.(*EtcdServer).processInternalRaftRequestOnce", etcdServerPkg+"pkg/wait.")},
	{CompRaft, anyFrame("go.etcd.io/raft/", concordPkg+"store.(*Store).processReady", concordPkg+"store.(*Store).runReadyLoop", concordPkg+"store.(*Store).tick", etcdServerPkg+"etcdserver.(*raftNode)", etcdServerPkg+"etcdserver.(*EtcdServer).run")},
	{CompTransport, anyFrame(concordPkg+"transport.", etcdRaftHTTPPkg)},
	{CompForward, anyFrame(concordPkg+"router.(*fwdStream)", concordPkg+"router.ServeForward", concordPkg+"router.(*Router).sendTo")},
	{CompClient, anyFrame("google.golang.org/grpc", "golang.org/x/net/http2", concordPkg+"etcdapi.", concordPkg+"router.", etcdServerPkg+"etcdserver/api/v3rpc.", "google.golang.org/protobuf", "github.com/gogo/protobuf", "github.com/golang/protobuf")},
	{CompLogging, anyFrame("go.uber.org/zap", "log/slog")},
	{CompRuntime, func(s []string) bool {
		for _, f := range s {
			if !strings.HasPrefix(f, "runtime.") && !strings.HasPrefix(f, "runtime/internal") && !strings.HasPrefix(f, "internal/runtime") && f != "" {
				return false
			}
		}
		return true
	}},
}

// Classify returns the component a stack (function names, leaf first)
// belongs to.
func Classify(stack []string) string {
	for _, r := range rules {
		if r.match(stack) {
			return r.component
		}
	}
	return CompOther
}

// stack returns a sample's function names, leaf first, inlined frames
// included.
func stack(s *profile.Sample) []string {
	var out []string
	for _, loc := range s.Location {
		for _, l := range loc.Line {
			if l.Function != nil {
				out = append(out, l.Function.Name)
			}
		}
	}
	return out
}

// cpuIndex is the index of the CPU-time sample type, or -1.
func cpuIndex(p *profile.Profile) int {
	for i, st := range p.SampleType {
		if st.Type == "cpu" && st.Unit == "nanoseconds" {
			return i
		}
	}
	return -1
}

// ClassifyAll adds up the CPU seconds of every profile by component.
func ClassifyAll(ps []*profile.Profile) map[string]float64 {
	out := map[string]float64{}
	for _, p := range ps {
		i := cpuIndex(p)
		if i < 0 {
			continue
		}
		for _, s := range p.Sample {
			out[Classify(stack(s))] += float64(s.Value[i]) / 1e9
		}
	}
	return out
}
