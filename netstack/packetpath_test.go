package netstack

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/spoki-telescope/spoki/records"
)

// withExtHeaders splices IPv6 extension headers (each a complete header
// whose first byte, the next header, is filled in here) between the fixed
// header and the transport of an IPv6 packet. The TCP checksum does not
// cover them.
func withExtHeaders(b []byte, exts ...[]byte) []byte {
	proto := b[6]
	out := append([]byte(nil), b[:header.IPv6MinimumSize]...)
	next := make([]byte, 0, len(exts))
	for _, e := range exts {
		next = append(next, e[0])
	}
	if len(exts) > 0 {
		out[6] = next[0]
	}
	for i, e := range exts {
		e = append([]byte(nil), e...)
		e[0] = proto
		if i+1 < len(exts) {
			e[0] = next[i+1]
		}
		out = append(out, e...)
	}
	out = append(out, b[header.IPv6MinimumSize:]...)
	binary.BigEndian.PutUint16(out[4:], uint16(len(out)-header.IPv6MinimumSize))
	return out
}

// IPv6 extension headers for the tests; the first byte is the header's own
// type (withExtHeaders replaces it with the next header).
var (
	extHBHPad      = []byte{ipv6HopByHop, 0, 1, 4, 0, 0, 0, 0}                          // PadN
	extHBHAlert    = []byte{ipv6HopByHop, 0, 5, 2, 0, 0, 1, 0}                          // router alert (skippable)
	extDestPad     = []byte{ipv6DestOpts, 0, 0, 0, 0, 0, 0, 0}                          // six Pad1
	extDestMust    = []byte{ipv6DestOpts, 0, 0x80, 4, 0, 0, 0, 0}                       // unknown, "discard and ICMP"
	extDestBadPad  = []byte{ipv6DestOpts, 0, 1, 4, 0, 9, 0, 0}                          // PadN with a non-zero byte
	extRouting     = []byte{ipv6Routing, 0, 4, 0, 0, 0, 0, 0}                           // segment routing, 0 left
	extFragAtomic  = []byte{ipv6Fragment, 0, 0, 0, 0, 0, 0, 1}                          // offset 0, no more
	extFragFirst   = []byte{ipv6Fragment, 0, 0, 1, 0, 0, 0, 2}                          // offset 0, more
	extFragLater   = []byte{ipv6Fragment, 0, 0, 8 << 3, 0, 0, 0, 3}                     // offset 64 bytes
	extDestTooLong = []byte{ipv6DestOpts, 3, 1, 4, 0, 0, 0, 0}                          // claims 32 bytes
	extDestLongPad = []byte{ipv6DestOpts, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0} // 14 bytes of padding
)

// ipv4Fragment sets the fragment fields of an IPv4 packet (offset in
// bytes, a multiple of 8) and fixes its header checksum.
func ipv4Fragment(b []byte, offset int, more bool) []byte {
	b = append([]byte(nil), b...)
	v := uint16(offset / 8)
	if more {
		v |= 1 << 13
	}
	binary.BigEndian.PutUint16(b[6:], v)
	ip := header.IPv4(b)
	ip.SetChecksum(0)
	ip.SetChecksum(^ip.CalculateChecksum())
	return b
}

