package smb

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/spoki-telescope/spoki/handlers"
)

// Detail is the "smb" object of a session event.
type Detail struct {
	Negotiate
	// Selected is the dialect answered: an SMB2 revision ("3.0.2", "2.???")
	// or an SMB1 dialect string; empty if none.
	Selected string `json:"selected,omitempty"`
}

// Serve implements handlers.Handler: NEGOTIATE, its answer, then a reset
// once the client has read it.
func (h *Handler) Serve(ctx context.Context, c *handlers.Conn) (any, error) {
	defer c.Reset() // end like Spoki, once the client has its answer
	if c.First() == nil {
		return nil, nil // SMB clients speak first: nothing to record
	}
	r := bufio.NewReader(c)
	var typ byte
	var msg []byte
	var err error
	// A session request (port 139 style) gets its positive response; at
	// most a few frames are read before the NEGOTIATE.
	for range 3 {
		_ = c.SetReadDeadline(time.Now().Add(h.readTimeout))
		if typ, msg, err = ReadFrame(r, h.maxFrameBytes); err != nil {
			return nil, endErr(err)
		}
		if typ == nbSessionMessage {
			break
		}
		if typ == nbSessionRequest {
			if _, err := c.Write([]byte{0x82, 0, 0, 0}); err != nil {
				return nil, endErr(err)
			}
		}
	}
	if typ != nbSessionMessage {
		return nil, fmt.Errorf("%w: NetBIOS frame type %#x", ErrMalformed, typ)
	}
	n, err := ParseNegotiate(msg)
	if err != nil {
		return nil, err
	}
	d := Detail{Negotiate: n}
	var resp []byte
	d.Selected, resp = h.answer(n, time.Now())
	if _, err := c.Write(frame(resp)); err != nil {
		return d, endErr(err)
	}
	// Let the client read the answer (and send its SESSION_SETUP, which
	// spoki does not answer) before the reset.
	c.Linger(r, h.maxFrameBytes)
	return d, nil
}

// endErr maps the error that ended the exchange to Serve's result: the
// client's hang-up and the handler's own read timeout are normal ends.
func endErr(err error) error { return handlers.EndErr("smb", err, ErrMalformed) }

// answer returns the dialect selected for the NEGOTIATE n and the response
// message, at time now.
func (h *Handler) answer(n Negotiate, now time.Time) (string, []byte) {
	if n.Version == 2 {
		rev := uint16(0)
		for _, want := range []uint16{dialect302, dialect300, dialect210, dialect202} {
			if slices.Contains(n.revisions, want) {
				rev = want
				break
			}
		}
		if rev == 0 && len(n.revisions) > 0 {
			rev = n.revisions[0] // nothing spoki speaks: answer it anyway, the client will give up
		}
		return revisionName(rev), h.smb2Response(n.messageID, rev, now)
	}
	switch {
	case slices.Contains(n.Dialects, "SMB 2.???"):
		return revisionName(dialectWildcard), h.smb2Response(0, dialectWildcard, now)
	case slices.Contains(n.Dialects, "SMB 2.002"):
		return revisionName(dialect202), h.smb2Response(0, dialect202, now)
	}
	i := slices.Index(n.Dialects, "NT LM 0.12")
	if i < 0 {
		return "", smb1NoDialect(n)
	}
	return n.Dialects[i], h.smb1Response(n, uint16(i), now)
}

// securityBlob is the SPNEGO NegTokenInit offering NTLMSSP
// (1.3.6.1.4.1.311.2.2.10), DER-encoded: what a Windows server sends when
// it takes NTLM.
var securityBlob = []byte{
	0x60, 0x1c, // [APPLICATION 0]
	0x06, 0x06, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x02, // SPNEGO 1.3.6.1.5.5.2
	0xa0, 0x12, 0x30, 0x10, // [0] NegTokenInit SEQUENCE
	0xa0, 0x0e, 0x30, 0x0c, // [0] mechTypes SEQUENCE OF
	0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x02, 0x0a, // NTLMSSP
}

