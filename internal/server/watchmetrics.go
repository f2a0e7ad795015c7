package server

import (
	"github.com/prometheus/client_golang/prometheus"
)

// registerWatchMetrics exports the watch hub's state: the names follow
// etcd's (etcd_debugging_mvcc_watcher_total, slow_watcher_total,
// events_total) under Concord's prefix.
func (n *Node) registerWatchMetrics(reg *prometheus.Registry) {
	for _, c := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "concord_watch_watchers", Help: "Watchers on this node's watch streams."},
			(func() float64 { return float64(n.watchHub.Stats().Watchers) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "concord_watch_slow_watchers", Help: "Watchers catching up alone (behind the hub's ring, or moved aside for a full stream)."},
			(func() float64 { s := n.watchHub.Stats(); return float64(s.Watchers - s.Synced) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "concord_watch_frontier_revision", Help: "The revision up to which this node's watch hub released every change."},
			(func() float64 { return float64(n.watchHub.Stats().Frontier) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "concord_watch_victims_total", Help: "Watchers moved aside because their stream was full."},
			(func() float64 { return float64(n.watchHub.Stats().Victims) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "concord_watch_events_total", Help: "Events queued for watchers."},
			(func() float64 { return float64(n.watchHub.Stats().Delivered) })),
	} {
		reg.MustRegister(c)
	}
}
