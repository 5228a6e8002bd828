package mqtt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Packet types (MQTT 3.1.1 §2.2.1, MQTT 5 §2.1.2), the high nibble of a
// packet's first byte.
const (
	typeConnect    = 1
	typeConnack    = 2
	typeDisconnect = 14
)

var typeNames = [16]string{"RESERVED", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL",
	"PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH"}

// TypeName returns the name of the packet type in the high nibble of b,
// the packet's first byte.
func TypeName(b byte) string { return typeNames[b>>4] }

// ReadPacket reads one MQTT packet from r and returns its first byte (type
// and flags) and its body (what follows the remaining length). A body over
// maxBytes is malformed and not read. io.EOF before the first byte is the
// client's hang-up; inside a packet it becomes io.ErrUnexpectedEOF.
func ReadPacket(r io.Reader, maxBytes int) (first byte, body []byte, err error) {
	var b [1]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, nil, err
	}
	first = b[0]
	// The remaining length is a base-128 varint of at most four bytes.
	n, shift := 0, 0
	for i := 0; ; i++ {
		if i == 4 {
			return first, nil, fmt.Errorf("%w: remaining length over 4 bytes", ErrMalformed)
		}
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return first, nil, unexpected(err)
		}
		n |= int(b[0]&0x7f) << shift
		shift += 7
		if b[0]&0x80 == 0 {
			break
		}
	}
	if n > maxBytes {
		return first, nil, fmt.Errorf("%w: %s of %d bytes, cap %d", ErrMalformed, TypeName(first), n, maxBytes)
	}
	body = make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return first, nil, unexpected(err)
	}
	return first, body, nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Connect is what a CONNECT packet says.
type Connect struct {
	// ProtocolName is "MQTT" (3.1.1 and 5) or "MQIsdp" (3.1).
	ProtocolName string `json:"protocol_name"`
	// ProtocolLevel is 3 (3.1), 4 (3.1.1) or 5.
	ProtocolLevel int    `json:"protocol_level"`
	ClientID      string `json:"client_id"`
	// Username and Password are recorded as sent; HasUsername and
	// HasPassword are the CONNECT flags, which tell an empty credential
	// from none.
	Username    string `json:"username,omitempty"`
	Password    string `json:"password,omitempty"`
	HasUsername bool   `json:"has_username"`
	HasPassword bool   `json:"has_password"`
	WillTopic   string `json:"will_topic,omitempty"`
	KeepAlive   int    `json:"keep_alive"`
}

// ParseConnect parses the body of a CONNECT packet (MQTT 3.1, 3.1.1 and 5,
// §3.1). It is a pure function: the strings are copies, bounded by
// len(body). Errors wrap ErrMalformed.
func ParseConnect(body []byte) (Connect, error) {
	p := parser{b: body}
	var c Connect
	c.ProtocolName = string(p.field())
	c.ProtocolLevel = int(p.byte())
	flags := p.byte()
	c.KeepAlive = int(p.uint16())
	if c.ProtocolLevel == 5 {
		p.skipProperties()
	}
	c.ClientID = string(p.field())
	if flags&0x04 != 0 { // will flag
		if c.ProtocolLevel == 5 {
			p.skipProperties()
		}
		c.WillTopic = string(p.field())
		p.field() // will message
	}
	c.HasUsername, c.HasPassword = flags&0x80 != 0, flags&0x40 != 0
	if c.HasUsername {
		c.Username = string(p.field())
	}
	if c.HasPassword {
		c.Password = string(p.field())
	}
	if p.err != nil {
		return c, fmt.Errorf("%w: CONNECT: %w", ErrMalformed, p.err)
	}
	if c.ProtocolName != "MQTT" && c.ProtocolName != "MQIsdp" {
		return c, fmt.Errorf("%w: CONNECT: protocol name %q", ErrMalformed, c.ProtocolName)
	}
	return c, nil
}

// Connack returns the CONNACK that accepts a CONNECT of protocol level
// level: session present 0, return code 0, and for MQTT 5 no properties.
func Connack(level int) []byte {
	if level == 5 {
		return []byte{typeConnack << 4, 3, 0, 0, 0}
	}
	return []byte{typeConnack << 4, 2, 0, 0}
}

// parser reads big-endian MQTT fields from b; the first short read sets err
// and makes every later read return zero values.
type parser struct {
	b   []byte
	err error
}

func (p *parser) take(n int) []byte {
	if p.err != nil {
		return nil
	}
	if n > len(p.b) {
		p.err = io.ErrUnexpectedEOF
		return nil
	}
	v := p.b[:n]
	p.b = p.b[n:]
	return v
}

func (p *parser) byte() byte {
	if v := p.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (p *parser) uint16() uint16 {
	if v := p.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

// field reads a length-prefixed string or binary field.
func (p *parser) field() []byte { return p.take(int(p.uint16())) }

// skipProperties skips an MQTT 5 property list: a varint length, then the
// properties, which spoki does not record.
func (p *parser) skipProperties() {
	n, shift := 0, 0
	for i := 0; i < 4; i++ {
		b := p.byte()
		n |= int(b&0x7f) << shift
		shift += 7
		if b&0x80 == 0 {
			p.take(n)
			return
		}
	}
	if p.err == nil {
		p.err = errors.New("property length over 4 bytes")
	}
}
