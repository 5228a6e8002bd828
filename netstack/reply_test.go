package netstack

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/spoki-telescope/spoki/records"
)

// ipPacket wraps l4 of proto in an IPv4 or IPv6 header from src to dst,
// setting the ICMP, ICMPv6 or UDP checksum.
func ipPacket(src, dst netip.Addr, proto tcpip.TransportProtocolNumber, l4 []byte) []byte {
	l4 = append([]byte(nil), l4...)
	s, d := tcpip.AddrFromSlice(src.AsSlice()), tcpip.AddrFromSlice(dst.AsSlice())
	switch proto {
	case header.ICMPv4ProtocolNumber:
		binary.BigEndian.PutUint16(l4[2:], ^checksum.Checksum(l4, 0))
	case header.ICMPv6ProtocolNumber:
		binary.BigEndian.PutUint16(l4[2:], ^checksum.Checksum(l4, header.PseudoHeaderChecksum(proto, s, d, uint16(len(l4)))))
	case header.UDPProtocolNumber:
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
		binary.BigEndian.PutUint16(l4[6:], ^checksum.Checksum(l4, header.PseudoHeaderChecksum(proto, s, d, uint16(len(l4)))))
	}
	if src.Is4() {
		b := make([]byte, header.IPv4MinimumSize+len(l4))
		ip := header.IPv4(b)
		ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(b)), TTL: 55, ID: 7, Protocol: uint8(proto), SrcAddr: s, DstAddr: d})
		ip.SetChecksum(^ip.CalculateChecksum())
		copy(b[header.IPv4MinimumSize:], l4)
		return b
	}
	b := make([]byte, header.IPv6MinimumSize+len(l4))
	header.IPv6(b).Encode(&header.IPv6Fields{PayloadLength: uint16(len(l4)), TransportProtocol: proto, HopLimit: 55, SrcAddr: s, DstAddr: d})
	copy(b[header.IPv6MinimumSize:], l4)
	return b
}

// echoRequest is an ICMP (ICMPv6 for IPv6 addresses) echo request.
func echoRequest(src, dst netip.Addr, id, seq uint16, data []byte) []byte {
	l4 := []byte{icmpv4EchoRequest, 0, 0, 0, byte(id >> 8), byte(id), byte(seq >> 8), byte(seq)}
	proto := header.ICMPv4ProtocolNumber
	if src.Is6() {
		l4[0], proto = icmpv6EchoRequest, header.ICMPv6ProtocolNumber
	}
	return ipPacket(src, dst, proto, append(l4, data...))
}

// udpPacket is a UDP datagram with its checksum.
func udpPacket(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	l4 := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(l4, sport)
	binary.BigEndian.PutUint16(l4[2:], dport)
	return ipPacket(src, dst, header.UDPProtocolNumber, append(l4, payload...))
}

// splitIP returns the addresses, protocol, TTL and transport bytes of an
// IP packet the front end wrote.
func splitIP(t *testing.T, b []byte) (src, dst netip.Addr, proto uint8, ttl uint8, l4 []byte) {
	t.Helper()
	if b[0]>>4 == 4 {
		ip := header.IPv4(b)
		if !ip.IsValid(len(b)) || ip.CalculateChecksum() != 0xffff {
			t.Fatalf("bad IPv4 header %x", b[:20])
		}
		if ip.Flags()&header.IPv4FlagDontFragment != 0 {
			t.Errorf("answer has DF set; Linux's echo replies do not")
		}
		return netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20])), ip.Protocol(), ip.TTL(), b[ip.HeaderLength():ip.TotalLength()]
	}
	ip := header.IPv6(b)
	return netip.AddrFrom16([16]byte(b[8:24])), netip.AddrFrom16([16]byte(b[24:40])), b[6], ip.HopLimit(), b[40 : 40+int(ip.PayloadLength())]
}

