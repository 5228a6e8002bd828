package twophase

import (
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"
	"time"
	"unsafe"

	"github.com/spoki-telescope/spoki/records"
)

// isyn returns an answered ZMap-like irregular SYN (IP ID 54321, TTL 250,
// no options), regular a regular one (MSS option, TTL 64).
func isyn(at time.Time, src, dst netip.Addr, dport uint16) records.Packet {
	return records.Packet{Time: at, Src: src, Dst: dst, Proto: records.ProtoTCP, SrcPort: 40000, DstPort: dport,
		Flags: records.FlagSYN, TTL: 250, IPID: 54321, Seq: 7, Probed: true, WScale: -1}
}

func rsyn(at time.Time, src, dst netip.Addr, dport uint16) records.Packet {
	p := records.Packet{Time: at, Src: src, Dst: dst, Proto: records.ProtoTCP, SrcPort: 50000, DstPort: dport,
		Flags: records.FlagSYN, TTL: 64, Seq: 9, Probed: true, WScale: -1, NumOptions: 1, MSS: 1460}
	p.Options[0] = 2
	return p
}

// peek reports whether a live phase one for the key is held at now,
// without changing the table.
func (d *Detector) peek(src, dst netip.Addr, dport uint16, now time.Time) bool {
	stag, flow, bi := d.t.hashes(src, dst, dport)
	for _, e := range d.t.buckets[bi] {
		if e.used() && e.src == stag && e.flow == flow && !e.expiredAt(now.Unix(), d.timeoutSec) {
			return true
		}
	}
	return false
}

func randAddr(r *rand.Rand) netip.Addr {
	var a [4]byte
	for i := range a {
		a[i] = byte(r.Uint32())
	}
	return netip.AddrFrom4(a)
}

// TestEntryLayout checks the slot sizes the budget is computed with and
// that the table holds no pointer (the GC never scans it).
func TestEntryLayout(t *testing.T) {
	if s := unsafe.Sizeof(entry{}); s != EntryBytes {
		t.Errorf("entry is %d bytes, want %d", s, EntryBytes)
	}
	if s := unsafe.Sizeof(source{}); s != SourceBytes {
		t.Errorf("source is %d bytes, want %d", s, SourceBytes)
	}
	for _, typ := range []reflect.Type{reflect.TypeFor[entry](), reflect.TypeFor[source]()} {
		for i := range typ.NumField() {
			switch typ.Field(i).Type.Kind() {
			case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Int64:
			default:
				t.Errorf("%s.%s is a %s", typ, typ.Field(i).Name, typ.Field(i).Type)
			}
		}
	}
}

// TestMemoryBudget checks that the table fits its budget and uses most of
// it, and that Capacity predicts what New allocates.
func TestMemoryBudget(t *testing.T) {
	for _, budget := range []int64{1, MinMemory, MinMemory + 1, 1 << 20, 32 << 20, 100_000_007} {
		d := New(Config{Memory: budget})
		s := d.Stats()
		want := max(budget, MinMemory)
		real := int64(len(d.t.buckets))*int64(unsafe.Sizeof(bucket{})) + int64(len(d.t.sources)+len(d.t.prefixes))*int64(unsafe.Sizeof(sourceBucket{}))
		if s.Bytes != real || s.Bytes > want || int64(s.Capacity)*EntryBytes > want {
			t.Errorf("budget %d: %d entries, %d bytes (allocated %d)", budget, s.Capacity, s.Bytes, real)
		}
		// Less than a bucket is left, and less than a source bucket by
		// each of the source and prefix tables' rounding.
		if s.Bytes < want-bytesPerBucket-2*bucketWays*SourceBytes {
			t.Errorf("budget %d: only %d bytes used", budget, s.Bytes)
		}
		if n, b := Capacity(budget); n != s.Capacity || b != s.Bytes {
			t.Errorf("Capacity(%d) = %d, %d; New made %d, %d", budget, n, b, s.Capacity, s.Bytes)
		}
		if s.WindowOneOff != DefaultTimeout || s.WindowRepeat != DefaultTimeout {
			t.Errorf("fresh windows %v %v", s.WindowOneOff, s.WindowRepeat)
		}
	}
}

