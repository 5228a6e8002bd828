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
// the free pages stay below the threshold (with --gc-percent 50 they are at
// most half the live heap), so this costs nothing then; after a spike it
// costs one collection.
const (
	releaseEvery = 5 * time.Second
	releaseAbove = 8 << 20
)

// releaseFreeHeap returns free heap pages to the system whenever they pass
// above bytes, checked every interval, until ctx ends. It reports how many
// times it did through released.
func releaseFreeHeap(ctx context.Context, every time.Duration, above uint64, released func()) {
	t := time.NewTicker(every)
	defer t.Stop()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/free:bytes"}}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 || sample[0].Value.Uint64() < above {
			continue
		}
		debug.FreeOSMemory()
		if released != nil {
			released()
		}
	}
}
