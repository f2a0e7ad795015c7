package replica

import "testing"

func TestWriteRingKeepsAtLeastN(t *testing.T) {
	var w writeRing
	if w.revisionKeeping(10) != 0 {
		t.Fatal("empty ring named a revision")
	}
	// Write i has revision 1000+i.
	for i := 1; i <= 10000; i++ {
		w.observe(int64(1000 + i))
	}
	for _, n := range []uint64{1, 63, 64, 65, 500, 9000, 9999} {
		rev := w.revisionKeeping(n)
		if rev == 0 {
			t.Fatalf("n=%d: no revision", n)
		}
		kept := 10000 - (int(rev) - 1000) + 1 // writes at or after rev
		if kept < int(n) || kept > int(n)+sampleEvery {
			t.Fatalf("n=%d: compacting at %d keeps %d writes", n, rev, kept)
		}
	}
	if w.revisionKeeping(10000) != 0 {
		t.Fatal("asked to keep every write, named a revision")
	}
	// The ring forgets the oldest samples but stays bounded.
	for i := 10001; i <= 10001+sampleEvery*ringSamples; i++ {
		w.observe(int64(1000 + i))
	}
	if len(w.samples) != ringSamples {
		t.Fatalf("ring grew to %d samples", len(w.samples))
	}
	if w.revisionKeeping(uint64(sampleEvery*ringSamples)+sampleEvery) != 0 {
		t.Fatal("named a revision older than the ring reaches")
	}
}
