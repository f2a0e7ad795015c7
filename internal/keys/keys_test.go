package keys

import (
	"bytes"
	"testing"
)

func TestUserSpanOf(t *testing.T) {
	cases := []struct {
		key, end string
		want     Span
	}{
		{"a", "", Span{Start: []byte("\x02a")}},
		{"a", "\x00", Span{Start: []byte("\x02a"), End: []byte{0x03}}},
		{"a", "c", Span{Start: []byte("\x02a"), End: []byte("\x02c")}},
	}
	for _, c := range cases {
		got := UserSpanOf([]byte(c.key), []byte(c.end))
		if !bytes.Equal(got.Start, c.want.Start) || !bytes.Equal(got.End, c.want.End) {
			t.Errorf("UserSpanOf(%q, %q) = %v, want %v", c.key, c.end, got, c.want)
		}
		if !UserSpan.ContainsSpan(got) {
			t.Errorf("user span does not contain %v", got)
		}
		if MetaSpan.Contains(got.Start) {
			t.Errorf("meta span contains user key %q", got.Start)
		}
	}
}

func TestSystemKeysInMetaSpan(t *testing.T) {
	for _, k := range [][]byte{Node(1), Node(^uint64(0)), Range(7), NodeSeq, TSOWindow} {
		if !MetaSpan.Contains(k) {
			t.Errorf("meta span does not contain %q", k)
		}
	}
	if !NodeSpan().Contains(Node(42)) || NodeSpan().Contains(Range(1)) {
		t.Error("node span is wrong")
	}
}

func TestStripUser(t *testing.T) {
	if got := StripUser(User([]byte("k\x00"))); string(got) != "k\x00" {
		t.Errorf("StripUser round trip = %q", got)
	}
}

func TestAlarmKeys(t *testing.T) {
	k := Alarm(0xabcdef, 1)
	if !AlarmSpan().Contains(k) || !MetaSpan.Contains(k) {
		t.Fatalf("alarm key %q outside the alarm or system span", k)
	}
	m, typ, ok := DecodeAlarm(k)
	if !ok || m != 0xabcdef || typ != 1 {
		t.Fatalf("DecodeAlarm(%q) = %x, %d, %v", k, m, typ, ok)
	}
	if _, _, ok := DecodeAlarm(Lease(5)); ok {
		t.Fatal("a lease key decodes as an alarm")
	}
}