// TestNoAllocs checks that neither phase one (into a full table, with
// evictions) nor phase two allocates.
func TestNoAllocs(t *testing.T) {
	d := New(Config{Memory: MinMemory})
	r := rand.New(rand.NewPCG(1, 2))
	dst := netip.MustParseAddr("198.51.100.7")
	now := t0
	p := isyn(now, randAddr(r), dst, 80)
	for range 4 * d.Stats().Capacity {
		p.Src, p.Time = randAddr(r), p.Time.Add(time.Millisecond)
		d.Observe(&p)
	}
	if allocs := testing.AllocsPerRun(10000, func() {
		p.Src, p.Time = randAddr(r), p.Time.Add(time.Millisecond)
		d.Observe(&p)
	}); allocs != 0 {
		t.Errorf("phase one: %v allocs per SYN", allocs)
	}
	if d.Stats().EvictedOneOff == 0 {
		t.Error("the table never filled")
	}
	pairs := 0
	if allocs := testing.AllocsPerRun(1000, func() {
		p.Src, p.Time = randAddr(r), p.Time.Add(time.Millisecond)
		d.Observe(&p)
		q := rsyn(p.Time, p.Src, dst, 80)
		if _, ok := d.Observe(&q); ok {
			pairs++
		}
	}); allocs != 0 {
		t.Errorf("phase two: %v allocs per SYN", allocs)
	}
	if pairs == 0 {
		t.Error("no pairs")
	}
}

// sameBucket returns n keys (source, port) of one source-or-not that hash
// to bucket bi, from gen.
func sameBucket(d *Detector, bi, n int, dst netip.Addr, gen func(i int) (netip.Addr, uint16)) (srcs []netip.Addr, ports []uint16) {
	for i := 0; len(srcs) < n; i++ {
		src, port := gen(i)
		if _, _, b := d.t.hashes(src, dst, port); b == bi {
			srcs, ports = append(srcs, src), append(ports, port)
		}
	}
	return srcs, ports
}

// TestEvictionPolicy checks the replacement rule inside one bucket: slots
// past the timeout go first, then the oldest one-off entry; a one-off never
// replaces the entry of a repeat source.
func TestEvictionPolicy(t *testing.T) {
	dst := netip.MustParseAddr("198.51.100.1")
	scanner := netip.MustParseAddr("203.0.113.9")
	r := rand.New(rand.NewPCG(3, 4))
	oneOff := func(int) (netip.Addr, uint16) { return randAddr(r), 80 }
	fromScanner := func(i int) (netip.Addr, uint16) { return scanner, uint16(i + 1) }

	t.Run("oldest one-off goes first", func(t *testing.T) {
		d := New(Config{Memory: MinMemory})
		srcs, ports := sameBucket(d, 5, bucketWays+1, dst, oneOff)
		for i := range srcs {
			p := isyn(t0.Add(time.Duration(i)*time.Second), srcs[i], dst, ports[i])
			d.Observe(&p)
		}
		now := t0.Add(bucketWays * time.Second)
		if d.peek(srcs[0], dst, ports[0], now) || !d.peek(srcs[1], dst, ports[1], now) || !d.peek(srcs[bucketWays], dst, ports[bucketWays], now) {
			t.Error("the oldest entry was not the one replaced")
		}
		if s := d.Stats(); s.EvictedOneOff != 1 || s.EvictedRepeat != 0 || s.Entries != bucketWays {
			t.Errorf("stats %+v", s)
		}
	})
	t.Run("one-offs do not replace a scanner's sweep", func(t *testing.T) {
		d := New(Config{Memory: MinMemory})
		srcs, ports := sameBucket(d, 9, bucketWays, dst, fromScanner)
		// A few SYNs elsewhere first: the scanner's run has begun.
		other := netip.MustParseAddr("198.51.100.200")
		for port, n := uint16(60000), 0; n < 4; port++ {
			if _, _, b := d.t.hashes(scanner, other, port); b != 9 {
				p := isyn(t0, scanner, other, port)
				d.Observe(&p)
				n++
			}
		}
		for i := range srcs {
			p := isyn(t0.Add(time.Second), srcs[i], dst, ports[i])
			d.Observe(&p)
		}
		osrcs, oports := sameBucket(d, 9, 20, dst, oneOff)
		for i := range osrcs {
			p := isyn(t0.Add(2*time.Second), osrcs[i], dst, oports[i])
			d.Observe(&p)
		}
		for i := range srcs {
			if !d.peek(srcs[i], dst, ports[i], t0.Add(3*time.Second)) {
				t.Errorf("scanner entry %d lost", i)
			}
		}
		if s := d.Stats(); s.Rejected != 20 || s.EvictedRepeat != 0 {
			t.Errorf("stats %+v", s)
		}
		// Once the sweep's window closed, its slots are free again (all
		// of the bucket's expire as the bucket is scanned).
		p := isyn(t0.Add(DefaultTimeout+time.Second), osrcs[0], dst, oports[0])
		d.Observe(&p)
		if s := d.Stats(); s.Expired != bucketWays || !d.peek(osrcs[0], dst, oports[0], p.Time) {
			t.Errorf("after the timeout: %+v", s)
		}
	})
	t.Run("same key replaces", func(t *testing.T) {
		d := New(Config{Memory: MinMemory})
		p := isyn(t0, scanner, dst, 80)
		d.Observe(&p)
		p.Time, p.SrcPort = t0.Add(time.Second), 41000
		d.Observe(&p)
		q := rsyn(t0.Add(2*time.Second), scanner, dst, 80)
		pair, ok := d.Observe(&q)
		if s := d.Stats(); !ok || pair.One.SrcPort != 41000 || s.Replaced != 1 || s.Entries != 0 {
			t.Errorf("pair %+v ok %v stats %+v", pair, ok, s)
		}
	})
}

