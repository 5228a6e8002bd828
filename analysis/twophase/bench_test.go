package twophase

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// BenchmarkObserve measures one irregular SYN into a full default table
// (each one evicts) and one regular SYN that finds its phase one.
func BenchmarkObserve(b *testing.B) {
	d := New(Config{})
	r := rand.New(rand.NewPCG(1, 2))
	dst := netip.MustParseAddr("198.51.100.7")
	p := isyn(t0, randAddr(r), dst, 80)
	for range d.Stats().Capacity + d.Stats().Capacity/2 {
		p.Src, p.Time = randAddr(r), p.Time.Add(10*time.Microsecond)
		d.Observe(&p)
	}
	b.Run("phase_one", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p.Src, p.Time = randAddr(r), p.Time.Add(10*time.Microsecond)
			d.Observe(&p)
		}
	})
	b.Run("phase_two", func(b *testing.B) {
		b.ReportAllocs()
		q := rsyn(p.Time, p.Src, dst, 80)
		for b.Loop() {
			// Rebuild the phase one each time, outside what is measured
			// only in part: the pair is found once per iteration.
			d.Observe(&p)
			q.Time = p.Time
			if _, ok := d.Observe(&q); !ok {
				b.Fatal("no pair")
			}
		}
	})
}

// BenchmarkFloodSurvival simulates, in packet time, 100k irregular SYN/s
// from random spoofed sources against the default 32 MiB table for 800 s,
// with a scanner sweeping a /24 at 10 SYN/s and a slow one at 2 SYN/s
// (both from 60 s), and prints how long entries survive. A survival within a
// second of the timeout means the whole window was kept.
func BenchmarkFloodSurvival(b *testing.B) {
	for b.Loop() {
		d := New(Config{})
		fast := &floodScanner{src: netip.MustParseAddr("203.0.113.50"), net: [3]byte{192, 0, 2}, interval: 100 * time.Millisecond, start: 60 * time.Second}
		slow := &floodScanner{src: netip.MustParseAddr("203.0.113.51"), net: [3]byte{198, 51, 100}, interval: 500 * time.Millisecond, start: 60 * time.Second}
		const rate, length = 100_000, 800 * time.Second
		start := time.Now()
		res := simulateFlood(d, rate, length, []*floodScanner{fast, slow})
		el := time.Since(start)
		s := res.stats
		b.Logf("table: %d entries, %d bytes (%.1f B/entry with the source table); flood %d SYN/s for %v: %.0f ns per SYN simulated",
			s.Capacity, s.Bytes, float64(s.Bytes)/float64(s.Capacity), rate, length, float64(el.Nanoseconds())/float64(rate*int(length/time.Second)))
		b.Logf("stats: evicted one-off %d, repeat %d, rejected %d, expired %d; window one-off %v, repeat %v",
			s.EvictedOneOff, s.EvictedRepeat, s.Rejected, s.Expired, s.WindowOneOff.Round(10*time.Millisecond), s.WindowRepeat)
		// The flood's entries made before it filled the table survive
		// longer; take those made once it is full.
		b.Logf("one-off entries (flood, sampled): %s", summary(res.oneOff[len(res.oneOff)/10:], d.cfg.Timeout))
		b.Logf("scanner /24 at 10 SYN/s:          %s", summary(fast.survival, d.cfg.Timeout))
		b.Logf("scanner /24 at 2 SYN/s:           %s", summary(slow.survival, d.cfg.Timeout))
		b.ReportMetric(median(res.oneOff[len(res.oneOff)/10:]).Seconds(), "oneoff_p50_s")
		b.ReportMetric(median(fast.survival).Seconds(), "scanner_p50_s")
	}
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func summary(d []time.Duration, timeout time.Duration) string {
	s := slices.Clone(d)
	slices.Sort(s)
	full := 0
	for _, x := range s {
		// Expiry is on whole seconds, as assemble's window: an entry made
		// at 60.4 s is gone at 660 s, after 599.6 s.
		if x >= timeout-time.Second {
			full++
		}
	}
	q := func(f float64) time.Duration {
		return s[min(len(s)-1, int(f*float64(len(s))))].Round(100 * time.Millisecond)
	}
	return fmt.Sprintf("n=%d min %v p10 %v p50 %v p90 %v max %v; whole window kept: %d", len(s), q(0), q(.1), q(.5), q(.9), q(1), full)
}

// BenchmarkExpire measures the sweep of a full default table that the live
// feed runs every 10 s.
func BenchmarkExpire(b *testing.B) {
	d := New(Config{})
	r := rand.New(rand.NewPCG(1, 2))
	p := isyn(t0, randAddr(r), netip.MustParseAddr("198.51.100.7"), 80)
	for range d.Stats().Capacity {
		p.Src = randAddr(r)
		d.Observe(&p)
	}
	b.ReportAllocs()
	for b.Loop() {
		d.Expire(p.Time.Add(time.Second))
	}
}
