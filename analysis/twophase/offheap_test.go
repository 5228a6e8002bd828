package twophase

import (
	"runtime"
	"testing"
)

// TestTableOffHeap checks that a Detector's table is not in the Go heap:
// its memory must not raise the collector's heap goal.
func TestTableOffHeap(t *testing.T) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	d := New(Config{Memory: 64 << 20})
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 8<<20 {
		t.Errorf("a 64 MiB table grew the heap by %d MiB", grew>>20)
	}
	if d.Stats().Bytes < 60<<20 {
		t.Errorf("table of %d bytes, want about 64 MiB", d.Stats().Bytes)
	}
	runtime.KeepAlive(d)
}
