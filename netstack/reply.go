package netstack

import (
	"encoding/binary"
	"math/rand/v2"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/spoki-telescope/spoki/netstack/udpreply"
	"github.com/spoki-telescope/spoki/records"
)

// The front end's answers to ICMP echo requests and to UDP probes of the
// services of udpreply. Neither makes spoki an amplifier: an answer is
// never longer than what it answers (an echo reply is its request with a
// plain IP header; a UDP answer is at most the request's payload, which
// udpreply enforces for every service), and each source (an IPv4 address,
// an IPv6 /64) gets at most a token bucket of answers per protocol, in a
// second instance of the SYN-ACK limiter's table (ratelimit.go): bounded
// memory, no allocation, no lock. Like SYN-ACKs, the answers are written
// at once through writeRaw and recorded as the packet's reaction.

// ReplyLimits configures the per-source limits of ICMP echo replies and
// UDP answers: one table of TableEntries sources (each
// SYNLimitEntryBytes), one token bucket per protocol and source. A Rate of
// 0 turns a protocol's limit off.
type ReplyLimits struct {
	ICMP, UDP    SYNACKLimit
	TableEntries int
}

// Defaults of the reply limiter. A ping (a few echoes a second) and a
// scanner's sweep of a /22 from one source fit the bursts; a flood spoofed
// from one victim gets at most 1,024 + 100/s echo replies (each no longer
// than its request, so at most the flood's own bytes) and 512 + 50/s UDP
// answers (DNS and NetBIOS answers are shorter than the queries, NTP's 48
// bytes).
const (
	DefaultICMPRate  = 100
	DefaultICMPBurst = 1024
	DefaultUDPRate   = 50
	DefaultUDPBurst  = 512
)

// DefaultReplyLimits returns the defaults above, with a table of
// DefaultSYNTableEntries sources.
func DefaultReplyLimits() ReplyLimits {
	return ReplyLimits{
		ICMP:         SYNACKLimit{Rate: DefaultICMPRate, Burst: DefaultICMPBurst},
		UDP:          SYNACKLimit{Rate: DefaultUDPRate, Burst: DefaultUDPBurst},
		TableEntries: DefaultSYNTableEntries,
	}
}

// asSYN is the limits in the limiter's terms: class 0 is ICMP, class 1 UDP.
func (l ReplyLimits) asSYN() SYNACKLimits {
	return SYNACKLimits{Regular: l.ICMP, Irregular: l.UDP, TableEntries: l.TableEntries}
}

var replyNames = limitNames{limit: "reply", table: "reply", class: [2]string{"ICMP", "UDP"}}

// Validate checks the limits as SYNACKLimits.Validate does.
func (l ReplyLimits) Validate() error { return l.asSYN().validate(replyNames) }

// String describes the limits as the start-up line prints them.
func (l ReplyLimits) String() string { return l.asSYN().describe(replyNames) }

// Classes of the reply limiter.
const (
	replyClassICMP = false
	replyClassUDP  = true
)

// maxReplyLen is the longest packet the front end writes: an answer is
// never longer than its request, and a request longer than the Ethernet
// MTU reaches the TUN only as fragments, which are never answered. A
// longer request (a TUN with a jumbo MTU) is not answered and counted
// malformed.
const maxReplyLen = 1500

// Echo types.
const (
	icmpv4EchoRequest = 8
	icmpv4EchoReply   = 0
	icmpv6EchoRequest = 128
	icmpv6EchoReply   = 129
)

