package bench

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
)

// TxnReport is the outcome of RunTxn. Its JSON form is `concord bench
// txn-put --json`.
type TxnReport struct {
	Workload   string   `json:"workload"` // "txn-put"
	Endpoints  []string `json:"endpoints"`
	LeaderOnly bool     `json:"leader_only,omitempty"`
	Conns      int      `json:"conns"`
	Clients    int      `json:"clients"`
	KeysPerTxn int      `json:"keys_per_txn"`
	ValueSize  int      `json:"value_size"`
	// KeySpace is the number of groups (distinct txns' key sets) of each
	// configuration.
	KeySpace int     `json:"key_space"`
	Dist     Dist    `json:"dist"`
	CAS      bool    `json:"cas,omitempty"`
	Preload  bool    `json:"preload,omitempty"`
	Rate     float64 `json:"target_rate,omitempty"`
	Rounds   int     `json:"rounds"`
	// RunSec is each measured run's set length; 0 with RunTxns.
	RunSec  float64 `json:"run_s,omitempty"`
	RunTxns int64   `json:"run_txns,omitempty"`
	WarmSec float64 `json:"warmup_s,omitempty"`
	// Ranges is the number of ranges each configuration's keys are spread
	// over. LayoutChecked is false when the cluster could not be asked
	// for its ranges (no Admin service: etcd), and nothing was split.
	Ranges        int  `json:"ranges"`
	LayoutChecked bool `json:"layout_checked"`
	// Baseline is the RangesPerTxn the ratios are to.
	Baseline int `json:"baseline_ranges_per_txn"`
	// Configs are in TxnConfig.RangesPerTxn's order.
	Configs []TxnConfigReport `json:"configs"`
}

// TxnConfigReport is one configuration's runs, merged.
type TxnConfigReport struct {
	RangesPerTxn int    `json:"ranges_per_txn"`
	Prefix       string `json:"prefix"`
	// Layout checks the cluster's ranges after the splits, LayoutAfter
	// after the last run (nil when not checked).
	Layout      *LayoutCheck `json:"layout,omitempty"`
	LayoutAfter *LayoutCheck `json:"layout_after,omitempty"`
	// DurationSec is the measured time over every round; Txns counts the
	// successful txns, Errors the failed ones; Throughput is Txns over
	// DurationSec.
	DurationSec float64 `json:"duration_s"`
	Txns        int64   `json:"txns"`
	Errors      int64   `json:"errors"`
	Throughput  float64 `json:"txns_per_s"`
	// Latency covers the successful txns of every round.
	Latency      Latency `json:"latency"`
	CASConflicts int64   `json:"cas_conflicts,omitempty"`
	// ErrorsByCode counts failed txns by gRPC code name, ErrorSamples
	// holds a message for each, FirstError the first failed txn's.
	ErrorsByCode   map[string]int64  `json:"errors_by_code,omitempty"`
	ErrorSamples   map[string]string `json:"error_samples,omitempty"`
	FirstError     string            `json:"first_error,omitempty"`
	FirstErrorCode string            `json:"first_error_code,omitempty"`
	// P50Ratio and ThroughputRatio are this configuration's median
	// latency and throughput over the baseline's, all rounds merged;
	// unset when either has no successful txn.
	P50Ratio        *float64   `json:"p50_ratio,omitempty"`
	ThroughputRatio *float64   `json:"throughput_ratio,omitempty"`
	Rounds          []TxnRound `json:"rounds"`
}

// TxnRound is one measured run of one configuration.
type TxnRound struct {
	Round       int     `json:"round"`
	DurationSec float64 `json:"duration_s"`
	Txns        int64   `json:"txns"`
	Errors      int64   `json:"errors"`
	Throughput  float64 `json:"txns_per_s"`
	P50Ms       float64 `json:"p50_ms"`
	P99Ms       float64 `json:"p99_ms"`
	// The ratios to the baseline's run of the same round: the runs next
	// to each other in time, which a machine's drift over the whole run
	// touches least.
	P50Ratio        *float64 `json:"p50_ratio,omitempty"`
	ThroughputRatio *float64 `json:"throughput_ratio,omitempty"`
}

