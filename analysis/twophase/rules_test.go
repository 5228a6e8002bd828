package twophase

import (
	"math"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

// bumpReference is the source tables' replacement rule written as a scan
// that keeps its victim (the rule as first written): bump must do the same.
func bumpReference(sb *sourceBucket, tag uint32, now int64, timeout int64) uint32 {
	now16 := uint16(now)
	victim := -1
	for i := range sb {
		s := &sb[i]
		stale := s.tag == 0 || age16(now16, s.last) >= timeout
		if s.tag == tag && !stale {
			if s.count < maxSourceCount {
				s.count++
			}
			s.last = now16
			return uint32(s.count)
		}
		switch {
		case stale:
			if victim < 0 || sb[victim].tag != 0 {
				victim = i
			}
		case victim < 0:
			victim = i
		case sb[victim].tag == 0 || age16(now16, sb[victim].last) >= timeout:
			// A free or stale victim stays the victim.
		case s.count < sb[victim].count || s.count == sb[victim].count && age16(now16, s.last) > age16(now16, sb[victim].last):
			victim = i
		}
	}
	sb[victim] = source{tag: tag, count: 1, last: now16}
	return 1
}

// TestBumpRule checks bump against bumpReference on random buckets: free,
// stale and live slots, repeated tags, counts and ages that tie, saturated
// counts, times in the future and across the wrap of 2^16 s.
func TestBumpRule(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	for n := range 300_000 {
		timeout := []int64{1, 2, 10, 600, maxSourceTimeout}[r.IntN(5)]
		now := int64(r.Uint32())
		var sb sourceBucket
		for i := range sb {
			s := &sb[i]
			if r.IntN(6) == 0 {
				continue // free
			}
			s.tag = 1 + r.Uint32N(12)
			s.count = []uint16{1, 1, 2, 3, uint16(r.Uint32()), maxSourceCount}[r.IntN(6)]
			// ages around the timeout, ties, and slightly in the future
			var age int64
			switch r.IntN(4) {
			case 0:
				age = int64(r.IntN(3))
			case 1:
				age = timeout - 1 + int64(r.IntN(3))
			case 2:
				age = -int64(r.IntN(3))
			default:
				age = int64(r.Uint32N(1 << 16))
			}
			s.last = uint16(now - age)
		}
		tag := 1 + r.Uint32N(14)
		want, got := sb, sb
		wc := bumpReference(&want, tag, now, timeout)
		gc := bump(&got, tag, now, timeout)
		if wc != gc || want != got {
			t.Fatalf("case %d: bucket %+v, tag %d, now %d, timeout %d:\nwant %d %+v\n got %d %+v", n, sb, tag, now, timeout, wc, want, gc, got)
		}
	}
}

// TestExpiryAt checks the expiry cut against expiredAt, around the cut,
// at random, and where the cut leaves Unix nanoseconds.
func TestExpiryAt(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 24))
	const sec = int64(time.Second)
	nanos := []int64{math.MinInt64, math.MinInt64 + 1, -sec - 1, -sec, -1, 0, 1, sec - 1, sec, math.MaxInt64 - 1, math.MaxInt64}
	check := func(nowSec, timeoutSec, n int64) {
		t.Helper()
		e := entry{nanos: n}
		if got, want := expiryAt(nowSec, timeoutSec).of(&e), e.expiredAt(nowSec, timeoutSec); got != want {
			t.Fatalf("now %d s, timeout %d s, phase one at %d ns: expired %v, want %v", nowSec, timeoutSec, n, got, want)
		}
	}
	for range 200_000 {
		nowSec := r.Int64N(4e9) - 1e9
		timeoutSec := []int64{0, 1, 600, r.Int64N(1e6), r.Int64N(2e10)}[r.IntN(5)]
		cut := (nowSec - timeoutSec + 1) * sec
		for _, n := range []int64{cut - 1, cut, cut + 1, cut - sec, r.Int64(), -r.Int64(), nowSec*sec + r.Int64N(2e12) - 1e12} {
			check(nowSec, timeoutSec, n)
		}
		for _, n := range nanos {
			check(nowSec, timeoutSec, n)
		}
	}
	// Where (now - timeout + 1) s does not fit in int64 nanoseconds.
	for _, x := range []int64{math.MinInt64/sec - 3, math.MinInt64/sec - 2, math.MinInt64/sec - 1, math.MinInt64 / sec, math.MaxInt64/sec - 1, math.MaxInt64 / sec, math.MaxInt64/sec + 1} {
		for _, timeoutSec := range []int64{0, 1, 600} {
			for _, n := range nanos {
				check(x+timeoutSec, timeoutSec, n)
			}
		}
	}
}

// TestHashSpread checks the table's keyed hashes: keys an attacker would
// send in order (sequential sources, one source's port sweep, sequential
// /24s) spread over the buckets of the entry, source and prefix tables
// as random ones would, and two tables (two keys) place a key apart.
func TestHashSpread(t *testing.T) {
	tb, free := newTable(1 << 20)
	defer free()
	other, freeOther := newTable(1 << 20)
	defer freeOther()
	dst := netip.MustParseAddr("198.51.100.7")
	const n = 1 << 20
	spread := func(name string, buckets int, bucketOf func(i int) int) {
		t.Helper()
		load := make([]int, buckets)
		for i := range n {
			load[bucketOf(i)]++
		}
		// A bucket's load is binomial: mean n/buckets, sd about its root.
		mean := float64(n) / float64(buckets)
		limit := mean + 7*math.Sqrt(mean)
		for b, l := range load {
			if float64(l) > limit || float64(l) < mean-7*math.Sqrt(mean) {
				t.Errorf("%s: bucket %d of %d holds %d keys, mean %.0f", name, b, buckets, l, mean)
				return
			}
		}
	}
	v4 := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}) }
	spread("sequential sources", len(tb.buckets), func(i int) int { _, _, b := tb.hashes(v4(i), dst, 80); return b })
	spread("one source's ports and addresses", len(tb.buckets), func(i int) int {
		_, _, b := tb.hashes(dst, netip.AddrFrom4([4]byte{192, 0, 2, byte(i >> 16)}), uint16(i))
		return b
	})
	spread("sequential sources' source slots", len(tb.sources), func(i int) int {
		s, _, _ := tb.hashes(v4(i), dst, 80)
		return slotOf(s, len(tb.sources))
	})
	spread("sequential /24s' prefix slots", len(tb.prefixes), func(i int) int {
		return slotOf(tb.prefixTag(netip.AddrFrom4([4]byte{byte(i >> 16), byte(i >> 8), byte(i), 1})), len(tb.prefixes))
	})
	spread("sequential /48s' prefix slots", len(tb.prefixes), func(i int) int {
		return slotOf(tb.prefixTag(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, byte(i >> 16), byte(i >> 8), byte(i), 1})), len(tb.prefixes))
	})
	same := 0
	for i := range 1000 {
		_, _, a := tb.hashes(v4(i), dst, 80)
		_, _, b := other.hashes(v4(i), dst, 80)
		if a == b {
			same++
		}
	}
	if same > 20 {
		t.Errorf("two tables put %d of 1000 keys in the same bucket", same)
	}
}
