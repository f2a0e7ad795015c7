package compat

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// The watch cases run the same writes and watches on both systems and
// compare what every watcher saw, with revisions counted from the run's
// first write.

// watchLog renders watch responses with revisions relative to base.
type watchLog struct {
	system string
	base   int64
	prefix string
	lines  []string
}

func (l *watchLog) rel(rev int64) string {
	if rev == 0 {
		return "0"
	}
	return fmt.Sprintf("b%+d", rev-l.base)
}

// read takes responses from wch until it has n events (or a cancel), and
// logs them.
func (l *watchLog) read(t *testing.T, name string, wch clientv3.WatchChan, n int) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	got := 0
	lastRev := int64(-1)
	for got < n {
		select {
		case resp, ok := <-wch:
			if !ok {
				l.lines = append(l.lines, name+": closed")
				return
			}
			if resp.Canceled {
				l.lines = append(l.lines, fmt.Sprintf("%s: canceled compact=%s err=%v", name, l.rel(resp.CompactRevision), resp.Err()))
				return
			}
			if resp.IsProgressNotify() {
				l.lines = append(l.lines, fmt.Sprintf("%s: progress %s", name, l.rel(resp.Header.Revision)))
				got++
				continue
			}
			// A line per revision: how a system groups revisions into
			// responses is its own, but the events of one revision (a txn)
			// must arrive in one response.
			var evs []string
			for i, ev := range resp.Events {
				s := fmt.Sprintf("%s %s=%s c=%s m=%s v=%d", ev.Type, strings.TrimPrefix(string(ev.Kv.Key), l.prefix), ev.Kv.Value, l.rel(ev.Kv.CreateRevision), l.rel(ev.Kv.ModRevision), ev.Kv.Version)
				if ev.PrevKv != nil {
					s += fmt.Sprintf(" prev=%s@%s", ev.PrevKv.Value, l.rel(ev.PrevKv.ModRevision))
				}
				if i == 0 && ev.Kv.ModRevision == lastRev {
					l.lines = append(l.lines, fmt.Sprintf("%s: revision %s split over two responses", name, l.rel(lastRev)))
				}
				evs = append(evs, s)
				if i == len(resp.Events)-1 || resp.Events[i+1].Kv.ModRevision != ev.Kv.ModRevision {
					l.lines = append(l.lines, fmt.Sprintf("%s: [%s]", name, strings.Join(evs, "; ")))
					evs = nil
				}
				lastRev = ev.Kv.ModRevision
			}
			got += len(resp.Events)
		case <-timeout:
			t.Fatalf("%s: %s: %d of %d events after 20s; so far %v", l.system, name, got, n, l.lines)
		}
	}
}

// watchScenario runs the watch cases on one system under prefix p.
func watchScenario(t *testing.T, s *system, p string) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cli := s.cli
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
	}
	first, err := cli.Put(ctx, p+"base", "0")
	if err != nil {
		t.Fatalf("%s: %v", s.name, err)
	}
	l := &watchLog{system: s.name, base: first.Header.Revision, prefix: p}
	wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer wcancel()
	all := cli.Watch(wctx, p, clientv3.WithPrefix(), clientv3.WithPrevKV())
	deletesOfA := cli.Watch(wctx, p+"a", clientv3.WithFilterPut())
	span := cli.Watch(wctx, p+"b", clientv3.WithRange(p+"d"))
	fromC := cli.Watch(wctx, p+"c", clientv3.WithFromKey(), clientv3.WithFilterDelete())
	// Let the watches be created before the writes (etcd starts a watch
	// at its creation's revision).
	must(cli.Put(ctx, p+"sync", "x"))
	l.read(t, "all(sync)", all, 1)
	must(cli.Put(ctx, p+"a", "1"))
	must(cli.Put(ctx, p+"b", "2"))
	must(cli.Txn(ctx).Then(clientv3.OpPut(p+"a", "3"), clientv3.OpPut(p+"c", "4")).Commit())
	must(cli.Delete(ctx, p+"a", clientv3.WithRange(p+"c")))
	must(cli.Put(ctx, p+"d", "5"))
	must(cli.Put(ctx, p+"d", "6"))
	l.read(t, "all", all, 9)
	l.read(t, "deletes of a", deletesOfA, 1)
	l.read(t, "[b,d)", span, 4)
	l.read(t, "from c, no deletes", fromC, 4)

	// From the past: the same history, read back from the store.
	past := cli.Watch(wctx, p, clientv3.WithPrefix(), clientv3.WithRev(first.Header.Revision+2), clientv3.WithPrevKV())
	l.read(t, "past", past, 9)

	// Progress: a synced watcher hears of the newest revision.
	quiet := cli.Watch(wctx, p+"quiet", clientv3.WithProgressNotify())
	must(nil, cli.RequestProgress(wctx))
	l.read(t, "progress", quiet, 1)

	// Below a compaction: canceled with the compaction's revision.
	cur, err := cli.Get(ctx, p+"d")
	if err != nil {
		t.Fatal(err)
	}
	must(cli.Compact(ctx, cur.Header.Revision))
	old := cli.Watch(wctx, p, clientv3.WithPrefix(), clientv3.WithRev(first.Header.Revision))
	l.read(t, "compacted", old, 1)
	// Below and at the compaction while a watcher runs (Concord's hub holds
	// the changes it released last): canceled below, and at it the
	// compacted previous values are gone.
	if _, err := cli.Put(ctx, p+"e", "7"); err != nil {
		t.Fatal(err)
	}
	e8, err := cli.Put(ctx, p+"e", "8")
	if err != nil {
		t.Fatal(err)
	}
	must(cli.Compact(ctx, e8.Header.Revision))
	l.read(t, "below the compaction, hub running", cli.Watch(wctx, p+"e", clientv3.WithRev(e8.Header.Revision-1)), 1)
	l.read(t, "at the compaction, hub running", cli.Watch(wctx, p+"e", clientv3.WithRev(e8.Header.Revision), clientv3.WithPrevKV()), 1)
	return l.lines
}

func TestWatchMatchesEtcd(t *testing.T) {
	e := watchScenario(t, etcdSys, newPrefix())
	c := watchScenario(t, concordSys, newPrefix())
	if strings.Join(e, "\n") != strings.Join(c, "\n") {
		t.Errorf("watches differ.\netcd:\n  %s\nconcord:\n  %s", strings.Join(e, "\n  "), strings.Join(c, "\n  "))
	}
	t.Logf("etcd:\n  %s", strings.Join(e, "\n  "))
}