// report merges every configuration's runs.
func (b *txnBench) report() *TxnReport {
	cfg := &b.cfg
	rep := &TxnReport{
		Workload:      "txn-put",
		Endpoints:     cfg.Load.Endpoints,
		LeaderOnly:    cfg.Load.LeaderOnly,
		Conns:         cfg.Load.Conns,
		Clients:       cfg.Load.Clients,
		KeysPerTxn:    cfg.KeysPerTxn,
		ValueSize:     cfg.Load.ValueSize,
		KeySpace:      cfg.Load.KeySpace,
		Dist:          cfg.Load.Dist,
		CAS:           cfg.CAS,
		Preload:       cfg.Preload,
		Rate:          cfg.Load.Rate,
		Rounds:        cfg.Rounds,
		RunTxns:       cfg.Load.Total,
		WarmSec:       cfg.Warmup.Seconds(),
		Ranges:        cfg.ranges(),
		LayoutChecked: !b.noAdmin,
		Baseline:      cfg.RangesPerTxn[cfg.baseline()],
	}
	if cfg.Load.Total == 0 {
		rep.RunSec = cfg.Load.Duration.Seconds()
	}
	for _, c := range b.cases {
		cr := TxnConfigReport{RangesPerTxn: c.layout.RangesPerTxn, Prefix: c.layout.Prefix, Layout: c.before, LayoutAfter: c.after}
		all := NewHistogram()
		var secs float64
		for _, run := range c.runs {
			all.Merge(run.hist)
			secs += run.elapsed.Seconds()
			cr.Errors += run.errs
			cr.CASConflicts += run.conflicts
			var n int64
			addErrors(&cr.ErrorsByCode, &cr.ErrorSamples, &n, run.errCodes, run.errSample)
			if cr.FirstError == "" {
				cr.FirstError, cr.FirstErrorCode = run.firstErr, run.firstCode
			}
			s := run.hist.Summary()
			cr.Rounds = append(cr.Rounds, TxnRound{Round: run.round, DurationSec: run.elapsed.Seconds(), Txns: s.Count, Errors: run.errs,
				Throughput: perSec(s.Count, run.elapsed.Seconds()), P50Ms: s.P50Ms, P99Ms: s.P99Ms})
		}
		cr.DurationSec, cr.Txns, cr.Latency = secs, all.Count(), all.Summary()
		cr.Throughput = perSec(cr.Txns, secs)
		rep.Configs = append(rep.Configs, cr)
	}
	base := &rep.Configs[cfg.baseline()]
	for i := range rep.Configs {
		c := &rep.Configs[i]
		c.P50Ratio, c.ThroughputRatio = ratios(c.Txns, base.Txns, c.Latency.P50Ms, base.Latency.P50Ms, c.Throughput, base.Throughput)
		for j := range c.Rounds {
			r := &c.Rounds[j]
			if j < len(base.Rounds) {
				br := &base.Rounds[j]
				r.P50Ratio, r.ThroughputRatio = ratios(r.Txns, br.Txns, r.P50Ms, br.P50Ms, r.Throughput, br.Throughput)
			}
		}
	}
	return rep
}

func perSec(n int64, secs float64) float64 {
	if secs <= 0 {
		return 0
	}
	return float64(n) / secs
}

// ratios are p50/baseP50 and tput/baseTput, both unset unless both sides
// have successful txns.
func ratios(n, baseN int64, p50, baseP50, tput, baseTput float64) (p50Ratio, tputRatio *float64) {
	if n == 0 || baseN == 0 || baseP50 <= 0 || baseTput <= 0 {
		return nil, nil
	}
	p, t := p50/baseP50, tput/baseTput
	return &p, &t
}

