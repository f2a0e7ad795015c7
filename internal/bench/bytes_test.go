package bench

import "testing"

func TestParseBytes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"0", 0},
		{"65536", 65536},
		{"512B", 512},
		{"64KiB", 64 << 10},
		{"100MiB", 100 << 20},
		{"100mib", 100 << 20},
		{"10GiB", 10 << 30},
		{" 10 GiB ", 10 << 30},
		{"1.5GiB", 3 << 29},
		{"2TiB", 2 << 40},
		{"1GB", 1e9},
		{"2.5MB", 2_500_000},
		{"3KB", 3000},
		{"9223372036854775807", 1<<63 - 1},
	} {
		got, err := ParseBytes(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "GiB", "ten", "-1", "-1MiB", "1.5B", "0.3KiB", "1e30", "8EiB", "NaN", "Inf", "10GiBs", "1,5GiB"} {
		if got, err := ParseBytes(in); err == nil {
			t.Errorf("ParseBytes(%q) = %d, want an error", in, got)
		}
	}
}

func TestFormatBytesRoundTrips(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{
		{0, "0B"}, {512, "512B"}, {64 << 10, "64KiB"}, {100 << 20, "100MiB"}, {10 << 30, "10GiB"}, {3 << 29, "1.50GiB"},
	} {
		got := FormatBytes(tc.n)
		if got != tc.want {
			t.Errorf("FormatBytes(%d) = %q, want %q", tc.n, got, tc.want)
		}
		if back, err := ParseBytes(got); err != nil || back != tc.n {
			t.Errorf("ParseBytes(FormatBytes(%d)) = %d, %v", tc.n, back, err)
		}
	}
}

func TestByteSizeFlag(t *testing.T) {
	var b ByteSize
	if err := b.Set("10GiB"); err != nil || b != 10<<30 || b.String() != "10GiB" {
		t.Errorf("Set(10GiB): %d %q %v", b, b.String(), err)
	}
	if err := b.Set("lots"); err == nil {
		t.Error("Set(lots) took it")
	}
	list, err := ParseByteList("100MiB, 1GiB,5GiB")
	if err != nil || len(list) != 3 || list[0] != 100<<20 || list[1] != 1<<30 || list[2] != 5<<30 {
		t.Errorf("ParseByteList = %v, %v", list, err)
	}
	if list, err := ParseByteList(""); err != nil || list != nil {
		t.Errorf("ParseByteList(\"\") = %v, %v", list, err)
	}
	if _, err := ParseByteList("1GiB,,2GiB"); err == nil {
		t.Error("ParseByteList took an empty element")
	}
}
