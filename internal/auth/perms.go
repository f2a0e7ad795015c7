package auth

import (
	"bytes"
	"slices"

	"github.com/concorddb/concord/internal/concordpb/metapb"
)

// span is a half-open interval of etcd keys [start, end); a nil end is
// the end of the keyspace.
type span struct{ start, end []byte }

// spanSet is a union of spans, sorted, disjoint and not touching, so that
// a range is permitted iff one member covers it (etcd merges a user's
// permissions over all its roles the same way: a range read is allowed
// when the union of its permitted ranges covers it, even across roles).
type spanSet []span

// userPerms are a user's merged permissions.
type userPerms struct {
	read, write spanSet
	root        bool
}

// permSpan turns a permission's key and range_end into a span.
func permSpan(key, end []byte) span {
	switch {
	case len(end) == 0:
		return span{start: key, end: append(slices.Clip(key), 0)}
	case len(end) == 1 && end[0] == 0:
		return span{start: key}
	default:
		return span{start: key, end: end}
	}
}

// endBefore reports whether end a is below end b (nil is the largest).
func endBefore(a, b []byte) bool {
	if a == nil {
		return false
	}
	return b == nil || bytes.Compare(a, b) < 0
}

// merge returns the union of spans as a spanSet.
func merge(ss []span) spanSet {
	slices.SortFunc(ss, func(a, b span) int { return bytes.Compare(a.start, b.start) })
	var out spanSet
	for _, s := range ss {
		if s.end != nil && bytes.Compare(s.start, s.end) >= 0 {
			continue
		}
		if n := len(out); n > 0 && (out[n-1].end == nil || bytes.Compare(s.start, out[n-1].end) <= 0) {
			if endBefore(out[n-1].end, s.end) {
				out[n-1].end = s.end
			}
			continue
		}
		out = append(out, s)
	}
	return out
}

// covers reports whether the union holds every key of s.
func (set spanSet) covers(s span) bool {
	// The last member starting at or below s.start is the only candidate:
	// members are disjoint and do not touch.
	i, found := slices.BinarySearchFunc(set, s.start, func(m span, k []byte) int { return bytes.Compare(m.start, k) })
	if !found {
		if i == 0 {
			return false
		}
		i--
	}
	return !endBefore(set[i].end, s.end)
}

// buildPerms merges the permissions of every user's roles.
func buildPerms(st *metapb.AuthState) map[string]*userPerms {
	out := make(map[string]*userPerms, len(st.GetUsers()))
	for _, u := range st.GetUsers() {
		up := &userPerms{root: hasRole(u, RootRole)}
		var read, write []span
		for _, name := range u.GetRoles() {
			_, r := findRole(st, name)
			if r == nil {
				continue
			}
			for _, p := range r.GetPerms() {
				s := permSpan(p.GetKey(), p.GetRangeEnd())
				switch p.GetType() {
				case PermRead:
					read = append(read, s)
				case PermWrite:
					write = append(write, s)
				case PermReadWrite:
					read = append(read, s)
					write = append(write, s)
				}
			}
		}
		up.read, up.write = merge(read), merge(write)
		out[u.GetName()] = up
	}
	return out
}

// allowed reports whether perms let their user do typ (PermRead or
// PermWrite) on key, or on [key, rangeEnd) with a range end ("\x00": every
// key from key on), as etcd's request ranges.
func (up *userPerms) allowed(typ int32, key, rangeEnd []byte) bool {
	if up.root {
		return true
	}
	set := up.read
	if typ == PermWrite {
		set = up.write
	}
	return set.covers(permSpan(key, rangeEnd))
}
