package udpreply

import "bytes"

// sipMaxHeader bounds a header line an answer copies.
const sipMaxHeader = 512

// sipTag is the To tag spoki adds to its answer.
const sipTag = ";tag=5c0b1e7a"

// parseSIP reads the start line of a SIP request: METHOD URI SIP/2.0.
func parseSIP(p []byte) (method, uri, rest []byte, ok bool) {
	line, rest, ok := startLine(p)
	if !ok || !bytes.HasSuffix(line, []byte(" SIP/2.0")) {
		return nil, nil, nil, false
	}
	line = line[:len(line)-len(" SIP/2.0")]
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return nil, nil, nil, false
	}
	return line[:sp], line[sp+1:], rest, true
}

// answerSIP answers an OPTIONS request (what sipvicious and friends send
// to find phones and PBXes) as a UA does: 200 OK with the request's Via
// lines, From, To (with a tag), Call-ID and CSeq, which a client needs to
// match it, an Allow line if it fits and an empty body. Other methods get
// nothing: spoki is no registrar and places no calls.
func answerSIP(w *writer, p []byte) bool {
	method, _, rest, ok := parseSIP(p)
	if !ok || string(method) != "OPTIONS" {
		return false
	}
	var from, to, callID, cseq []byte
	vias := 0
	w.str("SIP/2.0 200 OK\r\n")
	for r := rest; ; {
		line, after, ok := nextHeader(r)
		if !ok {
			break
		}
		r = after
		if !token(line, sipMaxHeader) {
			return false
		}
		switch {
		case isHeader(line, "Via", 'v'):
			w.bytes(line)
			w.str("\r\n")
			vias++
		case isHeader(line, "From", 'f'):
			from = line
		case isHeader(line, "To", 't'):
			to = line
		case isHeader(line, "Call-ID", 'i'):
			callID = line
		case isHeader(line, "CSeq", 0):
			cseq = line
		}
	}
	if vias == 0 || from == nil || to == nil || callID == nil || cseq == nil {
		return false
	}
	w.bytes(from)
	w.str("\r\n")
	w.bytes(to)
	if v, _ := headerIs(to, "To", 't'); !bytes.Contains(v, []byte(";tag=")) {
		w.str(sipTag)
	}
	w.str("\r\n")
	w.bytes(callID)
	w.str("\r\n")
	w.bytes(cseq)
	w.str("\r\n")
	const allow, end = "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE\r\n", "Content-Length: 0\r\n\r\n"
	if w.fits(len(allow)+len(end), len(p)) {
		w.str(allow)
	}
	w.str(end)
	return true
}

func isHeader(line []byte, name string, short byte) bool {
	_, ok := headerIs(line, name, short)
	return ok
}

func appendSIPFields(dst []byte, p []byte) []byte {
	method, uri, rest, ok := parseSIP(p)
	if !ok {
		return appendUnparsed(dst)
	}
	dst = append(dst, `{"method":"`...)
	dst = appendJSONBytes(dst, method[:min(len(method), 32)])
	dst = append(dst, `","uri":"`...)
	dst = appendJSONBytes(dst, uri[:min(len(uri), 256)])
	for _, h := range [...]struct {
		key, name string
		short     byte
	}{{"from", "From", 'f'}, {"to", "To", 't'}, {"user_agent", "User-Agent", 0}, {"call_id", "Call-ID", 'i'}} {
		if v := headerValue(rest, h.name, h.short); v != nil {
			dst = append(dst, `","`...)
			dst = append(dst, h.key...)
			dst = append(dst, `":"`...)
			dst = appendJSONBytes(dst, v[:min(len(v), 256)])
		}
	}
	return append(dst, `"}`...)
}
