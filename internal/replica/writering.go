package replica

// writeRing remembers, for etcd's revision-mode compaction, the revision of
// every sampleEvery-th write this replica applied since it was loaded, so the
// leader can name the revision that keeps the newest N writes. It lives in
// memory only: after a restart compaction waits until enough writes were
// seen again, which only keeps more history, never less.
type writeRing struct {
	// seq counts writes applied since Load.
	seq uint64
	// samples[i%len] holds (seq, revision) of sampled writes, oldest first
	// from next. Bounded: ringSamples entries.
	samples []writeSample
	next    int
}

type writeSample struct {
	seq uint64
	rev int64
}

const (
	// sampleEvery and ringSamples bound the ring's memory (64 KiB) and its
	// reach (sampleEvery*ringSamples writes); the revision found keeps up to
	// sampleEvery writes more than asked.
	sampleEvery = 64
	ringSamples = 4096
)

// observe records one applied write at revision rev.
func (w *writeRing) observe(rev int64) {
	w.seq++
	if w.seq%sampleEvery != 1 && w.seq != 1 {
		return
	}
	s := writeSample{seq: w.seq, rev: rev}
	if len(w.samples) < ringSamples {
		w.samples = append(w.samples, s)
		return
	}
	w.samples[w.next] = s
	w.next = (w.next + 1) % ringSamples
}

// revisionKeeping returns the newest sampled revision at or before which
// compacting still leaves at least n writes readable (every write after it),
// or 0 if no sample is old enough.
func (w *writeRing) revisionKeeping(n uint64) int64 {
	if n == 0 || w.seq <= n {
		return 0
	}
	limit := w.seq - n // writes with seq > limit must stay
	var best int64
	for _, s := range w.samples {
		// Compacting at s.rev keeps s itself and everything after it.
		if s.seq <= limit+1 && s.rev > best {
			best = s.rev
		}
	}
	return best
}
