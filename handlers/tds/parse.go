package tds

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unicode/utf16"
)

// Packet types (MS-TDS 2.2.3.1.1).
const (
	TypeResponse = 0x04 // tabular result: what the server sends
	TypeLogin7   = 0x10
	TypePrelogin = 0x12
)

// headerBytes is the size of a packet header: type, status, length
// (big-endian, header included), SPID, packet id and window.
const headerBytes = 8

// statusEOM marks the last packet of a message.
const statusEOM = 0x01

// ReadMessage reads one TDS message from r: packets up to the one with the
// end-of-message status, whose payloads it joins. A packet whose type
// differs from the first one's, or a message over maxBytes, is malformed
// and the rest is not read. io.EOF before the first header is the client's
// hang-up; inside a message it becomes io.ErrUnexpectedEOF.
func ReadMessage(r io.Reader, maxBytes int) (typ byte, payload []byte, err error) {
	var h [headerBytes]byte
	for i := 0; ; i++ {
		if _, err := io.ReadFull(r, h[:]); err != nil {
			if i > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return typ, nil, err
		}
		if i == 0 {
			typ = h[0]
		} else if h[0] != typ {
			return typ, nil, fmt.Errorf("%w: packet type %#x inside a message of type %#x", ErrMalformed, h[0], typ)
		}
		n := int(binary.BigEndian.Uint16(h[2:])) - headerBytes
		if n < 0 || len(payload)+n > maxBytes {
			return typ, nil, fmt.Errorf("%w: packet length %d, message cap %d", ErrMalformed, n+headerBytes, maxBytes)
		}
		start := len(payload)
		payload = append(payload, make([]byte, n)...)
		if _, err := io.ReadFull(r, payload[start:]); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return typ, nil, err
		}
		if h[1]&statusEOM != 0 {
			return typ, payload, nil
		}
	}
}

// Prelogin is what a client's PRELOGIN says (MS-TDS 2.2.6.5).
type Prelogin struct {
	// Version is the client library's version, major.minor.build.subbuild.
	Version string `json:"version,omitempty"`
	// Encryption is "off", "on", "not_sup", "req", or the value in hex.
	Encryption string `json:"encryption,omitempty"`
	// Instance is the instance name the client asks for.
	Instance string `json:"instance,omitempty"`
	// ThreadID is read big-endian, as the rest of PRELOGIN; clients differ.
	ThreadID uint32 `json:"thread_id,omitempty"`
	MARS     bool   `json:"mars"`
}

// PRELOGIN option tokens.
const (
	optVersion    = 0x00
	optEncryption = 0x01
	optInstance   = 0x02
	optThreadID   = 0x03
	optMARS       = 0x04
	optTerminator = 0xff
)

var encryptionNames = [...]string{"off", "on", "not_sup", "req"}

// ParsePrelogin parses a PRELOGIN payload: a table of (token, offset,
// length) entries ended by 0xFF, pointing into the payload. Unknown options
// are skipped. It is a pure function; errors wrap ErrMalformed.
func ParsePrelogin(b []byte) (Prelogin, error) {
	var p Prelogin
	for i := 0; ; i += 5 {
		if i >= len(b) {
			return p, fmt.Errorf("%w: PRELOGIN: option table not terminated", ErrMalformed)
		}
		tok := b[i]
		if tok == optTerminator {
			return p, nil
		}
		if i+5 > len(b) {
			return p, fmt.Errorf("%w: PRELOGIN: option table cut", ErrMalformed)
		}
		off, n := int(binary.BigEndian.Uint16(b[i+1:])), int(binary.BigEndian.Uint16(b[i+3:]))
		if off+n > len(b) {
			return p, fmt.Errorf("%w: PRELOGIN: option %#x at %d+%d past the payload", ErrMalformed, tok, off, n)
		}
		v := b[off : off+n]
		switch {
		case tok == optVersion && n >= 6:
			p.Version = fmt.Sprintf("%d.%d.%d.%d", v[0], v[1], binary.BigEndian.Uint16(v[2:]), binary.BigEndian.Uint16(v[4:]))
		case tok == optEncryption && n >= 1:
			if int(v[0]) < len(encryptionNames) {
				p.Encryption = encryptionNames[v[0]]
			} else {
				p.Encryption = fmt.Sprintf("%#02x", v[0])
			}
		case tok == optInstance:
			for j, c := range v { // a NUL-terminated string
				if c == 0 {
					v = v[:j]
					break
				}
			}
			p.Instance = string(v)
		case tok == optThreadID && n >= 4:
			p.ThreadID = binary.BigEndian.Uint32(v)
		case tok == optMARS && n >= 1:
			p.MARS = v[0] != 0
		}
	}
}

// Login7 is what a LOGIN7 says (MS-TDS 2.2.6.4).
type Login7 struct {
	// TDSVersion is the TDS version the client asks for, in hex
	// (0x74000004 is TDS 7.4).
	TDSVersion string `json:"tds_version"`
	Hostname   string `json:"hostname"`
	Username   string `json:"username"`
	// Password is decoded from TDS's obfuscation.
	Password   string `json:"password"`
	AppName    string `json:"app_name"`
	ServerName string `json:"server_name"`
	// Library is the client interface name (CltIntName).
	Library  string `json:"library"`
	Language string `json:"language,omitempty"`
	Database string `json:"database,omitempty"`

	version uint32 // TDSVersion as a number, for the answer's format
}

// login7FixedBytes is the part of LOGIN7 before the variable data: ten
// fixed fields, then (offset, length) pairs.
const login7FixedBytes = 94

// ParseLogin7 parses a LOGIN7 payload. Its strings are UCS-2 at the
// offsets (from the payload start) and lengths (in characters) of the
// fixed part; the password's bytes have their nibbles swapped and are
// XORed with 0xA5. It is a pure function; errors wrap ErrMalformed.
func ParseLogin7(b []byte) (Login7, error) {
	if len(b) < login7FixedBytes {
		return Login7{}, fmt.Errorf("%w: LOGIN7 of %d bytes", ErrMalformed, len(b))
	}
	l := Login7{version: binary.LittleEndian.Uint32(b[4:])}
	l.TDSVersion = fmt.Sprintf("%#08x", l.version)
	var err error
	str := func(at int, password bool) string {
		off, n := int(binary.LittleEndian.Uint16(b[at:])), 2*int(binary.LittleEndian.Uint16(b[at+2:]))
		if off+n > len(b) {
			err = fmt.Errorf("%w: LOGIN7 field at %d: %d+%d past the payload", ErrMalformed, at, off, n)
			return ""
		}
		v := b[off : off+n]
		if password {
			v = append([]byte(nil), v...)
			for i, c := range v {
				c ^= 0xa5
				v[i] = c<<4 | c>>4
			}
		}
		return ucs2(v)
	}
	l.Hostname = str(36, false)
	l.Username = str(40, false)
	l.Password = str(44, true)
	l.AppName = str(48, false)
	l.ServerName = str(52, false)
	l.Library = str(60, false)
	l.Language = str(64, false)
	l.Database = str(68, false)
	return l, err
}

// ucs2 decodes little-endian UTF-16.
func ucs2(b []byte) string {
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return string(utf16.Decode(u))
}
