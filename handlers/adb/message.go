package adb

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Commands of the ADB transport protocol (system/core/adb/protocol.txt),
// the four ASCII letters read as a little-endian uint32.
const (
	CmdCNXN = 0x4e584e43
	CmdAUTH = 0x48545541
	CmdOPEN = 0x4e45504f
	CmdOKAY = 0x59414b4f
	CmdCLSE = 0x45534c43
	CmdWRTE = 0x45545257
	CmdSTLS = 0x534c5453
)

// headerBytes is the size of a message header: command, arg0, arg1, data
// length, data checksum and magic, each a little-endian uint32.
const headerBytes = 24

// Message is one ADB message.
type Message struct {
	Command, Arg0, Arg1 uint32
	Data                []byte
}

// ReadMessage reads one message from r. A header whose magic is not the
// command's complement, or whose data is over maxData bytes, is malformed
// and its data is not read. The checksum is not checked: hosts since
// protocol version 0x01000001 send 0. io.EOF before the header is the
// client's hang-up; inside a message it becomes io.ErrUnexpectedEOF.
func ReadMessage(r io.Reader, maxData int) (Message, error) {
	var h [headerBytes]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return Message{}, err
	}
	m := Message{
		Command: binary.LittleEndian.Uint32(h[0:]),
		Arg0:    binary.LittleEndian.Uint32(h[4:]),
		Arg1:    binary.LittleEndian.Uint32(h[8:]),
	}
	n := binary.LittleEndian.Uint32(h[12:])
	if magic := binary.LittleEndian.Uint32(h[20:]); magic != ^m.Command {
		return m, fmt.Errorf("%w: command %#08x, magic %#08x", ErrMalformed, m.Command, magic)
	}
	if n > uint32(maxData) {
		return m, fmt.Errorf("%w: %d data bytes, cap %d", ErrMalformed, n, maxData)
	}
	m.Data = make([]byte, n)
	if _, err := io.ReadFull(r, m.Data); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return m, err
	}
	return m, nil
}

// Encode returns m on the wire, with the checksum older hosts check.
func (m Message) Encode() []byte {
	b := make([]byte, headerBytes, headerBytes+len(m.Data))
	var sum uint32
	for _, c := range m.Data {
		sum += uint32(c)
	}
	binary.LittleEndian.PutUint32(b[0:], m.Command)
	binary.LittleEndian.PutUint32(b[4:], m.Arg0)
	binary.LittleEndian.PutUint32(b[8:], m.Arg1)
	binary.LittleEndian.PutUint32(b[12:], uint32(len(m.Data)))
	binary.LittleEndian.PutUint32(b[16:], sum)
	binary.LittleEndian.PutUint32(b[20:], ^m.Command)
	return append(b, m.Data...)
}

// CommandName returns the four letters of command cmd, or its hex value
// if they are not letters.
func CommandName(cmd uint32) string {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], cmd)
	for _, c := range b {
		if c < 'A' || c > 'Z' {
			return fmt.Sprintf("%#08x", cmd)
		}
	}
	return string(b[:])
}
