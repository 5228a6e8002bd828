package records

// This file keeps the encoders as they were before their fast paths (the
// general code: strconv, netip.Addr.AppendTo, crypto/sha1 through
// communityid, the byte-at-a-time FNV loop), so that the tests can compare
// the fast paths with them and the benchmarks can measure both in one
// binary.

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"net/netip"
	"strconv"
	"time"
)

func refAppendRawRow(dst []byte, p *Packet) []byte {
	dst = strconv.AppendInt(dst, p.Time.UnixMilli(), 10)
	dst = append(dst, '|')
	dst = p.Src.AppendTo(dst)
	dst = append(dst, '|')
	dst = p.Dst.AppendTo(dst)
	dst = append(dst, '|')
	dst = strconv.AppendUint(dst, uint64(p.IPID), 10)
	dst = append(dst, '|')
	dst = strconv.AppendUint(dst, uint64(p.TTL), 10)
	dst = append(dst, '|')
	dst = append(dst, p.Proto.String()...)
	dst = append(dst, '|')
	switch p.Proto {
	case ProtoUDP, ProtoICMP:
		if p.Proto == ProtoUDP {
			dst = strconv.AppendUint(dst, uint64(p.SrcPort), 10)
			dst = append(dst, '|')
			dst = strconv.AppendUint(dst, uint64(p.DstPort), 10)
		} else {
			dst = strconv.AppendUint(dst, uint64(p.ICMPType), 10)
			dst = append(dst, '|')
			dst = strconv.AppendUint(dst, uint64(p.ICMPCode), 10)
		}
		dst = append(dst, '|')
		dst = hex.AppendEncode(dst, p.Payload)
		dst = append(dst, '|')
		if !p.Probed {
			return append(dst, "false|||\n"...)
		}
		dst = append(dst, "true|"...)
		dst = append(dst, p.Method.String()...)
		dst = append(dst, '|')
		dst = strconv.AppendUint(dst, uint64(p.UserID), 10)
		dst = append(dst, '|')
		dst = strconv.AppendUint(dst, uint64(p.NumProbes), 10)
		return append(dst, '\n')
	}
	dst = strconv.AppendUint(dst, uint64(p.SrcPort), 10)
	dst = append(dst, '|')
	dst = strconv.AppendUint(dst, uint64(p.DstPort), 10)
	dst = append(dst, '|')
	dst = strconv.AppendUint(dst, uint64(p.Ack), 10)
	dst = append(dst, '|')
	dst = strconv.AppendUint(dst, uint64(p.Seq), 10)
	dst = append(dst, '|')
	dst = refAppendCSVOptions(dst, p)
	dst = append(dst, '|')
	dst = hex.AppendEncode(dst, p.Payload)
	dst = append(dst, '|')
	dst = refAppendFlag(dst, p.Flags&FlagSYN)
	dst = refAppendFlag(dst, p.Flags&FlagACK)
	dst = refAppendFlag(dst, p.Flags&FlagRST)
	dst = refAppendFlag(dst, p.Flags&FlagFIN)
	dst = strconv.AppendUint(dst, uint64(p.Window), 10)
	dst = append(dst, '|')
	if !p.Probed {
		return append(dst, "false|||||\n"...)
	}
	dst = append(dst, "true|"...)
	dst = append(dst, p.Method.String()...)
	dst = append(dst, '|')
	dst = strconv.AppendUint(dst, uint64(p.UserID), 10)
	dst = append(dst, '|')
	dst = strconv.AppendUint(dst, uint64(p.ProbeAck), 10)
	dst = append(dst, '|')
	dst = strconv.AppendUint(dst, uint64(p.ProbeSeq), 10)
	dst = append(dst, '|')
	dst = strconv.AppendUint(dst, uint64(p.NumProbes), 10)
	return append(dst, '\n')
}

func refAppendFlag(dst []byte, bit uint8) []byte {
	if bit != 0 {
		return append(dst, '1', '|')
	}
	return append(dst, '0', '|')
}

func refAppendCSVOptions(dst []byte, p *Packet) []byte {
	n := min(int(p.NumOptions), MaxOptions)
	first := [6]int8{-1, -1, -1, -1, -1, -1}
	for i := 0; i < n; i++ {
		if _, ni := csvOptionName(p.Options[i]); ni >= 0 && first[ni] < 0 {
			first[ni] = int8(i)
		}
	}
	sep := false
	for i := n - 1; i >= 0; i-- {
		name, ni := csvOptionName(p.Options[i])
		if ni < 0 || int(first[ni]) != i {
			continue
		}
		if sep {
			dst = append(dst, ':')
		}
		dst = append(dst, name...)
		sep = true
	}
	return dst
}