// TestPacketPath checks how the front end treats invalid flag combinations,
// sources no reply may go to, fragments and IPv6 extension headers: what is
// answered (as Linux would), what is dropped and under which counter, and
// what the raw log gets.
func TestPacketPath(t *testing.T) {
	in4 := netip.MustParseAddr("198.51.100.20")
	in6 := netip.MustParseAddr("2001:db8:5b0::20")
	syn := func(src, dst netip.Addr, flags header.TCPFlags) []byte {
		return seg{src: src, dst: dst, sport: 40000, dport: 80, seq: 1000, flags: flags, opts: mssOpt}.build()
	}
	syn4 := syn(scanner4, in4, header.TCPFlagSyn)
	syn6 := syn(scanner6, in6, header.TCPFlagSyn)
	laterData := []byte("the middle of a datagram..")
	later4 := append(append([]byte(nil), syn4[:header.IPv4MinimumSize]...), laterData...)
	binary.BigEndian.PutUint16(later4[2:], uint16(len(later4)))
	later6 := append(append([]byte(nil), syn6[:header.IPv6MinimumSize]...), laterData...)
	later6 = withExtHeaders(later6, extFragLater)
	udpLater4 := append([]byte(nil), later4...)
	udpLater4[9] = uint8(header.UDPProtocolNumber)

	for _, tc := range []struct {
		name    string
		pkt     []byte
		answer  bool
		counter func(*Stats) uint64 // nil when answered
		check   func(*testing.T, records.Packet)
	}{
		{name: "syn+fin", pkt: syn(scanner4, in4, header.TCPFlagSyn|header.TCPFlagFin), counter: badFlags},
		{name: "syn+fin+psh ipv6", pkt: syn(scanner6, in6, header.TCPFlagSyn|header.TCPFlagFin|header.TCPFlagPsh), counter: badFlags},
		{name: "syn+rst", pkt: syn(scanner4, in4, header.TCPFlagSyn|header.TCPFlagRst), counter: badFlags},
		{name: "syn+rst+ack", pkt: syn(scanner4, in4, header.TCPFlagSyn|header.TCPFlagRst|header.TCPFlagAck), counter: badFlags},
		{name: "no flags", pkt: syn(scanner4, in4, 0), counter: badFlags},
		{name: "psh+urg only", pkt: syn(scanner4, in4, header.TCPFlagPsh|header.TCPFlagUrg), counter: badFlags},
		{name: "xmas", pkt: syn(scanner4, in4, header.TCPFlagFin|header.TCPFlagPsh|header.TCPFlagUrg), counter: func(s *Stats) uint64 { return s.DropStray.Load() }},
		{name: "ecn syn answered", pkt: syn(scanner4, in4, header.TCPFlagSyn|header.TCPFlagEce|header.TCPFlagCwr), answer: true},
		{name: "syn+psh+urg answered", pkt: syn(scanner4, in4, header.TCPFlagSyn|header.TCPFlagPsh|header.TCPFlagUrg), answer: true},

		{name: "multicast source", pkt: syn(netip.MustParseAddr("224.0.0.1"), in4, header.TCPFlagSyn), counter: badSource},
		{name: "broadcast source", pkt: syn(netip.MustParseAddr("255.255.255.255"), in4, header.TCPFlagSyn), counter: badSource},
		{name: "loopback source", pkt: syn(netip.MustParseAddr("127.0.0.1"), in4, header.TCPFlagSyn), counter: badSource},
		{name: "this-network source", pkt: syn(netip.MustParseAddr("0.1.2.3"), in4, header.TCPFlagSyn), counter: badSource},
		{name: "ipv6 multicast source", pkt: syn(netip.MustParseAddr("ff02::1"), in6, header.TCPFlagSyn), counter: badSource},
		{name: "ipv6 link-local source", pkt: syn(netip.MustParseAddr("fe80::1"), in6, header.TCPFlagSyn), counter: badSource},
		{name: "ipv4-mapped source", pkt: syn(netip.MustParseAddr("::ffff:192.0.2.1"), in6, header.TCPFlagSyn), counter: badSource},

		{name: "ipv4 first fragment", pkt: ipv4Fragment(syn4, 0, true), counter: fragment,
			check: func(t *testing.T, p records.Packet) {
				if !p.Fragment || !p.IsSYN() || p.SrcPort != 40000 || p.DstPort != 80 || p.Seq != 1000 || p.MSS != 1460 {
					t.Errorf("record = fragment %v syn %v ports %d>%d seq %d mss %d, want the SYN's columns", p.Fragment, p.IsSYN(), p.SrcPort, p.DstPort, p.Seq, p.MSS)
				}
			}},
		{name: "ipv4 later fragment", pkt: ipv4Fragment(later4, 64, true), counter: fragment,
			check: func(t *testing.T, p records.Packet) {
				if !p.Fragment || p.Proto != records.ProtoTCP || p.SrcPort != 0 || p.Flags != 0 || !bytes.Equal(p.Payload, laterData) || p.WScale != -1 {
					t.Errorf("record = fragment %v proto %v port %d flags %d payload %q, want a TCP row of the bytes", p.Fragment, p.Proto, p.SrcPort, p.Flags, p.Payload)
				}
			}},
		{name: "ipv4 last fragment of udp", pkt: ipv4Fragment(udpLater4, 1480, false), counter: fragment,
			check: func(t *testing.T, p records.Packet) {
				if !p.Fragment || p.Proto != records.ProtoUDP || !bytes.Equal(p.Payload, laterData) {
					t.Errorf("record = fragment %v proto %v payload %q", p.Fragment, p.Proto, p.Payload)
				}
			}},

		{name: "hop-by-hop padding", pkt: withExtHeaders(syn6, extHBHPad), answer: true},
		{name: "hop-by-hop router alert", pkt: withExtHeaders(syn6, extHBHAlert), answer: true},
		{name: "destination options", pkt: withExtHeaders(syn6, extDestPad), answer: true},
		{name: "hop-by-hop and destination options", pkt: withExtHeaders(syn6, extHBHPad, extDestPad), answer: true},
		{name: "atomic fragment", pkt: withExtHeaders(syn6, extFragAtomic), answer: true},
		{name: "routing header", pkt: withExtHeaders(syn6, extRouting), counter: extHeader,
			check: func(t *testing.T, p records.Packet) {
				if !p.IsSYN() || p.SrcPort != 40000 || p.Probed {
					t.Errorf("record = syn %v port %d probed %v, want the unanswered SYN", p.IsSYN(), p.SrcPort, p.Probed)
				}
			}},
		{name: "option that must be understood", pkt: withExtHeaders(syn6, extDestMust), counter: extHeader},
		{name: "padding with data", pkt: withExtHeaders(syn6, extDestBadPad), counter: extHeader},
		{name: "padding over 7 bytes", pkt: withExtHeaders(syn6, extDestLongPad), counter: extHeader},
		{name: "hop-by-hop not first", pkt: withExtHeaders(syn6, extDestPad, extHBHPad), counter: extHeader},
		{name: "ipv6 first fragment", pkt: withExtHeaders(syn6, extHBHPad, extFragFirst), counter: fragment,
			check: func(t *testing.T, p records.Packet) {
				if !p.Fragment || !p.IsSYN() || p.SrcPort != 40000 || p.MSS != 1460 {
					t.Errorf("record = fragment %v syn %v port %d mss %d", p.Fragment, p.IsSYN(), p.SrcPort, p.MSS)
				}
			}},
		{name: "ipv6 later fragment", pkt: later6, counter: fragment,
			check: func(t *testing.T, p records.Packet) {
				if !p.Fragment || p.Proto != records.ProtoTCP || !bytes.Equal(p.Payload, laterData) {
					t.Errorf("record = fragment %v proto %v payload %q", p.Fragment, p.Proto, p.Payload)
				}
			}},
		{name: "extension header past the end", pkt: withExtHeaders(syn6[:header.IPv6MinimumSize], extDestTooLong), counter: func(s *Stats) uint64 { return s.DropMalformed.Load() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.inject(tc.pkt)
			r := h.read(200 * time.Millisecond)
			st := h.st.Stats()
			switch {
			case tc.answer && r == nil:
				t.Fatalf("no SYN-ACK, want one (drops: %d)", st.Snapshot().Drops())
			case tc.answer:
				tcp := tcpOf(r)
				if tcp.Flags() != header.TCPFlagSyn|header.TCPFlagAck || tcp.AckNumber() != 1001 {
					t.Errorf("reply flags %v ack %d, want a SYN-ACK acking 1001", tcp.Flags(), tcp.AckNumber())
				}
				if r[0]>>4 == 6 && r[6] != uint8(header.TCPProtocolNumber) {
					t.Errorf("SYN-ACK carries extension header %d, want none", r[6])
				}
			case r != nil:
				t.Fatalf("got a %d-byte reply, want none", len(r))
			default:
				if got := tc.counter(st); got != 1 {
					t.Errorf("counter = %d, want 1", got)
				}
				if st.SYNACKsSent.Load() != 0 {
					t.Errorf("SYN-ACKs sent = %d", st.SYNACKsSent.Load())
				}
			}
			if s := st.Snapshot(); s.PacketsIn != s.SYNACKsSent+s.Handshakes+s.ToStack+s.Drops() {
				t.Errorf("packets in %d != answered %d + drops %d: a packet counted twice or not at all", s.PacketsIn, s.SYNACKsSent, s.Drops())
			}
			h.sink.mu.Lock()
			defer h.sink.mu.Unlock()
			if tc.check != nil {
				if len(h.sink.packets) != 1 {
					t.Fatalf("recorded %d packets, want 1", len(h.sink.packets))
				}
				tc.check(t, h.sink.packets[0])
			}
			if tc.answer && (len(h.sink.packets) != 1 || !h.sink.packets[0].Probed) {
				t.Errorf("answered SYN not recorded as probed")
			}
		})
	}
}

func badFlags(s *Stats) uint64  { return s.DropBadFlags.Load() }
func badSource(s *Stats) uint64 { return s.DropBadSource.Load() }
func fragment(s *Stats) uint64  { return s.DropFragment.Load() }
func extHeader(s *Stats) uint64 { return s.DropExtHeader.Load() }
