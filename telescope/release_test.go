package telescope

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"
)

// TestReleaseFreeHeap frees a large allocation and checks that the
// releaser hands the free pages back (the free-heap class drops under its
// threshold) and says so; with a threshold above what is free it must not.
func TestReleaseFreeHeap(t *testing.T) {
	free := func() uint64 {
		s := []metrics.Sample{{Name: "/memory/classes/heap/free:bytes"}}
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
	const size = 64 << 20
	var keep [][]byte
	for range 64 {
		b := make([]byte, size/64)
		for i := range b {
			b[i] = 1 // resident
		}
		keep = append(keep, b)
	}
	runtime.KeepAlive(keep)
	keep = nil
	runtime.GC()
	if got := free(); got < size/2 {
		t.Fatalf("free heap %d after freeing 64 MiB: the test cannot see a release", got)
	}

	// A threshold above everything: nothing may be released. (The quiet
	// rule, which would see the same free pages, is off here: see
	// TestReleaseQuietGarbage.)
	var never atomic.Int32
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	releaseHeap(ctx, 10*time.Millisecond, releaseLimits{free: 1 << 40, idle: 1 << 40}, func() { never.Add(1) })
	cancel()
	if never.Load() != 0 {
		t.Fatalf("released %d times with a threshold of 1 TiB", never.Load())
	}

	var n atomic.Int32
	ctx, cancel = context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		releaseHeap(ctx, 10*time.Millisecond, releaseLimits{free: 8 << 20, idle: 1 << 40}, func() { n.Add(1) })
	}()
	deadline := time.Now().Add(5 * time.Second)
	for n.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if n.Load() == 0 {
		t.Fatal("the releaser never released the freed 64 MiB")
	}
	if got := free(); got >= 8<<20 {
		t.Fatalf("free heap after release %d, want < 8 MiB", got)
	}
}

// garbageSink makes the test's allocations escape to the heap.
var garbageSink []byte

// makeGarbage allocates n bytes in 1 KiB objects and drops them.
func makeGarbage(n int) {
	for range n >> 10 {
		garbageSink = make([]byte, 1<<10)
	}
	garbageSink = nil
}

// TestReleaseQuietGarbage leaves 64 MiB of garbage in a heap whose
// collector does not run (as after a burst, when nothing allocates any
// more) and checks that the releaser collects it once the heap is quiet,
// and not while the heap keeps allocating or with a threshold above it.
func TestReleaseQuietGarbage(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	runtime.GC()
	s := make([]metrics.Sample, len(heapMetrics))
	for i, name := range heapMetrics {
		s[i].Name = name
	}
	excess := func() uint64 {
		h := readHeap(s)
		return h.objects + h.unused + h.free - min(h.live, h.objects+h.unused+h.free)
	}
	makeGarbage(64 << 20)
	if got := excess(); got < 32<<20 {
		t.Fatalf("heap beyond live %d after 64 MiB of garbage: the test cannot see a collection", got)
	}
	lim := releaseLimits{free: 1 << 40, idle: 8 << 20, quietAlloc: 1 << 20}
	run := func(d time.Duration, lim releaseLimits, busy bool) int32 {
		var n atomic.Int32
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		done := make(chan struct{})
		go func() { defer close(done); releaseHeap(ctx, 20*time.Millisecond, lim, func() { n.Add(1) }) }()
		for ctx.Err() == nil {
			if busy {
				makeGarbage(2 << 20) // some 40 times quietAlloc per check
			}
			time.Sleep(time.Millisecond)
		}
		<-done
		return n.Load()
	}

	// Above the threshold, and while allocating: no collection.
	if n := run(100*time.Millisecond, releaseLimits{free: 1 << 40, idle: 1 << 40, quietAlloc: 1 << 20}, false); n != 0 {
		t.Fatalf("released %d times with a threshold of 1 TiB", n)
	}
	// A check for which this goroutine got no CPU (a loaded machine) sees
	// a quiet heap, and releasing then is right; a rule that ignored the
	// allocation would release at every one of the ten checks.
	if n := run(200*time.Millisecond, lim, true); n > 2 {
		t.Fatalf("released %d times in 10 checks while the heap allocated without pause", n)
	}
	makeGarbage(64 << 20) // again, in case a starved check released above
	if got := excess(); got < 32<<20 {
		t.Fatalf("heap beyond live %d before the quiet check: collected by something else", got)
	}

	// Quiet: collected and handed back.
	if n := run(300*time.Millisecond, lim, false); n == 0 {
		t.Fatal("the releaser never collected 64 MiB of garbage in a quiet heap")
	}
	if got := excess(); got >= 8<<20 {
		t.Fatalf("heap beyond live after release %d, want < 8 MiB", got)
	}
}

// TestShouldRelease checks the decision on samples: the free-page rule
// always, the excess rule only on a quiet heap.
func TestShouldRelease(t *testing.T) {
	lim := releaseLimits{free: 8 << 20, idle: 4 << 20, quietAlloc: 1 << 20}
	base := heapSample{objects: 20 << 20, live: 10 << 20, allocs: 100 << 20, cycles: 7, ok: true}
	with := func(f func(*heapSample)) heapSample { s := base; f(&s); return s }
	for _, c := range []struct {
		name      string
		prev, cur heapSample
		want      bool
	}{
		{"quiet with 10 MiB of garbage", base, base, true},
		{"quiet, garbage under the threshold", base, with(func(s *heapSample) { s.objects = 13 << 20 }), false},
		{"quiet, unused and free pages count", base, with(func(s *heapSample) { s.objects, s.unused, s.free = 11<<20, 2<<20, 2<<20 }), true},
		{"a collection ran since", base, with(func(s *heapSample) { s.cycles++ }), false},
		{"allocating", base, with(func(s *heapSample) { s.allocs += 2 << 20 }), false},
		{"a little allocation is quiet", base, with(func(s *heapSample) { s.allocs += 512 << 10 }), true},
		{"no previous sample", heapSample{}, base, false},
		{"free pages while busy", base, with(func(s *heapSample) { s.cycles++; s.free = 9 << 20 }), true},
		{"unreadable", base, heapSample{}, false},
		{"live above held (stale live)", base, with(func(s *heapSample) { s.live = 30 << 20 }), false},
	} {
		if got := shouldRelease(c.prev, c.cur, lim); got != c.want {
			t.Errorf("%s: shouldRelease = %v, want %v", c.name, got, c.want)
		}
	}
}
