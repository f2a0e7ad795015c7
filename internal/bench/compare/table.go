package compare

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// Environment is what a reader needs to judge the numbers.
type Environment struct {
	Date     time.Time
	CPUs     int
	CPUModel string
	Commit   string // git commit of the code under test, "-dirty" if modified
	Go       string
	// Command is the exact command that produced the table.
	Command string
	// Rounds and Duration are the run shape.
	Rounds   int
	Duration time.Duration
}

// CurrentEnvironment describes this machine and the git checkout in the
// working directory.
func CurrentEnvironment(command string, rounds int, d time.Duration) Environment {
	env := Environment{Date: time.Now().UTC(), CPUs: runtime.NumCPU(), Go: runtime.Version(),
		Command: command, Rounds: rounds, Duration: d, CPUModel: "unknown", Commit: "unknown"}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		s := bufio.NewScanner(f)
		for s.Scan() {
			if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				env.CPUModel = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if out, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output(); err == nil {
		env.Commit = strings.TrimSpace(string(out))
		if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
			env.Commit += "-dirty"
		}
	}
	return env
}

// stats averages one system's samples of one workload over the rounds.
type stats struct {
	runs                         int
	throughputs                  []float64
	throughput, avg, p50, p99    float64
	p999, max, cpuPerOp, rssMiB  float64
	genCPUPerOp, rssMaxMemberMiB float64
	errors                       int64
}

func aggregate(samples []Sample) map[string]map[string]*stats {
	out := map[string]map[string]*stats{}
	for i := range samples {
		s := &samples[i]
		if out[s.Workload] == nil {
			out[s.Workload] = map[string]*stats{}
		}
		st := out[s.Workload][s.System]
		if st == nil {
			st = &stats{}
			out[s.Workload][s.System] = st
		}
		r := s.Report
		st.runs++
		st.throughputs = append(st.throughputs, r.Throughput)
		st.throughput += r.Throughput
		st.avg += r.Latency.AvgMs
		st.p50 += r.Latency.P50Ms
		st.p99 += r.Latency.P99Ms
		st.p999 += r.Latency.P999Ms
		st.max = max(st.max, r.Latency.MaxMs)
		st.cpuPerOp += s.CPUPerOp()
		st.genCPUPerOp += s.LoadGenCPUPerOp()
		st.rssMiB += float64(s.RSSSum()) / (1 << 20)
		for _, b := range s.PeakRSS {
			st.rssMaxMemberMiB = max(st.rssMaxMemberMiB, float64(b)/(1<<20))
		}
		st.errors += r.Errors
	}
	for _, bySys := range out {
		for _, st := range bySys {
			n := float64(st.runs)
			st.throughput /= n
			st.avg /= n
			st.p50 /= n
			st.p99 /= n
			st.p999 /= n
			st.cpuPerOp /= n
			st.genCPUPerOp /= n
			st.rssMiB /= n
		}
	}
	return out
}

// Markdown renders the comparison of system a against system b (ratios
// are a/b) for the workloads in order.
func Markdown(env Environment, a, b string, workloads []string, samples []Sample) string {
	agg := aggregate(samples)
	var s strings.Builder
	fmt.Fprintf(&s, "Measured %s on %d × %s, Go %s, commit `%s`; %d rounds of %v per workload and system, A B A B, a fresh 3-member cluster per run.\n\n",
		env.Date.Format("2006-01-02 15:04 MST"), env.CPUs, env.CPUModel, env.Go, env.Commit, env.Rounds, env.Duration)
	fmt.Fprintf(&s, "```sh\n%s\n```\n\n", env.Command)
	if len(samples) > 0 {
		lo, hi := samples[0].LoadAvg1, samples[0].LoadAvg1
		for _, x := range samples {
			lo, hi = min(lo, x.LoadAvg1), max(hi, x.LoadAvg1)
		}
		fmt.Fprintf(&s, "1-minute load average at the end of each run: %.1f to %.1f (%d CPUs; the clusters and the load generator share them).\n\n", lo, hi, env.CPUs)
	}
	fmt.Fprintf(&s, "**%s / %s** (throughput: higher is better for %s; the others: lower is better)\n\n", a, b, a)
	s.WriteString("| workload | throughput | p99 latency | CPU per op | peak RSS |\n| --- | ---: | ---: | ---: | ---: |\n")
	ratio := func(x, y float64) string {
		if y == 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.2f×", x/y)
	}
	for _, w := range workloads {
		sa, sb := agg[w][a], agg[w][b]
		if sa == nil || sb == nil {
			continue
		}
		fmt.Fprintf(&s, "| %s | %s | %s | %s | %s |\n", w, ratio(sa.throughput, sb.throughput),
			ratio(sa.p99, sb.p99), ratio(sa.cpuPerOp, sb.cpuPerOp), ratio(sa.rssMiB, sb.rssMiB))
	}
	s.WriteString("\nAbsolute figures (means over the rounds; ops/s of each round in brackets; CPU is all members' user+system time over the measured part, load gen the load generator's; RSS is the members' peak RSS added up, and the largest member's):\n\n")
	s.WriteString("| workload | system | ops/s | avg ms | p50 ms | p99 ms | p99.9 ms | max ms | CPU µs/op | load gen µs/op | RSS MiB (max member) | errors |\n")
	s.WriteString("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, w := range workloads {
		for _, sys := range []string{a, b} {
			st := agg[w][sys]
			if st == nil {
				continue
			}
			var each []string
			for _, t := range st.throughputs {
				each = append(each, fmt.Sprintf("%.0f", t))
			}
			fmt.Fprintf(&s, "| %s | %s | %.0f [%s] | %.3f | %.3f | %.3f | %.3f | %.1f | %.1f | %.1f | %.0f (%.0f) | %d |\n",
				w, sys, st.throughput, strings.Join(each, ", "), st.avg, st.p50, st.p99, st.p999, st.max,
				st.cpuPerOp, st.genCPUPerOp, st.rssMiB, st.rssMaxMemberMiB, st.errors)
		}
	}
	s.WriteString(componentTables(a, b, workloads, samples))
	return s.String()
}

