package twophase

import (
	"math"
	"math/rand/v2"
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
