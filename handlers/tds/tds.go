package tds

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"time"
	"unicode/utf16"

	"github.com/spoki-telescope/spoki/handlers"
)

// Detail is the "tds" object of a session event.
type Detail struct {
	Prelogin
	// Login is the LOGIN7 that followed, if any.
	Login *Login7 `json:"login,omitempty"`
}

// Serve implements handlers.Handler: PRELOGIN, then LOGIN7, each answered,
// then a reset.
func (h *Handler) Serve(ctx context.Context, c *handlers.Conn) (any, error) {
	defer c.Reset() // end like Spoki, once the client has its answer
	if c.First() == nil {
		return nil, nil // TDS clients speak first: nothing to record
	}
	r := bufio.NewReader(c)
	var d Detail
	_ = c.SetReadDeadline(time.Now().Add(h.readTimeout))
	typ, payload, err := ReadMessage(r, h.maxMessageBytes)
	if err != nil {
		return nil, endErr(err)
	}
	if typ == TypePrelogin {
		if d.Prelogin, err = ParsePrelogin(payload); err != nil {
			return d, err
		}
		if _, err := c.Write(preloginResponse); err != nil {
			return d, endErr(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(h.readTimeout))
		if typ, payload, err = ReadMessage(r, h.maxMessageBytes); err != nil {
			return d, endErr(err)
		}
	}
	if typ != TypeLogin7 {
		return d, fmt.Errorf("%w: message type %#x, want LOGIN7", ErrMalformed, typ)
	}
	login, err := ParseLogin7(payload)
	if err != nil {
		return d, err
	}
	d.Login = &login
	if _, err := c.Write(LoginFailed(login)); err != nil {
		return d, endErr(err)
	}
	// Let the client read the error and hang up before the reset.
	c.Linger(r, h.maxMessageBytes)
	return d, nil
}

// endErr maps the error that ended the exchange to Serve's result: the
// client's hang-up and the handler's own read timeout are normal ends.
func endErr(err error) error { return handlers.EndErr("tds", err, ErrMalformed) }

// preloginResponse is the server's PRELOGIN answer: SQL Server 2019
// (15.0.2000.0), ENCRYPT_NOT_SUP so that the LOGIN7 comes in the clear, no
// instance name, no MARS.
var preloginResponse = func() []byte {
	opts := []struct {
		tok  byte
		data []byte
	}{
		{optVersion, []byte{15, 0, 0x07, 0xd0, 0, 0}},
		{optEncryption, []byte{2}}, // ENCRYPT_NOT_SUP
		{optInstance, []byte{0}},
		{optThreadID, nil},
		{optMARS, []byte{0}},
	}
	table := make([]byte, 0, 5*len(opts)+1)
	var data []byte
	off := 5*len(opts) + 1
	for _, o := range opts {
		table = append(table, o.tok)
		table = binary.BigEndian.AppendUint16(table, uint16(off+len(data)))
		table = binary.BigEndian.AppendUint16(table, uint16(len(o.data)))
		data = append(data, o.data...)
	}
	table = append(table, optTerminator)
	return packet(TypeResponse, append(table, data...))
}()

// serverName is the server name in the answers' tokens.
const serverName = "MSSQLSERVER"

// LoginFailed returns the server's answer to the LOGIN7 l: an ERROR token
// with SQL Server's error 18456 ("Login failed for user ..."), then a DONE
// token with the error flag, in the token formats of l's TDS version.
func LoginFailed(l Login7) []byte {
	tds72 := l.version >= 0x72090002 // 7.2 widened LineNumber and DoneRowCount
	msg := utf16.Encode([]rune("Login failed for user '" + l.Username + "'."))
	if len(msg) > 1024 { // the user name is the client's, keep the answer small
		msg = msg[:1024]
	}
	srv := utf16.Encode([]rune(serverName))
	var e []byte
	e = binary.LittleEndian.AppendUint32(e, 18456) // Number
	e = append(e, 1, 14)                           // State, Class
	e = binary.LittleEndian.AppendUint16(e, uint16(len(msg)))
	for _, u := range msg {
		e = binary.LittleEndian.AppendUint16(e, u)
	}
	e = append(e, byte(len(srv)))
	for _, u := range srv {
		e = binary.LittleEndian.AppendUint16(e, u)
	}
	e = append(e, 0) // ProcName: none
	if tds72 {
		e = binary.LittleEndian.AppendUint32(e, 1) // LineNumber
	} else {
		e = binary.LittleEndian.AppendUint16(e, 1)
	}
	b := []byte{0xaa} // ERROR
	b = binary.LittleEndian.AppendUint16(b, uint16(len(e)))
	b = append(b, e...)
	b = append(b, 0xfd)                        // DONE
	b = binary.LittleEndian.AppendUint16(b, 2) // Status: DONE_ERROR
	b = binary.LittleEndian.AppendUint16(b, 0) // CurCmd
	if tds72 {
		b = binary.LittleEndian.AppendUint64(b, 0) // DoneRowCount
	} else {
		b = binary.LittleEndian.AppendUint32(b, 0)
	}
	return packet(TypeResponse, b)
}

// packet wraps payload (under 64 KiB) in one TDS packet with the
// end-of-message status.
func packet(typ byte, payload []byte) []byte {
	b := []byte{typ, statusEOM, 0, 0, 0, 0, 1, 0}
	binary.BigEndian.PutUint16(b[2:], uint16(headerBytes+len(payload)))
	return append(b, payload...)
}