// TestICMPEchoReply: an echo request to the prefixes gets one echo reply
// from the address it was sent to, with its code, id, seq and data, no
// longer than the request and with a valid checksum, in IPv4 and IPv6;
// the request's raw row is probed with icmp-echo-reply and joined to its
// reply row.
func TestICMPEchoReply(t *testing.T) {
	for _, tc := range []struct {
		name     string
		src, dst netip.Addr
	}{
		{"ipv4", scanner4, netip.MustParseAddr("198.51.100.21")},
		{"ipv6", scanner6, netip.MustParseAddr("2001:db8:5b0::21")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			data := []byte("spoki ping payload 0123456789abcdef")
			req := echoRequest(tc.src, tc.dst, 0x4242, 7, data)
			r := answerNoLarger(t, h, req)
			src, dst, proto, ttl, m := splitIP(t, r)
			if src != tc.dst || dst != tc.src || ttl != defaultTTL {
				t.Errorf("reply %v -> %v ttl %d", src, dst, ttl)
			}
			wantType, wantProto := byte(icmpv4EchoReply), uint8(header.ICMPv4ProtocolNumber)
			var init uint16
			if tc.src.Is6() {
				wantType, wantProto = icmpv6EchoReply, uint8(header.ICMPv6ProtocolNumber)
				init = header.PseudoHeaderChecksum(header.ICMPv6ProtocolNumber, tcpip.AddrFromSlice(src.AsSlice()), tcpip.AddrFromSlice(dst.AsSlice()), uint16(len(m)))
			}
			if proto != wantProto || m[0] != wantType || m[1] != 0 {
				t.Errorf("reply proto %d type %d code %d", proto, m[0], m[1])
			}
			if checksum.Checksum(m, init) != 0xffff {
				t.Errorf("reply checksum does not verify")
			}
			if binary.BigEndian.Uint16(m[4:]) != 0x4242 || binary.BigEndian.Uint16(m[6:]) != 7 || !bytes.Equal(m[8:], data) {
				t.Errorf("reply %x does not echo id, seq and data", m)
			}
			if got := h.st.Stats().ICMPEchoReplies.Load(); got != 1 {
				t.Errorf("ICMPEchoReplies = %d", got)
			}
			h.sink.mu.Lock()
			defer h.sink.mu.Unlock()
			if len(h.sink.packets) != 1 || len(h.sink.replies) != 1 {
				t.Fatalf("%d packets, %d replies recorded", len(h.sink.packets), len(h.sink.replies))
			}
			p, rr := h.sink.packets[0], h.sink.replies[0]
			if p.Proto != records.ProtoICMP || !p.Probed || p.Method != records.MethodICMPEchoReply || p.UserID == 0 ||
				p.ICMPRest != 0x42420007 || !bytes.Equal(p.Payload, data) {
				t.Errorf("raw record %+v", p)
			}
			if rr.Method != records.MethodICMPEchoReply || rr.UserID != p.UserID || rr.Src != tc.dst || rr.Dst != tc.src {
				t.Errorf("reply record %+v", rr)
			}
		})
	}
}

// TestICMPEchoLimitedOffMalformed: the per-source budget, --icmp=off,
// bad checksums and other ICMP types each leave echo requests unanswered,
// recorded and counted by cause; another source keeps its own budget.
func TestICMPEchoLimitedOffMalformed(t *testing.T) {
	dst := netip.MustParseAddr("198.51.100.22")
	const burst = 3
	h := newHarness(t, func(c *Config) {
		c.ReplyLimits = &ReplyLimits{ICMP: SYNACKLimit{Rate: 1, Burst: burst}, UDP: SYNACKLimit{Rate: 1, Burst: burst}}
	})
	for i := range 10 {
		h.inject(echoRequest(scanner4, dst, 1, uint16(i), nil))
	}
	other := netip.MustParseAddr("203.0.113.77")
	h.inject(echoRequest(other, dst, 1, 1, nil))
	bad := echoRequest(other, dst, 1, 2, nil)
	bad[len(bad)-1] ^= 0xff
	h.inject(bad)
	h.inject(ipPacket(other, dst, header.ICMPv4ProtocolNumber, []byte{0, 0, 0, 0, 0, 1, 0, 1})) // an echo reply: backscatter
	n := 0
	for h.read(300*time.Millisecond) != nil {
		n++
	}
	st := h.st.Stats()
	// The rate may add one token during the test, never more.
	if n < burst+1 || n > burst+2 || st.ICMPEchoReplies.Load() != uint64(n) {
		t.Errorf("%d replies (counted %d), want the burst %d plus the other source's one", n, st.ICMPEchoReplies.Load(), burst)
	}
	if got := st.DropICMPRate.Load(); got+uint64(n) != 11 {
		t.Errorf("DropICMPRate = %d with %d replies, want 11 in all", got, n)
	}
	if st.DropICMPMalformed.Load() != 1 || st.DropICMP.Load() != 1 {
		t.Errorf("malformed %d, other ICMP %d, want 1 and 1", st.DropICMPMalformed.Load(), st.DropICMP.Load())
	}

	off := newHarness(t, func(c *Config) { c.ICMPOff = true })
	off.inject(echoRequest(scanner6, netip.MustParseAddr("2001:db8:5b0::22"), 1, 1, nil))
	if off.read(300*time.Millisecond) != nil {
		t.Errorf("--icmp=off: got a reply")
	}
	if got := off.st.Stats().DropICMPOff.Load(); got != 1 {
		t.Errorf("DropICMPOff = %d", got)
	}
	off.sink.mu.Lock()
	defer off.sink.mu.Unlock()
	if len(off.sink.packets) != 1 || off.sink.packets[0].Probed {
		t.Errorf("--icmp=off: records %+v, want one unprobed", off.sink.packets)
	}
}

