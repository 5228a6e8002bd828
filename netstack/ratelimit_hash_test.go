package netstack

import (
	"hash/maphash"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// TestSourceHashSpread checks the SYN limiter's keyed source hash: sources
// an attacker would send in order (sequential IPv4 addresses, sequential
// /64s, addresses that differ only in their first byte) spread over the
// default table's entries as random ones would; the addresses of one /64
// share an entry; and two limiters (two keys) place a source apart.
func TestSourceHashSpread(t *testing.T) {
	l := newSYNLimiter(DefaultSYNACKLimits())
	other := newSYNLimiter(DefaultSYNACKLimits())
	entries := len(l.tat) / 2
	const n = 1 << 22
	spread := func(name string, src func(i int) []byte) {
		t.Helper()
		load := make([]int, entries)
		for i := range n {
			e := l.entry(src(i))
			if e%2 != 0 || e < 0 || e >= len(l.tat) {
				t.Fatalf("%s: entry %d of a table of %d buckets", name, e, len(l.tat))
			}
			load[e/2]++
		}
		// An entry's load is binomial: mean n/entries, sd about its root.
		mean := float64(n) / float64(entries)
		dev := 7 * math.Sqrt(mean)
		for e, c := range load {
			if math.Abs(float64(c)-mean) > dev {
				t.Errorf("%s: entry %d of %d holds %d sources, mean %.0f", name, e, entries, c, mean)
				return
			}
		}
	}
	var b4 [4]byte
	var b16 [16]byte
	spread("sequential IPv4 sources", func(i int) []byte {
		b4 = [4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}
		return b4[:]
	})
	spread("IPv4 sources by their high bits", func(i int) []byte {
		b4 = [4]byte{byte(i), byte(i >> 8), byte(i >> 16), 1}
		return b4[:]
	})
	spread("sequential /64s", func(i int) []byte {
		b16 = [16]byte{0x20, 0x01, 0x0d, 0xb8, 0, byte(i >> 16), byte(i >> 8), byte(i), 15: 1}
		return b16[:]
	})

	a := netip.MustParseAddr("2001:db8:1:2::1").As16()
	z := netip.MustParseAddr("2001:db8:1:2:ffff:ffff:ffff:ffff").As16()
	if l.entry(a[:]) != l.entry(z[:]) {
		t.Errorf("two addresses of one /64 are in different entries")
	}
	same := 0
	for i := range 1000 {
		b4 = [4]byte{192, 0, byte(i >> 8), byte(i)}
		if l.entry(b4[:]) == other.entry(b4[:]) {
			same++
		}
	}
	// By chance 1000/65536 sources share an entry in two tables.
	if same > 5 {
		t.Errorf("two limiters put %d of 1000 sources in the same entry", same)
	}
}

// TestSYNLimiterPerSource pins allow's decisions for sources that do not
// share an entry: over a random sequence of SYNs of both classes from 256
// IPv4 sources and 256 IPv6 /64s (each /64 under two addresses), each
// decision is the one of the source's own bucket of the class, as a
// per-source model of the token buckets takes it, whatever the other
// sources do. And two sources that share an entry share its buckets: a
// collision makes the limit stricter, never looser.
func TestSYNLimiterPerSource(t *testing.T) {
	lim := SYNACKLimits{Regular: SYNACKLimit{Rate: 100, Burst: 8}, Irregular: SYNACKLimit{Rate: 50, Burst: 4}, TableEntries: 1 << 16}
	l := newSYNLimiter(lim)
	r := rand.New(rand.NewPCG(1, 2))
	var srcs [][]byte
	used := map[int]bool{}
	for len(srcs) < 512 {
		var src []byte
		if len(srcs)%2 == 0 {
			a := [4]byte{198, 18 + byte(r.IntN(2)), byte(r.IntN(256)), byte(r.IntN(256))}
			src = a[:]
		} else {
			a := [16]byte{0x20, 0x01, 0x0d, 0xb8, byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256)), 15: 1}
			src = a[:]
		}
		if e := l.entry(src); !used[e] {
			used[e] = true
			srcs = append(srcs, src)
		}
	}
	cls := [2]gcra{newGCRA(lim.Regular), newGCRA(lim.Irregular)}
	model := make([][2]int64, len(srcs)) // per source and class: tat, 0 = full
	t0 := l.epoch.Add(time.Hour)
	at := t0
	allowed, denied := 0, 0
	for range 200000 {
		i := r.IntN(len(srcs))
		c := r.IntN(2)
		at = at.Add(time.Duration(r.IntN(20)) * time.Microsecond)
		src := srcs[i]
		if len(src) == 16 && r.IntN(2) == 0 {
			// Another address of the same /64.
			src = slices.Clone(src)
			src[15], src[9] = byte(r.IntN(256)), byte(r.IntN(256))
		}
		now := int64(at.Sub(l.epoch))
		tat := max(model[i][c], now)
		want := tat-now <= cls[c].tolerance
		if want {
			model[i][c] = tat + cls[c].interval
			allowed++
		} else {
			denied++
		}
		if got := l.allow(src, c == 1, at); got != want {
			t.Fatalf("source %d (%v) class %d at %v: allow %v, the source's own bucket says %v", i, src, c, at.Sub(t0), got, want)
		}
	}
	if allowed == 0 || denied == 0 {
		t.Fatalf("%d allowed, %d denied: the sequence does not exercise the limit", allowed, denied)
	}

	// Two IPv4 sources in one entry of a small table share its buckets.
	small := newSYNLimiter(SYNACKLimits{Irregular: SYNACKLimit{Rate: 1, Burst: 4}, TableEntries: 16})
	a := []byte{192, 0, 2, 1}
	var b []byte
	for i := 2; i < 256 && b == nil; i++ {
		if c := []byte{192, 0, 2, byte(i)}; small.entry(c) == small.entry(a) {
			b = c
		}
	}
	if b == nil {
		t.Fatal("no two of 255 sources share one of 16 entries")
	}
	now := small.epoch.Add(time.Hour)
	for i := range 4 {
		if !small.allow(a, true, now) {
			t.Fatalf("SYN %d of the burst denied", i)
		}
	}
	if small.allow(b, true, now) {
		t.Errorf("a source sharing an exhausted entry was answered")
	}
}

