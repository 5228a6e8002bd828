package communityid

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// vector is one row of the spec's baseline data (testdata/README.md).
type vector struct {
	Seed        uint16  `json:"seed"`
	Hex         bool    `json:"hex"`
	Proto       uint8   `json:"proto"`
	Saddr       string  `json:"saddr"`
	Daddr       string  `json:"daddr"`
	Sport       *uint16 `json:"sport"`
	Dport       *uint16 `json:"dport"`
	CommunityID string  `json:"communityid"`
}

func load(t *testing.T, name string, seed uint16) []vector {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var vs []vector
	if err := json.Unmarshal(b, &vs); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	for i := range vs {
		if name != "tables.json" {
			vs[i].Seed = seed
		}
	}
	return vs
}

// TestBaseline checks Append against every published vector: the flows of
// the spec's pcap with seed 0 and seed 1, and the README's tables (TCP, UDP,
// SCTP, ICMP and ICMPv6 both ways and one-way, port-less RSVP, IPv4 and
// IPv6, base64 and hex).
func TestBaseline(t *testing.T) {
	var all []vector
	all = append(all, load(t, "baseline_deflt.json", 0)...)
	all = append(all, load(t, "baseline_seed1.json", 1)...)
	all = append(all, load(t, "tables.json", 0)...)
	if len(all) < 90 {
		t.Fatalf("only %d vectors loaded", len(all))
	}
	protos := map[uint8]bool{}
	for _, v := range all {
		var sp, dp uint16
		if v.Sport != nil {
			sp, dp = *v.Sport, *v.Dport
		}
		got := String(v.Seed, v.Proto, netip.MustParseAddr(v.Saddr), netip.MustParseAddr(v.Daddr), sp, dp)
		if v.Hex {
			raw, err := base64.StdEncoding.DecodeString(got[2:])
			if err != nil {
				t.Fatalf("%s: %v", got, err)
			}
			got = "1:" + hex.EncodeToString(raw)
		}
		if got != v.CommunityID {
			t.Errorf("seed %d proto %d %s:%v -> %s:%v = %s, want %s", v.Seed, v.Proto, v.Saddr, sp, v.Daddr, dp, got, v.CommunityID)
		}
		protos[v.Proto] = true
	}
	for _, p := range []uint8{ProtoTCP, ProtoUDP, ProtoICMP, ProtoICMPv6} {
		if !protos[p] {
			t.Errorf("no vector for protocol %d", p)
		}
	}
}

// TestMapped checks that v4-mapped IPv6 addresses hash as IPv4 ones, and
// that both directions of a TCP flow agree.
func TestMapped(t *testing.T) {
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.2")
	m := netip.AddrFrom16(a.As16())
	if String(0, ProtoTCP, a, b, 1, 2) != String(0, ProtoTCP, m, b, 1, 2) {
		t.Error("v4-mapped address hashes differently")
	}
	if String(0, ProtoTCP, a, b, 1, 2) != String(0, ProtoTCP, b, a, 2, 1) {
		t.Error("directions differ")
	}
	if String(0, ProtoTCP, a, b, 1, 2) == String(0, ProtoTCP, a, b, 2, 1) {
		t.Error("ports ignored")
	}
}

func TestAppendAllocs(t *testing.T) {
	a, b := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	buf := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(100, func() { buf = Append(buf[:0], 0, ProtoTCP, a, b, 40000, 80) }); n != 0 {
		t.Errorf("Append allocates %v times", n)
	}
}

func BenchmarkAppend(b *testing.B) {
	for _, tc := range []struct{ name, src, dst string }{{"ipv4", "198.51.100.7", "192.0.2.10"}, {"ipv6", "2001:db8::1", "2001:db8::2"}} {
		s, d := netip.MustParseAddr(tc.src), netip.MustParseAddr(tc.dst)
		b.Run(tc.name, func(b *testing.B) {
			buf := make([]byte, 0, 64)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				buf = Append(buf[:0], 0, ProtoTCP, s, d, uint16(i), 80)
			}
		})
	}
}

// TestAppendMatchesBytewiseOrder compares Append with refAppend, which
// orders the endpoints byte by byte as the reference implementation does,
// over random flows whose addresses share prefixes (equal words, equal
// halves of IPv6 addresses, equal addresses) and whose ports are often
// equal, in both directions, for every protocol kind.
func TestAppendMatchesBytewiseOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	addr := func(v6 bool, base [16]byte) netip.Addr {
		// Each byte is the base's or random, so that long common
		// prefixes come up.
		a := base
		for i := range a {
			if rng.IntN(4) == 0 {
				a[i] = byte(rng.Uint32())
			}
		}
		if !v6 {
			return netip.AddrFrom4([4]byte(a[:4]))
		}
		return netip.AddrFrom16(a)
	}
	for range 100000 {
		var base [16]byte
		for i := range base {
			base[i] = byte(rng.Uint32())
		}
		v6 := rng.IntN(2) == 0
		src, dst := addr(v6, base), addr(v6, base)
		if rng.IntN(8) == 0 {
			dst = src
		}
		sport, dport := uint16(rng.IntN(4)), uint16(rng.IntN(4))
		if rng.IntN(2) == 0 {
			sport, dport = uint16(rng.Uint32()), uint16(rng.Uint32())
		}
		proto := []uint8{ProtoTCP, ProtoUDP, ProtoSCTP, ProtoICMP, ProtoICMPv6, 47}[rng.IntN(6)]
		if proto == ProtoICMP || proto == ProtoICMPv6 {
			sport = []uint16{0, 8, 13, 128, 129, 135, 3}[rng.IntN(7)]
		}
		seed := uint16(rng.IntN(3))
		got := string(Append(nil, seed, proto, src, dst, sport, dport))
		if want := string(refAppend(nil, seed, proto, src, dst, sport, dport)); got != want {
			t.Fatalf("Append(%d, %d, %v, %v, %d, %d) = %s, want %s", seed, proto, src, dst, sport, dport, got, want)
		}
	}
}

// refAppend is Append as it was before its endpoints were ordered as
// words: the addresses as byte arrays, ordered by less.
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
	if !oneWay && !less(sa[:n], da[:n], sport, dport) {
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

// less reports whether endpoint a:ap sorts before b:bp (addresses as bytes
// in network order, then ports). Equal endpoints are not less, as in the
// reference implementation; swapping them changes nothing.
func less(a, b []byte, ap, bp uint16) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return ap < bp
}