// WriteText writes r for a human: the setup, a row per configuration with
// its figures over all rounds and, in brackets, round by round, then the
// layout checks, CAS conflicts and errors.
func (r *TxnReport) WriteText(w io.Writer) error {
	var b strings.Builder
	cas := "no compares"
	if r.CAS {
		cas = "CAS on every key's mod revision"
	}
	target := "all endpoints"
	if r.LeaderOnly {
		target = "leader only"
	}
	fmt.Fprintf(&b, "txn-put    %d puts per txn (%s), %d-byte values, %d key groups per configuration (%s)\n", r.KeysPerTxn, cas, r.ValueSize, r.KeySpace, r.Dist)
	fmt.Fprintf(&b, "clients    %d over %d conns, %d endpoints (%s)", r.Clients, r.Conns, len(r.Endpoints), target)
	if r.Rate > 0 {
		fmt.Fprintf(&b, ", %.0f txns/s target (open loop)", r.Rate)
	}
	b.WriteString("\n")
	run := fmt.Sprintf("%gs", r.RunSec)
	if r.RunTxns > 0 {
		run = fmt.Sprintf("%d txns", r.RunTxns)
	}
	fmt.Fprintf(&b, "runs       %s of %s per configuration, order reversed every other round, %gs warm-up each\n", plural(r.Rounds, "round"), run, r.WarmSec)
	checked := "checked against the cluster's ranges"
	if !r.LayoutChecked {
		checked = "not split nor checked: no Admin service"
	}
	fmt.Fprintf(&b, "layout     each configuration's keys on %d ranges of their own (%s)\n\n", r.Ranges, checked)

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "ranges/txn\ttxns\terrors\ttxns/s [by round]\tp50 ms [by round]\tp90 ms\tp99 ms\tp50 / R=%d [by round]\ttxns/s / R=%d [by round]\n", r.Baseline, r.Baseline)
	for _, c := range r.Configs {
		tput := fmt.Sprintf("%.1f %s", c.Throughput, byRound(c.Rounds, func(x TxnRound) (float64, bool) { return x.Throughput, true }, "%.0f"))
		p50, p90, p99 := "-", "-", "-"
		if c.Txns > 0 {
			p50 = fmt.Sprintf("%.3f %s", c.Latency.P50Ms, byRound(c.Rounds, func(x TxnRound) (float64, bool) { return x.P50Ms, x.Txns > 0 }, "%.3f"))
			p90, p99 = fmt.Sprintf("%.3f", c.Latency.P90Ms), fmt.Sprintf("%.3f", c.Latency.P99Ms)
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", c.RangesPerTxn, c.Txns, c.Errors, tput, p50, p90, p99,
			ratioCell(c.P50Ratio, c.Rounds, func(x TxnRound) *float64 { return x.P50Ratio }),
			ratioCell(c.ThroughputRatio, c.Rounds, func(x TxnRound) *float64 { return x.ThroughputRatio }))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	b.WriteString("\n")
	for _, c := range r.Configs {
		writeLayoutCheck(&b, "layout    ", c.RangesPerTxn, c.Layout)
		if c.LayoutAfter != nil && (c.Layout == nil || c.LayoutAfter.Exact != c.Layout.Exact || c.LayoutAfter.Ranges != c.Layout.Ranges) {
			writeLayoutCheck(&b, "after runs", c.RangesPerTxn, c.LayoutAfter)
		}
	}
	for _, c := range r.Configs {
		if c.CASConflicts > 0 {
			fmt.Fprintf(&b, "cas        R=%d: %d compares failed (conflicts)\n", c.RangesPerTxn, c.CASConflicts)
		}
	}
	for _, c := range r.Configs {
		for _, code := range slices.Sorted(maps.Keys(c.ErrorsByCode)) {
			fmt.Fprintf(&b, "errors     R=%d: %s: %d of %d txns", c.RangesPerTxn, code, c.ErrorsByCode[code], c.Txns+c.Errors)
			if code != c.FirstErrorCode {
				fmt.Fprintf(&b, " (e.g. %s)", c.ErrorSamples[code])
			}
			b.WriteString("\n")
		}
		if c.FirstError != "" {
			fmt.Fprintf(&b, "           R=%d: first error: %s\n", c.RangesPerTxn, c.FirstError)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// byRound is the rounds' values in brackets, "-" for a round without one.
func byRound(rounds []TxnRound, v func(TxnRound) (float64, bool), format string) string {
	parts := make([]string, len(rounds))
	for i, x := range rounds {
		parts[i] = "-"
		if f, ok := v(x); ok {
			parts[i] = fmt.Sprintf(format, f)
		}
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// ratioCell is a ratio over all rounds with the rounds' own in brackets,
// or "-" when it is undefined.
func ratioCell(all *float64, rounds []TxnRound, v func(TxnRound) *float64) string {
	if all == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f %s", *all, byRound(rounds, func(x TxnRound) (float64, bool) {
		if p := v(x); p != nil {
			return *p, true
		}
		return 0, false
	}, "%.2f"))
}

func writeLayoutCheck(b *strings.Builder, label string, rangesPerTxn int, c *LayoutCheck) {
	if c == nil {
		return
	}
	verdict := "as laid out"
	if !c.OK() {
		verdict = fmt.Sprintf("NOT as laid out: groups by ranges touched %v", c.ByRanges)
	}
	fmt.Fprintf(b, "%s R=%d: %d of %d txns' keys lie in exactly %s, %s hold them: %s\n", label, rangesPerTxn, c.Exact, c.Groups, plural(rangesPerTxn, "range"), plural(c.Ranges, "range"), verdict)
}

// plural is n and noun, with an s unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
