package udpreply

import (
	"encoding/binary"
	"time"
)

// ntpLen is an NTP packet without extension fields or MAC (RFC 5905 §7.3).
const ntpLen = 48

// ntpEpochOffset is the seconds from 1900-01-01 (NTP's era 0) to 1970.
const ntpEpochOffset = 2208988800

// ntpStamp is t as a 64-bit NTP timestamp.
func ntpStamp(t time.Time) uint64 {
	sec := uint64(t.Unix() + ntpEpochOffset)
	frac := uint64(t.Nanosecond()) << 32 / 1e9
	return sec<<32 | frac
}

// parseNTP reads a client request: version 1 to 4, mode 3 (client), at
// least the 48-byte header. Mode 6 (control) and mode 7 (private: monlist,
// the amplifier) are not client requests and are never answered.
func parseNTP(p []byte) (version, mode uint8, ok bool) {
	if len(p) < ntpLen {
		return 0, 0, false
	}
	version, mode = p[0]>>3&7, p[0]&7
	return version, mode, mode == 3 && version >= 1 && version <= 4
}

// answerNTP is a server's reply (mode 4) to a client request, 48 bytes:
// the client's version and poll, stratum 1 with a GPS reference, and the
// client's transmit time as the origin, so that the client accepts it and
// computes an offset of about zero.
func answerNTP(w *writer, p []byte, now time.Time) bool {
	version, _, ok := parseNTP(p)
	if !ok {
		return false
	}
	stamp := ntpStamp(now)
	w.byte1(version<<3 | 4) // LI 0 (no warning), mode 4
	w.byte1(1)              // stratum 1: a primary reference
	w.byte1(p[2])           // the client's poll
	w.byte1(0xe9)           // precision 2^-23 s
	w.u32(0)                // root delay
	w.u32(0x0000000a)       // root dispersion: ~150 µs
	w.str("GPS\x00")        // reference id of a stratum-1 GPS clock
	w.u32(uint32((stamp - 16<<32) >> 32))
	w.u32(uint32(stamp))
	w.bytes(p[40:48]) // origin: the client's transmit time
	w.u32(uint32(stamp >> 32))
	w.u32(uint32(stamp))
	w.u32(uint32(stamp >> 32))
	w.u32(uint32(stamp))
	return true
}

func appendNTPFields(dst []byte, p []byte) []byte {
	if len(p) < ntpLen {
		return appendUnparsed(dst)
	}
	version, mode, _ := parseNTP(p)
	dst = append(dst, `{"version":`...)
	dst = appendUint(dst, uint64(version))
	dst = append(dst, `,"mode":`...)
	dst = appendUint(dst, uint64(mode))
	dst = append(dst, `,"stratum":`...)
	dst = appendUint(dst, uint64(p[1]))
	dst = append(dst, `,"poll":`...)
	dst = appendUint(dst, uint64(p[2]))
	dst = append(dst, `,"transmit":`...)
	// The client's transmit time: most clients send their clock, some
	// (ntpdate, nmap) zeros or random bytes, which says who they are.
	dst = appendUint(dst, binary.BigEndian.Uint64(p[40:48]))
	if len(p) > ntpLen {
		dst = append(dst, `,"extra_bytes":`...)
		dst = appendUint(dst, uint64(len(p)-ntpLen))
	}
	return append(dst, '}')
}
