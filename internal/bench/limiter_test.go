package bench

import (
	"context"
	"sync"
	"testing"
	"time"
)

func TestLimiterSlotsAreEvenlySpaced(t *testing.T) {
	start := time.Unix(100, 0)
	l := NewLimiter(start, 1000)
	for i := 0; i < 5; i++ {
		if got, want := l.Slot(), start.Add(time.Duration(i)*time.Millisecond); !got.Equal(want) {
			t.Fatalf("slot %d due %v, want %v", i, got, want)
		}
	}
}

func TestLimiterHandsEachSlotOnceAcrossGoroutines(t *testing.T) {
	start := time.Unix(0, 0)
	l := NewLimiter(start, 1e6)
	seen := make(chan time.Time, 4000)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				seen <- l.Slot()
			}
		}()
	}
	wg.Wait()
	close(seen)
	set := map[time.Time]bool{}
	for s := range seen {
		if set[s] {
			t.Fatalf("slot %v handed out twice", s)
		}
		set[s] = true
	}
	if len(set) != 4000 {
		t.Fatalf("%d slots", len(set))
	}
}

func TestLimiterWaitPacesAndReturnsDueTime(t *testing.T) {
	start := time.Now()
	l := NewLimiter(start, 200) // 5 ms apart
	var last time.Time
	for i := 0; i < 10; i++ {
		due, err := l.Wait(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if time.Now().Before(due) {
			t.Fatalf("woke before the slot was due")
		}
		last = due
	}
	if want := start.Add(45 * time.Millisecond); !last.Equal(want) {
		t.Fatalf("10th slot due %v after start, want 45ms", last.Sub(start))
	}
	if time.Since(start) < 45*time.Millisecond {
		t.Fatalf("10 slots at 200/s took %v", time.Since(start))
	}
}

func TestLimiterWaitStopsOnCancel(t *testing.T) {
	l := NewLimiter(time.Now().Add(time.Hour), 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Wait(ctx); err == nil {
		t.Fatal("Wait for a slot an hour away returned no error on a cancelled context")
	}
}
