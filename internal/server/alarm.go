package server

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/concorddb/concord/internal/concordpb/cmdpb"
	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/etcdapi"
	"github.com/concorddb/concord/internal/keys"
)

// The space quota and etcd's alarms.
//
// Each node checks, every spaceCheckInterval, its engine's size against
// --quota-backend-bytes and its file system's free space against
// freeSpaceReserve, and raises a NOSPACE alarm for itself when either is
// past its bound. Alarms live in the meta range (keys.Alarm), so they are
// cluster-wide and survive restarts; every node rereads them every
// alarmRefreshInterval, and while any NOSPACE alarm is active every node refuses the
// writes that add data: Put, a Txn with a put in either branch, and lease
// grants, with etcd's "etcdserver: mvcc: database space exceeded". Reads,
// deletes, compaction and defragmentation go on, so an operator can free
// space and `etcdctl alarm disarm`; a node still past its bound raises the
// alarm again on its next check.
//
// Why a free-space reserve as well as the quota: Pebble treats a failed
// WAL write as fatal (its logger's Fatalf, which panics here), so a disk
// that fills under the engine would crash the node. The reserve makes the
// node refuse writes while the file system still has room for what is in
// flight: the memtable's flush, the compactions that follow, the writes
// already accepted, and those other nodes accept before they see the
// alarm (up to alarmRefreshInterval: this node's replicas still apply
// them). The gateway checks the free space at every write that adds data.
// What the reserve cannot cover, a burst through other gateways larger
// than it within alarmRefreshInterval, would still crash the node:
// refusing Raft appends on a full node would close that, and is not done.
const (
	// spaceCheckInterval is how often a node measures its engine and its
	// file system (Pebble's metrics and a statfs: cheap), which bounds the
	// writes it accepts past its bound: at 100 MB/s, 10 MB.
	spaceCheckInterval = 100 * time.Millisecond
	// alarmRefreshInterval is how often a node rereads the alarms: the
	// delay before every node sees a new alarm.
	alarmRefreshInterval = 500 * time.Millisecond
	// maxFreeSpaceReserveBytes caps the reserve on large file systems: a
	// few memtable flushes (8 MiB each) and compaction outputs.
	maxFreeSpaceReserveBytes = 1 << 30
)

// freeSpaceReserve is the free space below which a node refuses writes on
// a file system of totalBytes: a quarter of it, at most
// maxFreeSpaceReserveBytes.
func freeSpaceReserve(totalBytes uint64) uint64 {
	return min(totalBytes/4, maxFreeSpaceReserveBytes)
}

// alarmState is this node's view of the cluster's alarms and of its own
// space.
type alarmState struct {
	// noSpace is set while any member has a NOSPACE alarm (as of the last
	// read of the alarms, or this node's own raise).
	noSpace atomic.Bool
	// overQuota is set while this node's last check found it past its
	// quota or its free-space reserve.
	overQuota atomic.Bool
	// critical is set while the last check found the file system under
	// half its reserve: the store then drops Raft appends.
	critical atomic.Bool

	mu struct {
		sync.Mutex
		// active is the alarm list as last read.
		active []etcdapi.Alarm
	}
}

// runAlarms checks the node's space every spaceCheckInterval and rereads
// the alarms every alarmRefreshInterval until the node stops.
func (n *Node) runAlarms() {
	defer n.wg.Done()
	t := time.NewTicker(spaceCheckInterval)
	defer t.Stop()
	var lastRefresh time.Time
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*alarmRefreshInterval)
		n.checkSpace(ctx)
		if time.Since(lastRefresh) >= alarmRefreshInterval {
			lastRefresh = time.Now()
			if _, err := n.loadAlarms(ctx); err != nil {
				n.log.Debug("reading alarms", "err", err)
			}
		}
		cancel()
	}
}

// checkSpace measures the engine and its file system and raises this
// node's NOSPACE alarm if either is past its bound.
func (n *Node) checkSpace(ctx context.Context) {
	used := n.engine.DiskUsageBytes()
	over := n.cfg.QuotaBackendBytes > 0 && used > n.cfg.QuotaBackendBytes
	why := fmt.Sprintf("engine holds %d bytes, quota %d", used, n.cfg.QuotaBackendBytes)
	critical := false
	if du, err := vfs.Default.GetDiskUsage(n.cfg.DataDir); err == nil {
		if reserve := freeSpaceReserve(du.TotalBytes); du.AvailBytes < reserve {
			over = true
			why = fmt.Sprintf("file system has %d bytes free, reserve %d", du.AvailBytes, reserve)
			// Past half the reserve even other leaders' appends stop
			// here (see store.SetAppendGuard): writes accepted elsewhere
			// before they saw this node's alarm must not fill the disk.
			critical = du.AvailBytes < reserve/2
		}
	}
	if critical && !n.alarms.critical.Load() {
		n.log.Warn("disk nearly full: this node takes no more Raft appends until space is freed", "why", why)
	}
	n.alarms.critical.Store(critical)
	n.alarms.overQuota.Store(over)
	if over && !n.hasOwnNoSpace() {
		n.log.Warn("out of space: raising NOSPACE; writes are refused until it is disarmed", "why", why)
		if err := n.raiseAlarm(ctx, etcdapi.Alarm{MemberID: n.ident.NodeID, Type: etcdapi.AlarmNoSpace}); err != nil {
			n.log.Warn("raising NOSPACE", "err", err)
		}
	}
}