// TestSourceClass checks the source weights: the class grows with the
// SYNs of a run, falls back to one-off over the quota and after a silence of
// the timeout, and a source with a run survives a flood of one-off sources
// in its source bucket.
func TestSourceClass(t *testing.T) {
	tb, free := newTable(MinMemory)
	defer free()
	const timeout = 600
	var got []uint8
	for i := range 8 {
		got = append(got, tb.sourceClass(42, int64(1000+i), timeout))
	}
	if want := []uint8{1, 2, 2, 3, 3, 3, 3, 4}; !reflect.DeepEqual(got, want) {
		t.Errorf("classes %v, want %v", got, want)
	}
	if c := tb.sourceClass(42, 1000+8+timeout, timeout); c != 1 {
		t.Errorf("after a silence: class %d", c)
	}
	if classOf(tb.quota, tb.quota) < 2 || classOf(tb.quota+1, tb.quota) != 1 {
		t.Errorf("quota %d not applied", tb.quota)
	}
	// In a table large enough that 1/64 of it is more than the count can
	// hold, a source's count saturates first: the quota must still apply.
	big, freeBig := newTable(160 << 20)
	defer freeBig()
	var c uint8
	for i := range 70_000 {
		c = big.sourceClass(42, int64(1000+i/1000), timeout)
	}
	if c != 1 {
		t.Errorf("a source's 70000th SYN in a %d-entry table: class %d, want 1 (over its quota %d)", len(big.buckets)*bucketWays, c, big.quota)
	}
	tb.sourceClass(7, 2000, timeout)
	tb.sourceClass(7, 2000, timeout)
	r := rand.New(rand.NewPCG(5, 6))
	for range 100 * len(tb.sources) * bucketWays {
		tb.sourceClass(r.Uint32()|1, 2001, timeout)
	}
	if c := tb.sourceClass(7, 2002, timeout); c != 2 {
		t.Errorf("repeat source after a flood: class %d, want 2 (count 3)", c)
	}
}

// flood simulates, in packet time, a spoofed irregular flood of rate SYN/s
// from random sources to random addresses of 198.51.100.0/24 ports, and
// scanners that each sweep a /24 (one irregular SYN every interval), and
// measures how long entries survive: a sample of the flood's, and every
// scanner's. Survival is measured once per simulated second and is at
// most the timeout.
type floodScanner struct {
	src      netip.Addr
	net      [3]byte
	interval time.Duration
	start    time.Duration
	// filled in: survival of each of the 256 entries
	survival []time.Duration
}

type floodResult struct {
	oneOff []time.Duration
	stats  Stats
}

