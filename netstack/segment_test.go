package netstack

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/spoki-telescope/spoki/records"
	"github.com/spoki-telescope/spoki/tun/tuntest"
)

// legacyEncode is the front end's encoder before it used gVisor's header
// encoders (SYN-ACK with mss != 0, ACK or RST otherwise), kept here to
// prove encodeSegment writes the same bytes.
func legacyEncode(seg *segment) []byte {
	tcpLen := header.TCPMinimumSize
	if seg.mss != 0 {
		tcpLen = synAckLen
	}
	var pkt [maxSegmentLen]byte
	var ipHdr int
	if len(seg.local) == 16 {
		ipHdr = header.IPv6MinimumSize
		pkt[0] = 0x60
		binary.BigEndian.PutUint16(pkt[4:], uint16(tcpLen))
		pkt[6] = uint8(header.TCPProtocolNumber)
		pkt[7] = defaultTTL
		copy(pkt[8:24], seg.local)
		copy(pkt[24:40], seg.remote)
	} else {
		ipHdr = header.IPv4MinimumSize
		pkt[0] = 0x45
		binary.BigEndian.PutUint16(pkt[2:], uint16(ipHdr+tcpLen))
		binary.BigEndian.PutUint16(pkt[4:], seg.id)
		pkt[6] = 0x40 // DF
		pkt[8] = defaultTTL
		pkt[9] = uint8(header.TCPProtocolNumber)
		copy(pkt[12:16], seg.local)
		copy(pkt[16:20], seg.remote)
		binary.BigEndian.PutUint16(pkt[10:], ^checksum.Checksum(pkt[:ipHdr], 0))
	}
	n := ipHdr + tcpLen
	t := pkt[ipHdr:n]
	binary.BigEndian.PutUint16(t[0:], seg.sport)
	binary.BigEndian.PutUint16(t[2:], seg.dport)
	binary.BigEndian.PutUint32(t[4:], seg.seq)
	binary.BigEndian.PutUint32(t[8:], seg.ack)
	t[12] = byte(tcpLen/4) << 4
	t[13] = uint8(seg.flags)
	binary.BigEndian.PutUint16(t[14:], 0xffff)
	if seg.mss != 0 {
		t[20], t[21] = header.TCPOptionMSS, 4
		binary.BigEndian.PutUint16(t[22:], seg.mss)
	}
	xsum := checksum.Checksum(seg.local, 0)
	xsum = checksum.Checksum(seg.remote, xsum)
	var tail [4]byte
	binary.BigEndian.PutUint16(tail[0:], uint16(header.TCPProtocolNumber))
	binary.BigEndian.PutUint16(tail[2:], uint16(tcpLen))
	xsum = checksum.Checksum(tail[:], xsum)
	binary.BigEndian.PutUint16(t[16:], ^checksum.Checksum(t, xsum))
	return pkt[:n]
}

// TestEncodeSegmentMatchesLegacy checks that the SYN-ACK, ACK and RST
// encoded with gVisor's header encoders are byte for byte the packets of
// the former hand-written encoder, in IPv4 and IPv6, over random fields.
func TestEncodeSegmentMatchesLegacy(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	kinds := []struct {
		name  string
		flags header.TCPFlags
		mss   bool
	}{
		{"syn-ack", header.TCPFlagSyn | header.TCPFlagAck, true},
		{"ack", header.TCPFlagAck, false},
		{"rst", header.TCPFlagRst, false},
	}
	for _, fam := range []struct {
		name string
		size int
	}{{"ipv4", 4}, {"ipv6", 16}} {
		for _, k := range kinds {
			for i := 0; i < 200; i++ {
				local, remote := make([]byte, fam.size), make([]byte, fam.size)
				for j := range local {
					local[j], remote[j] = byte(rng.Uint32()), byte(rng.Uint32())
				}
				seg := segment{
					local: local, remote: remote,
					sport: uint16(rng.Uint32()), dport: uint16(rng.Uint32()),
					seq: rng.Uint32(), ack: rng.Uint32(), flags: k.flags,
					id: uint16(rng.Uint32()),
				}
				if k.mss {
					seg.mss = uint16(rng.Uint32()) | 1
				}
				var pkt [maxSegmentLen]byte
				n := encodeSegment(pkt[:], &seg)
				if want := legacyEncode(&seg); !bytes.Equal(pkt[:n], want) {
					t.Fatalf("%s %s %+v:\n got %x\nwant %x", fam.name, k.name, seg, pkt[:n], want)
				}
				// The shared pseudo-header helper checks what it made.
				if !tcpChecksumValid(pkt[headerLen(fam.size):n], local, remote) {
					t.Fatalf("%s %s: TCP checksum does not verify", fam.name, k.name)
				}
			}
		}
	}
}