// inspectICMP records an ICMP packet to the prefixes and answers an echo
// request. l4 holds at least 4 bytes.
func (s *Stack) inspectICMP(l4, src, dst []byte, l4proto uint8, v6, hold bool, rec *records.Packet) verdict {
	if len(l4) >= 8 {
		rec.ICMPRest = binary.BigEndian.Uint32(l4[4:])
		s.keepPayload(rec, l4[8:])
	}
	echo := !v6 && l4proto == uint8(header.ICMPv4ProtocolNumber) && l4[0] == icmpv4EchoRequest ||
		v6 && l4proto == uint8(header.ICMPv6ProtocolNumber) && l4[0] == icmpv6EchoRequest
	switch {
	case !echo:
		s.stats.DropICMP.Add(1)
		return verdictDrop
	case hold:
		s.stats.DropExtHeader.Add(1)
		return verdictDrop
	case s.cfg.ICMPOff:
		s.stats.DropICMPOff.Add(1)
		return verdictDrop
	case len(l4) < 8 || !icmpChecksumValid(l4, src, dst, v6):
		s.stats.DropICMPMalformed.Add(1)
		return verdictDrop
	case !replyableSource(rec.Src):
		s.stats.DropBadSource.Add(1)
		return verdictDrop
	}
	if ipHeaderLen(v6)+len(l4) > maxReplyLen {
		s.stats.DropICMPMalformed.Add(1)
		return verdictDrop
	}
	if !s.rlim.allow(src, replyClassICMP, rec.Time) {
		s.stats.DropICMPRate.Add(1)
		return verdictDrop
	}
	b := txBufs.Get().(*txBuf)
	n := encodeEchoReply(b.pkt[:], l4, src, dst, v6)
	return s.sendReply(b, n, uint16(rec.ICMPRest>>16), &s.stats.ICMPEchoReplies, rec, records.MethodICMPEchoReply)
}

// sendReply writes the n-byte answer in b, spread over the TUN queues by
// spread, gives b back to the pool, and counts the answer in sent and
// records it as rec's reaction by method m (or counts the write's error).
func (s *Stack) sendReply(b *txBuf, n int, spread uint16, sent *atomic.Uint64, rec *records.Packet, m records.Method) verdict {
	err := s.writeRaw(b, n, spread)
	txBufs.Put(b)
	if err != nil {
		s.stats.DropTxError.Add(1)
		return verdictDrop
	}
	sent.Add(1)
	s.probed(rec, m, s.nextUserID(), 0, 0)
	return verdictDrop
}

// ipHeaderLen is the length of the IP header of an answer: no options.
func ipHeaderLen(v6 bool) int {
	if v6 {
		return header.IPv6MinimumSize
	}
	return header.IPv4MinimumSize
}

// icmpChecksumValid verifies an ICMP (IPv4: over the message) or ICMPv6
// (with the pseudo-header) checksum.
func icmpChecksumValid(l4, src, dst []byte, v6 bool) bool {
	var init uint64
	if v6 {
		init = pseudoSum(uint8(header.ICMPv6ProtocolNumber), src, dst, len(l4))
	}
	return foldSum(addSum(l4, init)) == 0xffff
}

// encodeIPHeader writes the IP header of a front-end answer from local to
// remote carrying l4Len bytes of proto, as Linux writes a reply: TTL (hop
// limit) defaultTTL, no options; IPv4 without DF (Linux's echo replies
// and UDP answers of this size carry none) and a random id. It returns
// the header's length.
func encodeIPHeader(pkt []byte, local, remote []byte, proto uint8, l4Len int, v6 bool) int {
	if v6 {
		header.IPv6(pkt).Encode(&header.IPv6Fields{
			PayloadLength:     uint16(l4Len),
			TransportProtocol: tcpip.TransportProtocolNumber(proto),
			HopLimit:          defaultTTL,
			SrcAddr:           wireAddr(local),
			DstAddr:           wireAddr(remote),
		})
		return header.IPv6MinimumSize
	}
	ip := header.IPv4(pkt)
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(header.IPv4MinimumSize + l4Len),
		ID:          uint16(rand.Uint32()),
		TTL:         defaultTTL,
		Protocol:    proto,
		SrcAddr:     wireAddr(local),
		DstAddr:     wireAddr(remote),
	})
	ip.SetChecksum(^foldSum(addSum(pkt[:header.IPv4MinimumSize], 0)))
	return header.IPv4MinimumSize
}

// encodeEchoReply writes the echo reply to the echo request l4 (from
// remote to local) into pkt: the request's code, identifier, sequence and
// data, type 0 (ICMPv6 129). It returns the packet's length.
func encodeEchoReply(pkt []byte, l4, remote, local []byte, v6 bool) int {
	proto := uint8(header.ICMPv4ProtocolNumber)
	if v6 {
		proto = uint8(header.ICMPv6ProtocolNumber)
	}
	h := encodeIPHeader(pkt, local, remote, proto, len(l4), v6)
	m := pkt[h : h+len(l4)]
	copy(m, l4)
	m[2], m[3] = 0, 0
	var init uint64
	if v6 {
		m[0] = icmpv6EchoReply
		init = pseudoSum(uint8(header.ICMPv6ProtocolNumber), local, remote, len(m))
	} else {
		m[0] = icmpv4EchoReply
	}
	binary.BigEndian.PutUint16(m[2:], ^foldSum(addSum(m, init)))
	return h + len(m)
}

