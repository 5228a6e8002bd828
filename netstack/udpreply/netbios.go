package udpreply

import "encoding/binary"

// nbQuery is a NetBIOS name service query (RFC 1002 §4.2.12): a DNS-like
// header and one question whose name is first-level encoded (32 letters
// 'A'-'P', two per byte of the 16-byte NetBIOS name).
type nbQuery struct {
	id, flags uint16
	name      [16]byte
	qtype     uint16 // 0x20 NB, 0x21 NBSTAT
	qend      int
}

func parseNetBIOS(p []byte) (q nbQuery, ok bool) {
	if len(p) < 12+34+4 {
		return q, false
	}
	// A request (R = 0) of opcode 0, query, with one question.
	q.id, q.flags, ok = parseQueryHeader(p)
	if !ok {
		return q, false
	}
	if p[12] != 32 {
		return q, false
	}
	for i := 0; i < 16; i++ {
		hi, lo := p[13+2*i]-'A', p[14+2*i]-'A'
		if hi > 15 || lo > 15 {
			return q, false
		}
		q.name[i] = hi<<4 | lo
	}
	// The scope: labels after the name, to the zero label.
	end, ok := nameEnd(p, 45)
	if !ok || len(p)-end < 4 {
		return q, false
	}
	q.qtype = binary.BigEndian.Uint16(p[end:])
	if q.qtype != 0x20 && q.qtype != 0x21 || binary.BigEndian.Uint16(p[end+2:]) != 1 {
		return q, false
	}
	q.qend = end + 4
	return q, true
}

// answerNetBIOS answers a name query negatively: a response with the
// query's id, AA and RCODE NAM_ERR (the name is not here) and the question
// echoed. A node status query (NBSTAT, what nbtscan and nmap send, whose
// real answer lists every name and is several times the query) gets the
// same refusal.
func answerNetBIOS(w *writer, p []byte) bool {
	q, ok := parseNetBIOS(p)
	if !ok {
		return false
	}
	const namErr = 3
	w.questionOnly(q.id, 0x8000|0x0400|q.flags&0x0100|namErr, p[12:q.qend]) // R, AA, RD as asked
	return true
}

func appendNetBIOSFields(dst []byte, p []byte) []byte {
	q, ok := parseNetBIOS(p)
	if !ok {
		return appendUnparsed(dst)
	}
	// The name is 15 characters padded with spaces, then the suffix byte
	// (the service: 0x00 workstation, 0x20 file server, ...); "*" padded
	// with zeros is the wildcard of node status queries.
	name := q.name[:15]
	for len(name) > 0 && (name[len(name)-1] == ' ' || name[len(name)-1] == 0) {
		name = name[:len(name)-1]
	}
	dst = append(dst, `{"id":`...)
	dst = appendUint(dst, uint64(q.id))
	dst = append(dst, `,"name":"`...)
	dst = appendJSONBytes(dst, name)
	dst = append(dst, `","suffix":`...)
	dst = appendUint(dst, uint64(q.name[15]))
	dst = append(dst, `,"qtype":"`...)
	if q.qtype == 0x21 {
		dst = append(dst, "NBSTAT"...)
	} else {
		dst = append(dst, "NB"...)
	}
	return append(dst, `"}`...)
}