// TestReaderTouch checks the reader's touch of a Read's SYNs: it picks the
// SYNs of both families and nothing else, loads their limiter entries
// (tx.touched is their xor) and writes nothing to the table.
func TestReaderTouch(t *testing.T) {
	dst4, dst6 := netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("2001:db8:5b0::7")
	syn4 := irregularSYN(scanner4, dst4, 1000, 80, 1)
	syn6 := regularSYN(scanner6, dst6, 1000, 80, 1)
	for _, tc := range []struct {
		name string
		pkt  []byte
		src  []byte
	}{
		{"ipv4 syn", syn4, scanner4.AsSlice()},
		{"ipv6 syn", syn6, scanner6.AsSlice()},
		{"syn-ack", seg{src: scanner4, dst: dst4, sport: 1, dport: 80, flags: header.TCPFlagSyn | header.TCPFlagAck}.build(), nil},
		{"syn+rst", seg{src: scanner4, dst: dst4, sport: 1, dport: 80, flags: header.TCPFlagSyn | header.TCPFlagRst}.build(), nil},
		{"ack", seg{src: scanner6, dst: dst6, sport: 1, dport: 80, flags: header.TCPFlagAck}.build(), nil},
		{"udp", seg{src: scanner4, dst: dst4, sport: 1, dport: 80, proto: header.UDPProtocolNumber}.build(), nil},
		{"short", syn4[:30], nil},
		{"empty", nil, nil},
	} {
		if got := synSource(tc.pkt); string(got) != string(tc.src) {
			t.Errorf("%s: synSource %v, want %v", tc.name, got, tc.src)
		}
	}

	s, fe := floodFrontEnd(t)
	// Put something in the two SYNs' entries, so that their loads show.
	at := s.limit.epoch.Add(time.Hour)
	s.limit.allow(scanner4.AsSlice(), true, at)
	s.limit.allow(scanner6.AsSlice(), false, at)
	before := slices.Clone(s.limit.tat)
	tx := newTxBatch(s.tun.queues[0], &s.stats, 4, fe.batchSink())
	pkts := [][]byte{syn4, seg{src: scanner4, dst: dst4, sport: 1, dport: 80, flags: header.TCPFlagAck}.build(), syn6}
	fe.touch(pkts, packetSizes(pkts), tx)
	want := s.limit.tat[s.limit.entry(scanner4.AsSlice())] ^ s.limit.tat[s.limit.entry(scanner6.AsSlice())]
	if tx.touched != want || want == 0 {
		t.Errorf("touched %#x, want the SYNs' entries' %#x", tx.touched, want)
	}
	if !slices.Equal(before, s.limit.tat) {
		t.Errorf("touch changed the limiter's table")
	}
	if s.stats.PacketsIn.Load() != 0 {
		t.Errorf("touch counted packets")
	}
}

// BenchmarkSourceHash compares the limiter's source hash with
// maphash.Bytes, which it replaced, on IPv4 sources and IPv6 /64s.
func BenchmarkSourceHash(b *testing.B) {
	l := newSYNLimiter(DefaultSYNACKLimits())
	seed := maphash.MakeSeed()
	for _, n := range []int{4, 16} {
		src := make([]byte, n)
		key := src
		if n == 16 {
			key = src[:8]
		}
		fam := map[int]string{4: "ipv4", 16: "ipv6"}[n]
		b.Run(fam+"/maphash", func(b *testing.B) {
			var x uint64
			for i := range b.N {
				src[3] = byte(i)
				x += maphash.Bytes(seed, key) & l.mask
			}
			sinkU64 = x
		})
		b.Run(fam+"/mix", func(b *testing.B) {
			var x uint64
			for i := range b.N {
				src[3] = byte(i)
				x += l.sourceHash(src) & l.mask
			}
			sinkU64 = x
		})
	}
}

var sinkU64 uint64