func simulateFlood(d *Detector, rate int, length time.Duration, scanners []*floodScanner) floodResult {
	r := rand.New(rand.NewPCG(7, 8))
	type tracked struct {
		src, dst netip.Addr
		port     uint16
		at       time.Time
		out      *time.Duration
	}
	var live []tracked
	var res floodResult
	oneOffs := make([]time.Duration, 0, int(length/time.Second)*rate/1000+1)
	step := time.Second / time.Duration(rate)
	for _, sc := range scanners {
		sc.survival = make([]time.Duration, 256)
	}
	next := make([]time.Duration, len(scanners))
	sent := make([]int, len(scanners))
	for i, sc := range scanners {
		next[i] = sc.start
	}
	var p records.Packet
	for sec := time.Duration(0); sec < length; sec += time.Second {
		for i := range rate {
			at := sec + time.Duration(i)*step
			p = isyn(t0.Add(at), randAddr(r), netip.AddrFrom4([4]byte{198, 51, 100, byte(r.Uint32())}), uint16(r.Uint32()))
			d.Observe(&p)
			if i%1000 == 0 {
				oneOffs = append(oneOffs, 0)
				live = append(live, tracked{p.Src, p.Dst, p.DstPort, p.Time, &oneOffs[len(oneOffs)-1]})
			}
			for j, sc := range scanners {
				if sent[j] < 256 && next[j] <= at {
					dst := netip.AddrFrom4([4]byte{sc.net[0], sc.net[1], sc.net[2], byte(sent[j])})
					p = isyn(t0.Add(at), sc.src, dst, 443)
					d.Observe(&p)
					live = append(live, tracked{sc.src, dst, 443, p.Time, &sc.survival[sent[j]]})
					sent[j]++
					next[j] += sc.interval
				}
			}
		}
		now := t0.Add(sec + time.Second)
		kept := live[:0]
		for _, e := range live {
			age := now.Sub(e.at)
			if age < d.cfg.Timeout && d.peek(e.src, e.dst, e.port, now) {
				kept = append(kept, e)
				continue
			}
			*e.out = min(age, d.cfg.Timeout)
		}
		live = kept
		if sec%(10*time.Second) == 0 {
			d.Expire(now)
		}
	}
	for _, e := range live {
		*e.out = min(t0.Add(length).Sub(e.at), d.cfg.Timeout)
	}
	res.oneOff = oneOffs
	res.stats = d.Stats()
	return res
}

// TestFloodKeepsScannerSweep checks the point of the policy on a small
// table: a flood that replaces the whole table every few seconds does not
// remove a scanner's /24 sweep, whose second phase is then found for
// every address but the sweep's first (made before the source had a run).
func TestFloodKeepsScannerSweep(t *testing.T) {
	d := New(Config{Memory: 1 << 20})
	capacity := d.Stats().Capacity
	rate := capacity / 3 // the flood alone turns the table over every 3 s
	sc := &floodScanner{src: netip.MustParseAddr("203.0.113.50"), net: [3]byte{192, 0, 2}, interval: 100 * time.Millisecond, start: 20 * time.Second}
	res := simulateFlood(d, rate, 90*time.Second, []*floodScanner{sc})
	if res.stats.EvictedOneOff < uint64(capacity) || res.stats.EvictedRepeat != 0 {
		t.Errorf("stats %+v", res.stats)
	}
	pairs := 0
	now := t0.Add(90 * time.Second)
	for i := range 256 {
		q := rsyn(now, sc.src, netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), 443)
		if _, ok := d.Observe(&q); ok {
			pairs++
		}
	}
	if pairs < 255 {
		t.Errorf("phase two found for %d of the sweep's 256 addresses", pairs)
	}
	long := 0
	for _, s := range res.oneOff {
		if s > 30*time.Second {
			long++
		}
	}
	if long > len(res.oneOff)/100 {
		t.Errorf("%d of %d flood entries outlived 30 s: the flood did not fill the table", long, len(res.oneOff))
	}
}

