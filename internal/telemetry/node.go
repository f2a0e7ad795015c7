package telemetry

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// RangeSample is one replica's state at scrape time.
type RangeSample struct {
	RangeID uint64
	// Replicas is the number of replicas in the range's descriptor.
	Replicas int
	// ActiveVoters is, on the leader, how many voters it heard from
	// recently (itself included); 0 elsewhere.
	ActiveVoters int
	Leader, Term uint64
	Commit       uint64
	Applied      uint64
	IsLeader     bool
	LeaseValid   bool
	// PendingProposals are proposals waiting to apply.
	PendingProposals int
}

// NodeSample is a node's state at scrape time.
type NodeSample struct {
	Ranges []RangeSample
	// ReplicationFactor is the replicas a range should have.
	ReplicationFactor int
	DiskUsageBytes    int64
	// Compactions and L0Files are the storage engine's.
	Compactions int64
	L0Files     int64
	// Transport counters since start.
	SentMsgs, DroppedMsgs, ReceivedMsgs uint64
	// GroupCommits counts synced Ready-loop batches, ReadyRounds the
	// rounds of the loop.
	GroupCommits, ReadyRounds uint64
	// Peers maps every known node id to whether it answered lately.
	Peers map[uint64]bool
}

// SetSource registers sample as the source of the node's state gauges; it
// is called at every scrape, so it must be cheap and must not block.
// Call it once.
func (m *Metrics) SetSource(sample func() NodeSample) {
	m.reg.MustRegister(&nodeCollector{sample: sample})
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(Namespace+"_"+name, help, labels, nil)
}

var (
	descTerm         = desc("raft_term", "Raft term of each range replica on this node.", "range_id")
	descHasLeader    = desc("raft_has_leader", "1 if this replica knows a leader for its range.", "range_id")
	descPending      = desc("raft_pending_proposals", "Proposals waiting to apply, summed over this node's replicas.")
	descCommitIndex  = desc("range_commit_index", "Raft commit index of each range replica on this node.", "range_id")
	descApplied      = desc("range_applied_index", "Applied index of each range replica on this node.", "range_id")
	descRangeReps    = desc("range_replicas", "Replicas in each range's descriptor, as this node's replica knows it.", "range_id")
	descRangeLeader  = desc("range_leader", "Node id of each range's leader as this node sees it (0: none).", "range_id")
	descRanges       = desc("ranges", "Range replicas held by this node.")
	descLeaders      = desc("range_leaders", "Ranges this node leads.")
	descLeaseholders = desc("range_leaseholders", "Ranges this node leads under a valid lease.")
	descUnderRep     = desc("ranges_under_replicated", "Ranges led here with fewer live voters than the replication factor.")
	descDisk         = desc("storage_disk_usage_bytes", "Disk space used by the storage engine.")
	descCompactions  = desc("storage_compactions_total", "Storage engine compactions since start.")
	descL0           = desc("storage_l0_files", "Files in the storage engine's level 0.")
	descSent         = desc("transport_sent_messages_total", "Raft messages written to peer streams.")
	descDropped      = desc("transport_dropped_messages_total", "Raft messages dropped (queue full, peer unreachable, oversized, fault).")
	descReceived     = desc("transport_received_messages_total", "Raft messages received from peers.")
	descGroupCommits = desc("store_group_commits_total", "Synced group commits of the Ready loop.")
	descReadyRounds  = desc("store_ready_rounds_total", "Rounds of the Ready loop that had work.")
	descPeerUp       = desc("peer_up", "1 if the peer node answered this node's last status poll.", "peer")
)

// nodeCollector turns a NodeSample into metrics at scrape time.
type nodeCollector struct{ sample func() NodeSample }

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descTerm, descHasLeader, descPending, descCommitIndex, descApplied, descRangeReps, descRangeLeader,
		descRanges, descLeaders, descLeaseholders, descUnderRep, descDisk, descCompactions, descL0, descSent, descDropped, descReceived,
		descGroupCommits, descReadyRounds, descPeerUp} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.sample()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	var pending, leaders, leaseholders, under int
	for _, r := range s.Ranges {
		id := strconv.FormatUint(r.RangeID, 10)
		gauge(descTerm, float64(r.Term), id)
		gauge(descHasLeader, b2f(r.Leader != 0), id)
		gauge(descCommitIndex, float64(r.Commit), id)
		gauge(descApplied, float64(r.Applied), id)
		gauge(descRangeReps, float64(r.Replicas), id)
		gauge(descRangeLeader, float64(r.Leader), id)
		pending += r.PendingProposals
		if r.IsLeader {
			leaders++
			if r.LeaseValid {
				leaseholders++
			}
			if r.ActiveVoters < max(r.Replicas, s.ReplicationFactor) {
				under++
			}
		}
	}
	gauge(descPending, float64(pending))
	gauge(descRanges, float64(len(s.Ranges)))
	gauge(descLeaders, float64(leaders))
	gauge(descLeaseholders, float64(leaseholders))
	gauge(descUnderRep, float64(under))
	gauge(descDisk, float64(s.DiskUsageBytes))
	counter(descCompactions, float64(s.Compactions))
	gauge(descL0, float64(s.L0Files))
	counter(descSent, float64(s.SentMsgs))
	counter(descDropped, float64(s.DroppedMsgs))
	counter(descReceived, float64(s.ReceivedMsgs))
	counter(descGroupCommits, float64(s.GroupCommits))
	counter(descReadyRounds, float64(s.ReadyRounds))
	for id, up := range s.Peers {
		gauge(descPeerUp, b2f(up), strconv.FormatUint(id, 10))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