// replyStack is synStack with a Device that keeps what is written, and the
// default reply limits.
func replyStack(tb testing.TB) *Stack {
	s := synStack(tb)
	s.rlim = newSYNLimiter(DefaultReplyLimits().asSYN())
	return s
}

// TestICMPAndUDPRepliesAllocateNothing: answering an echo request or a DNS
// query (parse, limit, encode, write) allocates nothing: the only
// allocation of the path is the record's copy of a payload, as for any
// packet, and an echo without data (what zmap, masscan and nmap -PE send)
// allocates nothing at all.
func TestICMPAndUDPRepliesAllocateNothing(t *testing.T) {
	s := replyStack(t)
	s.rlim = nil // every packet answered
	dst4, dst6 := netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("2001:db8:5b0::7")
	dns := []byte{0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0, 0, 1, 0, 1}
	for _, tc := range []struct {
		name    string
		pkt     []byte
		want    float64 // the record's payload copy
		counter *uint64
	}{
		{"echo ipv4", echoRequest(scanner4, dst4, 1, 2, nil), 0, nil},
		{"echo ipv6", echoRequest(scanner6, dst6, 1, 2, nil), 0, nil},
		{"echo ipv4 with data", echoRequest(scanner4, dst4, 1, 2, make([]byte, 56)), 1, nil},
		{"dns ipv4", udpPacket(scanner4, dst4, 5353, 53, dns), 1, nil},
		{"dns ipv6", udpPacket(scanner6, dst6, 5353, 53, dns), 1, nil},
	} {
		before := s.stats.ICMPEchoReplies.Load() + s.stats.UDPReplies.Load()
		allocs := testing.AllocsPerRun(1000, func() {
			var rec records.Packet
			s.inspect(tc.pkt, &rec)
		})
		if allocs != tc.want {
			t.Errorf("%s: %.1f allocations per packet, want %.0f (the record's payload)", tc.name, allocs, tc.want)
		}
		if s.stats.ICMPEchoReplies.Load()+s.stats.UDPReplies.Load() == before {
			t.Errorf("%s: nothing answered: the path measured is not the reply's", tc.name)
		}
	}
}

