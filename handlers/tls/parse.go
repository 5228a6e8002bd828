package tls

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Parse errors, recorded in Detail.Error.
var (
	// ErrIncomplete says the data ends inside the handshake message.
	ErrIncomplete = errors.New("incomplete client hello")
	// ErrNotHello says the data is not a TLS handshake carrying a
	// ClientHello.
	ErrNotHello = errors.New("not a client hello")
	// ErrMalformed says a length field points past its container.
	ErrMalformed = errors.New("malformed client hello")
)

// Extension types the parser reads.
const (
	extServerName          = 0x0000
	extSupportedGroups     = 0x000a
	extECPointFormats      = 0x000b
	extSignatureAlgorithms = 0x000d
	extALPN                = 0x0010
	extSupportedVersions   = 0x002b
)

// ClientHello is what Parse found in a ClientHello. Lists are in wire
// order, GREASE values included.
type ClientHello struct {
	RecordVersion     uint16
	Version           uint16
	SessionIDLen      int
	CipherSuites      []uint16
	Compression       []uint8
	Extensions        []uint16
	SNI               string
	ALPN              []string
	SupportedVersions []uint16
	Groups            []uint16
	PointFormats      []uint8
	SigAlgs           []uint16
}

// HandshakeMessage returns the first handshake message carried by the TLS
// records at the start of data, reassembled across records, without its
// 4-byte header, and its type. It fails with ErrIncomplete when data ends
// first and ErrNotHello when data is not handshake records or the message
// is longer than MaxHelloBytes.
func HandshakeMessage(data []byte) (typ uint8, msg []byte, recordVersion uint16, err error) {
	var frag []byte
	for first := true; ; first = false {
		if len(data) < 5 {
			return 0, nil, 0, ErrIncomplete
		}
		if data[0] != 0x16 || data[1] != 0x03 {
			return 0, nil, 0, ErrNotHello
		}
		if first {
			recordVersion = binary.BigEndian.Uint16(data[1:3])
		}
		n := int(binary.BigEndian.Uint16(data[3:5]))
		if n == 0 {
			return 0, nil, 0, ErrMalformed
		}
		if len(data) < 5+n {
			frag = append(frag, data[5:]...)
			if len(frag) >= 4 && int(frag[1])<<16|int(frag[2])<<8|int(frag[3]) > MaxHelloBytes {
				return 0, nil, 0, ErrNotHello
			}
			return 0, nil, 0, ErrIncomplete
		}
		frag = append(frag, data[5:5+n]...)
		data = data[5+n:]
		if len(frag) < 4 {
			continue
		}
		mlen := int(frag[1])<<16 | int(frag[2])<<8 | int(frag[3])
		if mlen > MaxHelloBytes {
			return 0, nil, 0, ErrNotHello
		}
		if len(frag) >= 4+mlen {
			return frag[0], frag[4 : 4+mlen], recordVersion, nil
		}
	}
}

// Parse parses the ClientHello carried by the TLS records in data. It
// never panics, and the ClientHello does not alias data.
func Parse(data []byte) (ClientHello, error) {
	typ, msg, rv, err := HandshakeMessage(data)
	if err != nil {
		return ClientHello{}, err
	}
	if typ != 1 {
		return ClientHello{RecordVersion: rv}, ErrNotHello
	}
	ch, err := ParseClientHello(msg)
	ch.RecordVersion = rv
	return ch, err
}

// reader reads big-endian fields; a read past the end sets bad.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) u8() uint8 {
	if len(r.b) < 1 {
		r.bad = true
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) u16() uint16 {
	if len(r.b) < 2 {
		r.bad = true
		return 0
	}
	v := binary.BigEndian.Uint16(r.b)
	r.b = r.b[2:]
	return v
}

