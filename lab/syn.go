package lab

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// MaxSYNCount caps the number of random targets of one SYN probe: the probe
// is a check, not a scan.
const MaxSYNCount = 65536

// DefaultSYNWait is how long ProbeSYN listens after its last SYN when
// SYNConfig.Wait is zero.
const DefaultSYNWait = 5 * time.Second

// SYNConfig says what ProbeSYN sends. Zero values mean defaults.
type SYNConfig struct {
	// Targets are the addresses and ports to probe. When empty, Count
	// random targets are drawn from Prefixes.
	Targets []netip.AddrPort
	// Prefixes and Count give the random targets: distinct address and
	// port pairs, ports 1 to 65535 (IPv4 avoids the all-zeros and all-ones
	// host parts of prefixes shorter than /31).
	Prefixes []netip.Prefix
	Count    int
	// Seed makes the random targets, source ports and sequence numbers
	// reproducible; 0 draws a random seed.
	Seed uint64
	// Wait is how long to listen for SYN-ACKs after the last SYN; 0 means
	// DefaultSYNWait.
	Wait time.Duration
	// Netns, when set, names the namespace in which the sockets are opened
	// (for in-process tests); the CLI leaves it empty because it already
	// runs inside the scanner namespace.
	Netns string
}

// SYNResult is what one target answered.
type SYNResult struct {
	// Target is the probed address and port; Source is the address and
	// port the SYN came from.
	Target, Source netip.AddrPort
	// Seq is the SYN's sequence number.
	Seq uint32
	// SYNACKs counts the SYN-ACKs received from Target to Source during
	// the probe (a correct telescope sends exactly one).
	SYNACKs int
	// AckOK reports whether at least one SYN-ACK arrived and every one
	// acknowledged Seq+1.
	AckOK bool
	// ReplySeq is the sequence number (the cookie) of the first SYN-ACK.
	ReplySeq uint32
}

// String formats the result as the CLI prints it.
func (r SYNResult) String() string {
	return fmt.Sprintf("%s synacks=%d ack_ok=%t seq=%d sport=%d", r.Target, r.SYNACKs, r.AckOK, r.ReplySeq, r.Source.Port())
}

// OK reports whether the target got exactly one SYN-ACK that acknowledged
// the SYN.
func (r SYNResult) OK() bool { return r.SYNACKs == 1 && r.AckOK }

// SYNTargets draws count distinct random targets from prefixes, spread
// evenly over them. The same seed gives the same targets, which is how the
// demo knows which syn events to expect.
func SYNTargets(prefixes []netip.Prefix, count int, seed uint64) ([]netip.AddrPort, error) {
	if len(prefixes) == 0 {
		return nil, fmt.Errorf("lab: syn targets: no prefix")
	}
	if count <= 0 || count > MaxSYNCount {
		return nil, fmt.Errorf("lab: syn targets: count %d out of range 1..%d", count, MaxSYNCount)
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x5b0c0de))
	seen := make(map[netip.AddrPort]bool, count)
	out := make([]netip.AddrPort, 0, count)
	for attempts := 0; len(out) < count; attempts++ {
		if attempts > 100*count {
			return nil, fmt.Errorf("lab: syn targets: cannot draw %d distinct targets from %v", count, prefixes)
		}
		p := prefixes[len(out)%len(prefixes)].Masked()
		ap := netip.AddrPortFrom(randomAddr(rng, p), uint16(1+rng.IntN(65535)))
		if seen[ap] {
			continue
		}
		seen[ap] = true
		out = append(out, ap)
	}
	return out, nil
}

// randomAddr returns a random address in p; for IPv4 prefixes shorter than
// /31 it avoids the network and broadcast addresses, which some stacks
// treat specially.
func randomAddr(rng *rand.Rand, p netip.Prefix) netip.Addr {
	b := p.Addr().As16()
	off := 0
	if p.Addr().Is4() {
		off = 12
	}
	hostBits := p.Addr().BitLen() - p.Bits()
	for {
		var r [16]byte
		binary.BigEndian.PutUint64(r[:8], rng.Uint64())
		binary.BigEndian.PutUint64(r[8:], rng.Uint64())
		var a [16]byte
		copy(a[:], b[:])
		allZero, allOne := true, true
		for i := off; i < 16; i++ {
			bit := (i - off) * 8 // first bit of byte i within the address
			var hostMask byte
			switch netBits := p.Bits() - bit; {
			case netBits <= 0:
				hostMask = 0xff
			case netBits < 8:
				hostMask = 0xff >> netBits
			}
			a[i] = b[i]&^hostMask | r[i]&hostMask
			allZero = allZero && a[i]&hostMask == 0
			allOne = allOne && a[i]&hostMask == hostMask
		}
		addr := netip.AddrFrom16(a)
		if p.Addr().Is4() {
			addr = addr.Unmap()
			if hostBits >= 2 && (allZero || allOne) {
				continue
			}
		}
		return addr
	}
}