// TestUDPReplies: a DNS query to the prefixes gets a REFUSED answer from
// the port and address it was sent to, with a valid checksum and no longer
// than the query; other ports, --udp=off, malformed queries, reflection
// ports and a spent budget get nothing and are counted by cause.
func TestUDPReplies(t *testing.T) {
	dns := []byte{0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1, 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0, 0, 1, 0, 1,
		0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0}
	for _, tc := range []struct {
		name     string
		src, dst netip.Addr
	}{
		{"ipv4", scanner4, netip.MustParseAddr("198.51.100.53")},
		{"ipv6", scanner6, netip.MustParseAddr("2001:db8:5b0::53")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			req := udpPacket(tc.src, tc.dst, 40000, 53, dns)
			r := answerNoLarger(t, h, req)
			src, dst, proto, _, u := splitIP(t, r)
			if src != tc.dst || dst != tc.src || proto != uint8(header.UDPProtocolNumber) {
				t.Fatalf("answer %v -> %v proto %d", src, dst, proto)
			}
			uh := header.UDP(u)
			if uh.SourcePort() != 53 || uh.DestinationPort() != 40000 || int(uh.Length()) != len(u) {
				t.Errorf("UDP header %x", u[:8])
			}
			if !udpChecksumValid(u, src.AsSlice(), dst.AsSlice(), tc.src.Is6()) || uh.Checksum() == 0 {
				t.Errorf("UDP checksum does not verify")
			}
			a := u[8:]
			if binary.BigEndian.Uint16(a) != 0xabcd || a[3]&0xf != 5 || a[2]&0x80 == 0 {
				t.Errorf("answer %x is not REFUSED for id abcd", a)
			}
			h.sink.mu.Lock()
			p := h.sink.packets[0]
			h.sink.mu.Unlock()
			if !p.Probed || p.Method != records.MethodUDPReply || !bytes.Equal(p.Payload, dns) {
				t.Errorf("raw record %+v", p)
			}
		})
	}

	dst := netip.MustParseAddr("198.51.100.54")
	h := newHarness(t, func(c *Config) {
		c.ReplyLimits = &ReplyLimits{ICMP: SYNACKLimit{Rate: 1, Burst: 2}, UDP: SYNACKLimit{Rate: 1, Burst: 2}}
	})
	for range 6 {
		h.inject(udpPacket(scanner4, dst, 40001, 53, dns))
	}
	other := netip.MustParseAddr("203.0.113.78")
	h.inject(udpPacket(other, dst, 40001, 9, dns))        // discard: no service
	h.inject(udpPacket(other, dst, 40001, 53, dns[:10]))  // short
	h.inject(udpPacket(other, dst, 19, 53, dns))          // from chargen
	h.inject(udpPacket(other, dst, 40001, 123, monlist7)) // NTP mode 7
	n := 0
	for h.read(300*time.Millisecond) != nil {
		n++
	}
	st := h.st.Stats()
	if n < 2 || n > 3 || st.DropUDPRate.Load()+uint64(n) != 6 {
		t.Errorf("%d answers, %d rate-limited, want the burst of 2 (+1 refill) of 6", n, st.DropUDPRate.Load())
	}
	if st.DropUDP.Load() != 1 || st.DropUDPMalformed.Load() != 2 || st.DropBadSource.Load() != 1 {
		t.Errorf("no service %d, malformed %d, bad source %d: want 1, 2, 1", st.DropUDP.Load(), st.DropUDPMalformed.Load(), st.DropBadSource.Load())
	}

	off := newHarness(t, func(c *Config) { c.UDPOff = true })
	off.inject(udpPacket(scanner4, dst, 40001, 53, dns))
	if off.read(300*time.Millisecond) != nil || off.st.Stats().DropUDPOff.Load() != 1 {
		t.Errorf("--udp=off: answered, or not counted (%d)", off.st.Stats().DropUDPOff.Load())
	}
}

// monlist7 is ntpdc's monlist request (mode 7), never answered.
var monlist7 = append([]byte{0x17, 0x00, 0x03, 0x2a}, make([]byte, 44)...)

// BenchmarkEchoReply measures answering one echo request (parse,
// checksum, limit, encode, write to a discarding Device), IPv4 without
// data: what zmap's ICMP scan sends.
func BenchmarkEchoReply(b *testing.B) {
	s := replyStack(b)
	pkt := echoRequest(scanner4, netip.MustParseAddr("198.51.100.7"), 1, 2, nil)
	s.rlim = nil
	b.ReportAllocs()
	for b.Loop() {
		var rec records.Packet
		s.inspect(pkt, &rec)
	}
	if s.stats.ICMPEchoReplies.Load() == 0 {
		b.Fatal("nothing answered")
	}
}

// BenchmarkUDPReplyDNS measures answering one DNS query with REFUSED
// (the record's copy of the query is the one allocation).
func BenchmarkUDPReplyDNS(b *testing.B) {
	s := replyStack(b)
	s.rlim = nil
	dns := []byte{0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0, 0, 1, 0, 1}
	pkt := udpPacket(scanner4, netip.MustParseAddr("198.51.100.7"), 5353, 53, dns)
	b.ReportAllocs()
	for b.Loop() {
		var rec records.Packet
		s.inspect(pkt, &rec)
	}
	if s.stats.UDPReplies.Load() == 0 {
		b.Fatal("nothing answered")
	}
}

// answerNoLarger injects req and returns the answer the front end writes
// within a second, failing the test without one and flagging an answer
// larger than req (spoki never amplifies).
func answerNoLarger(t *testing.T, h *harness, req []byte) []byte {
	t.Helper()
	h.inject(req)
	r := h.read(time.Second)
	if r == nil {
		t.Fatal("no answer")
	}
	if len(r) > len(req) {
		t.Errorf("answer of %d bytes to a request of %d", len(r), len(req))
	}
	return r
}
