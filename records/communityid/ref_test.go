package communityid

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// refAppend is Append as it was before its fast path (Unmap, copies into
// arrays, a byte loop to order the ends, base64.StdEncoding), kept to
// check the fast path against.
func refAppend(b []byte, seed uint16, proto uint8, src, dst netip.Addr, sport, dport uint16) []byte {
	src, dst = src.Unmap(), dst.Unmap()
	oneWay := false
	switch proto {
	case ProtoICMP, ProtoICMPv6:
		table := icmpCounterpart
		if proto == ProtoICMPv6 {
			table = icmp6Counterpart
		}
		typ := uint8(sport)
		if c, ok := table[typ]; ok {
			dport = uint16(c)
		} else {
			oneWay = true
		}
		sport = uint16(typ)
	}
	var sa, da [16]byte
	n := 4
	if src.Is4() && dst.Is4() {
		a, d := src.As4(), dst.As4()
		copy(sa[:], a[:])
		copy(da[:], d[:])
	} else {
		sa, da, n = src.As16(), dst.As16(), 16
	}
	if !oneWay && !refLess(sa[:n], da[:n], sport, dport) {
		sa, da, sport, dport = da, sa, dport, sport
	}
	var in [2 + 16 + 16 + 2 + 4]byte
	in[0], in[1] = byte(seed>>8), byte(seed)
	i := 2
	i += copy(in[i:], sa[:n])
	i += copy(in[i:], da[:n])
	in[i], in[i+1] = proto, 0
	i += 2
	if hasPorts(proto) {
		in[i], in[i+1], in[i+2], in[i+3] = byte(sport>>8), byte(sport), byte(dport>>8), byte(dport)
		i += 4
	}
	sum := sha1.Sum(in[:i])
	b = append(b, '1', ':')
	return base64.StdEncoding.AppendEncode(b, sum[:])
}
func refLess(a, b []byte, ap, bp uint16) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return ap < bp
}

// randomAddr returns an IPv4, v4-mapped, zoned or plain IPv6 address, or
// one of a few fixed ones, so that equal ends and mixed families come up.
func randomAddr(rng *rand.Rand) netip.Addr {
	var a [16]byte
	binary.BigEndian.PutUint64(a[:], rng.Uint64())
	binary.BigEndian.PutUint64(a[8:], rng.Uint64())
	switch rng.IntN(8) {
	case 0, 1, 2:
		return netip.AddrFrom4([4]byte(a[:4]))
	case 3:
		return netip.AddrFrom4([4]byte{192, 0, 2, byte(rng.IntN(2))})
	case 4:
		return netip.AddrFrom16(netip.AddrFrom4([4]byte(a[:4])).As16()) // v4-mapped
	case 5:
		return netip.AddrFrom16(a).WithZone("eth0")
	case 6:
		return netip.MustParseAddr("2001:db8::1")
	}
	return netip.AddrFrom16(a)
}

// TestAppendMatchesReference compares Append with the reference code over
// random flows of every protocol kind (ports, ICMP both ways and one-way,
// no ports), address family mix, seed and port, equal ends included.
func TestAppendMatchesReference(t *testing.T) {
	protos := []uint8{0, ProtoICMP, ProtoTCP, ProtoUDP, ProtoICMPv6, 46, ProtoSCTP, 255}
	rng := rand.New(rand.NewPCG(7, 8))
	for n := range 300000 {
		proto := protos[rng.IntN(len(protos))]
		src, dst := randomAddr(rng), randomAddr(rng)
		if n%7 == 0 {
			dst = src
		}
		sport, dport := uint16(rng.Uint32()), uint16(rng.Uint32())
		switch rng.IntN(4) {
		case 0:
			sport, dport = uint16(rng.IntN(256)), uint16(rng.IntN(256))
		case 1:
			dport = sport
		}
		seed := uint16(rng.IntN(3))
		if n%5 == 0 {
			seed = uint16(rng.Uint32())
		}
		got := string(Append([]byte("x"), seed, proto, src, dst, sport, dport))
		if want := string(refAppend([]byte("x"), seed, proto, src, dst, sport, dport)); got != want {
			t.Fatalf("Append(%d, %d, %v, %v, %d, %d) = %s, the reference %s", seed, proto, src, dst, sport, dport, got, want)
		}
	}
}

// TestAppendID compares appendID with base64 over random digests and the
// all-zero and all-ones ones.
func TestAppendID(t *testing.T) {
	sums := [][sha1.Size]byte{{}, {0: 0xff, 19: 0xff}}
	var ones [sha1.Size]byte
	for i := range ones {
		ones[i] = 0xff
	}
	sums = append(sums, ones)
	rng := rand.New(rand.NewPCG(9, 10))
	for range 10000 {
		var s [sha1.Size]byte
		for i := range s {
			s[i] = byte(rng.Uint32())
		}
		sums = append(sums, s)
	}
	for _, s := range sums {
		if got, want := string(appendID(nil, &s)), "1:"+base64.StdEncoding.EncodeToString(s[:]); got != want {
			t.Fatalf("appendID(%x) = %s, want %s", s, got, want)
		}
	}
}

// FuzzAppend compares Append with the reference code for any flow.
func FuzzAppend(f *testing.F) {
	f.Add(uint16(0), uint8(ProtoTCP), []byte{198, 51, 100, 7}, []byte{192, 0, 2, 10}, uint16(40000), uint16(80))
	f.Add(uint16(1), uint8(ProtoICMPv6), []byte{0x20, 1, 0xd, 0xb8, 15: 1}, []byte{0x20, 1, 0xd, 0xb8, 15: 2}, uint16(128), uint16(0))
	f.Fuzz(func(t *testing.T, seed uint16, proto uint8, s, d []byte, sport, dport uint16) {
		addr := func(b []byte) netip.Addr {
			if len(b) == 4 {
				return netip.AddrFrom4([4]byte(b))
			}
			var a [16]byte
			copy(a[:], b)
			return netip.AddrFrom16(a)
		}
		src, dst := addr(s), addr(d)
		got := string(Append(nil, seed, proto, src, dst, sport, dport))
		if want := string(refAppend(nil, seed, proto, src, dst, sport, dport)); got != want {
			t.Fatalf("Append(%d, %d, %v, %v, %d, %d) = %s, the reference %s", seed, proto, src, dst, sport, dport, got, want)
		}
	})
}

// BenchmarkAppendRef is BenchmarkAppend for the reference code.
func BenchmarkAppendRef(b *testing.B) {
	for _, tc := range []struct{ name, src, dst string }{{"ipv4", "198.51.100.7", "192.0.2.10"}, {"ipv6", "2001:db8::1", "2001:db8::2"}} {
		s, d := netip.MustParseAddr(tc.src), netip.MustParseAddr(tc.dst)
		b.Run(tc.name, func(b *testing.B) {
			buf := make([]byte, 0, 64)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				buf = refAppend(buf[:0], 0, ProtoTCP, s, d, uint16(i), 80)
			}
		})
	}
}