func headerLen(addrSize int) int {
	if addrSize == 16 {
		return header.IPv6MinimumSize
	}
	return header.IPv4MinimumSize
}

// discardLink is a TUN link whose writes succeed and are discarded.
func discardLink() *tunLink {
	return newTUNLink(tuntest.New(1, 1500, 0), 1500, nil)
}

// synStack is a front end with a jar over a Device that discards what it
// is written, so that the whole SYN path runs, the write included.
func synStack(tb testing.TB) *Stack {
	j, _ := testJar(&testing.T{})
	s := &Stack{cfg: Config{MTU: 1500, Prefixes: []netip.Prefix{telescope4, telescope6}, MaxPayloadBytes: 1500},
		jar: j, conns: newConnTable(1)}
	s.tun = discardLink()
	return s
}

// testSYN is a SYN with options opts from scanner4 to 198.51.100.7:80.
func testSYN(opts []byte) []byte {
	return seg{src: scanner4, dst: netip.MustParseAddr("198.51.100.7"), sport: 4000, dport: 80, seq: 1,
		flags: header.TCPFlagSyn, opts: opts}.build()
}

// testSYNAllocatesNothing fails if answering a SYN allocates or writes no
// SYN-ACK, in IPv4 and IPv6, with the plain persona and with ones that
// answer every option. answer prepares the path measured for stack s and
// SYN pkt, and returns one SYN's work.
func testSYNAllocatesNothing(t *testing.T, answer func(s *Stack, pkt []byte) func()) {
	t.Helper()
	s := synStack(t)
	linux := synStack(t)
	linux.cfg.Persona = PersonaLookup(PersonaPlain, []PersonaPrefix{{telescope4, PersonaLinux}, {telescope6, PersonaWindows}})
	for _, tc := range []struct {
		name     string
		s        *Stack
		opts     []byte
		src, dst netip.Addr
	}{
		{"ipv4", s, mssOpt, scanner4, netip.MustParseAddr("198.51.100.7")},
		{"ipv6", s, mssOpt, scanner6, netip.MustParseAddr("2001:db8:5b0::7")},
		{"ipv4 linux persona", linux, synFull, scanner4, netip.MustParseAddr("198.51.100.7")},
		{"ipv6 windows persona", linux, synFull, scanner6, netip.MustParseAddr("2001:db8:5b0::7")},
	} {
		pkt := seg{src: tc.src, dst: tc.dst, sport: 4000, dport: 80, seq: 1,
			flags: header.TCPFlagSyn, opts: tc.opts}.build()
		run := answer(tc.s, pkt)
		before := tc.s.stats.SYNACKsSent.Load()
		if allocs := testing.AllocsPerRun(1000, run); allocs != 0 {
			t.Errorf("%s: %.1f allocations per SYN, want 0", tc.name, allocs)
		}
		if tc.s.stats.SYNACKsSent.Load() == before {
			t.Errorf("%s: no SYN-ACK written: the path measured is not the SYN's", tc.name)
		}
	}
}

// TestSYNAllocatesNothing proves that answering a SYN (parse, checksum,
// cookie, SYN-ACK encoded and written) allocates nothing, in IPv4 and IPv6,
// with the plain persona and with one that answers every option.
func TestSYNAllocatesNothing(t *testing.T) {
	testSYNAllocatesNothing(t, func(s *Stack, pkt []byte) func() {
		return func() {
			var rec records.Packet
			s.inspect(pkt, &rec)
		}
	})
}

