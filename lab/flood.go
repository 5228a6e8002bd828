package lab

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Flood limits: a flood is a bounded benchmark load, never an open-ended
// one.
const (
	// DefaultFloodDuration is the flood's length when FloodConfig.Duration
	// is zero.
	DefaultFloodDuration = 10 * time.Second
	// MaxFloodDuration caps FloodConfig.Duration.
	MaxFloodDuration = 60 * time.Second
	// DefaultFloodBatch is how many frames one sendmmsg call carries.
	DefaultFloodBatch = 64
)

// FloodKind is the kind of segment a flood sends.
type FloodKind uint8

// Flood kinds. FloodSYN is the scan load; the others test that the
// telescope drops what it must not answer.
const (
	// FloodSYN sends SYNs with an MSS option.
	FloodSYN FloodKind = iota
	// FloodACK sends ACKs whose acknowledgment numbers are random, that
	// is bad SYN cookies.
	FloodACK
	// FloodSYNACK sends SYN-ACKs: backscatter of a SYN flood elsewhere.
	FloodSYNACK
	// FloodRST sends RST-ACKs: backscatter of a flood on closed ports.
	FloodRST
)

// String returns the kind's name as the CLI spells it.
func (k FloodKind) String() string {
	switch k {
	case FloodSYN:
		return "syn"
	case FloodACK:
		return "ack"
	case FloodSYNACK:
		return "synack"
	case FloodRST:
		return "rst"
	}
	return fmt.Sprintf("FloodKind(%d)", uint8(k))
}

// ParseFloodKind parses the CLI's --kind value.
func ParseFloodKind(s string) (FloodKind, error) {
	for k := FloodSYN; k <= FloodRST; k++ {
		if k.String() == s {
			return k, nil
		}
	}
	return 0, fmt.Errorf("lab: flood kind %q: want syn, ack, synack or rst", s)
}

// FloodConfig says what Flood sends. Zero values mean defaults.
type FloodConfig struct {
	// Iface is the interface to write frames to (the scanner's veth).
	Iface string
	// Prefix holds the destinations: random addresses in it, random ports
	// 1 to 65535.
	Prefix netip.Prefix
	// Src holds the spoofed sources; the zero value means FloodSrc4 or
	// FloodSrc6, by Prefix's family. Source ports are random too.
	Src netip.Prefix
	// Kind is the segment sent.
	Kind FloodKind
	// Irregular makes SYNs look like ZMap's and Masscan's, the paper's
	// irregular SYNs: no TCP options, TTL (hop limit) 255 and, on IPv4,
	// the fixed IP ID 54321. Without it SYNs carry an MSS option, TTL 64
	// and random IP IDs, which the two-phase detector ignores.
	Irregular bool
	// Port, when not 0, is every frame's destination port (a scan of one
	// service); 0 draws ports 1 to 65535 at random.
	Port uint16
	// Rate is the target rate in packets per second; 0 sends as fast as
	// possible.
	Rate int
	// Duration bounds the flood: 0 means DefaultFloodDuration, and more
	// than MaxFloodDuration is cut to it.
	Duration time.Duration
	// Count, when not 0, stops the flood after that many packets.
	Count uint64
	// DstMAC is the frames' destination; nil looks up the neighbour entry
	// of the gateway that routes Prefix on Iface.
	DstMAC net.HardwareAddr
	// Batch is the number of frames per sendmmsg; 0 means
	// DefaultFloodBatch.
	Batch int
	// Seed makes the frames reproducible; 0 draws a random seed.
	Seed uint64
	// Netns, when set, names the namespace in which the socket is opened
	// (for in-process tests).
	Netns string
}

// FloodResult is what a flood achieved.
type FloodResult struct {
	// Sent counts the frames the kernel accepted.
	Sent uint64
	// Refused counts the frames the kernel refused (ENOBUFS and the like).
	Refused uint64
	// Elapsed is the time from the first send to the last.
	Elapsed time.Duration
}

// Rate returns the achieved rate in packets per second.
func (r FloodResult) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Sent) / r.Elapsed.Seconds()
}

// String formats the result as the CLI prints it.
func (r FloodResult) String() string {
	return fmt.Sprintf("sent %d packets in %.2fs (%.0f pps), %d refused", r.Sent, r.Elapsed.Seconds(), r.Rate(), r.Refused)
}

// Irregular SYN header values (ZMap's and Masscan's), used with
// FloodConfig.Irregular.
const (
	// IrregularTTL is the TTL (IPv6: hop limit) of irregular SYNs.
	IrregularTTL = 255
	// IrregularIPID is the IPv4 identification of irregular SYNs.
	IrregularIPID = 54321
)

// Frame layout offsets.
const (
	ethLen  = 14
	ipv4Len = 20
	ipv6Len = 40
)