// smb2Response builds an SMB2 NEGOTIATE response ([MS-SMB2] 2.2.4)
// selecting dialect rev, for the request with message id mid.
func (h *Handler) smb2Response(mid uint64, rev uint16, now time.Time) []byte {
	le := binary.LittleEndian
	b := make([]byte, smb2HeaderBytes, smb2HeaderBytes+64+len(securityBlob))
	copy(b, "\xfeSMB")
	le.PutUint16(b[4:], smb2HeaderBytes) // StructureSize
	le.PutUint16(b[12:], smb2Negotiate)  // Command
	le.PutUint16(b[14:], 1)              // CreditResponse
	le.PutUint32(b[16:], 1)              // Flags: SERVER_TO_REDIR
	le.PutUint64(b[24:], mid)            // MessageId
	caps := uint32(0)
	if rev != dialect202 {
		caps = 0x07 // DFS, LEASING, LARGE_MTU
	}
	b = le.AppendUint16(b, 65)  // StructureSize
	b = le.AppendUint16(b, 1)   // SecurityMode: signing enabled
	b = le.AppendUint16(b, rev) // DialectRevision
	b = le.AppendUint16(b, 0)   // NegotiateContextCount
	b = append(b, h.serverGUID[:]...)
	b = le.AppendUint32(b, caps)
	b = le.AppendUint32(b, 8<<20) // MaxTransactSize
	b = le.AppendUint32(b, 8<<20) // MaxReadSize
	b = le.AppendUint32(b, 8<<20) // MaxWriteSize
	b = le.AppendUint64(b, filetime(now))
	b = le.AppendUint64(b, filetime(h.started))
	b = le.AppendUint16(b, smb2HeaderBytes+64) // SecurityBufferOffset
	b = le.AppendUint16(b, uint16(len(securityBlob)))
	b = le.AppendUint32(b, 0) // NegotiateContextOffset
	return append(b, securityBlob...)
}

// smb1Header returns the header of an SMB1 NEGOTIATE response to n.
func smb1Header(n Negotiate) []byte {
	le := binary.LittleEndian
	b := make([]byte, smb1HeaderBytes)
	copy(b, "\xffSMB")
	b[4] = smb1Negotiate
	b[9] = 0x98                  // Flags: REPLY, CASE_INSENSITIVE, CANONICALIZED_PATHS
	le.PutUint16(b[10:], 0xc801) // Flags2: UNICODE, NT_STATUS, EXTENDED_SECURITY, LONG_NAMES
	le.PutUint16(b[12:], n.smb1IDs[0])
	le.PutUint16(b[24:], n.smb1IDs[1])
	le.PutUint16(b[26:], n.smb1IDs[2])
	le.PutUint16(b[28:], n.smb1IDs[3])
	le.PutUint16(b[30:], n.smb1MID)
	return b
}

// smb1Response builds the SMB1 NEGOTIATE response selecting NT LM 0.12,
// dialect index i, with extended security ([MS-SMB] 2.2.4.5.2.1).
func (h *Handler) smb1Response(n Negotiate, i uint16, now time.Time) []byte {
	le := binary.LittleEndian
	b := smb1Header(n)
	b = append(b, 17)                  // WordCount
	b = le.AppendUint16(b, i)          // DialectIndex
	b = append(b, 0x03)                // SecurityMode: user level, challenge/response
	b = le.AppendUint16(b, 50)         // MaxMpxCount
	b = le.AppendUint16(b, 1)          // MaxNumberVcs
	b = le.AppendUint32(b, 16644)      // MaxBufferSize
	b = le.AppendUint32(b, 65536)      // MaxRawSize
	b = le.AppendUint32(b, 0)          // SessionKey
	b = le.AppendUint32(b, 0x8000e3fd) // Capabilities, EXTENDED_SECURITY included, as Windows 7
	b = le.AppendUint64(b, filetime(now))
	b = le.AppendUint16(b, 0) // ServerTimeZone
	b = append(b, 0)          // ChallengeLength: none with extended security
	b = le.AppendUint16(b, uint16(16+len(securityBlob)))
	b = append(b, h.serverGUID[:]...)
	return append(b, securityBlob...)
}

// smb1NoDialect builds the SMB1 NEGOTIATE response that accepts none of
// the client's dialects.
func smb1NoDialect(n Negotiate) []byte {
	b := append(smb1Header(n), 1)                   // WordCount
	b = binary.LittleEndian.AppendUint16(b, 0xffff) // DialectIndex: none
	return binary.LittleEndian.AppendUint16(b, 0)   // ByteCount
}

// frame wraps msg in a NetBIOS session message.
func frame(msg []byte) []byte {
	n := len(msg)
	return append([]byte{nbSessionMessage, byte(n >> 16), byte(n >> 8), byte(n)}, msg...)
}

// filetime returns t as a Windows FILETIME: 100 ns since 1601.
func filetime(t time.Time) uint64 {
	const epochDiff = 11644473600 // seconds from 1601 to 1970
	return uint64(t.Unix()+epochDiff)*1e7 + uint64(t.Nanosecond()/100)
}
