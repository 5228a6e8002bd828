package lab

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

func TestCraftSYN(t *testing.T) {
	tests := []struct {
		name     string
		src, dst netip.AddrPort
		wantMSS  uint16
	}{
		{"v4", netip.MustParseAddrPort("192.0.2.2:40000"), netip.MustParseAddrPort("198.51.100.80:80"), 1460},
		{"v6", netip.MustParseAddrPort("[2001:db8:1::2]:40001"), netip.MustParseAddrPort("[2001:db8:5b0::80]:8080"), 1440},
	}
	wantKinds := []layers.TCPOptionKind{layers.TCPOptionKindMSS, layers.TCPOptionKindSACKPermitted,
		layers.TCPOptionKindTimestamps, layers.TCPOptionKindNop, layers.TCPOptionKindWindowScale}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := craftSYN(tc.src, tc.dst, 0xdeadbeef, 12345, 777)
			if err != nil {
				t.Fatalf("craftSYN: %v", err)
			}
			first := layers.LayerTypeTCP
			seg := b
			if tc.dst.Addr().Is4() {
				first = layers.LayerTypeIPv4
				if got := checksum(b[:20]); got != 0 {
					t.Errorf("IPv4 header checksum does not verify")
				}
				seg = b[20:]
			}
			pkt := gopacket.NewPacket(b, first, gopacket.Default)
			if el := pkt.ErrorLayer(); el != nil {
				t.Fatalf("decode: %v", el.Error())
			}
			if ip4, ok := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
				s, _ := netip.AddrFromSlice(ip4.SrcIP.To4())
				d, _ := netip.AddrFromSlice(ip4.DstIP.To4())
				if s != tc.src.Addr() || d != tc.dst.Addr() || ip4.Id != 777 || ip4.TTL != 64 || int(ip4.Length) != len(b) {
					t.Errorf("IPv4 %v -> %v id %d ttl %d len %d, want %v -> %v 777 64 %d",
						s, d, ip4.Id, ip4.TTL, ip4.Length, tc.src.Addr(), tc.dst.Addr(), len(b))
				}
			}
			tcp, _ := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
			if tcp == nil {
				t.Fatalf("no TCP layer in %v", pkt.Layers())
			}
			if got := checksum(pseudoHeader(tc.src.Addr(), tc.dst.Addr(), len(seg)), seg); got != 0 {
				t.Errorf("TCP checksum %#04x does not verify", tcp.Checksum)
			}
			if !tcp.SYN || tcp.ACK || tcp.RST || tcp.FIN || tcp.Seq != 0xdeadbeef || tcp.Ack != 0 {
				t.Errorf("flags/seq/ack = SYN %t ACK %t RST %t FIN %t seq %#x ack %d, want a bare SYN seq 0xdeadbeef",
					tcp.SYN, tcp.ACK, tcp.RST, tcp.FIN, tcp.Seq, tcp.Ack)
			}
			if uint16(tcp.SrcPort) != tc.src.Port() || uint16(tcp.DstPort) != tc.dst.Port() {
				t.Errorf("ports %d -> %d, want %d -> %d", tcp.SrcPort, tcp.DstPort, tc.src.Port(), tc.dst.Port())
			}
			if got := optionKinds(tcp); !slices.Equal(got, wantKinds) {
				t.Errorf("options = %v, want %v", got, wantKinds)
			}
			if mss := uint16(tcp.Options[0].OptionData[0])<<8 | uint16(tcp.Options[0].OptionData[1]); mss != tc.wantMSS {
				t.Errorf("MSS = %d, want %d", mss, tc.wantMSS)
			}
		})
	}
	if _, err := craftSYN(tests[0].src, tests[1].dst, 1, 1, 1); err == nil {
		t.Errorf("craftSYN(v4 -> v6) = nil error, want an error")
	}
}

func TestSYNTargets(t *testing.T) {
	narrow := netip.MustParsePrefix("198.51.100.4/30")
	tests := []struct {
		name     string
		prefixes []netip.Prefix
		count    int
		wantErr  bool
	}{
		{"v4 /24", []netip.Prefix{Prefix4}, 200, false},
		{"v4 and v6", []netip.Prefix{Prefix4, Prefix6}, 50, false},
		{"v4 /30", []netip.Prefix{narrow}, 20, false},
		{"single address", []netip.Prefix{netip.MustParsePrefix("198.51.100.9/32")}, 5, false},
		{"no prefix", nil, 5, true},
		{"zero count", []netip.Prefix{Prefix4}, 0, true},
		{"too many", []netip.Prefix{Prefix4}, MaxSYNCount + 1, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SYNTargets(tc.prefixes, tc.count, 7)
			if (err != nil) != tc.wantErr {
				t.Fatalf("SYNTargets(%v, %d) error = %v, want error %t", tc.prefixes, tc.count, err, tc.wantErr)
			}
			if err != nil {
				return
			}
			again, _ := SYNTargets(tc.prefixes, tc.count, 7)
			if !slices.Equal(got, again) {
				t.Errorf("SYNTargets is not deterministic for one seed")
			}
			if len(got) != tc.count {
				t.Errorf("len(SYNTargets) = %d, want %d", len(got), tc.count)
			}
			seen := map[netip.AddrPort]bool{}
			for _, ap := range got {
				in := slices.ContainsFunc(tc.prefixes, func(p netip.Prefix) bool { return p.Contains(ap.Addr()) })
				if !in || ap.Port() == 0 || seen[ap] {
					t.Errorf("target %v: in prefixes %t, port %d, duplicate %t", ap, in, ap.Port(), seen[ap])
				}
				seen[ap] = true
				if b := ap.Addr().As16(); ap.Addr().Is4() && tc.prefixes[0].Bits() < 31 && (b[15]&3 == 0 || b[15]&3 == 3) && tc.prefixes[0] == narrow {
					t.Errorf("target %v: network or broadcast address of %v", ap, narrow)
				}
			}
		})
	}
}

func TestParseSYNACK(t *testing.T) {
	src := netip.MustParseAddr("198.51.100.80")
	hdr := func(flags byte) []byte {
		return []byte{0, 80, 0x9c, 0x40, 0, 0, 0, 5, 0, 0, 0, 9, 0x50, flags, 0, 0, 0, 0, 0, 0}
	}
	tests := []struct {
		name string
		tcp  []byte
		want bool
	}{
		{"syn-ack", hdr(0x12), true},
		{"syn-ack with ece", hdr(0x52), true},
		{"syn", hdr(0x02), false},
		{"rst-ack", hdr(0x14), false},
		{"syn-ack-rst", hdr(0x16), false},
		{"short", hdr(0x12)[:19], false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseSYNACK(src, tc.tcp)
			if ok != tc.want {
				t.Fatalf("parseSYNACK(%x) ok = %t, want %t", tc.tcp, ok, tc.want)
			}
			want := synAck{src: netip.AddrPortFrom(src, 80), dstPort: 40000, seq: 5, ack: 9}
			if ok && got != want {
				t.Errorf("parseSYNACK(%x) = %+v, want %+v", tc.tcp, got, want)
			}
		})
	}
}
