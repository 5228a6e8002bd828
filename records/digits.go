package records

// This file holds the number and address formatters of the per-packet
// encoders. They write what strconv.AppendUint and netip.Addr.AppendTo
// write, byte for byte, but straight into dst, two digits at a time and
// IPv4 octets from a table: on the writer goroutine those calls were a
// quarter of a `syn` event's cost.

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
	"slices"
	"strconv"
)

// digitPairs holds "00" to "99".
const digitPairs = "00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899"

// pow10 holds 10^0 to 10^19, for decimalLen.
var pow10 = [20]uint64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9,
	1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19}

// decimalLen returns the number of decimal digits of v (1 for 0).
func decimalLen(v uint64) int {
	// 1233/4096 is just above log10(2): t is the digit count or one less.
	t := bits.Len64(v) * 1233 >> 12
	if t == 0 || v >= pow10[t] {
		return t + 1
	}
	return t
}

// appendUint appends v in decimal, as strconv.AppendUint(dst, v, 10).
// Below 10^16 (every field but a few 64-bit ones) it writes v as one or
// two 8-digit words made without a loop (digits8) and keeps the word's
// digits from the first nonzero one: a division loop chains one division
// after the other and ends on a branch per digit count. It may write up
// to 8 bytes of dst's spare capacity past what it returns.
func appendUint(dst []byte, v uint64) []byte {
	if v < 100 {
		if v < 10 {
			return append(dst, byte('0'+v))
		}
		return append(dst, digitPairs[2*v], digitPairs[2*v+1])
	}
	l := len(dst)
	if cap(dst)-l < 16 {
		dst = slices.Grow(dst, 16)
	}
	if v >= 1e16 {
		return appendUintLoop(dst, v)
	}
	b := dst[l : l+16]
	hi, lo := uint32(v), uint64(0) // v's first digits (up to eight), the eight after
	if v >= 1e8 {
		q := v / 1e8
		hi, lo = uint32(q), digits8(uint32(v-q*1e8))|ascii8
	}
	// The zero digits before the first nonzero one are zero low bytes of
	// hi's digits; bit 56 keeps the last digit of hi = 0.
	d := digits8(hi)
	z := bits.TrailingZeros64(d|1<<56) &^ 7
	n := 8 - z>>3
	binary.LittleEndian.PutUint64(b, (d|ascii8)>>z)
	if v < 1e8 {
		return dst[:l+n]
	}
	binary.LittleEndian.PutUint64(b[n:], lo)
	return dst[:l+n+8]
}

// ascii8 turns eight digit values 0 to 9, one a byte, into their text.
const ascii8 = 0x3030303030303030

// digits8 returns v (below 10^8) as eight decimal digit values, the first
// (most significant) in the low byte, as little-endian memory holds them.
// SWAR: v is cut into two 4-digit halves in 32-bit lanes, each into two
// 2-digit quarters in 16-bit lanes, each into two digits in bytes, every
// cut a multiply by a reciprocal over all lanes at once.
func digits8(v uint32) uint64 {
	hi, lo := v/10000, v%10000
	x := uint64(hi) | uint64(lo)<<32
	// /100 of a lane below 10^4: *5243 >> 19 (exact there); the lane
	// becomes lane/100 in its low half and lane%100 in its high one.
	q := (x * 5243 >> 19) & 0x0000007f0000007f
	x = x<<16 - q*(100<<16-1)
	// /10 of a lane below 100: *103 >> 10 (exact there); likewise.
	q = (x * 103 >> 10) & 0x000f000f000f000f
	return x<<8 - q*(10<<8-1)
}

// appendUintLoop is appendUint for any v, two digits at a time. Above
// 10^8 it cuts v into 8-digit chunks whose pairs are computed in 32 bits,
// independently of each other, where a pair-at-a-time loop over the whole
// number would chain one 64-bit division after the other.
func appendUintLoop(dst []byte, v uint64) []byte {
	if v < 100 {
		if v < 10 {
			return append(dst, byte('0'+v))
		}
		return append(dst, digitPairs[2*v], digitPairs[2*v+1])
	}
	n := decimalLen(v)
	l := len(dst)
	if cap(dst)-l < n {
		dst = slices.Grow(dst, n)
	}
	dst = dst[:l+n]
	b := dst[l:]
	i := n
	for v >= 1e8 {
		q := v / 1e8
		r := uint32(v - q*1e8)
		i -= 8
		put8(b[i:], r)
		v = q
	}
	u := uint32(v)
	for u >= 100 {
		q := u / 100
		r := u - q*100
		i -= 2
		b[i+1], b[i] = digitPairs[2*r+1], digitPairs[2*r]
		u = q
	}
	if u >= 10 {
		b[1], b[0] = digitPairs[2*u+1], digitPairs[2*u]
	} else {
		b[0] = byte('0' + u)
	}
	return dst
}