func refAppendReplyRow(dst []byte, r *Reply) []byte {
	dst = strconv.AppendInt(dst, r.Time.Unix(), 10)
	dst = append(dst, '|')
	dst = strconv.AppendInt(dst, int64(r.Time.Nanosecond()/1000), 10)
	dst = append(dst, '|')
	dst = append(dst, r.Method.String()...)
	dst = append(dst, '|')
	dst = strconv.AppendUint(dst, uint64(r.UserID), 10)
	dst = append(dst, '|')
	dst = strconv.AppendUint(dst, uint64(r.NumProbes), 10)
	dst = append(dst, '|')
	dst = r.Src.AppendTo(dst)
	dst = append(dst, '|')
	dst = r.Dst.AppendTo(dst)
	dst = append(dst, '|')
	dst = strconv.AppendUint(dst, uint64(r.SrcPort), 10)
	dst = append(dst, '|')
	dst = strconv.AppendUint(dst, uint64(r.DstPort), 10)
	return append(dst, '\n')
}

func refFlowID(proto uint8, remote, local netip.AddrPort, isn uint32) uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	mix := func(b byte) { h = (h ^ uint64(b)) * prime }
	mix(proto)
	for _, ap := range [2]netip.AddrPort{remote, local} {
		a := ap.Addr().Unmap().As16()
		for _, b := range a {
			mix(b)
		}
		mix(byte(ap.Port() >> 8))
		mix(byte(ap.Port()))
	}
	for i := 24; i >= 0; i -= 8 {
		mix(byte(isn >> i))
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h & (1<<51 - 1)
}

// refCommunityID is communityid.Append as it was, for TCP, UDP and SCTP
// (the protocols without the ICMP type mapping).
func refCommunityID(b []byte, seed uint16, proto uint8, src, dst netip.Addr, sport, dport uint16) []byte {
	src, dst = src.Unmap(), dst.Unmap()
	var sa, da [16]byte
	n := 4
	if src.Is4() && dst.Is4() {
		a, d := src.As4(), dst.As4()
		copy(sa[:], a[:])
		copy(da[:], d[:])
	} else {
		sa, da, n = src.As16(), dst.As16(), 16
	}
	less := func(a, b []byte, ap, bp uint16) bool {
		for i := range a {
			if a[i] != b[i] {
				return a[i] < b[i]
			}
		}
		return ap < bp
	}
	if !less(sa[:n], da[:n], sport, dport) {
		sa, da, sport, dport = da, sa, dport, sport
	}
	var in [2 + 16 + 16 + 2 + 4]byte
	in[0], in[1] = byte(seed>>8), byte(seed)
	i := 2
	i += copy(in[i:], sa[:n])
	i += copy(in[i:], da[:n])
	in[i], in[i+1] = proto, 0
	i += 2
	in[i], in[i+1], in[i+2], in[i+3] = byte(sport>>8), byte(sport), byte(dport>>8), byte(dport)
	i += 4
	sum := sha1.Sum(in[:i])
	b = append(b, '1', ':')
	return base64.StdEncoding.AppendEncode(b, sum[:])
}

func refAppendTimestamp(dst []byte, t time.Time) []byte {
	sec := t.Unix()
	if sec < minFastUnix || sec > maxFastUnix {
		return appendTimestampSlow(dst, t)
	}
	days := (sec - minFastUnix) / 86400
	sod := int(sec - minFastUnix - days*86400)
	y, m, d := civilFromDays(days)
	var b [TimestampLen]byte
	put2(b[0:], y/100)
	put2(b[2:], y%100)
	b[4] = '-'
	put2(b[5:], m)
	b[7] = '-'
	put2(b[8:], d)
	b[10] = 'T'
	put2(b[11:], sod/3600)
	b[13] = ':'
	put2(b[14:], sod/60%60)
	b[16] = ':'
	put2(b[17:], sod%60)
	b[19] = '.'
	us := t.Nanosecond() / 1000
	for i := 25; i > 19; i-- {
		b[i] = byte('0' + us%10)
		us /= 10
	}
	copy(b[26:], "+0000")
	return append(dst, b[:]...)
}