// TestPrefixTag checks the prefix key: one /24 (IPv4, mapped or not) or
// /48 (IPv6) is one tag, another prefix another.
func TestPrefixTag(t *testing.T) {
	tb, free := newTable(MinMemory)
	defer free()
	tag := func(s string) uint32 { return tb.prefixTag(netip.MustParseAddr(s)) }
	if tag("203.0.113.1") != tag("203.0.113.254") || tag("203.0.113.1") != tag("::ffff:203.0.113.9") {
		t.Error("one /24, several tags")
	}
	if tag("2001:db8:1::1") != tag("2001:db8:1:ffff::2") {
		t.Error("one /48, several tags")
	}
	if tag("203.0.113.1") == tag("203.0.112.1") || tag("2001:db8:1::1") == tag("2001:db8:2::1") || tag("0.0.0.1") == tag("::1") {
		t.Error("two prefixes, one tag")
	}
}

// TestPrefixFloodKeepsOneOffs checks the prefix quota: a spoofed flood
// from the 256 addresses of one /24, each under its own quota, fills the
// table, yet one-off phase ones from other prefixes are kept (not
// rejected) and pair with their phase two, and so is a scanner's sweep
// from a few addresses of one /24 made during the flood. Without the
// prefix quota the flood's entries have a scanner's class, and every
// one-off is rejected.
func TestPrefixFloodKeepsOneOffs(t *testing.T) {
	d := New(Config{Memory: 1 << 20})
	r := rand.New(rand.NewPCG(9, 10))
	perAddr := int(d.t.quota) * 4 / 5 // each flood address stays under its quota
	const secs = 10
	step := secs * time.Second / time.Duration(256*perAddr)
	// The scanner: 4 addresses of 198.51.100.0/24 sweeping 192.0.2.0/24,
	// 64 addresses each, interleaved with the flood.
	scanner := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 51, 100, byte(50 + i%4)}) }
	sweepDst := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}) }
	at := t0
	for n := range 256 * perAddr {
		at = at.Add(step)
		src := netip.AddrFrom4([4]byte{203, 0, 113, byte(n)})
		p := isyn(at, src, netip.AddrFrom4([4]byte{198, 18, byte(r.Uint32()), byte(r.Uint32())}), uint16(r.Uint32()))
		d.Observe(&p)
		if i := n / 200; n%200 == 0 && i < 256 {
			q := isyn(at, scanner(i), sweepDst(i), 443)
			d.Observe(&q)
		}
	}
	// Full but for the odd slot: the buckets come from a per-process random
	// seed, so how many the flood's SYNs leave one slot short of full varies.
	if s := d.Stats(); s.Entries < s.Capacity*999/1000 {
		t.Fatalf("the flood did not fill the table: %d of %d entries", s.Entries, s.Capacity)
	}
	// Needles: one irregular SYN each from other prefixes, then phase
	// two a few seconds later, the flood still on.
	before := d.Stats().Rejected
	const needles = 32
	needle := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{100, 64, byte(i), 4}) }
	for i := range needles {
		at = at.Add(time.Millisecond)
		p := isyn(at, needle(i), netip.MustParseAddr("198.18.0.80"), 80)
		d.Observe(&p)
	}
	if rej := d.Stats().Rejected - before; rej != 0 {
		t.Errorf("%d of %d one-off needles rejected", rej, needles)
	}
	for range 10_000 {
		at = at.Add(step)
		p := isyn(at, netip.AddrFrom4([4]byte{203, 0, 113, byte(r.Uint32())}), netip.AddrFrom4([4]byte{198, 18, byte(r.Uint32()), byte(r.Uint32())}), uint16(r.Uint32()))
		d.Observe(&p)
	}
	at = at.Add(2 * time.Second)
	paired := 0
	for i := range needles {
		q := rsyn(at, needle(i), netip.MustParseAddr("198.18.0.80"), 80)
		if _, ok := d.Observe(&q); ok {
			paired++
		}
	}
	if paired < needles*9/10 {
		t.Errorf("phase two found for %d of %d needles", paired, needles)
	}
	swept := 0
	for i := range 256 {
		q := rsyn(at, scanner(i), sweepDst(i), 443)
		if _, ok := d.Observe(&q); ok {
			swept++
		}
	}
	// The first SYN of each scanner address is a one-off.
	if swept < 256-4-4 {
		t.Errorf("phase two found for %d of the scanner's 256 addresses", swept)
	}
}
