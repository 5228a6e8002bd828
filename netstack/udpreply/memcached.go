package udpreply

import "bytes"

// memcachedFrame is the frame header of memcached's UDP protocol: request
// id, sequence number, datagrams in the message, reserved.
const memcachedFrame = 8

// memcachedVersion is the version spoki's memcached claims.
const memcachedVersion = "1.6.21"

// memcachedStats are the stats lines an answer to `stats` takes, as many
// as fit in the request's size: the real answer (about 1.5 KB for 15
// bytes, the amplification of 2018's attacks) is never sent.
var memcachedStats = [...]string{
	"STAT pid 1021\r\n",
	"STAT uptime 3601\r\n",
	"STAT version " + memcachedVersion + "\r\n",
	"STAT curr_connections 2\r\n",
	"STAT curr_items 0\r\n",
}

// parseMemcached returns the command line of a UDP request (the frame must
// say one datagram, sequence 0) without its line end.
func parseMemcached(p []byte) (cmd []byte, ok bool) {
	if len(p) < memcachedFrame+1 || p[2] != 0 || p[3] != 0 || p[4] != 0 || p[5] != 1 {
		return nil, false
	}
	line := p[memcachedFrame:]
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	return bytes.TrimRight(line, "\r"), true
}

// memcachedVerb is the command's first word.
func memcachedVerb(cmd []byte) []byte {
	if i := bytes.IndexByte(cmd, ' '); i >= 0 {
		return cmd[:i]
	}
	return cmd
}

// answerMemcached answers `stats` (with or without an argument) with the
// stats lines that fit and END, `version` with the version, and a `get` or
// `gets` with END (a miss); any other command is not answered.
func answerMemcached(w *writer, p []byte) bool {
	cmd, ok := parseMemcached(p)
	if !ok {
		return false
	}
	frame := func() {
		w.bytes(p[:2]) // the request id
		w.u16(0)       // sequence
		w.u16(1)       // one datagram
		w.u16(0)
	}
	const end = "END\r\n"
	switch string(memcachedVerb(cmd)) {
	case "stats":
		frame()
		for _, s := range memcachedStats {
			if !w.fits(len(s)+len(end), len(p)) {
				break
			}
			w.str(s)
		}
		w.str(end)
	case "version":
		frame()
		w.str("VERSION " + memcachedVersion + "\r\n")
	case "get", "gets":
		frame()
		w.str(end)
	default:
		return false
	}
	return true
}

func appendMemcachedFields(dst []byte, p []byte) []byte {
	cmd, ok := parseMemcached(p)
	if !ok {
		return appendUnparsed(dst)
	}
	dst = append(dst, `{"command":"`...)
	dst = appendJSONBytes(dst, memcachedVerb(cmd))
	dst = append(dst, `","line":"`...)
	dst = appendJSONBytes(dst, cmd[:min(len(cmd), 256)])
	return append(dst, `"}`...)
}
