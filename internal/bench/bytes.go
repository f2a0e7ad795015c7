package bench

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// byteUnits are the suffixes ParseBytes accepts, longest first so that
// "MiB" is tried before "B". Binary units (KiB, MiB, GiB, TiB) are powers
// of 1024; decimal ones (KB, MB, GB, TB) powers of 1000, as in the SI and
// in etcd's own --quota-backend-bytes documentation.
var byteUnits = []struct {
	suffix string
	mult   float64
}{
	{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3},
	{"B", 1},
}

// ParseBytes parses a byte size: a plain number of bytes ("65536"), or a
// number with a unit ("100MiB", "10GiB", "1.5GB", "512 KiB"). Units are
// case-insensitive. The size must be a whole number of bytes, at least 0
// and at most math.MaxInt64.
func ParseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := 1.0
	for _, u := range byteUnits {
		if len(t) > len(u.suffix) && strings.EqualFold(t[len(t)-len(u.suffix):], u.suffix) {
			t, mult = strings.TrimSpace(t[:len(t)-len(u.suffix)]), u.mult
			break
		}
	}
	if mult == 1 {
		if n, err := strconv.ParseInt(t, 10, 64); err == nil && n >= 0 {
			return n, nil
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	switch {
	case err != nil || math.IsNaN(f) || math.IsInf(f, 0):
		return 0, fmt.Errorf("bench: %q is not a byte size (e.g. 65536, 100MiB, 10GiB)", s)
	case f < 0:
		return 0, fmt.Errorf("bench: byte size %q is negative", s)
	case f*mult >= math.MaxInt64:
		return 0, fmt.Errorf("bench: byte size %q is too large", s)
	case f*mult != math.Trunc(f*mult):
		return 0, fmt.Errorf("bench: byte size %q is not a whole number of bytes", s)
	}
	return int64(f * mult), nil
}

// FormatBytes writes n in the largest binary unit that keeps two decimals
// meaningful: "512B", "100MiB", "1.50GiB".
func FormatBytes(n int64) string {
	for _, u := range byteUnits[:4] {
		if float64(n) >= u.mult {
			v := float64(n) / u.mult
			if v == math.Trunc(v) {
				return fmt.Sprintf("%.0f%s", v, u.suffix)
			}
			return fmt.Sprintf("%.2f%s", v, u.suffix)
		}
	}
	return fmt.Sprintf("%dB", n)
}

// ParseByteList parses a comma-separated list of byte sizes, such as
// "100MiB,1GiB,10GiB"; the empty string is the empty list.
func ParseByteList(s string) ([]int64, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []int64
	for _, part := range strings.Split(s, ",") {
		n, err := ParseBytes(part)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// ByteSize is a byte count that reads and prints as ParseBytes and
// FormatBytes do; *ByteSize is a pflag.Value, so a command can take
// "--bytes 10GiB".
type ByteSize int64

// String is the size in FormatBytes's form.
func (b *ByteSize) String() string { return FormatBytes(int64(*b)) }

// Set parses s with ParseBytes.
func (b *ByteSize) Set(s string) error {
	n, err := ParseBytes(s)
	if err != nil {
		return err
	}
	*b = ByteSize(n)
	return nil
}

// Type names the flag's value in help.
func (b *ByteSize) Type() string { return "bytes" }
