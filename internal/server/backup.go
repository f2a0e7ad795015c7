package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/concorddb/concord/internal/backup"
	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/concordpb/metapb"
	"github.com/concorddb/concord/internal/keys"
	"github.com/concorddb/concord/internal/meta"
	"github.com/concorddb/concord/internal/router"
	"github.com/concorddb/concord/internal/storage"
)

// backupPageKeys is how many keys one read of a backup fetches.
const backupPageKeys = 1000

// writeBackup writes a backup of the whole user keyspace, read at one
// revision through the router, to w.
func (n *Node) writeBackup(ctx context.Context, w io.Writer) (backup.Info, error) {
	// Uncounted pages: a count of the rest of the keyspace on every page
	// would make the backup quadratic in its keys.
	ctx = router.WithoutCount(ctx)
	start := []byte{0}
	var rev int64
	var bw *backup.Writer
	for {
		op := &kvpb.RequestOp{Request: &kvpb.RequestOp_Range{Range: &kvpb.RangeRequest{
			Key: start, RangeEnd: []byte{0}, Limit: backupPageKeys, Revision: rev,
		}}}
		resp, h, err := n.router.Do(ctx, op)
		if err != nil {
			return backup.Info{}, err
		}
		if bw == nil {
			// Every later page reads the state of the first.
			rev = h.Revision
			if bw, err = backup.NewWriter(w, rev); err != nil {
				return backup.Info{}, err
			}
		}
		rr := resp.GetRange()
		for _, kv := range rr.GetKvs() {
			if err := bw.Add(kv); err != nil {
				return backup.Info{}, err
			}
		}
		if !rr.GetMore() || len(rr.GetKvs()) == 0 {
			break
		}
		last := rr.GetKvs()[len(rr.GetKvs())-1].GetKey()
		start = append(append([]byte(nil), last...), 0)
	}
	return backup.Info{Revision: rev, Keys: bw.Count()}, bw.Close()
}

// Restore creates the data directory of one member of a new cluster from a
// backup file, as etcdutl snapshot restore does: every member of the new
// cluster restores the same file with its own --name and the same
// --initial-cluster, then starts with --initial-cluster-state new. The data
// directory must not exist or be empty.
func Restore(cfg Config, path string) (backup.Info, error) {
	cfg.InitialClusterState = "new"
	if err := cfg.Validate(); err != nil {
		return backup.Info{}, err
	}
	if entries, err := os.ReadDir(cfg.DataDir); err == nil && len(entries) > 0 {
		return backup.Info{}, fmt.Errorf("server: data dir %s is not empty", cfg.DataDir)
	}
	f, err := os.Open(path)
	if err != nil {
		return backup.Info{}, err
	}
	defer f.Close()
	// Verify the whole file before touching the data directory.
	info, err := backup.Read(f, func(*kvpb.KeyValue) error { return nil })
	if err != nil {
		return info, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return info, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return info, err
	}
	sopts, err := cfg.storageOptions()
	if err != nil {
		return info, err
	}
	n := &Node{cfg: cfg, log: cfg.Logger}
	n.addrs.nodes = make(map[uint64]*metapb.NodeRecord)
	if n.engine, err = storage.Open(cfg.DataDir, sopts); err != nil {
		return info, err
	}
	err = n.restore(f, info)
	if cerr := n.engine.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.RemoveAll(cfg.DataDir)
	}
	return info, err
}

func (n *Node) restore(f io.Reader, info backup.Info) error {
	members, err := parseInitialCluster(n.cfg.InitialCluster)
	if err != nil {
		return err
	}
	if _, err := n.bootstrap(members); err != nil {
		return err
	}
	b := n.engine.NewBatch()
	defer b.Close()
	holdsUser, holdsMeta := false, false
	descs, err := storage.LoadLocalDescriptors(n.engine)
	if err != nil {
		return err
	}
	for _, d := range descs {
		holdsUser = holdsUser || d.GetRangeId() == meta.UserRangeID
		holdsMeta = holdsMeta || d.GetRangeId() == meta.MetaRangeID
	}
	if holdsUser {
		if _, err := backup.Read(f, func(kv *kvpb.KeyValue) error {
			kv.Key = keys.User(kv.GetKey())
			return b.MVCCPut(kv)
		}); err != nil {
			return err
		}
		as, err := storage.LoadAppliedState(n.engine, meta.UserRangeID)
		if err != nil {
			return err
		}
		as.MaxTS = max(info.MaxRevision, info.Revision)
		if err := b.PutAppliedState(meta.UserRangeID, as); err != nil {
			return err
		}
	}
	if holdsMeta {
		// The new cluster's revisions continue right above every restored
		// one.
		bound := max(info.MaxRevision, info.Revision) + 1
		if err := b.SysPut(keys.TSOWindow, be64(bound)); err != nil {
			return err
		}
	}
	if b.Empty() {
		return errors.New("server: nothing to restore on this member")
	}
	return b.Commit(true /* sync */)
}
