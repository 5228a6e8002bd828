// Package communityid computes the Community ID (version 1) of a flow, the
// flow hash that Zeek, Suricata, Elastic and Wireshark share so that their
// records of one flow can be joined on one string (docs/formats.md#flow-ids).
//
// The ID is "1:" and the base64 of a SHA-1 over, in network byte order: the
// 2-byte seed, the smaller endpoint's address, the other address, the IP
// protocol, a zero byte, and for port-carrying protocols the two ports in
// the same order. Endpoints are ordered by address, then port, so that both
// directions of a flow hash alike. ICMP and ICMPv6 take the type as the
// source port and, for the request/response types that have one, the
// counterpart type as the destination port (else the code, and the flow is
// one-way and not reordered), as Zeek maps them.
//
// Append allocates nothing beyond growing dst: it runs once per event.
package communityid

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"net/netip"
)

// IP protocol numbers with ports (or ICMP types) in the hash.
const (
	ProtoICMP   = 1
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoICMPv6 = 58
	ProtoSCTP   = 132
)

// Len is the length of a Community ID v1 string: "1:" and 28 base64 bytes.
const Len = 2 + 28

// icmpCounterpart maps the ICMP request/response types to their
// counterpart; other types are one-way.
var icmpCounterpart = map[uint8]uint8{
	8: 0, 0: 8, // echo
	13: 14, 14: 13, // timestamp
	15: 16, 16: 15, // information
	10: 9, 9: 10, // router solicitation, advertisement
	17: 18, 18: 17, // address mask
}

// icmp6Counterpart is icmpCounterpart for ICMPv6.
var icmp6Counterpart = map[uint8]uint8{
	128: 129, 129: 128, // echo
	130: 131, 131: 130, // multicast listener query, report
	133: 134, 134: 133, // router solicitation, advertisement
	135: 136, 136: 135, // neighbor solicitation, advertisement
	139: 140, 140: 139, // who-are-you request, reply
	144: 145, 145: 144, // home agent address discovery request, reply
}

// hasPorts reports whether proto's ports (or ICMP type and code) are hashed.
func hasPorts(proto uint8) bool {
	switch proto {
	case ProtoICMP, ProtoTCP, ProtoUDP, ProtoICMPv6, ProtoSCTP:
		return true
	}
	return false
}

// Append appends the Community ID v1 of the flow from src:sport to
// dst:dport over IP protocol proto, with seed, to b. For ICMP and ICMPv6,
// sport is the message type and dport its code. For protocols without
// ports both are ignored. An IPv4 address and an IPv6 one (not mapped)
// cannot make a flow: Append then hashes both as 16-byte addresses.
func Append(b []byte, seed uint16, proto uint8, src, dst netip.Addr, sport, dport uint16) []byte {
	src, dst = src.Unmap(), dst.Unmap()
	oneWay := false
	switch proto {
	case ProtoICMP, ProtoICMPv6:
		table := icmpCounterpart
		if proto == ProtoICMPv6 {
			table = icmp6Counterpart
		}
		typ := uint8(sport)
		if c, ok := table[typ]; ok {
			dport = uint16(c)
		} else {
			oneWay = true
		}
		sport = uint16(typ)
	}
	// The endpoints are ordered and written as words: an IPv4 address
	// is one, an IPv6 address two (hi, lo), compared as the bytes in
	// network order would be.
	var in [2 + 16 + 16 + 2 + 4]byte
	in[0], in[1] = byte(seed>>8), byte(seed)
	i := 2
	if src.Is4() && dst.Is4() {
		a, d := src.As4(), dst.As4()
		sa, da := binary.BigEndian.Uint32(a[:]), binary.BigEndian.Uint32(d[:])
		if !oneWay && !(sa < da || sa == da && sport < dport) {
			sa, da, sport, dport = da, sa, dport, sport
		}
		binary.BigEndian.PutUint32(in[2:], sa)
		binary.BigEndian.PutUint32(in[6:], da)
		i += 8
	} else {
		a, d := src.As16(), dst.As16()
		shi, slo := binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:])
		dhi, dlo := binary.BigEndian.Uint64(d[:8]), binary.BigEndian.Uint64(d[8:])
		if !oneWay && !(shi < dhi || shi == dhi && (slo < dlo || slo == dlo && sport < dport)) {
			shi, slo, dhi, dlo, sport, dport = dhi, dlo, shi, slo, dport, sport
		}
		binary.BigEndian.PutUint64(in[2:], shi)
		binary.BigEndian.PutUint64(in[10:], slo)
		binary.BigEndian.PutUint64(in[18:], dhi)
		binary.BigEndian.PutUint64(in[26:], dlo)
		i += 32
	}
	in[i], in[i+1] = proto, 0
	i += 2
	if hasPorts(proto) {
		in[i], in[i+1], in[i+2], in[i+3] = byte(sport>>8), byte(sport), byte(dport>>8), byte(dport)
		i += 4
	}
	sum := sha1.Sum(in[:i])
	b = append(b, '1', ':')
	return base64.StdEncoding.AppendEncode(b, sum[:])
}

// String returns the Community ID v1 of the flow, as Append writes it.
func String(seed uint16, proto uint8, src, dst netip.Addr, sport, dport uint16) string {
	return string(Append(make([]byte, 0, Len), seed, proto, src, dst, sport, dport))
}
