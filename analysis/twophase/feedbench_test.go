package twophase

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/spoki-telescope/spoki/records"
)

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// feedBenchRate is BenchmarkFeedSYN's SYN rate.
const feedBenchRate = 100_000

// BenchmarkFeedSYN measures the feed's SYN path as the packet path calls
// it, at 100k SYN/s (SYN on the caller's goroutine, the detector draining on
// its own): caller-ns/SYN and allocs are the caller's cost; cpu-ns/SYN is the whole process's CPU
// per SYN, the detector's observing and its wake-ups included. The SYNs are
// a spoofed irregular flood (answered, random sources), as the attack bench
// sends, and regular SYNs (make bench's flood), which only look up; "none"
// is the loop and its pacing alone, to subtract.
func BenchmarkFeedSYN(b *testing.B) {
	for _, kind := range []string{"irregular", "regular", "none"} {
		b.Run(kind, func(b *testing.B) {
			f := NewFeed(Config{}, time.Minute, func(time.Time, []byte) {})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); f.Run(ctx) }()
			r := rand.New(rand.NewPCG(1, 2))
			p := records.Packet{Time: time.Now(), Dst: netip.MustParseAddr("198.51.100.7"), Proto: records.ProtoTCP,
				SrcPort: 40000, DstPort: 80, Flags: records.FlagSYN, TTL: 250, IPID: 54321, Probed: true, WScale: -1}
			if kind == "regular" {
				p.TTL, p.IPID, p.NumOptions, p.MSS = 64, 1, 1, 1460
				p.Options[0] = 2
			}
			b.ReportAllocs()
			cpu0, start := cpuTime(), time.Now()
			var caller time.Duration
			n := 0
			for b.Loop() {
				p.Src = randAddr(r)
				p.Time = p.Time.Add(10 * time.Microsecond)
				t := time.Now()
				if kind != "none" {
					f.SYN(&p)
				}
				caller += time.Since(t)
				// Paced at feedBenchRate, a batch per millisecond, so that the
				// detector idles and wakes as under a real flood.
				if n++; n%(feedBenchRate/1000) == 0 {
					time.Sleep(time.Until(start.Add(time.Duration(n) * time.Second / feedBenchRate)))
				}
			}
			b.StopTimer()
			cancel()
			<-done
			b.ReportMetric(float64(caller.Nanoseconds())/float64(b.N), "caller-ns/SYN")
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/SYN")
			b.ReportMetric(float64(f.Counters().DropSYNQueue.Load())/float64(b.N)*100, "%dropped")
		})
	}
}
