package udpreply

import "encoding/binary"

// dnsQuery is what a DNS query shows: the header and its one question.
type dnsQuery struct {
	id, flags      uint16
	qname          []byte // the question's name as on the wire (labels, then 0)
	qtype, qclass  uint16
	qend           int // end of the question in the payload
	an, ns, ar     uint16
	opcode         uint8
	recursionAsked bool
}

// maxDNSName is the longest name on the wire (RFC 1035 §3.1).
const maxDNSName = 255

// parseDNS reads a DNS query: a header with QR = 0, opcode QUERY, one
// question whose name has no compression pointer (a query has nothing to
// point to) and at most maxDNSName bytes.
func parseDNS(p []byte) (q dnsQuery, ok bool) {
	if len(p) < 12 {
		return q, false
	}
	q.id, q.flags, ok = parseQueryHeader(p)
	q.opcode = uint8(q.flags>>11) & 0xf
	q.recursionAsked = q.flags&0x0100 != 0
	if !ok {
		return q, false
	}
	q.an = binary.BigEndian.Uint16(p[6:])
	q.ns = binary.BigEndian.Uint16(p[8:])
	q.ar = binary.BigEndian.Uint16(p[10:])
	end, ok := nameEnd(p, 12)
	if !ok || len(p)-end < 4 {
		return q, false
	}
	q.qname = p[12:end]
	q.qtype = binary.BigEndian.Uint16(p[end:])
	q.qclass = binary.BigEndian.Uint16(p[end+2:])
	q.qend = end + 4
	return q, true
}

// parseQueryHeader reads the id and flags of the 12-byte DNS header at p,
// which NetBIOS name service queries share, and reports whether it is a
// query (QR = 0) of opcode QUERY with one question.
func parseQueryHeader(p []byte) (id, flags uint16, ok bool) {
	id = binary.BigEndian.Uint16(p)
	flags = binary.BigEndian.Uint16(p[2:])
	return id, flags, flags&0x8000 == 0 && (flags>>11)&0xf == 0 && binary.BigEndian.Uint16(p[4:]) == 1
}

// nameEnd returns the end of the uncompressed name at p[off:] (after its
// zero label).
func nameEnd(p []byte, off int) (int, bool) {
	i := off
	for {
		if i >= len(p) || i-off >= maxDNSName {
			return 0, false
		}
		l := int(p[i])
		if l == 0 {
			return i + 1, true
		}
		if l > 63 { // a pointer or a reserved label type
			return 0, false
		}
		i += 1 + l
	}
}

// answerDNS refuses the query: a response with the query's id, opcode and
// RD, RCODE REFUSED, the question echoed and no record, so that an open
// resolver scan files spoki as a server that exists and refuses (as an
// authoritative server does for a zone it does not serve). The answer is
// the query minus anything after its question (EDNS OPT and the rest).
func answerDNS(w *writer, p []byte) bool {
	q, ok := parseDNS(p)
	if !ok {
		return false
	}
	const refused = 5
	w.questionOnly(q.id, 0x8000|q.flags&0x0100|refused, p[12:q.qend]) // QR, opcode QUERY, RD as asked
	return true
}

// questionOnly writes a response of the DNS header's shape (DNS, NetBIOS
// name service) that holds no record: id, flags, a count of one question
// and the question, as the query asked it.
func (w *writer) questionOnly(id, flags uint16, question []byte) {
	w.u16(id)
	w.u16(flags)
	w.u16(1) // questions
	w.u16(0) // answers
	w.u16(0) // authority records
	w.u16(0) // additional records
	w.bytes(question)
}

// dnsTypeName names the query types scanners ask for most.
func dnsTypeName(t uint16) string {
	switch t {
	case 1:
		return "A"
	case 2:
		return "NS"
	case 5:
		return "CNAME"
	case 6:
		return "SOA"
	case 12:
		return "PTR"
	case 15:
		return "MX"
	case 16:
		return "TXT"
	case 28:
		return "AAAA"
	case 33:
		return "SRV"
	case 255:
		return "ANY"
	}
	return ""
}

// appendDNSName appends the wire name n in dotted form as a JSON string
// ("." for the root).
func appendDNSName(dst []byte, n []byte) []byte {
	dst = append(dst, '"')
	if len(n) <= 1 {
		dst = append(dst, '.')
	}
	for i := 0; i < len(n) && n[i] != 0; {
		l := int(n[i])
		if i > 0 {
			dst = append(dst, '.')
		}
		dst = appendJSONBytes(dst, n[i+1:min(i+1+l, len(n))])
		i += 1 + l
	}
	return append(dst, '"')
}

func appendDNSFields(dst []byte, p []byte) []byte {
	q, ok := parseDNS(p)
	if !ok {
		return appendUnparsed(dst)
	}
	dst = append(dst, `{"id":`...)
	dst = appendUint(dst, uint64(q.id))
	dst = append(dst, `,"rd":`...)
	dst = appendBool(dst, q.recursionAsked)
	dst = append(dst, `,"qname":`...)
	dst = appendDNSName(dst, q.qname)
	dst = append(dst, `,"qtype":`...)
	dst = appendUint(dst, uint64(q.qtype))
	if name := dnsTypeName(q.qtype); name != "" {
		dst = append(dst, `,"qtype_name":"`...)
		dst = append(dst, name...)
		dst = append(dst, '"')
	}
	dst = append(dst, `,"qclass":`...)
	dst = appendUint(dst, uint64(q.qclass))
	dst = append(dst, `,"additional":`...)
	dst = appendUint(dst, uint64(q.ar))
	return append(dst, '}')
}
