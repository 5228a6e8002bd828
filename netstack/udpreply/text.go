package udpreply

import "bytes"

// Header lines of the text protocols (SSDP, SIP): CRLF or LF line ends,
// "Name: value", names compared without case.

// startLine returns the request's first line and the rest.
func startLine(p []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(p, '\n')
	if i < 0 {
		return nil, nil, false
	}
	return bytes.TrimRight(p[:i], "\r"), p[i+1:], true
}

// nextHeader returns the next header line of rest (without its line end)
// and what follows; ok is false at the empty line or the end.
func nextHeader(rest []byte) (line, after []byte, ok bool) {
	if len(rest) == 0 {
		return nil, nil, false
	}
	i := bytes.IndexByte(rest, '\n')
	if i < 0 {
		line, after = rest, nil
	} else {
		line, after = rest[:i], rest[i+1:]
	}
	line = bytes.TrimRight(line, "\r")
	if len(line) == 0 {
		return nil, nil, false
	}
	return line, after, true
}

// headerIs reports whether line is a header named name (or its compact
// form short, if not 0) and returns its value.
func headerIs(line []byte, name string, short byte) ([]byte, bool) {
	c := bytes.IndexByte(line, ':')
	if c < 0 {
		return nil, false
	}
	n := bytes.TrimSpace(line[:c])
	if !bytes.EqualFold(n, []byte(name)) && !(short != 0 && len(n) == 1 && (n[0]|0x20) == short) {
		return nil, false
	}
	return bytes.TrimSpace(line[c+1:]), true
}

// headerValue is the value of the first header named name in rest.
func headerValue(rest []byte, name string, short byte) []byte {
	for {
		line, after, ok := nextHeader(rest)
		if !ok {
			return nil
		}
		if v, ok := headerIs(line, name, short); ok {
			return v
		}
		rest = after
	}
}

// token reports whether v is safe to copy into an answer's header:
// printable ASCII without CR, LF or control bytes, at most max long.
func token(v []byte, max int) bool {
	if len(v) == 0 || len(v) > max {
		return false
	}
	for _, c := range v {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}