// belowReserve reports whether the data dir's file system has less free
// space than its reserve. It runs on every write that adds data, not only
// every spaceCheckInterval: a statfs costs about a microsecond, and a
// write that reaches a full disk through the WAL panics the node.
func (n *Node) belowReserve() bool {
	du, err := vfs.Default.GetDiskUsage(n.cfg.DataDir)
	return err == nil && du.AvailBytes < freeSpaceReserve(du.TotalBytes)
}

func (n *Node) hasOwnNoSpace() bool {
	n.alarms.mu.Lock()
	defer n.alarms.mu.Unlock()
	return slices.Contains(n.alarms.mu.active, etcdapi.Alarm{MemberID: n.ident.NodeID, Type: etcdapi.AlarmNoSpace})
}

// loadAlarms reads the alarms from the meta range and remembers them.
func (n *Node) loadAlarms(ctx context.Context) ([]etcdapi.Alarm, error) {
	span := keys.AlarmSpan()
	resp, err := n.router.Sys(ctx, &cmdpb.SysRequest{Request: &cmdpb.SysRequest_Scan{Scan: &cmdpb.SysScan{Start: span.Start, End: span.End}}})
	if err != nil {
		return nil, err
	}
	var out []etcdapi.Alarm
	for _, kv := range resp.GetKvs() {
		member, typ, ok := keys.DecodeAlarm(kv.GetKey())
		if !ok {
			return nil, fmt.Errorf("server: undecodable alarm key %q", kv.GetKey())
		}
		out = append(out, etcdapi.Alarm{MemberID: member, Type: etcdapi.AlarmType(typ)})
	}
	n.setAlarms(out)
	return out, nil
}

func (n *Node) setAlarms(as []etcdapi.Alarm) {
	n.alarms.mu.Lock()
	n.alarms.mu.active = as
	n.alarms.mu.Unlock()
	noSpace := false
	for _, a := range as {
		noSpace = noSpace || a.Type == etcdapi.AlarmNoSpace
	}
	n.alarms.noSpace.Store(noSpace)
}

// raiseAlarm records a in the meta range.
func (n *Node) raiseAlarm(ctx context.Context, a etcdapi.Alarm) error {
	_, err := n.router.Sys(ctx, &cmdpb.SysRequest{Request: &cmdpb.SysRequest_Put{Put: &cmdpb.SysPut{Key: keys.Alarm(a.MemberID, int32(a.Type)), Value: []byte{1}}}})
	if err != nil {
		return err
	}
	n.alarms.mu.Lock()
	if !slices.Contains(n.alarms.mu.active, a) {
		n.alarms.mu.active = append(n.alarms.mu.active, a)
	}
	n.alarms.mu.Unlock()
	if a.Type == etcdapi.AlarmNoSpace {
		n.alarms.noSpace.Store(true)
	}
	return nil
}

// checkWrite refuses op with etcd's NOSPACE error if it adds data while a
// NOSPACE alarm is active, or while this node is past its bound (raising
// its alarm then, rather than at the next check).
func (n *Node) checkWrite(ctx context.Context, op *kvpb.RequestOp) error {
	if !addsData(op) {
		return nil
	}
	return n.checkSpaceForWrite(ctx)
}

func (n *Node) checkSpaceForWrite(ctx context.Context) error {
	if n.alarms.noSpace.Load() {
		return rpctypes.ErrGRPCNoSpace
	}
	if n.alarms.overQuota.Load() || n.belowReserve() {
		if err := n.raiseAlarm(ctx, etcdapi.Alarm{MemberID: n.ident.NodeID, Type: etcdapi.AlarmNoSpace}); err != nil {
			n.log.Warn("raising NOSPACE", "err", err)
		}
		return rpctypes.ErrGRPCNoSpace
	}
	return nil
}

// addsData reports whether op holds a put, at any depth of a txn: what
// etcd refuses under NOSPACE (its capped applier).
func addsData(op *kvpb.RequestOp) bool {
	if op.GetPut() != nil {
		return true
	}
	txn := op.GetTxn()
	if txn == nil {
		return false
	}
	for _, o := range append(slices.Clone(txn.GetSuccess()), txn.GetFailure()...) {
		if addsData(o) {
			return true
		}
	}
	return false
}

var _ etcdapi.AlarmBackend = backend{}

func (b backend) Alarms(ctx context.Context) ([]etcdapi.Alarm, error) { return b.n.loadAlarms(ctx) }

func (b backend) RaiseAlarm(ctx context.Context, a etcdapi.Alarm) error {
	return b.n.raiseAlarm(ctx, a)
}

func (b backend) DisarmAlarm(ctx context.Context, a etcdapi.Alarm) (bool, error) {
	as, err := b.n.loadAlarms(ctx)
	if err != nil || !slices.Contains(as, a) {
		return false, err
	}
	if _, err := b.n.router.Sys(ctx, &cmdpb.SysRequest{Request: &cmdpb.SysRequest_Delete{Delete: &cmdpb.SysDelete{Key: keys.Alarm(a.MemberID, int32(a.Type))}}}); err != nil {
		return false, err
	}
	_, err = b.n.loadAlarms(ctx)
	return true, err
}
