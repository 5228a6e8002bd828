package udpreply

import (
	"bytes"
	"net/netip"
)

// ssdpUUID is the device's UUID in an SSDP answer, fixed so that repeated
// searches see one device.
const ssdpUUID = "uuid:4d696e69-5550-6e50-4465-766963650001"

// ssdpMaxST bounds the search target an answer repeats.
const ssdpMaxST = 128

// parseSSDP reads an M-SEARCH request and returns its search target.
func parseSSDP(p []byte) (st, rest []byte, ok bool) {
	line, rest, ok := startLine(p)
	if !ok || !bytes.HasPrefix(line, []byte("M-SEARCH ")) {
		return nil, nil, false
	}
	return headerValue(rest, "ST", 0), rest, true
}

// answerSSDP answers an M-SEARCH as a UPnP router's miniupnpd does, with a
// 200 OK naming one root device. The answer keeps the headers that fit in
// the request's size, in the order a client needs them (ST, then
// LOCATION, USN and the rest), and always ends with the empty line.
func answerSSDP(w *writer, p []byte, local netip.Addr) bool {
	st, _, ok := parseSSDP(p)
	if !ok {
		return false
	}
	if !token(st, ssdpMaxST) || bytes.Equal(st, []byte("ssdp:all")) {
		st = []byte("upnp:rootdevice")
	}
	budget := len(p)
	const status, end = "HTTP/1.1 200 OK\r\n", "\r\n"
	w.str(status)
	// Mandatory: ST. LOCATION, which scanners fetch next, comes first of
	// the rest, then USN.
	w.str("ST: ")
	w.bytes(st)
	w.str("\r\n")
	var loc [96]byte
	l := append(loc[:0], "LOCATION: http://"...)
	l = netip.AddrPortFrom(local, 5000).AppendTo(l)
	l = append(l, "/rootDesc.xml\r\n"...)
	if local.IsValid() && w.fits(len(l)+len(end), budget) {
		w.bytes(l)
	}
	const usn = "USN: " + ssdpUUID + "::"
	if w.fits(len(usn)+len(st)+2+len(end), budget) {
		w.str(usn)
		w.bytes(st)
		w.str("\r\n")
	}
	for _, h := range [...]string{
		"EXT:\r\n",
		"CACHE-CONTROL: max-age=120\r\n",
		"SERVER: Linux/3.14 UPnP/1.1 MiniUPnPd/2.1\r\n",
	} {
		if w.fits(len(h)+len(end), budget) {
			w.str(h)
		}
	}
	w.str(end)
	return true
}

func appendSSDPFields(dst []byte, p []byte) []byte {
	st, rest, ok := parseSSDP(p)
	if !ok {
		line, _, _ := startLine(p)
		if len(line) == 0 {
			return appendUnparsed(dst)
		}
		dst = append(dst, `{"start_line":"`...)
		dst = appendJSONBytes(dst, line[:min(len(line), 256)])
		return append(dst, `"}`...)
	}
	dst = append(dst, `{"method":"M-SEARCH","st":"`...)
	dst = appendJSONBytes(dst, st[:min(len(st), 256)])
	for _, h := range [...]struct{ key, name string }{
		{"man", "MAN"}, {"mx", "MX"}, {"host", "HOST"}, {"user_agent", "USER-AGENT"},
	} {
		if v := headerValue(rest, h.name, 0); v != nil {
			dst = append(dst, `","`...)
			dst = append(dst, h.key...)
			dst = append(dst, `":"`...)
			dst = appendJSONBytes(dst, v[:min(len(v), 256)])
		}
	}
	return append(dst, `"}`...)
}