// frameGen fills flood frames from a template. Every field that varies per
// packet (addresses, ports, sequence and acknowledgment numbers, IPv4 id)
// is zero in the template, so the template's one's-complement sums are the
// sums of the fixed fields, and a packet's checksums are those sums plus
// the words it patches in: a handful of additions per packet instead of a
// pass over the headers.
type frameGen struct {
	tmpl      []byte
	v4        bool
	ipOff     int // IP header
	tcpOff    int // TCP header
	srcOff    int // source address
	dstOff    int // destination address
	addrLen   int
	hasAck    bool
	fixedID   bool   // the template holds the IPv4 id: don't patch it
	port      uint16 // fixed destination port, or 0
	ipSum     uint64 // template IPv4 header sum (checksum field zero)
	tcpSum    uint64 // template TCP sum plus the pseudo-header's fixed part
	src, dst  addrRange
	rng       uint64 // splitmix64 state
	etherType uint16
}

// addrRange draws random addresses in a prefix as two 64-bit halves (IPv4
// uses the low half's low 32 bits).
type addrRange struct {
	hi, lo         uint64
	maskHi, maskLo uint64 // host bits
}

// newAddrRange returns the range of p.
func newAddrRange(p netip.Prefix) addrRange {
	p = p.Masked()
	if p.Addr().Is4() {
		a := p.Addr().As4()
		host := uint64(1)<<(32-p.Bits()) - 1
		return addrRange{lo: uint64(binary.BigEndian.Uint32(a[:])), maskLo: host}
	}
	a := p.Addr().As16()
	r := addrRange{hi: binary.BigEndian.Uint64(a[:8]), lo: binary.BigEndian.Uint64(a[8:])}
	switch b := p.Bits(); {
	case b >= 64:
		r.maskLo = ^uint64(0) >> (b - 64)
	default:
		r.maskLo = ^uint64(0)
		r.maskHi = ^uint64(0) >> b
	}
	return r
}

// Source is the prefix the flood's sources are spoofed from: Src, or by
// default FloodSrc4 or FloodSrc6 by Prefix's family.
func (cfg FloodConfig) Source() netip.Prefix {
	switch {
	case cfg.Src.IsValid():
		return cfg.Src
	case cfg.Prefix.Addr().Is4():
		return FloodSrc4
	}
	return FloodSrc6
}

// String says what the flood sends, as the CLI's start line does: the
// prefix, the kind, the sources, the interface and the longest duration
// (Duration, cut to MaxFloodDuration).
func (cfg FloodConfig) String() string {
	kind := cfg.Kind.String()
	if cfg.Irregular {
		kind = "irregular " + kind
	}
	return fmt.Sprintf("%s with %s from %s on %s for at most %v",
		cfg.Prefix, kind, cfg.Source(), cfg.Iface, min(cfg.Duration, MaxFloodDuration))
}

// newFrameGen builds the template for cfg's kind and families.
func newFrameGen(cfg FloodConfig, srcMAC, dstMAC net.HardwareAddr, seed uint64) (*frameGen, error) {
	dst := cfg.Prefix
	if !dst.IsValid() {
		return nil, fmt.Errorf("lab: flood: no destination prefix")
	}
	src := cfg.Source()
	if src.Addr().Is4() != dst.Addr().Is4() {
		return nil, fmt.Errorf("lab: flood: source %s and destination %s differ in family", src, dst)
	}
	g := &frameGen{
		v4:     dst.Addr().Is4(),
		ipOff:  ethLen,
		src:    newAddrRange(src),
		dst:    newAddrRange(dst),
		rng:    seed,
		hasAck: cfg.Kind != FloodSYN,
		port:   cfg.Port,
	}
	if cfg.Irregular && cfg.Kind != FloodSYN {
		return nil, fmt.Errorf("lab: flood: irregular is a kind of SYN, not of %v", cfg.Kind)
	}
	ttl, ipid := uint8(64), uint16(0)
	if cfg.Irregular {
		ttl, ipid, g.fixedID = IrregularTTL, IrregularIPID, true
	}
	tcp := &layers.TCP{Window: 64240}
	switch cfg.Kind {
	case FloodSYN, FloodSYNACK:
		tcp.SYN = true
		tcp.ACK = cfg.Kind == FloodSYNACK
		mss := []byte{0x05, 0xb4} // 1460
		if !g.v4 {
			mss = []byte{0x05, 0xa0} // 1440
		}
		if !cfg.Irregular {
			tcp.Options = []layers.TCPOption{{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: mss}}
		}
	case FloodACK:
		tcp.ACK = true
		tcp.Window = 502
	case FloodRST:
		tcp.RST = true
		tcp.ACK = true
		tcp.Window = 0
	default:
		return nil, fmt.Errorf("lab: flood: unknown kind %v", cfg.Kind)
	}
	eth := &layers.Ethernet{SrcMAC: srcMAC, DstMAC: dstMAC}
	var ip gopacket.SerializableLayer
	if g.v4 {
		eth.EthernetType = layers.EthernetTypeIPv4
		ip = &layers.IPv4{Version: 4, IHL: 5, TTL: ttl, Id: ipid, Protocol: layers.IPProtocolTCP,
			SrcIP: net.IPv4zero.To4(), DstIP: net.IPv4zero.To4()}
		g.tcpOff, g.srcOff, g.dstOff, g.addrLen = ethLen+ipv4Len, ethLen+12, ethLen+16, 4
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip = &layers.IPv6{Version: 6, HopLimit: ttl, NextHeader: layers.IPProtocolTCP,
			SrcIP: net.IPv6zero, DstIP: net.IPv6zero}
		g.tcpOff, g.srcOff, g.dstOff, g.addrLen = ethLen+ipv6Len, ethLen+8, ethLen+24, 16
	}
	g.etherType = uint16(eth.EthernetType)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, eth, ip, tcp); err != nil {
		return nil, fmt.Errorf("lab: flood: build frame template: %w", err)
	}
	g.tmpl = append([]byte(nil), buf.Bytes()...)
	if g.v4 {
		g.ipSum = sum16(g.tmpl[g.ipOff:g.tcpOff])
	}
	// The template may end in Ethernet padding (frames of at least 60
	// bytes): the segment's length comes from the IP header. Padding is
	// zero, so summing it changes nothing.
	var tcpLen int
	if g.v4 {
		tcpLen = int(binary.BigEndian.Uint16(g.tmpl[g.ipOff+2:])) - ipv4Len
	} else {
		tcpLen = int(binary.BigEndian.Uint16(g.tmpl[g.ipOff+4:]))
	}
	g.tcpSum = sum16(g.tmpl[g.tcpOff:]) + uint64(layers.IPProtocolTCP) + uint64(tcpLen)
	return g, nil
}