func refAppendEventOptionName(dst []byte, k uint8) []byte {
	switch k {
	case optEOL:
		return append(dst, "eol"...)
	case optNOP:
		return append(dst, "nop"...)
	case optMSS:
		return append(dst, "mss"...)
	case optWScale:
		return append(dst, "wscale"...)
	case optSACKPerm:
		return append(dst, "sack_perm"...)
	case optSACK:
		return append(dst, "sack"...)
	case optTimestamp:
		return append(dst, "timestamp"...)
	}
	return strconv.AppendUint(append(dst, "opt_"...), uint64(k), 10)
}

func refAppendFragmentPayload(dst []byte, p *Packet) []byte {
	if p.Fragment {
		dst = append(dst, `,"fragment":true`...)
	}
	if len(p.Payload) > 0 {
		dst = append(dst, `,"payload":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, p.Payload)
		dst = append(dst, '"')
	}
	return dst
}

// refAppendEventHeadTCP is appendEventHeadProto as it was, for TCP.
func refAppendEventHeadTCP(dst []byte, t time.Time, eventType string, src, dest netip.AddrPort, isn uint32) []byte {
	o := currentOrigin.Load()
	dst = append(dst, `{"timestamp":"`...)
	dst = refAppendTimestamp(dst, t)
	dst = append(dst, `","event_type":`...)
	dst = appendJSONString(dst, eventType)
	if src.IsValid() {
		dst = append(dst, `,"src_ip":"`...)
		dst = src.Addr().AppendTo(dst)
		dst = append(dst, `","src_port":`...)
		dst = strconv.AppendUint(dst, uint64(src.Port()), 10)
		dst = append(dst, `,"dest_ip":"`...)
		dst = dest.Addr().AppendTo(dst)
		dst = append(dst, `","dest_port":`...)
		dst = strconv.AppendUint(dst, uint64(dest.Port()), 10)
		dst = append(dst, `,"proto":"`...)
		dst = append(dst, protoTCP...)
		dst = append(dst, `","flow_id":`...)
		dst = strconv.AppendUint(dst, refFlowID(6, src, dest, isn), 10)
		var seed uint16
		if o != nil {
			seed = o.CommunityIDSeed
		}
		dst = append(dst, `,"community_id":"`...)
		dst = refCommunityID(dst, seed, 6, src.Addr(), dest.Addr(), src.Port(), dest.Port())
		dst = append(dst, '"')
	}
	if o != nil {
		dst = append(dst, o.hostField...)
	}
	return dst
}

func refAppendSYNEvent(dst []byte, p *Packet) []byte {
	dst = refAppendEventHeadTCP(dst, p.Time, EventSYN,
		netip.AddrPortFrom(p.Src, p.SrcPort), netip.AddrPortFrom(p.Dst, p.DstPort), p.Seq)
	dst = append(dst, `,"userid":`...)
	dst = strconv.AppendUint(dst, uint64(p.UserID), 10)
	dst = append(dst, `,"tcp":{"seq":`...)
	dst = strconv.AppendUint(dst, uint64(p.Seq), 10)
	dst = append(dst, `,"window":`...)
	dst = strconv.AppendUint(dst, uint64(p.Window), 10)
	dst = append(dst, `,"ttl":`...)
	dst = strconv.AppendUint(dst, uint64(p.TTL), 10)
	dst = append(dst, `,"ipid":`...)
	dst = strconv.AppendUint(dst, uint64(p.IPID), 10)
	dst = append(dst, `,"options":[`...)
	for i, k := range p.Options[:min(int(p.NumOptions), MaxOptions)] {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '"')
		dst = refAppendEventOptionName(dst, k)
		dst = append(dst, '"')
	}
	dst = append(dst, ']')
	if p.OptionsTruncated {
		dst = append(dst, `,"options_truncated":true`...)
	}
	if p.MSS != 0 {
		dst = append(dst, `,"mss":`...)
		dst = strconv.AppendUint(dst, uint64(p.MSS), 10)
	}
	if p.WScale >= 0 {
		dst = append(dst, `,"wscale":`...)
		dst = strconv.AppendInt(dst, int64(p.WScale), 10)
	}
	dst = append(dst, '}')
	dst = refAppendFragmentPayload(dst, p)
	irregular, reasons := Irregular(p)
	dst = append(dst, `,"irregular":`...)
	dst = strconv.AppendBool(dst, irregular)
	dst = append(dst, `,"irregular_reasons":`...)
	dst = reasons.AppendJSON(dst)
	dst = append(dst, `,"scanner":"`...)
	dst = append(dst, Fingerprint(p).String()...)
	return append(dst, "\"}\n"...)
}