// BenchmarkEncodeSegment measures encoding one SYN-ACK with gVisor's header
// encoders, and fails if it allocates.
func BenchmarkEncodeSegment(b *testing.B) {
	local, remote := netip.MustParseAddr("198.51.100.7").AsSlice(), scanner4.AsSlice()
	seg := segment{local: local, remote: remote, sport: 80, dport: 4000, seq: 7, ack: 2,
		flags: header.TCPFlagSyn | header.TCPFlagAck, mss: 1460, id: 9}
	var pkt [maxSegmentLen]byte
	if a := testing.AllocsPerRun(100, func() { encodeSegment(pkt[:], &seg) }); a != 0 {
		b.Fatalf("%.1f allocations per segment, want 0", a)
	}
	b.ReportAllocs()
	for b.Loop() {
		encodeSegment(pkt[:], &seg)
	}
}

// TestChecksumMatchesGVisor checks the front end's checksum helpers
// against gVisor's: the sum of every length from 0 to 130 bytes (odd ones
// too) of random data and of all-ones and all-zero data, from random
// starting sums, and the pseudo-header sums of IPv4 and IPv6 for TCP, UDP and ICMPv6.
func TestChecksumMatchesGVisor(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 130)
	for _, fill := range []string{"random", "ones", "zeros"} {
		for n := 0; n <= len(buf); n++ {
			for k := 0; k < 20; k++ {
				for i := range buf {
					switch fill {
					case "random":
						buf[i] = byte(rng.Uint32())
					case "ones":
						buf[i] = 0xff
					default:
						buf[i] = 0
					}
				}
				init := uint16(rng.Uint32())
				if k == 0 {
					init = 0
				}
				want := checksum.Checksum(buf[:n], init)
				if got := foldSum(addSum(buf[:n], uint64(init))); got != want {
					t.Fatalf("%s, %d bytes from %#04x: sum %#04x, gVisor's %#04x", fill, n, init, got, want)
				}
			}
		}
	}
	for _, size := range []int{4, 16} {
		src, dst := make([]byte, size), make([]byte, size)
		for k := 0; k < 1000; k++ {
			for i := range src {
				src[i], dst[i] = byte(rng.Uint32()), byte(rng.Uint32())
			}
			n := int(rng.Uint32N(1 << 16))
			for _, proto := range []tcpip.TransportProtocolNumber{header.TCPProtocolNumber, header.UDPProtocolNumber, header.ICMPv6ProtocolNumber} {
				want := header.PseudoHeaderChecksum(proto, tcpip.AddrFromSlice(src), tcpip.AddrFromSlice(dst), uint16(n))
				if got := foldSum(pseudoSum(uint8(proto), src, dst, n)); got != want {
					t.Fatalf("pseudo-header of protocol %d, %d-byte addresses, length %d: %#04x, gVisor's %#04x", proto, size, n, got, want)
				}
			}
		}
	}
}

// BenchmarkTCPChecksum compares the SYN path's checksum of a SYN (20-byte
// TCP header, IPv4 pseudo-header) with gVisor's, as the front end
// computed it before.
func BenchmarkTCPChecksum(b *testing.B) {
	pkt := testSYN(nil)
	l4, src, dst := pkt[header.IPv4MinimumSize:], pkt[12:16], pkt[16:20]
	b.Run("addSum", func(b *testing.B) {
		for b.Loop() {
			if !tcpChecksumValid(l4, src, dst) {
				b.Fatal("bad checksum")
			}
		}
	})
	b.Run("gvisor", func(b *testing.B) {
		for b.Loop() {
			init := header.PseudoHeaderChecksum(header.TCPProtocolNumber, wireAddr(src), wireAddr(dst), uint16(len(l4)))
			if checksum.Checksum(l4, init) != 0xffff {
				b.Fatal("bad checksum")
			}
		}
	})
}