func (r *reader) bytes(n int) []byte {
	if n > len(r.b) {
		r.bad = true
		r.b = nil
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

// vec8 and vec16 read a vector with a 1- or 2-byte length.
func (r *reader) vec8() reader  { return reader{b: r.bytes(int(r.u8()))} }
func (r *reader) vec16() reader { return reader{b: r.bytes(int(r.u16()))} }

func (r *reader) u16s() []uint16 {
	out := make([]uint16, 0, len(r.b)/2)
	for len(r.b) >= 2 {
		out = append(out, r.u16())
	}
	if len(r.b) != 0 {
		r.bad = true
	}
	return out
}

// ParseClientHello parses the body of a ClientHello handshake message
// (after its type and length). Extensions that do not parse are kept in
// Extensions and otherwise skipped; a body cut short is ErrMalformed, with
// what was parsed before the cut.
func ParseClientHello(msg []byte) (ClientHello, error) {
	var ch ClientHello
	r := reader{b: msg}
	ch.Version = r.u16()
	r.bytes(32) // random
	sid := r.vec8()
	ch.SessionIDLen = len(sid.b)
	cs := r.vec16()
	ch.CipherSuites = cs.u16s()
	comp := r.vec8()
	ch.Compression = slices.Clone(comp.b)
	if r.bad || cs.bad {
		return ch, ErrMalformed
	}
	if len(r.b) == 0 {
		return ch, nil // no extensions: SSL 3.0 style
	}
	exts := r.vec16()
	if r.bad {
		return ch, ErrMalformed
	}
	for len(exts.b) > 0 {
		typ := exts.u16()
		body := exts.vec16()
		if exts.bad {
			return ch, ErrMalformed
		}
		ch.Extensions = append(ch.Extensions, typ)
		ch.parseExtension(typ, body)
	}
	return ch, nil
}

func (ch *ClientHello) parseExtension(typ uint16, body reader) {
	switch typ {
	case extServerName:
		list := body.vec16()
		for len(list.b) > 0 && !list.bad {
			kind := list.u8()
			name := list.vec16()
			if kind == 0 && ch.SNI == "" && !list.bad {
				ch.SNI = string(name.b[:min(len(name.b), 255)])
			}
		}
	case extSupportedGroups:
		l := body.vec16()
		ch.Groups = l.u16s()
	case extECPointFormats:
		l := body.vec8()
		ch.PointFormats = slices.Clone(l.b)
	case extSignatureAlgorithms:
		l := body.vec16()
		ch.SigAlgs = l.u16s()
	case extALPN:
		list := body.vec16()
		for len(list.b) > 0 && !list.bad && len(ch.ALPN) < 16 {
			p := list.vec8()
			if !list.bad {
				ch.ALPN = append(ch.ALPN, string(p.b[:min(len(p.b), 64)]))
			}
		}
	case extSupportedVersions:
		l := body.vec8()
		ch.SupportedVersions = l.u16s()
	}
}

// IsGREASE reports whether v is one of the GREASE values of RFC 8701
// (0x0a0a, 0x1a1a, ..., 0xfafa), which JA3 and JA4 leave out.
func IsGREASE(v uint16) bool { return v&0x0f0f == 0x0a0a && v>>8 == v&0xff }

func noGREASE(in []uint16) []uint16 {
	out := make([]uint16, 0, len(in))
	for _, v := range in {
		if !IsGREASE(v) {
			out = append(out, v)
		}
	}
	return out
}

// JA3 returns the JA3 string of ch (salesforce/ja3: the ClientHello
// version, ciphers, extensions, groups and point formats, in decimal,
// GREASE removed) and its MD5 in hex.
func (ch *ClientHello) JA3() (s, hash string) {
	var b strings.Builder
	b.WriteString(strconv.Itoa(int(ch.Version)))
	b.WriteByte(',')
	join16(&b, noGREASE(ch.CipherSuites), "-", 10)
	b.WriteByte(',')
	join16(&b, noGREASE(ch.Extensions), "-", 10)
	b.WriteByte(',')
	join16(&b, noGREASE(ch.Groups), "-", 10)
	b.WriteByte(',')
	for i, p := range ch.PointFormats {
		if i > 0 {
			b.WriteByte('-')
		}
		b.WriteString(strconv.Itoa(int(p)))
	}
	s = b.String()
	sum := md5.Sum([]byte(s))
	return s, hex.EncodeToString(sum[:])
}

// join16 writes vs joined by sep, in base 10 or as 4-digit hex (base 16).
func join16(b *strings.Builder, vs []uint16, sep string, base int) {
	for i, v := range vs {
		if i > 0 {
			b.WriteString(sep)
		}
		if base == 16 {
			fmt.Fprintf(b, "%04x", v)
		} else {
			b.WriteString(strconv.Itoa(int(v)))
		}
	}
}

// JA4 holds the four forms of the JA4 fingerprint (FoxIO): the hashed and
// raw forms, each sorted (JA4, JA4R) and in original order (JA4O, JA4RO).
type JA4 struct {
	JA4, JA4R, JA4O, JA4RO string
}

// JA4 computes ch's JA4 fingerprints for TLS over TCP, per FoxIO's
// JA4.md: version from supported_versions (highest non-GREASE) else the
// ClientHello version; d/i for SNI; counts of non-GREASE ciphers and
// extensions (capped at 99); first and last characters of the first ALPN
// value; then the truncated SHA-256 of the sorted ciphers and of the sorted
// extensions (without SNI and ALPN) followed by the signature algorithms in
// wire order. The original-order forms keep the wire order and SNI and
// ALPN.
func (ch *ClientHello) JA4() JA4 {
	ciphers := noGREASE(ch.CipherSuites)
	exts := noGREASE(ch.Extensions)
	sigs := noGREASE(ch.SigAlgs)

	v := ch.Version
	if sv := noGREASE(ch.SupportedVersions); len(sv) > 0 {
		v = slices.Max(sv)
	}
	sni := "i"
	if slices.Contains(ch.Extensions, extServerName) {
		sni = "d"
	}
	alpn := ""
	if len(ch.ALPN) > 0 {
		alpn = ch.ALPN[0]
	}
	a := fmt.Sprintf("t%s%s%02d%02d%s", ja4Version(v), sni, min(len(ciphers), 99), min(len(exts), 99), ja4ALPN(alpn))

	hexList := func(vs []uint16) string {
		var b strings.Builder
		join16(&b, vs, ",", 16)
		return b.String()
	}
	extPart := func(es []uint16) string {
		s := hexList(es)
		if len(sigs) > 0 {
			s += "_" + hexList(sigs)
		}
		return s
	}
	sortedCiphers := slices.Sorted(slices.Values(ciphers))
	var sortedExts []uint16
	for _, e := range slices.Sorted(slices.Values(exts)) {
		if e != extServerName && e != extALPN {
			sortedExts = append(sortedExts, e)
		}
	}
	bR, cR := hexList(sortedCiphers), extPart(sortedExts)
	bO, cO := hexList(ciphers), extPart(exts)
	return JA4{
		JA4:   a + "_" + ja4Hash(bR, len(sortedCiphers)) + "_" + ja4Hash(cR, len(sortedExts)),
		JA4R:  a + "_" + bR + "_" + cR,
		JA4O:  a + "_" + ja4Hash(bO, len(ciphers)) + "_" + ja4Hash(cO, len(exts)),
		JA4RO: a + "_" + bO + "_" + cO,
	}
}

// ja4Hash is the first 12 hex digits of s's SHA-256, or twelve zeros when
// the list behind it is empty.
func ja4Hash(s string, n int) string {
	if n == 0 {
		return "000000000000"
	}
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:6])
}

// ja4Version maps a TLS version to JA4's two characters.
func ja4Version(v uint16) string {
	switch v {
	case 0x0304:
		return "13"
	case 0x0303:
		return "12"
	case 0x0302:
		return "11"
	case 0x0301:
		return "10"
	case 0x0300:
		return "s3"
	case 0x0200:
		return "s2"
	case 0x0100:
		return "s1"
	}
	return "00"
}

// ja4ALPN returns JA4's two ALPN characters for the first ALPN value p:
// "00" if none; its first and last characters if both are ASCII
// alphanumerics; else the first and last characters of its hex form (per
// JA4.md). A one-character value gives that character and '0', as FoxIO's
// implementations do.
func ja4ALPN(p string) string {
	if p == "" {
		return "00"
	}
	first, last := p[0], p[len(p)-1]
	if !isAlnum(first) || !isAlnum(last) {
		h := hex.EncodeToString([]byte(p))
		return string([]byte{h[0], h[len(h)-1]})
	}
	if len(p) == 1 {
		return string([]byte{first, '0'})
	}
	return string([]byte{first, last})
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z'
}