// put8 writes v (below 10^8) as eight digits.
func put8(b []byte, v uint32) {
	hi, lo := v/10000, v%10000
	_ = b[7]
	put2(b[0:], int(hi/100))
	put2(b[2:], int(hi%100))
	put2(b[4:], int(lo/100))
	put2(b[6:], int(lo%100))
}

// appendInt appends v in decimal, as strconv.AppendInt(dst, v, 10).
func appendInt(dst []byte, v int64) []byte {
	if v >= 0 {
		return appendUint(dst, uint64(v))
	}
	return strconv.AppendInt(dst, v, 10)
}

// octets holds each byte value's decimal digits and a '.' in its low 32
// bits (little-endian, so they can be stored as one word) and their count,
// the dot not included, above them.
var octets = func() (t [256]uint64) {
	for v := range t {
		s := strconv.Itoa(v) + "."
		var w [4]byte
		copy(w[:], s)
		t[v] = uint64(binary.LittleEndian.Uint32(w[:])) | uint64(len(s)-1)<<32
	}
	return t
}()

// appendAddr appends a as a.AppendTo(dst) does: IPv4 and plain IPv6
// addresses (no zone, not v4-mapped) take the fast paths.
func appendAddr(dst []byte, a netip.Addr) []byte {
	if a.Is4() {
		return appendIPv4(dst, a.As4())
	}
	if a.Is6() && !a.Is4In6() && a.Zone() == "" {
		return appendIPv6(dst, a.As16())
	}
	return a.AppendTo(dst)
}

// appendIPv4 appends a in dotted-quad notation.
func appendIPv4(dst []byte, a [4]byte) []byte {
	const max = len("255.255.255.255.") // the last octet's dot is written, not kept
	l := len(dst)
	if cap(dst)-l < max {
		dst = slices.Grow(dst, max)
	}
	b := dst[l : l+max]
	n := 0
	for _, x := range a {
		e := octets[x]
		binary.LittleEndian.PutUint32(b[n&15:], uint32(e))
		n += int(e>>32) + 1
	}
	return dst[:l+n-1]
}

// hexPairs holds each byte value's two lowercase hex digits, the first in
// the low byte.
var hexPairs = func() (t [256]uint16) {
	const hexDigits = "0123456789abcdef"
	for v := range t {
		t[v] = uint16(hexDigits[v>>4]) | uint16(hexDigits[v&0xf])<<8
	}
	return t
}()

// appendIPv6 appends a in the RFC 5952 form netip writes: lowercase hex
// groups without leading zeros, the first longest run of two or more zero
// groups as "::".
func appendIPv6(dst []byte, a [16]byte) []byte {
	// Each group is written as four bytes and kept as its digit count, so
	// the buffer has room for a whole group past the longest text.
	const max = len("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff") + 4
	var g [8]uint16
	for i := range g {
		g[i] = binary.BigEndian.Uint16(a[2*i:])
	}
	zeroStart, zeroEnd := 255, 255
	for i := 0; i < 8; i++ {
		if g[i] != 0 {
			continue
		}
		j := i + 1
		for j < 8 && g[j] == 0 {
			j++
		}
		if l := j - i; l >= 2 && l > zeroEnd-zeroStart {
			zeroStart, zeroEnd = i, j
		}
		i = j
	}
	l := len(dst)
	if cap(dst)-l < max {
		dst = slices.Grow(dst, max)
	}
	b := dst[l : l+max]
	n := 0
	for i := 0; i < 8; i++ {
		if i == zeroStart {
			b[n], b[n+1] = ':', ':'
			n += 2
			i = zeroEnd
			if i >= 8 {
				break
			}
		} else if i > 0 {
			b[n] = ':'
			n++
		}
		v := g[i]
		k := (bits.Len16(v|1) + 3) >> 2
		w := uint32(hexPairs[v>>8]) | uint32(hexPairs[v&0xff])<<16
		w >>= 8 * uint(4-k)
		binary.LittleEndian.PutUint32(b[n:], w)
		n += k
	}
	return dst[:l+n]
}

// word is a text of at most 16 bytes, padded to 16 so that it is moved as
// one 16-byte store, and its length.
type word struct {
	text [16]byte
	len  uint8
}

func newWord(s string) (w word) {
	w.len = uint8(copy(w.text[:], s))
	return w
}

// appendWords appends the texts of ws in order, each moved as one 16-byte
// word: it may write up to 16 bytes of dst's spare capacity past what it
// returns.
func appendWords(dst []byte, ws []*word) []byte {
	if len(ws) == 0 {
		return dst
	}
	l := len(dst)
	if cap(dst)-l < 16*len(ws) {
		dst = slices.Grow(dst, 16*len(ws))
	}
	b := dst[l:cap(dst)]
	n := 0
	for _, w := range ws {
		*(*[16]byte)(b[n : n+16]) = w.text
		n += int(w.len)
	}
	return dst[:l+n]
}
