package records

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"testing"
)

// uintEdges are the values around every digit-count change and the ends of
// the integer types.
func uintEdges() []uint64 {
	vs := []uint64{0, 1, 9, 10, 11, 99, 100, 101, 255, 256, 999, 1000, 65535, 65536,
		math.MaxUint32, math.MaxUint32 + 1, math.MaxInt64, math.MaxUint64 - 1, math.MaxUint64}
	for _, p := range pow10 {
		vs = append(vs, p-1, p, p+1)
	}
	return vs
}

// TestAppendUint compares appendUint and appendInt with strconv at the edges
// and at random values of every size, appending to a buffer that has text
// and too little room.
func TestAppendUint(t *testing.T) {
	vs := uintEdges()
	rng := rand.New(rand.NewPCG(3, 4))
	for range 300000 {
		vs = append(vs, rng.Uint64()>>rng.UintN(64))
	}
	for _, v := range vs {
		pre := []byte("x|")
		if got, want := string(appendUint(pre[:2:2], v)), "x|"+strconv.FormatUint(v, 10); got != want {
			t.Fatalf("appendUint(%d) = %q, want %q", v, got, want)
		}
		if got, want := string(appendUintLoop(pre[:2:2], v)), "x|"+strconv.FormatUint(v, 10); got != want {
			t.Fatalf("appendUintLoop(%d) = %q, want %q", v, got, want)
		}
		if got, want := decimalLen(v), len(strconv.FormatUint(v, 10)); got != want {
			t.Fatalf("decimalLen(%d) = %d, want %d", v, got, want)
		}
		for _, i := range []int64{int64(v), -int64(v)} {
			if got, want := string(appendInt(nil, i)), strconv.FormatInt(i, 10); got != want {
				t.Fatalf("appendInt(%d) = %q, want %q", i, got, want)
			}
		}
	}
	if got := string(appendInt(nil, math.MinInt64)); got != strconv.FormatInt(math.MinInt64, 10) {
		t.Errorf("appendInt(MinInt64) = %q", got)
	}
}

// randomV6 returns an IPv6 address whose groups are each zero with
// probability one half, so that zero runs of every length and position
// come up.
func randomV6(rng *rand.Rand) [16]byte {
	var a [16]byte
	for i := 0; i < 8; i++ {
		var g uint16
		switch rng.IntN(4) {
		case 0, 1:
		case 2:
			g = uint16(rng.UintN(1 << (4 * (1 + rng.UintN(4)))))
		default:
			g = uint16(rng.Uint32())
		}
		binary.BigEndian.PutUint16(a[2*i:], g)
	}
	return a
}

// TestAppendAddr compares appendAddr with netip.Addr.AppendTo over every
// IPv4 octet, random IPv4 and IPv6 addresses, every zero-run layout of
// IPv6 groups, v4-mapped and zoned addresses and the zero Addr.
func TestAppendAddr(t *testing.T) {
	addrs := []netip.Addr{{}, netip.IPv4Unspecified(), netip.IPv6Unspecified(), netip.IPv6Loopback(),
		netip.MustParseAddr("255.255.255.255"), netip.MustParseAddr("::ffff:192.0.2.1"),
		netip.MustParseAddr("::ffff:0.0.0.0"), netip.MustParseAddr("::192.0.2.1"),
		netip.MustParseAddr("fe80::1%eth0"), netip.MustParseAddr("2001:db8::"),
		netip.MustParseAddr("2001:db8:0:0:1:0:0:1"), netip.MustParseAddr("0:0:1::"),
		netip.MustParseAddr("1:0:1:0:1:0:1:0"), netip.MustParseAddr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")}
	for v := range 256 {
		addrs = append(addrs, netip.AddrFrom4([4]byte{byte(v), byte(255 - v), 10, byte(v)}))
	}
	for mask := range 256 { // every layout of zero groups
		var a [16]byte
		for i := 0; i < 8; i++ {
			if mask&(1<<i) != 0 {
				binary.BigEndian.PutUint16(a[2*i:], uint16(0x1000>>(4*(i%4))))
			}
		}
		addrs = append(addrs, netip.AddrFrom16(a))
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for range 100000 {
		addrs = append(addrs, netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, rng.Uint32()))),
			netip.AddrFrom16(randomV6(rng)))
	}
	for _, a := range addrs {
		pre := []byte("ip=")
		if got, want := string(appendAddr(pre[:3:3], a)), "ip="+string(a.AppendTo(nil)); got != want {
			t.Fatalf("appendAddr(%v) = %q, want %q", a, got, want)
		}
	}
}

// FuzzAppendAddr compares appendAddr with netip for any 16 bytes, as an
// IPv6 address and (its first four) as an IPv4 one.
func FuzzAppendAddr(f *testing.F) {
	f.Add([]byte{0x20, 0x01, 0x0d, 0xb8, 15: 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		var a [16]byte
		copy(a[:], b)
		for _, ip := range []netip.Addr{netip.AddrFrom16(a), netip.AddrFrom4([4]byte(a[:4]))} {
			if got, want := string(appendAddr(nil, ip)), ip.String(); got != want {
				t.Fatalf("appendAddr(%v) = %q, want %q", ip, got, want)
			}
		}
	})
}

// FuzzAppendUint compares appendUint with strconv.
func FuzzAppendUint(f *testing.F) {
	f.Add(uint64(65535))
	f.Fuzz(func(t *testing.T, v uint64) {
		if got, want := string(appendUint(nil, v)), strconv.FormatUint(v, 10); got != want {
			t.Fatalf("appendUint(%d) = %q, want %q", v, got, want)
		}
	})
}

func BenchmarkAppendUint(b *testing.B) {
	for _, v := range []uint64{80, 40000, 3735928559, 1764064800123} {
		b.Run(strconv.FormatUint(v, 10), func(b *testing.B) {
			buf := make([]byte, 0, 64)
			b.Run("fast", func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					buf = appendUint(buf[:0], v)
				}
			})
			b.Run("loop", func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					buf = appendUintLoop(buf[:0], v)
				}
			})
			b.Run("strconv", func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					buf = strconv.AppendUint(buf[:0], v, 10)
				}
			})
		})
	}
}

func BenchmarkAppendAddr(b *testing.B) {
	for _, s := range []string{"198.51.100.7", "2001:db8:85a3::8a2e:370:7334"} {
		a := netip.MustParseAddr(s)
		b.Run(s, func(b *testing.B) {
			buf := make([]byte, 0, 64)
			b.Run("fast", func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					buf = appendAddr(buf[:0], a)
				}
			})
			b.Run("netip", func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					buf = a.AppendTo(buf[:0])
				}
			})
		})
	}
}
