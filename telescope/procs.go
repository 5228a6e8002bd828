package telescope

import (
	"os"
	"runtime"
	"strconv"
)

// ExtraProcs is how many Ps (goroutines running Go code at once) `spoki
// run` adds to Go's default of one per CPU it may use. Beside the TUN
// readers, one per queue, the record writer and the two-phase detector
// each run on a goroutine of their own; with one P per CPU, a reader
// made runnable under a flood waited while they held the Ps, and the TUN
// queue overflowed meanwhile. With two Ps more the kernel's scheduler
// shares the CPUs among their threads instead, at a finer grain: under a
// maximum flood on 2 CPUs, 1.10× the SYN-ACK/s with irregular SYNs and
// 1.02× with regular ones (medians over rounds, docs/benchmarks.md), for
// 0.2-0.3 µs more user time per SYN-ACK (idle Ps' threads look for work
// before they sleep).
const ExtraProcs = 2

// setProcs sets GOMAXPROCS to Go's default plus ExtraProcs, unless the
// GOMAXPROCS environment variable is set: it is Go's own knob, and an
// operator who set it meant it. It returns the value that holds and where
// it came from, for the ready line. Setting it ends Go's tracking of a
// cgroup CPU limit that changes while spoki runs; the limit at start
// still counts, as the default it adds to.
func setProcs() (procs int, source string) {
	if env := os.Getenv("GOMAXPROCS"); env != "" {
		return runtime.GOMAXPROCS(0), "GOMAXPROCS=" + env
	}
	n := runtime.GOMAXPROCS(0) + ExtraProcs
	runtime.GOMAXPROCS(n)
	return n, "default+" + strconv.Itoa(ExtraProcs)
}