// frameLen is the length of every frame.
func (g *frameGen) frameLen() int { return len(g.tmpl) }

// next returns the next 64 random bits (splitmix64: fast, and good enough
// to spread addresses and ports).
func (g *frameGen) next() uint64 {
	g.rng += 0x9e3779b97f4a7c15
	z := g.rng
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// putAddr writes a random address of r at f[off:] and returns the sum of
// its 16-bit words.
func (g *frameGen) putAddr(f []byte, off int, r *addrRange) uint64 {
	if g.v4 {
		a := uint32(r.lo&^r.maskLo | g.next()&r.maskLo)
		binary.BigEndian.PutUint32(f[off:], a)
		return uint64(a>>16) + uint64(a&0xffff)
	}
	hi := r.hi&^r.maskHi | g.next()&r.maskHi
	lo := r.lo&^r.maskLo | g.next()&r.maskLo
	binary.BigEndian.PutUint64(f[off:], hi)
	binary.BigEndian.PutUint64(f[off+8:], lo)
	return words64(hi) + words64(lo)
}

// fill writes the next frame into f, which must be frameLen bytes long.
func (g *frameGen) fill(f []byte) {
	copy(f, g.tmpl)
	addrSum := g.putAddr(f, g.srcOff, &g.src) + g.putAddr(f, g.dstOff, &g.dst)

	r := g.next()
	sport := uint16(r%65535) + 1
	dport := uint16((r>>16)%65535) + 1
	if g.port != 0 {
		dport = g.port
	}
	ipid := uint16(r >> 32)
	t := f[g.tcpOff:]
	binary.BigEndian.PutUint16(t[0:], sport)
	binary.BigEndian.PutUint16(t[2:], dport)
	r = g.next()
	seq := uint32(r)
	binary.BigEndian.PutUint32(t[4:], seq)
	s := g.tcpSum + addrSum + uint64(sport) + uint64(dport) + uint64(seq>>16) + uint64(seq&0xffff)
	if g.hasAck {
		ack := uint32(r >> 32)
		binary.BigEndian.PutUint32(t[8:], ack)
		s += uint64(ack>>16) + uint64(ack&0xffff)
	}
	binary.BigEndian.PutUint16(t[16:], fold(s))

	if g.v4 {
		ip := f[g.ipOff:]
		if g.fixedID {
			// The template's id (copied above) is in g.ipSum already.
			ipid = 0
		} else {
			binary.BigEndian.PutUint16(ip[4:], ipid)
		}
		// The IPv4 header sum covers its addresses: addrSum is exactly
		// their words.
		binary.BigEndian.PutUint16(ip[10:], fold(g.ipSum+uint64(ipid)+addrSum))
	}
}

// sum16 returns the unfolded sum of b's big-endian 16-bit words (b has an
// even length here).
func sum16(b []byte) uint64 {
	var s uint64
	for i := 0; i+1 < len(b); i += 2 {
		s += uint64(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint64(b[len(b)-1]) << 8
	}
	return s
}

// words64 returns the sum of the four 16-bit words of v.
func words64(v uint64) uint64 {
	return v>>48 + v>>32&0xffff + v>>16&0xffff + v&0xffff
}

// fold folds a one's-complement sum to 16 bits and complements it: the
// Internet checksum.
func fold(s uint64) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}
