package communityid

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
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
