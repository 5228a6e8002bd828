package lab

import (
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// checksum is a plain Internet checksum over b, written independently of
// the incremental one under test.
func checksum(parts ...[]byte) uint16 {
	var all []byte
	for _, p := range parts {
		all = append(all, p...)
	}
	if len(all)%2 == 1 {
		all = append(all, 0)
	}
	var s uint32
	for i := 0; i < len(all); i += 2 {
		s += uint32(all[i])<<8 | uint32(all[i+1])
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// pseudoHeader returns the TCP pseudo-header of src, dst and a segment of
// length n.
func pseudoHeader(src, dst netip.Addr, n int) []byte {
	var b []byte
	b = append(b, src.AsSlice()...)
	b = append(b, dst.AsSlice()...)
	if src.Is4() {
		return append(b, 0, byte(layers.IPProtocolTCP), byte(n>>8), byte(n))
	}
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	return append(b, 0, 0, 0, byte(layers.IPProtocolTCP))
}

// optionKinds lists a TCP header's option kinds in wire order.
func optionKinds(tcp *layers.TCP) []layers.TCPOptionKind {
	var kinds []layers.TCPOptionKind
	for _, o := range tcp.Options {
		kinds = append(kinds, o.OptionType)
	}
	return kinds
}

func TestFloodFrames(t *testing.T) {
	srcMAC := net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	dstMAC := net.HardwareAddr{0x02, 0, 0, 0, 0, 2}
	tests := []struct {
		name       string
		kind       FloodKind
		prefix     netip.Prefix
		src        netip.Prefix
		wantFlags  [4]bool // SYN, ACK, RST, FIN
		wantOption bool    // MSS
		irregular  bool
		port       uint16
	}{
		{"syn v4", FloodSYN, Prefix4, netip.Prefix{}, [4]bool{true, false, false, false}, true, false, 0},
		{"ack v4", FloodACK, Prefix4, netip.Prefix{}, [4]bool{false, true, false, false}, false, false, 0},
		{"synack v4", FloodSYNACK, Prefix4, netip.Prefix{}, [4]bool{true, true, false, false}, true, false, 0},
		{"rst v4", FloodRST, Prefix4, netip.Prefix{}, [4]bool{false, true, true, false}, false, false, 0},
		{"syn v4 single source", FloodSYN, netip.MustParsePrefix("198.51.100.7/32"), netip.MustParsePrefix("203.0.113.9/32"), [4]bool{true, false, false, false}, true, false, 0},
		{"syn v6", FloodSYN, Prefix6, netip.Prefix{}, [4]bool{true, false, false, false}, true, false, 0},
		{"ack v6", FloodACK, Prefix6, netip.Prefix{}, [4]bool{false, true, false, false}, false, false, 0},
		{"rst v6 /72 source", FloodRST, Prefix6, netip.MustParsePrefix("2001:db8:3:0:ab00::/72"), [4]bool{false, true, true, false}, false, false, 0},
		{"irregular syn v4", FloodSYN, Prefix4, netip.Prefix{}, [4]bool{true, false, false, false}, false, true, 0},
		{"irregular syn v4 one port", FloodSYN, Prefix4, netip.Prefix{}, [4]bool{true, false, false, false}, false, true, 80},
		{"irregular syn v6", FloodSYN, Prefix6, netip.Prefix{}, [4]bool{true, false, false, false}, false, true, 0},
		{"syn v6 one port", FloodSYN, Prefix6, netip.Prefix{}, [4]bool{true, false, false, false}, true, false, 443},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := FloodConfig{Prefix: tc.prefix, Src: tc.src, Kind: tc.kind, Irregular: tc.irregular, Port: tc.port}
			wantTTL := uint8(64)
			if tc.irregular {
				wantTTL = IrregularTTL
			}
			g, err := newFrameGen(cfg, srcMAC, dstMAC, 42)
			if err != nil {
				t.Fatalf("newFrameGen: %v", err)
			}
			src := tc.src
			if !src.IsValid() {
				src = FloodSrc4
				if !tc.prefix.Addr().Is4() {
					src = FloodSrc6
				}
			}
			seen := map[string]bool{}
			for i := 0; i < 500; i++ {
				f := make([]byte, g.frameLen())
				g.fill(f)
				seen[string(f)] = true
				pkt := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
				if el := pkt.ErrorLayer(); el != nil {
					t.Fatalf("frame %d: decode: %v", i, el.Error())
				}
				eth, _ := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
				tcp, _ := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
				if eth == nil || tcp == nil {
					t.Fatalf("frame %d: layers %v, want Ethernet and TCP", i, pkt.Layers())
				}
				if eth.SrcMAC.String() != srcMAC.String() || eth.DstMAC.String() != dstMAC.String() {
					t.Errorf("frame %d: MACs %v -> %v, want %v -> %v", i, eth.SrcMAC, eth.DstMAC, srcMAC, dstMAC)
				}
				var s, d netip.Addr
				var l4 []byte
				if ip4, ok := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
					s, _ = netip.AddrFromSlice(ip4.SrcIP.To4())
					d, _ = netip.AddrFromSlice(ip4.DstIP.To4())
					hdr := f[ethLen : ethLen+ipv4Len]
					if got := checksum(hdr); got != 0 {
						t.Errorf("frame %d: IPv4 header checksum %#04x does not verify", i, ip4.Checksum)
					}
					if len(f) < 60 || int(ip4.Length) > len(f)-ethLen || ip4.TTL != wantTTL {
						t.Errorf("frame %d: %d bytes, IPv4 length %d TTL %d, want at least 60 bytes, TTL %d", i, len(f), ip4.Length, ip4.TTL, wantTTL)
					}
					if tc.irregular && ip4.Id != IrregularIPID {
						t.Errorf("frame %d: IP ID %d, want %d", i, ip4.Id, IrregularIPID)
					}
					l4 = f[ethLen+ipv4Len : ethLen+int(ip4.Length)]
				} else if ip6, ok := pkt.Layer(layers.LayerTypeIPv6).(*layers.IPv6); ok {
					s, _ = netip.AddrFromSlice(ip6.SrcIP)
					d, _ = netip.AddrFromSlice(ip6.DstIP)
					if ip6.HopLimit != wantTTL {
						t.Errorf("frame %d: hop limit %d, want %d", i, ip6.HopLimit, wantTTL)
					}
					if int(ip6.Length) != len(f)-ethLen-ipv6Len {
						t.Errorf("frame %d: IPv6 payload length %d, want %d", i, ip6.Length, len(f)-ethLen-ipv6Len)
					}
					l4 = f[ethLen+ipv6Len : ethLen+ipv6Len+int(ip6.Length)]
				} else {
					t.Fatalf("frame %d: no IP layer", i)
				}
				if got := checksum(pseudoHeader(s, d, len(l4)), l4); got != 0 {
					t.Errorf("frame %d: TCP checksum %#04x does not verify", i, tcp.Checksum)
				}
				if !src.Contains(s) || !tc.prefix.Contains(d) {
					t.Errorf("frame %d: %v -> %v, want %v -> %v", i, s, d, src, tc.prefix)
				}
				if tcp.SrcPort == 0 || tcp.DstPort == 0 {
					t.Errorf("frame %d: ports %d -> %d, want non-zero", i, tcp.SrcPort, tcp.DstPort)
				}
				if tc.port != 0 && uint16(tcp.DstPort) != tc.port {
					t.Errorf("frame %d: destination port %d, want %d", i, tcp.DstPort, tc.port)
				}
				if tc.irregular && len(tcp.Options) != 0 {
					t.Errorf("frame %d: options %v, want none", i, optionKinds(tcp))
				}
				if got := [4]bool{tcp.SYN, tcp.ACK, tcp.RST, tcp.FIN}; got != tc.wantFlags {
					t.Errorf("frame %d: flags SYN,ACK,RST,FIN = %v, want %v", i, got, tc.wantFlags)
				}
				if got := slices.Contains(optionKinds(tcp), layers.TCPOptionKindMSS); got != tc.wantOption {
					t.Errorf("frame %d: MSS option %t, want %t", i, got, tc.wantOption)
				}
				if !tcp.ACK && tcp.Ack != 0 {
					t.Errorf("frame %d: ack %d without ACK flag, want 0", i, tcp.Ack)
				}
			}
			if len(seen) < 490 {
				t.Errorf("500 frames, %d distinct, want nearly all distinct", len(seen))
			}
		})
	}
}

func TestFloodFramesBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  FloodConfig
	}{
		{"no prefix", FloodConfig{}},
		{"mixed families", FloodConfig{Prefix: Prefix4, Src: FloodSrc6}},
		{"bad kind", FloodConfig{Prefix: Prefix4, Kind: FloodKind(9)}},
		{"irregular ack", FloodConfig{Prefix: Prefix4, Kind: FloodACK, Irregular: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := newFrameGen(tc.cfg, make(net.HardwareAddr, 6), make(net.HardwareAddr, 6), 1); err == nil {
				t.Errorf("newFrameGen(%+v) = nil error, want an error", tc.cfg)
			}
		})
	}
}

func TestParseFloodKind(t *testing.T) {
	for _, k := range []FloodKind{FloodSYN, FloodACK, FloodSYNACK, FloodRST} {
		if got, err := ParseFloodKind(k.String()); err != nil || got != k {
			t.Errorf("ParseFloodKind(%q) = %v, %v, want %v", k.String(), got, err, k)
		}
	}
	if _, err := ParseFloodKind("fin"); err == nil {
		t.Errorf("ParseFloodKind(%q) = nil error, want an error", "fin")
	}
}

func BenchmarkFloodFill(b *testing.B) {
	g, err := newFrameGen(FloodConfig{Prefix: Prefix4}, make(net.HardwareAddr, 6), make(net.HardwareAddr, 6), 1)
	if err != nil {
		b.Fatal(err)
	}
	f := make([]byte, g.frameLen())
	b.ReportAllocs()
	for b.Loop() {
		g.fill(f)
	}
}