// componentTables renders, for every workload whose runs were profiled,
// the members' CPU per op by component for a and b (means over the
// rounds), and "" when none was.
func componentTables(a, b string, workloads []string, samples []Sample) string {
	perOp := map[string]map[string]map[string]float64{} // workload → system → component → µs/op
	runs := map[string]map[string]int{}
	total := map[string]map[string]float64{} // the profiles' sum, µs/op
	for i := range samples {
		x := &samples[i]
		if x.ProfileSeconds == 0 {
			continue
		}
		if perOp[x.Workload] == nil {
			perOp[x.Workload], runs[x.Workload], total[x.Workload] = map[string]map[string]float64{}, map[string]int{}, map[string]float64{}
		}
		if perOp[x.Workload][x.System] == nil {
			perOp[x.Workload][x.System] = map[string]float64{}
		}
		runs[x.Workload][x.System]++
		for c := range x.Components {
			v := x.ComponentPerOp(c)
			perOp[x.Workload][x.System][c] += v
			total[x.Workload][x.System] += v
		}
	}
	if len(perOp) == 0 {
		return ""
	}
	var s strings.Builder
	fmt.Fprintf(&s, "\nMembers' CPU per op by component, from CPU profiles of every member over the measured part (`--profile`), µs/op added up over the three members; each sample goes to the first component its stack matches, in the order of `internal/bench/compare/classify.go` (a component includes the protobuf, allocation and syscall work done inside it):\n")
	for _, w := range workloads {
		if perOp[w] == nil || perOp[w][a] == nil || perOp[w][b] == nil {
			continue
		}
		na, nb := float64(runs[w][a]), float64(runs[w][b])
		fmt.Fprintf(&s, "\n| %s | %s µs/op | %s µs/op | %s − %s |\n| --- | ---: | ---: | ---: |\n", w, a, b, a, b)
		for _, c := range Components {
			va, vb := perOp[w][a][c]/na, perOp[w][b][c]/nb
			if va < 0.05 && vb < 0.05 {
				continue
			}
			fmt.Fprintf(&s, "| %s | %.1f | %.1f | %+.1f |\n", c, va, vb, va-vb)
		}
		ta, tb := total[w][a]/na, total[w][b]/nb
		fmt.Fprintf(&s, "| **profiled total** | **%.1f** | **%.1f** | **%+.1f** |\n", ta, tb, ta-tb)
	}
	return s.String()
}

// The markers around the generated part of BENCHMARKS.md: WriteInto
// replaces what lies between them and leaves the prose around them alone.
const (
	beginMarker = "<!-- begin: generated by concord bench compare -->"
	endMarker   = "<!-- end: generated by concord bench compare -->"
)

// WriteInto puts table between the markers of the file at path, creating
// the file, or appending the markers, when they are missing.
func WriteInto(path, table string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	return os.WriteFile(path, []byte(splice(string(old), table)), 0o644)
}

// splice returns doc with the generated block replaced by table.
func splice(doc, table string) string {
	block := beginMarker + "\n" + table + endMarker + "\n"
	i := strings.Index(doc, beginMarker)
	j := strings.Index(doc, endMarker)
	if i >= 0 && j > i {
		return doc[:i] + block + strings.TrimPrefix(doc[j+len(endMarker):], "\n")
	}
	if doc == "" {
		return "# Benchmarks\n\n" + block
	}
	if !strings.HasSuffix(doc, "\n") {
		doc += "\n"
	}
	return doc + "\n" + block
}
