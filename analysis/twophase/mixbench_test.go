package twophase

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spoki-telescope/spoki/records"
)

// mixSource makes the SYNs of a realistic flood mix: per 100, 90 answered
// irregular IPv4 SYNs from random spoofed sources, 5 answered irregular
// IPv6 ones from random sources, 4 from four scanners each sweeping a /16
// (answered irregular, IPv4), and one regular SYN (a phase two's lookup,
// of a random source, as a regular scan's).
type mixSource struct {
	r   *rand.Rand
	n   int
	now time.Time
}

func newMixSource(seed uint64) *mixSource {
	return &mixSource{r: rand.New(rand.NewPCG(seed, seed+1)), now: time.Now()}
}

// next fills p with the next SYN of the mix, 10 µs after the previous.
func (m *mixSource) next(p *records.Packet) {
	m.now = m.now.Add(10 * time.Microsecond)
	i := m.n % 100
	m.n++
	*p = records.Packet{Time: m.now, Proto: records.ProtoTCP, SrcPort: uint16(m.r.Uint32()), DstPort: 23,
		Flags: records.FlagSYN, TTL: 250, IPID: 54321, Seq: m.r.Uint32(), Probed: true, WScale: -1}
	dst := [4]byte{198, 51, 100, byte(m.r.Uint32())}
	p.Dst = netip.AddrFrom4(dst)
	switch {
	case i < 90:
		p.Src = randAddr(m.r)
	case i < 95:
		var s, d [16]byte
		s[0], s[1], d[0], d[1], d[2], d[3] = 0x20, 0x01, 0x20, 0x01, 0x0d, 0xb8
		for j := 2; j < 16; j++ {
			s[j] = byte(m.r.Uint32())
		}
		d[15] = dst[3]
		p.Src, p.Dst = netip.AddrFrom16(s), netip.AddrFrom16(d)
	case i < 99:
		k := m.n / 100
		p.Src = netip.AddrFrom4([4]byte{203, 0, 113, byte(10 + i - 95)})
		p.Dst = netip.AddrFrom4([4]byte{192, 0, byte(k >> 8), byte(k)})
	default:
		p.Src = randAddr(m.r)
		p.TTL, p.IPID, p.NumOptions, p.MSS = 64, 1, 1, 1460
		p.Options[0] = 2
	}
}

// fillDetector observes mix SYNs until d's table is full and turned over
// (steady state under a flood: every phase one evicts).
func fillDetector(d *Detector, m *mixSource) {
	var p records.Packet
	for range d.Stats().Capacity + d.Stats().Capacity/2 {
		m.next(&p)
		d.Observe(&p)
	}
}

// BenchmarkObserveMix measures Detector.Observe of the mix's SYNs into a
// full default table.
func BenchmarkObserveMix(b *testing.B) {
	d := New(Config{})
	m := newMixSource(11)
	fillDetector(d, m)
	var p records.Packet
	b.ReportAllocs()
	for b.Loop() {
		m.next(&p)
		d.Observe(&p)
	}
}

// BenchmarkFeedDrain measures the detector's goroutine alone: it queues
// a hot ring's worth of the mix's SYNs (FeedQueueHot slots) with nothing
// draining, then times the drain of the queue into a full default table:
// ns/SYN is wall time per SYN observed, cpu-ns/SYN the thread's CPU time
// (not what other processes took of the CPU meanwhile).
func BenchmarkFeedDrain(b *testing.B) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	f := NewFeed(Config{}, time.Minute, func(time.Time, []byte) {})
	m := newMixSource(12)
	fillDetector(f.det, m)
	var p records.Packet
	var el, cpu time.Duration
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		for f.q.len() < FeedQueueHot-2 {
			m.next(&p)
			f.SYN(&p)
		}
		b.StartTimer()
		t, c := time.Now(), threadCPU()
		n += f.drainSYNs()
		cpu += threadCPU() - c
		el += time.Since(t)
	}
	b.ReportMetric(float64(el.Nanoseconds())/float64(n), "ns/SYN")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "cpu-ns/SYN")
}

// threadCPU is the calling thread's CPU time.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// BenchmarkFeedMix is BenchmarkFeedSYN with the mix's SYNs, into a full
// default table: caller-ns/SYN is the caller's cost, cpu-ns/SYN the whole
// process's (subtract BenchmarkFeedSYN/none's for the loop and pacing).
func BenchmarkFeedMix(b *testing.B) {
	f := NewFeed(Config{}, time.Minute, func(time.Time, []byte) {})
	m := newMixSource(13)
	fillDetector(f.det, m)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.Run(ctx) }()
	var p records.Packet
	b.ReportAllocs()
	cpu0, start := cpuTime(), time.Now()
	var caller time.Duration
	n := 0
	for b.Loop() {
		m.next(&p)
		t := time.Now()
		f.SYN(&p)
		caller += time.Since(t)
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
}
