package compare

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// cpuSeconds returns the user plus system CPU time process pid has used.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(string(b))
}

// parseStatCPU reads utime and stime (fields 14 and 15) from a
// /proc/<pid>/stat line. The command name (field 2) is in parentheses and
// may hold spaces, so fields are counted after the last ')'.
func parseStatCPU(stat string) (float64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("compare: malformed stat %q", stat)
	}
	f := strings.Fields(stat[i+1:]) // f[0] is field 3, the state
	if len(f) < 13 {
		return 0, fmt.Errorf("compare: stat has %d fields after the name", len(f))
	}
	utime, err := strconv.ParseInt(f[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("compare: utime: %w", err)
	}
	stime, err := strconv.ParseInt(f[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("compare: stime: %w", err)
	}
	return float64(utime+stime) / clockTicks, nil
}

// peakRSS returns process pid's peak resident set size (VmHWM) in bytes.
func peakRSS(pid int) (int64, error) { return statusBytes(pid, "VmHWM") }

// rss returns process pid's resident set size now (VmRSS) in bytes.
func rss(pid int) (int64, error) { return statusBytes(pid, "VmRSS") }

// statusBytes reads one "Name:   1234 kB" field of /proc/<pid>/status.
func statusBytes(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return parseStatusKB(bufio.NewScanner(f), field)
}

// parseVmHWM finds the "VmHWM:   1234 kB" line of a /proc/<pid>/status.
func parseVmHWM(s *bufio.Scanner) (int64, error) { return parseStatusKB(s, "VmHWM") }

// parseStatusKB finds the "<field>:   1234 kB" line of a /proc/<pid>/status
// and returns its size in bytes.
func parseStatusKB(s *bufio.Scanner, field string) (int64, error) {
	for s.Scan() {
		rest, ok := strings.CutPrefix(s.Text(), field+":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("compare: malformed %s line %q", field, s.Text())
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("compare: %s: %w", field, err)
		}
		return kb << 10, nil
	}
	if err := s.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("compare: no %s in status", field)
}

// loadAvg1 returns the 1-minute load average from /proc/loadavg.
func loadAvg1() (float64, error) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, fmt.Errorf("compare: empty /proc/loadavg")
	}
	return strconv.ParseFloat(f[0], 64)
}
