package scenarios

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Packet is a TCP segment as sent or received, decoded.
type Packet struct {
	// Src and Dst are the addresses and ports.
	Src, Dst netip.AddrPort
	// Flags, Seq, Ack and Win are the TCP header's fields.
	Flags    Flags
	Seq, Ack uint32
	Win      uint16
	// TTL is the TTL or hop limit, IPID the IPv4 ID (0 for IPv6), TOS the
	// TOS or traffic class, DF the IPv4 don't-fragment bit.
	TTL  uint8
	IPID uint16
	TOS  uint8
	DF   bool
	// Options are the TCP options in wire order (padding EOLs dropped
	// when they end the list).
	Options []RawOption
	// Payload is the TCP payload.
	Payload []byte
	// Time is when the packet was sent or captured.
	Time time.Time
}

// RawOption is one TCP option as on the wire.
type RawOption struct {
	Kind uint8
	Data []byte
}

// Marshal builds the IP packet (IPv4 or IPv6 by the addresses) with
// gopacket's layers, lengths and checksums computed.
func (p *Packet) Marshal() ([]byte, error) {
	buf := gopacket.NewSerializeBuffer()
	if err := p.serialize(buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// serialize writes the IP packet into buf.
func (p *Packet) serialize(buf gopacket.SerializeBuffer) error {
	if p.Src.Addr().Is4() != p.Dst.Addr().Is4() {
		return fmt.Errorf("scenarios: packet %s > %s: address families differ", p.Src, p.Dst)
	}
	tcp := &layers.TCP{
		SrcPort: layers.TCPPort(p.Src.Port()),
		DstPort: layers.TCPPort(p.Dst.Port()),
		Seq:     p.Seq,
		Ack:     p.Ack,
		Window:  p.Win,
		FIN:     p.Flags&FlagFIN != 0,
		SYN:     p.Flags&FlagSYN != 0,
		RST:     p.Flags&FlagRST != 0,
		PSH:     p.Flags&FlagPSH != 0,
		ACK:     p.Flags&FlagACK != 0,
		URG:     p.Flags&FlagURG != 0,
		ECE:     p.Flags&FlagECE != 0,
		CWR:     p.Flags&FlagCWR != 0,
	}
	for _, o := range p.Options {
		tcp.Options = append(tcp.Options, layers.TCPOption{
			OptionType: layers.TCPOptionKind(o.Kind), OptionLength: uint8(len(o.Data) + 2), OptionData: o.Data,
		})
	}
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	var net gopacket.NetworkLayer
	var ipLayer gopacket.SerializableLayer
	if p.Dst.Addr().Is4() {
		ip := &layers.IPv4{
			Version: 4, IHL: 5, TOS: p.TOS, Id: p.IPID, TTL: p.TTL,
			Protocol: layers.IPProtocolTCP,
			SrcIP:    p.Src.Addr().AsSlice(), DstIP: p.Dst.Addr().AsSlice(),
		}
		if p.DF {
			ip.Flags = layers.IPv4DontFragment
		}
		net, ipLayer = ip, ip
	} else {
		ip := &layers.IPv6{
			Version: 6, TrafficClass: p.TOS, HopLimit: p.TTL,
			NextHeader: layers.IPProtocolTCP,
			SrcIP:      p.Src.Addr().AsSlice(), DstIP: p.Dst.Addr().AsSlice(),
		}
		net, ipLayer = ip, ip
	}
	if err := tcp.SetNetworkLayerForChecksum(net); err != nil {
		return fmt.Errorf("scenarios: packet %s > %s: %w", p.Src, p.Dst, err)
	}
	if err := gopacket.SerializeLayers(buf, opts, ipLayer, tcp, gopacket.Payload(p.Payload)); err != nil {
		return fmt.Errorf("scenarios: packet %s > %s: %w", p.Src, p.Dst, err)
	}
	return nil
}

// DecodeIP decodes an IPv4 or IPv6 packet carrying TCP; ok is false for
// anything else (other protocols, fragments, truncated packets).
func DecodeIP(b []byte) (Packet, bool) {
	if len(b) == 0 {
		return Packet{}, false
	}
	first := layers.LayerTypeIPv4
	if b[0]>>4 == 6 {
		first = layers.LayerTypeIPv6
	}
	return decodeFrom(gopacket.NewPacket(b, first, gopacket.DecodeOptions{NoCopy: true, Lazy: true}))
}

// decodeFrom extracts the TCP segment of a decoded packet.
func decodeFrom(pk gopacket.Packet) (Packet, bool) {
	var p Packet
	var src, dst net.IP
	switch ip := pk.NetworkLayer().(type) {
	case *layers.IPv4:
		if ip.Protocol != layers.IPProtocolTCP || ip.Flags&layers.IPv4MoreFragments != 0 || ip.FragOffset != 0 {
			return Packet{}, false
		}
		src, dst = ip.SrcIP, ip.DstIP
		p.TTL, p.IPID, p.TOS, p.DF = ip.TTL, ip.Id, ip.TOS, ip.Flags&layers.IPv4DontFragment != 0
	case *layers.IPv6:
		src, dst = ip.SrcIP, ip.DstIP
		p.TTL, p.TOS = ip.HopLimit, ip.TrafficClass
	default:
		return Packet{}, false
	}
	tcp, ok := pk.TransportLayer().(*layers.TCP)
	if !ok {
		return Packet{}, false
	}
	sa, ok1 := netip.AddrFromSlice(src)
	da, ok2 := netip.AddrFromSlice(dst)
	if !ok1 || !ok2 {
		return Packet{}, false
	}
	p.Src = netip.AddrPortFrom(sa.Unmap(), uint16(tcp.SrcPort))
	p.Dst = netip.AddrPortFrom(da.Unmap(), uint16(tcp.DstPort))
	p.Seq, p.Ack, p.Win = tcp.Seq, tcp.Ack, tcp.Window
	for _, x := range []struct {
		set bool
		f   Flags
	}{{tcp.FIN, FlagFIN}, {tcp.SYN, FlagSYN}, {tcp.RST, FlagRST}, {tcp.PSH, FlagPSH}, {tcp.ACK, FlagACK}, {tcp.URG, FlagURG}, {tcp.ECE, FlagECE}, {tcp.CWR, FlagCWR}} {
		if x.set {
			p.Flags |= x.f
		}
	}
	for _, o := range tcp.Options {
		p.Options = append(p.Options, RawOption{Kind: uint8(o.OptionType), Data: append([]byte(nil), o.OptionData...)})
	}
	// Padding EOLs at the end of the list are not options of the sender.
	for len(p.Options) > 0 && p.Options[len(p.Options)-1].Kind == optEOL && len(p.Options) > 1 && p.Options[len(p.Options)-2].Kind == optEOL {
		p.Options = p.Options[:len(p.Options)-1]
	}
	p.Payload = append([]byte(nil), tcp.Payload...)
	return p, true
}

// String formats the packet tcpdump style: flags, seq (with :end(len) when
// it carries data), ack, win, ttl, ipid, options and a quoted payload
// prefix.
func (p *Packet) String() string {
	var b strings.Builder
	b.WriteString(p.Flags.String())
	fmt.Fprintf(&b, " seq %d", p.Seq)
	if len(p.Payload) > 0 {
		fmt.Fprintf(&b, ":%d(%d)", p.Seq+uint32(len(p.Payload)), len(p.Payload))
	}
	if p.Flags&FlagACK != 0 {
		fmt.Fprintf(&b, " ack %d", p.Ack)
	}
	fmt.Fprintf(&b, " win %d ttl %d", p.Win, p.TTL)
	if p.Src.Addr().Is4() {
		fmt.Fprintf(&b, " ipid %d", p.IPID)
		if p.DF {
			b.WriteString(" df")
		}
	}
	if len(p.Options) > 0 {
		b.WriteString(" <" + formatOptions(p.Options) + ">")
	}
	if len(p.Payload) > 0 {
		const show = 32
		q := p.Payload
		if len(q) > show {
			q = q[:show]
		}
		b.WriteString(" " + strconv.Quote(string(q)))
		if len(p.Payload) > show {
			b.WriteString("...")
		}
	}
	return b.String()
}

// formatOptions formats options in the scenario syntax.
func formatOptions(opts []RawOption) string {
	parts := make([]string, 0, len(opts))
	for _, o := range opts {
		switch {
		case o.Kind == optEOL:
			parts = append(parts, "eol")
		case o.Kind == optNOP:
			parts = append(parts, "nop")
		case o.Kind == optMSS && len(o.Data) == 2:
			parts = append(parts, fmt.Sprintf("mss %d", binary.BigEndian.Uint16(o.Data)))
		case o.Kind == optWScale && len(o.Data) == 1:
			parts = append(parts, fmt.Sprintf("wscale %d", o.Data[0]))
		case o.Kind == optSACKOK:
			parts = append(parts, "sackOK")
		case o.Kind == optTS && len(o.Data) == 8:
			parts = append(parts, fmt.Sprintf("TS val %d ecr %d", binary.BigEndian.Uint32(o.Data), binary.BigEndian.Uint32(o.Data[4:])))
		default:
			parts = append(parts, fmt.Sprintf("opt-%d %x", o.Kind, o.Data))
		}
	}
	return strings.Join(parts, ",")
}

// segLen is the sequence space a packet takes: its payload, plus one for
// SYN and one for FIN.
func (p *Packet) segLen() uint32 {
	n := uint32(len(p.Payload))
	if p.Flags&FlagSYN != 0 {
		n++
	}
	if p.Flags&FlagFIN != 0 {
		n++
	}
	return n
}
