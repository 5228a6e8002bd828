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
			b.ReportMetric(float64(f.q.coldUses), "cold-uses")
		})
	}
}

// BenchmarkFeedStopped measures how long the detector's goroutine may be
// stopped before the SYN queue drops: it queues answered irregular IPv4 and
// IPv6 SYNs from random sources with nothing draining until the first drop,
// prints the stop that many SYNs last at 50k and 100k SYN/s, and how long
// the detector then takes to catch up (observe the whole backlog).
func BenchmarkFeedStopped(b *testing.B) {
	for b.Loop() {
		for _, v6 := range []bool{false, true} {
			f := NewFeed(Config{}, time.Minute, func(time.Time, []byte) {})
			r := rand.New(rand.NewPCG(5, 6))
			p := records.Packet{Time: time.Now(), Dst: netip.MustParseAddr("198.51.100.7"), Proto: records.ProtoTCP,
				SrcPort: 40000, DstPort: 80, Flags: records.FlagSYN, TTL: 250, IPID: 54321, Probed: true, WScale: -1}
			if v6 {
				p.Dst = netip.MustParseAddr("2001:db8::7")
			}
			held := 0
			for f.Counters().DropSYNQueue.Load() == 0 {
				p.Src = randAddr(r)
				if v6 {
					a := p.Src.As4()
					p.Src = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 1, 2, 3, 4, 5, 6, 7, 8, a[0], a[1], a[2], a[3]})
				}
				p.Time = p.Time.Add(10 * time.Microsecond)
				f.SYN(&p)
				held++
			}
			held--
			start := time.Now()
			n := f.drainSYNs()
			el := time.Since(start)
			b.Logf("v6=%v: %d SYNs held (%d slots of %d B, %.1f MiB): a stop of %.2f s at 50k SYN/s, %.2f s at 100k; catching up took %v (%.0f ns per SYN, %d observed)",
				v6, held, FeedQueue, SlotBytes, float64(FeedQueue*SlotBytes)/(1<<20), float64(held)/50e3, float64(held)/100e3,
				el.Round(time.Millisecond), float64(el.Nanoseconds())/float64(n), n)
		}
	}
}