// udpReflectPorts are source ports no answer goes to: the old services
// that answer anything (echo, daytime, qotd, chargen, time), which a
// spoofed probe would otherwise set against spoki in a loop.
func udpReflectPort(p uint16) bool {
	switch p {
	case 0, 7, 13, 17, 19, 37:
		return true
	}
	return false
}

// inspectUDP answers a UDP datagram to the prefixes when it probes a
// service of udpreply. l4 holds at least the UDP header; the payload is
// recorded already.
func (s *Stack) inspectUDP(l4, src, dst []byte, v6, hold bool, rec *records.Packet) verdict {
	if udpreply.ServiceOf(rec.DstPort) == udpreply.None {
		s.stats.DropUDP.Add(1)
		return verdictDrop
	}
	ulen := int(binary.BigEndian.Uint16(l4[4:]))
	switch {
	case hold:
		s.stats.DropExtHeader.Add(1)
		return verdictDrop
	case s.cfg.UDPOff:
		s.stats.DropUDPOff.Add(1)
		return verdictDrop
	case ulen < header.UDPMinimumSize || ulen > len(l4) || !udpChecksumValid(l4[:ulen], src, dst, v6):
		s.stats.DropUDPMalformed.Add(1)
		return verdictDrop
	case !replyableSource(rec.Src) || udpReflectPort(rec.SrcPort):
		s.stats.DropBadSource.Add(1)
		return verdictDrop
	}
	payload := l4[header.UDPMinimumSize:ulen]
	ipLen := ipHeaderLen(v6)
	if !s.rlim.allow(src, replyClassUDP, rec.Time) {
		s.stats.DropUDPRate.Add(1)
		return verdictDrop
	}
	b := txBufs.Get().(*txBuf)
	// The answer's room is the request's payload, whatever udpreply does.
	room := min(len(payload), maxReplyLen-ipLen-header.UDPMinimumSize)
	body := b.pkt[ipLen+header.UDPMinimumSize : ipLen+header.UDPMinimumSize+room]
	req := udpreply.Request{Payload: payload, Local: rec.Dst, Port: rec.DstPort, Now: rec.Time}
	n, _, res := udpreply.Answer(body, &req)
	switch res {
	case udpreply.Answered:
	case udpreply.TooLarge:
		txBufs.Put(b)
		s.stats.DropUDPTooLarge.Add(1)
		return verdictDrop
	default:
		txBufs.Put(b)
		s.stats.DropUDPMalformed.Add(1)
		return verdictDrop
	}
	l := encodeUDPReply(b.pkt[:], n, rec.DstPort, rec.SrcPort, dst, src, v6)
	return s.sendReply(b, l, rec.SrcPort, &s.stats.UDPReplies, rec, records.MethodUDPReply)
}

// udpChecksumValid verifies a UDP checksum; an IPv4 datagram may carry
// none (0), an IPv6 one must.
func udpChecksumValid(u, src, dst []byte, v6 bool) bool {
	if !v6 && binary.BigEndian.Uint16(u[6:]) == 0 {
		return true
	}
	return foldSum(addSum(u, pseudoSum(uint8(header.UDPProtocolNumber), src, dst, len(u)))) == 0xffff
}

// encodeUDPReply writes the IP and UDP headers around the n-byte answer
// already in pkt after them, with its checksum, and returns the packet's
// length.
func encodeUDPReply(pkt []byte, n int, sport, dport uint16, local, remote []byte, v6 bool) int {
	ulen := header.UDPMinimumSize + n
	h := encodeIPHeader(pkt, local, remote, uint8(header.UDPProtocolNumber), ulen, v6)
	u := header.UDP(pkt[h : h+ulen])
	u.Encode(&header.UDPFields{SrcPort: sport, DstPort: dport, Length: uint16(ulen)})
	xsum := foldSum(addSum(u, pseudoSum(uint8(header.UDPProtocolNumber), local, remote, ulen)))
	if xsum != 0xffff {
		xsum = ^xsum
	}
	u.SetChecksum(xsum)
	return h + ulen
}
