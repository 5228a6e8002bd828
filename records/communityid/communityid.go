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
	"encoding/binary"
	"net/netip"
	"slices"
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
	// The hash input, built in place. The addresses come from As16 (an
	// IPv4 or v4-mapped address is its last four bytes) and are ordered as
	// numbers, which orders them as bytes in network order; equal
	// endpoints are not swapped, as in the reference implementation
	// (swapping them changes nothing).
	var in [2 + 16 + 16 + 2 + 4]byte
	binary.BigEndian.PutUint16(in[0:], seed)
	sa, da := src.As16(), dst.As16()
	i := 2
	if (src.Is4() || src.Is4In6()) && (dst.Is4() || dst.Is4In6()) {
		s, d := binary.BigEndian.Uint32(sa[12:]), binary.BigEndian.Uint32(da[12:])
		if !oneWay && (s > d || s == d && sport >= dport) {
			s, d, sport, dport = d, s, dport, sport
		}
		binary.BigEndian.PutUint32(in[2:], s)
		binary.BigEndian.PutUint32(in[6:], d)
		i = 10
	} else {
		sh, sl := binary.BigEndian.Uint64(sa[:8]), binary.BigEndian.Uint64(sa[8:])
		dh, dl := binary.BigEndian.Uint64(da[:8]), binary.BigEndian.Uint64(da[8:])
		if !oneWay && (sh > dh || sh == dh && (sl > dl || sl == dl && sport >= dport)) {
			sh, sl, dh, dl, sport, dport = dh, dl, sh, sl, dport, sport
		}
		binary.BigEndian.PutUint64(in[2:], sh)
		binary.BigEndian.PutUint64(in[10:], sl)
		binary.BigEndian.PutUint64(in[18:], dh)
		binary.BigEndian.PutUint64(in[26:], dl)
		i = 34
	}
	in[i], in[i+1] = proto, 0
	i += 2
	if hasPorts(proto) {
		binary.BigEndian.PutUint16(in[i:], sport)
		binary.BigEndian.PutUint16(in[i+2:], dport)
		i += 4
	}
	sum := sha1.Sum(in[:i])
	return appendID(b, &sum)
}

// appendID appends "1:" and the padded standard base64 of sum (28
// characters, the last '='), what base64.StdEncoding.AppendEncode writes,
// in one pass over the fixed 20 bytes.
func appendID(b []byte, sum *[sha1.Size]byte) []byte {
	const enc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	l := len(b)
	b = slices.Grow(b, Len)[:l+Len]
	out := b[l : l+Len]
	out[0], out[1] = '1', ':'
	for g := range 6 {
		v := uint(sum[3*g])<<16 | uint(sum[3*g+1])<<8 | uint(sum[3*g+2])
		o := out[2+4*g : 6+4*g]
		o[0], o[1], o[2], o[3] = enc[v>>18&63], enc[v>>12&63], enc[v>>6&63], enc[v&63]
	}
	v := uint(sum[18])<<16 | uint(sum[19])<<8
	o := out[26:30]
	o[0], o[1], o[2], o[3] = enc[v>>18&63], enc[v>>12&63], enc[v>>6&63], '='
	return b
}

// String returns the Community ID v1 of the flow, as Append writes it.
func String(seed uint16, proto uint8, src, dst netip.Addr, sport, dport uint16) string {
	return string(Append(make([]byte, 0, Len), seed, proto, src, dst, sport, dport))
}
