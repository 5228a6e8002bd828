package telescope

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Returning an attack's heap to the system. Go's background scavenger
// gives back free heap pages at about one percent of a CPU, so after a
// burst of connections (a port sweep, a slowloris wave) the process keeps
// tens of MiB it no longer uses for minutes: memory an attacker decided,
// and that the unit's MemoryHigh would then throttle. Checking a few times
// a minute and handing back the free pages at once when they pass a
// threshold keeps spoki's RSS where its live data is. Under a steady load
// the free pages stay below the threshold (with --gc-percent 25 they are at
// most a quarter of the live heap), so this costs nothing then; after a
// spike it costs one collection.
//
// Free pages are only half of it: when a burst stops, so does allocation,
// and with it the collector. The burst's garbage then stays in the heap as
// in-use spans, not free pages, until something allocates again: up to
// --gc-percent of the live heap, for as long as the telescope is quiet.
// So when no collection ran and next to nothing was allocated since the
// last check, the releaser also collects when the heap holds releaseIdle
// more than the last collection found live. A quiet heap is one the
// collector would not visit soon anyway, and under load (collections
// running) this rule never fires.
const (
	releaseEvery = 3 * time.Second
	releaseAbove = 8 << 20
	// releaseIdle is the garbage, free and unused heap beyond what is live
	// that a quiet heap may hold before it is collected and handed back.
	releaseIdle = 4 << 20
	// releaseQuietAlloc is what the heap may allocate between two checks
	// and still count as quiet (the stats line, a few connections).
	releaseQuietAlloc = 1 << 20
)

// releaseFreeHeap returns free heap pages to the system whenever they pass
// above bytes, or the quiet heap's excess over its live data passes
// releaseIdle, checked every interval, until ctx ends. It reports how many
// times it did through released.
func releaseFreeHeap(ctx context.Context, every time.Duration, above uint64, released func()) {
	releaseHeap(ctx, every, releaseLimits{free: above, idle: releaseIdle, quietAlloc: releaseQuietAlloc}, released)
}

// releaseLimits are the thresholds of releaseHeap.
type releaseLimits struct {
	// free: free heap pages not yet returned.
	free uint64
	// idle: a quiet heap's bytes beyond the last collection's live heap
	// (garbage, unused span space and free pages).
	idle uint64
	// quietAlloc: bytes allocated between two checks with no collection
	// in between for the heap to count as quiet.
	quietAlloc uint64
}

// heapSample is what releaseHeap reads of the runtime at one check.
type heapSample struct {
	free    uint64 // /memory/classes/heap/free:bytes
	objects uint64 // /memory/classes/heap/objects:bytes: live and garbage
	unused  uint64 // /memory/classes/heap/unused:bytes
	live    uint64 // /gc/heap/live:bytes, as of the last collection
	allocs  uint64 // /gc/heap/allocs:bytes, cumulative
	cycles  uint64 // /gc/cycles/total:gc-cycles
	ok      bool   // every metric was read
}

var heapMetrics = [...]string{
	"/memory/classes/heap/free:bytes",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes",
	"/gc/heap/live:bytes",
	"/gc/heap/allocs:bytes",
	"/gc/cycles/total:gc-cycles",
}

// readHeap fills a heapSample; s is scratch of len(heapMetrics).
func readHeap(s []metrics.Sample) heapSample {
	metrics.Read(s)
	var v [len(heapMetrics)]uint64
	for i := range s {
		if s[i].Value.Kind() != metrics.KindUint64 {
			return heapSample{}
		}
		v[i] = s[i].Value.Uint64()
	}
	return heapSample{free: v[0], objects: v[1], unused: v[2], live: v[3], allocs: v[4], cycles: v[5], ok: true}
}

// shouldRelease decides from the previous check and this one: free pages
// past lim.free, or a quiet heap (no collection and at most lim.quietAlloc
// allocated since prev) whose excess over the live heap passes lim.idle.
func shouldRelease(prev, cur heapSample, lim releaseLimits) bool {
	if !cur.ok {
		return false
	}
	if cur.free >= lim.free {
		return true
	}
	quiet := prev.ok && cur.cycles == prev.cycles && cur.allocs-prev.allocs <= lim.quietAlloc
	if !quiet {
		return false
	}
	held := cur.objects + cur.unused + cur.free
	return held > cur.live && held-cur.live >= lim.idle
}

// releaseHeap is releaseFreeHeap with every threshold given.
func releaseHeap(ctx context.Context, every time.Duration, lim releaseLimits, released func()) {
	t := time.NewTicker(every)
	defer t.Stop()
	s := make([]metrics.Sample, len(heapMetrics))
	for i, name := range heapMetrics {
		s[i].Name = name
	}
	prev := readHeap(s)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur := readHeap(s)
		if !shouldRelease(prev, cur, lim) {
			prev = cur
			continue
		}
		debug.FreeOSMemory()
		if released != nil {
			released()
		}
		// The collection just run is not the application's: read again,
		// so that the next check compares with the heap it left.
		prev = readHeap(s)
	}
}
