package smb

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// NetBIOS session service (RFC 1002) frame types seen on 139 and 445.
const (
	nbSessionMessage = 0x00
	nbSessionRequest = 0x81
	nbKeepAlive      = 0x85
)

// ReadFrame reads one NetBIOS session service frame from r: a type byte,
// a 24-bit big-endian length (direct hosting on 445 uses all three bytes),
// and the message. A frame over maxBytes is malformed and not read. io.EOF
// before the header is the client's hang-up; inside a frame it becomes
// io.ErrUnexpectedEOF.
func ReadFrame(r io.Reader, maxBytes int) (typ byte, msg []byte, err error) {
	var h [4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := int(h[1])<<16 | int(h[2])<<8 | int(h[3])
	if n > maxBytes {
		return h[0], nil, fmt.Errorf("%w: frame of %d bytes, cap %d", ErrMalformed, n, maxBytes)
	}
	msg = make([]byte, n)
	if _, err := io.ReadFull(r, msg); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return h[0], nil, err
	}
	return h[0], msg, nil
}

// Negotiate is what an SMB1 or SMB2 NEGOTIATE request says.
type Negotiate struct {
	// Version is 1 (SMB1, \xFFSMB) or 2 (SMB2 and 3, \xFESMB).
	Version int `json:"version"`
	// Dialects are SMB1 dialect strings ("NT LM 0.12") or SMB2 dialect
	// revisions ("3.1.1", or "0x0abc" for unknown ones), in the client's
	// order.
	Dialects []string `json:"dialects"`
	// ClientGUID is the SMB2 client GUID in its usual text form.
	ClientGUID string `json:"client_guid,omitempty"`

	// What the answer needs: the SMB1 header's process, tree, user and
	// multiplex ids (echoed back), the SMB2 message id, and the SMB2
	// revisions as numbers.
	smb1IDs   [4]uint16 // PIDHigh, TID, PIDLow, UID; MID in smb1MID
	smb1MID   uint16
	messageID uint64
	revisions []uint16
}

// Header sizes and the NEGOTIATE command codes.
const (
	smb1HeaderBytes = 32
	smb2HeaderBytes = 64
	smb1Negotiate   = 0x72
	smb2Negotiate   = 0x0000
)

// ParseNegotiate parses an SMB1 or SMB2 NEGOTIATE request, the message of
// a NetBIOS frame. It keeps at most 64 dialects of at most 64 bytes. It is
// a pure function; errors wrap ErrMalformed.
func ParseNegotiate(msg []byte) (Negotiate, error) {
	switch {
	case bytes.HasPrefix(msg, []byte("\xffSMB")):
		return parseSMB1(msg)
	case bytes.HasPrefix(msg, []byte("\xfeSMB")):
		return parseSMB2(msg)
	}
	return Negotiate{}, fmt.Errorf("%w: no SMB header", ErrMalformed)
}

// parseSMB1 parses an SMB1 NEGOTIATE ([MS-CIFS] 2.2.4.52.1): the header,
// no parameter words, and the dialects, each 0x02 then a NUL-terminated
// string.
func parseSMB1(msg []byte) (Negotiate, error) {
	n := Negotiate{Version: 1, Dialects: []string{}}
	if len(msg) < smb1HeaderBytes+3 || msg[4] != smb1Negotiate {
		return n, fmt.Errorf("%w: SMB1: not a NEGOTIATE", ErrMalformed)
	}
	le := binary.LittleEndian
	n.smb1IDs = [4]uint16{le.Uint16(msg[12:]), le.Uint16(msg[24:]), le.Uint16(msg[26:]), le.Uint16(msg[28:])}
	n.smb1MID = le.Uint16(msg[30:])
	at := smb1HeaderBytes + 1 + 2*int(msg[smb1HeaderBytes]) // past the parameter words
	if at+2 > len(msg) {
		return n, fmt.Errorf("%w: SMB1: parameters past the message", ErrMalformed)
	}
	count := int(le.Uint16(msg[at:]))
	b := msg[at+2:]
	if count > len(b) {
		return n, fmt.Errorf("%w: SMB1: byte count %d past the message", ErrMalformed, count)
	}
	b = b[:count]
	for len(b) > 0 {
		if b[0] != 0x02 { // buffer format: dialect string
			return n, fmt.Errorf("%w: SMB1: dialect buffer format %#x", ErrMalformed, b[0])
		}
		end := bytes.IndexByte(b, 0)
		if end < 0 {
			return n, fmt.Errorf("%w: SMB1: dialect not terminated", ErrMalformed)
		}
		if len(n.Dialects) < maxDialects {
			n.Dialects = append(n.Dialects, string(b[1:min(end, 1+maxDialectBytes)]))
		}
		b = b[end+1:]
	}
	return n, nil
}

// parseSMB2 parses an SMB2 NEGOTIATE ([MS-SMB2] 2.2.3): the 64-byte
// header, then the request, whose dialect revisions follow its 36 fixed
// bytes.
func parseSMB2(msg []byte) (Negotiate, error) {
	n := Negotiate{Version: 2, Dialects: []string{}}
	le := binary.LittleEndian
	if len(msg) < smb2HeaderBytes+36 || le.Uint16(msg[12:]) != smb2Negotiate {
		return n, fmt.Errorf("%w: SMB2: not a NEGOTIATE", ErrMalformed)
	}
	n.messageID = le.Uint64(msg[24:])
	body := msg[smb2HeaderBytes:]
	count := int(le.Uint16(body[2:]))
	n.ClientGUID = guid(body[12:28])
	if 36+2*count > len(body) {
		return n, fmt.Errorf("%w: SMB2: %d dialects past the message", ErrMalformed, count)
	}
	for i := range min(count, maxDialects) {
		rev := le.Uint16(body[36+2*i:])
		n.revisions = append(n.revisions, rev)
		n.Dialects = append(n.Dialects, revisionName(rev))
	}
	return n, nil
}

// SMB2 dialect revisions.
const (
	dialect202      = 0x0202
	dialect210      = 0x0210
	dialect300      = 0x0300
	dialect302      = 0x0302
	dialect311      = 0x0311
	dialectWildcard = 0x02ff // "SMB 2.???": go on with an SMB2 NEGOTIATE
)

func revisionName(rev uint16) string {
	switch rev {
	case dialect202:
		return "2.0.2"
	case dialect210:
		return "2.1"
	case dialect300:
		return "3.0"
	case dialect302:
		return "3.0.2"
	case dialect311:
		return "3.1.1"
	case dialectWildcard:
		return "2.???"
	}
	return fmt.Sprintf("%#04x", rev)
}

// guid formats a GUID as Windows does: the first three fields are
// little-endian.
func guid(b []byte) string {
	le := binary.LittleEndian
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x", le.Uint32(b), le.Uint16(b[4:]), le.Uint16(b[6:]), b[8:10], b[10:16])
}
