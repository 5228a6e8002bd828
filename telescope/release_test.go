package telescope

import (
	"context"
	"runtime"
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

	// A threshold above everything: nothing may be released.
	var never atomic.Int32
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	releaseFreeHeap(ctx, 10*time.Millisecond, 1<<40, func() { never.Add(1) })
	cancel()
	if never.Load() != 0 {
		t.Fatalf("released %d times with a threshold of 1 TiB", never.Load())
	}

	var n atomic.Int32
	ctx, cancel = context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); releaseFreeHeap(ctx, 10*time.Millisecond, 8<<20, func() { n.Add(1) }) }()
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