// synTTL is the TTL or hop limit of the probe's SYNs, Linux's default.
const synTTL = 64

// craftSYN builds a SYN from src to dst shaped like a Linux client's (window
// 64240; MSS, SACK permitted, timestamps, NOP, window scale 7), so that the
// telescope classifies it as a regular SYN. For IPv4 it returns the whole
// packet, header included, for an IP_HDRINCL socket; for IPv6 the TCP
// segment alone, for a raw IPv6 socket, with the checksum over the IPv6
// pseudo-header of src and dst.
func craftSYN(src, dst netip.AddrPort, seq, tsval uint32, ipid uint16) ([]byte, error) {
	if src.Addr().Is4() != dst.Addr().Is4() {
		return nil, fmt.Errorf("lab: craft syn %s -> %s: address families differ", src, dst)
	}
	mss := uint16(1460)
	if !dst.Addr().Is4() {
		mss = 1440
	}
	tcp := &layers.TCP{
		SrcPort: layers.TCPPort(src.Port()),
		DstPort: layers.TCPPort(dst.Port()),
		Seq:     seq,
		SYN:     true,
		Window:  64240,
		Options: []layers.TCPOption{
			{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: binary.BigEndian.AppendUint16(nil, mss)},
			{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2},
			{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: binary.BigEndian.AppendUint64(nil, uint64(tsval)<<32)},
			{OptionType: layers.TCPOptionKindNop},
			{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}},
		},
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	var err error
	if dst.Addr().Is4() {
		ip := &layers.IPv4{
			Version:  4,
			IHL:      5,
			TTL:      synTTL,
			Id:       ipid,
			Flags:    layers.IPv4DontFragment,
			Protocol: layers.IPProtocolTCP,
			SrcIP:    net.IP(src.Addr().AsSlice()),
			DstIP:    net.IP(dst.Addr().AsSlice()),
		}
		if err = tcp.SetNetworkLayerForChecksum(ip); err == nil {
			err = gopacket.SerializeLayers(buf, opts, ip, tcp)
		}
	} else {
		ip := &layers.IPv6{
			Version:    6,
			HopLimit:   synTTL,
			NextHeader: layers.IPProtocolTCP,
			SrcIP:      net.IP(src.Addr().AsSlice()),
			DstIP:      net.IP(dst.Addr().AsSlice()),
		}
		if err = tcp.SetNetworkLayerForChecksum(ip); err == nil {
			err = gopacket.SerializeLayers(buf, opts, tcp)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("lab: craft syn %s -> %s: %w", src, dst, err)
	}
	return buf.Bytes(), nil
}

// synAck is the part of a received SYN-ACK that ProbeSYN matches and
// records.
type synAck struct {
	src      netip.AddrPort
	dstPort  uint16
	seq, ack uint32
}

// parseSYNACK reads a TCP header and reports whether it is a SYN-ACK
// (SYN and ACK set, RST clear); src is the sender's address.
func parseSYNACK(src netip.Addr, tcp []byte) (synAck, bool) {
	if len(tcp) < 20 {
		return synAck{}, false
	}
	const syn, rst, ack = 0x02, 0x04, 0x10
	if flags := tcp[13]; flags&(syn|ack|rst) != syn|ack {
		return synAck{}, false
	}
	return synAck{
		src:     netip.AddrPortFrom(src, binary.BigEndian.Uint16(tcp[0:2])),
		dstPort: binary.BigEndian.Uint16(tcp[2:4]),
		seq:     binary.BigEndian.Uint32(tcp[4:8]),
		ack:     binary.BigEndian.Uint32(tcp[8:12]),
	}, true
}
