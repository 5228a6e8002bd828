package udpreply

// SNMP v1 and v2c messages in BER (RFC 1157, RFC 3416):
//
//	SEQUENCE { INTEGER version, OCTET STRING community,
//	           PDU { INTEGER request-id, INTEGER error-status,
//	                 INTEGER error-index, SEQUENCE OF varbind } }

// BER tags spoki reads.
const (
	berInteger     = 0x02
	berOctetString = 0x04
	berOID         = 0x06
	berSequence    = 0x30
	pduGet         = 0xa0
	pduGetNext     = 0xa1
	pduResponse    = 0xa2
	pduGetBulk     = 0xa5
	snmpNoSuchName = 2
)

// tlv reads one BER element at p[off:]: its tag, where its value starts
// and where it ends. Lengths are short or long form of one or two bytes.
func tlv(p []byte, off int) (tag byte, val, end int, ok bool) {
	if len(p)-off < 2 {
		return 0, 0, 0, false
	}
	tag = p[off]
	l := int(p[off+1])
	val = off + 2
	switch {
	case l < 0x80:
	case l == 0x81:
		if len(p)-val < 1 {
			return 0, 0, 0, false
		}
		l = int(p[val])
		val++
	case l == 0x82:
		if len(p)-val < 2 {
			return 0, 0, 0, false
		}
		l = int(p[val])<<8 | int(p[val+1])
		val += 2
	default:
		return 0, 0, 0, false
	}
	if len(p)-val < l {
		return 0, 0, 0, false
	}
	return tag, val, val + l, true
}

// snmpMsg is where a request's parts sit in the payload.
type snmpMsg struct {
	version         int
	community       []byte
	pdu             byte
	pduAt           int // offset of the PDU's tag
	requestID       int64
	errStat, errIdx [2]int // value start and end of error-status and error-index
	varbinds        [2]int // value start and end of the varbind list
	end             int    // end of the message
}

// berInt reads a small INTEGER's value (at most 8 bytes).
func berInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 8 {
		return 0, false
	}
	v := int64(int8(b[0]))
	for _, c := range b[1:] {
		v = v<<8 | int64(c)
	}
	return v, true
}

// parseSNMP reads a v1 or v2c Get, GetNext or GetBulk request whose
// varbinds are each a SEQUENCE of an OID and a value.
func parseSNMP(p []byte) (m snmpMsg, ok bool) {
	tag, val, end, ok := tlv(p, 0)
	if !ok || tag != berSequence {
		return m, false
	}
	m.end = end
	p = p[:end]
	tag, v, e, ok := tlv(p, val)
	if !ok || tag != berInteger {
		return m, false
	}
	ver, ok := berInt(p[v:e])
	if !ok || ver != 0 && ver != 1 {
		return m, false
	}
	m.version = int(ver)
	tag, v, e, ok = tlv(p, e)
	if !ok || tag != berOctetString {
		return m, false
	}
	m.community = p[v:e]
	m.pduAt = e
	tag, v, pend, ok := tlv(p, e)
	if !ok || (tag != pduGet && tag != pduGetNext && tag != pduGetBulk) || pend != end {
		return m, false
	}
	m.pdu = tag
	var ints [3][2]int
	next := v
	for i := range ints {
		tag, v, e, ok = tlv(p, next)
		if !ok || tag != berInteger || e == v {
			return m, false
		}
		ints[i] = [2]int{v, e}
		next = e
	}
	if m.requestID, ok = berInt(p[ints[0][0]:ints[0][1]]); !ok {
		return m, false
	}
	m.errStat, m.errIdx = ints[1], ints[2]
	tag, v, e, ok = tlv(p, next)
	if !ok || tag != berSequence || e != pend {
		return m, false
	}
	m.varbinds = [2]int{v, e}
	for at := v; at < e; {
		tag, bv, be, ok := tlv(p, at)
		if !ok || tag != berSequence {
			return m, false
		}
		tag, _, oe, ok := tlv(p, bv)
		if !ok || tag != berOID {
			return m, false
		}
		if _, _, ve, ok := tlv(p, oe); !ok || ve != be {
			return m, false
		}
		at = be
	}
	return m, true
}

// answerSNMP answers a Get, GetNext or GetBulk with a GetResponse of error
// noSuchName at index 1 that echoes the request's version, community,
// request id and varbinds: the request itself with the PDU tag and the two
// error fields rewritten in place, so the answer is exactly as long as the
// request (without trailing bytes). A GetBulk's non-repeaters and
// max-repetitions sit where the error fields go and are overwritten.
func answerSNMP(w *writer, p []byte) bool {
	m, ok := parseSNMP(p)
	if !ok {
		return false
	}
	start := w.n
	w.bytes(p[:m.end])
	if w.short {
		return true
	}
	out := w.buf[start:w.n]
	out[m.pduAt] = pduResponse
	setInt := func(at [2]int, v byte) {
		for i := at[0]; i < at[1]-1; i++ {
			out[i] = 0
		}
		out[at[1]-1] = v
	}
	setInt(m.errStat, snmpNoSuchName)
	idx := byte(1)
	if m.varbinds[0] == m.varbinds[1] {
		idx = 0
	}
	setInt(m.errIdx, idx)
	return true
}

// appendOID appends the BER-encoded OID b in dotted form.
func appendOID(dst []byte, b []byte) []byte {
	var v uint64
	first := true
	for i, c := range b {
		if v > 1<<56 { // longer than any real arc: stop
			return append(dst, "..."...)
		}
		v = v<<7 | uint64(c&0x7f)
		if c&0x80 != 0 && i < len(b)-1 {
			continue
		}
		if first {
			x := min(v/40, 2)
			dst = appendUint(dst, x)
			dst = append(dst, '.')
			dst = appendUint(dst, v-40*x)
			first = false
		} else {
			dst = append(dst, '.')
			dst = appendUint(dst, v)
		}
		v = 0
	}
	return dst
}

// snmpMaxOIDs bounds the OIDs an event lists.
const snmpMaxOIDs = 16

func appendSNMPFields(dst []byte, p []byte) []byte {
	m, ok := parseSNMP(p)
	if !ok {
		return appendUnparsed(dst)
	}
	dst = append(dst, `{"version":"`...)
	if m.version == 0 {
		dst = append(dst, '1')
	} else {
		dst = append(dst, "2c"...)
	}
	dst = append(dst, `","community":"`...)
	dst = appendJSONBytes(dst, m.community[:min(len(m.community), 256)])
	dst = append(dst, `","pdu":"`...)
	switch m.pdu {
	case pduGet:
		dst = append(dst, "get"...)
	case pduGetNext:
		dst = append(dst, "getnext"...)
	default:
		dst = append(dst, "getbulk"...)
	}
	dst = append(dst, `","request_id":`...)
	dst = appendInt(dst, m.requestID)
	dst = append(dst, `,"oids":[`...)
	n := 0
	for at := m.varbinds[0]; at < m.varbinds[1] && n < snmpMaxOIDs; n++ {
		_, bv, be, _ := tlv(p, at)
		_, ov, oe, _ := tlv(p, bv)
		if n > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '"')
		dst = appendOID(dst, p[ov:oe])
		dst = append(dst, '"')
		at = be
	}
	return append(dst, "]}"...)
}
