// Package records holds what spoki knows about the traffic it sees: the
// packet and reply records of Spoki's CSV logs, the JSON events of the event
// log, the Flow handed to handlers, and the pure functions that classify SYNs
// (the paper's irregular rules and scanner fingerprints). It also reads the
// logs back (OpenLog, ReadLines: gzip or plain, line by line) for the lab,
// the scenarios and the analyses, and clamps a conn's deadlines by its
// budgets (Deadlines, EarliestDeadline) for both the netstack's conns and the
// handlers'. Both the live telescope and the offline analysis use it, so it
// imports nothing of spoki but its own leaf records/communityid.
// docs/formats.md describes the formats column by column.
//
// The Append encoders write whole words at a time: past the bytes they
// append they may overwrite dst's spare capacity (up to its cap), so dst
// must not share its capacity with bytes that are still needed.
package records

import (
	"encoding/json"
	"net/netip"
	"time"
)

// Proto is the transport protocol of a packet record.
type Proto uint8

// Transport protocols that spoki records. Other protocols are counted by the
// netstack and never become records.
const (
	ProtoTCP Proto = iota + 1
	ProtoUDP
	ProtoICMP
)

// String returns the protocol's name as Spoki writes it (`tcp`, `udp`, `icmp`).
func (p Proto) String() string {
	switch p {
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	case ProtoICMP:
		return "icmp"
	}
	return "unknown"
}

// TCP flag bits as they sit in the TCP header's flags byte.
const (
	FlagFIN uint8 = 1 << iota
	FlagSYN
	FlagRST
	FlagPSH
	FlagACK
	FlagURG
	FlagECE
	FlagCWR
)

// Method is the reaction a packet triggered, named as scamper names it in
// Spoki's logs.
type Method uint8

// Reactions. MethodNone means the packet was not probed.
const (
	MethodNone Method = iota
	// MethodSYNACK is the stateless SYN-ACK answering a SYN.
	MethodSYNACK
	// MethodRST is Spoki's reaction to a handshake ACK, a reset sent at
	// once (probe snum = the ACK's ack number). spoki sends it in pure
	// Spoki mode, to a handshake ACK that carries data.
	MethodRST
	// MethodSession is any other segment gVisor wrote on an accepted
	// connection (ACKs, handler data, FIN). No raw row is probed with it,
	// so Spoki's assemble never takes it for a confirmation.
	MethodSession
	// MethodACK is spoki's reaction to a handshake ACK it accepts: the
	// front end's own pure ACK of what the handshake ACK carried, written
	// at once, whatever ends the connection later.
	MethodACK
	// MethodSessionRST is a reset gVisor wrote on an accepted connection
	// (the end of a session). Like MethodSession, no raw row is probed
	// with it.
	MethodSessionRST
	// MethodICMPEchoReply is the front end's echo reply to an ICMP or
	// ICMPv6 echo request.
	MethodICMPEchoReply
	// MethodUDPReply is the front end's answer to a UDP probe of a service
	// it answers (netstack/udpreply).
	MethodUDPReply

	// lastMethod is the last valid Method, for the parsers.
	lastMethod = MethodUDPReply
)

// String returns the method as written in the CSV logs; empty for MethodNone.
func (m Method) String() string {
	switch m {
	case MethodSYNACK:
		return "tcp-synack"
	case MethodRST:
		return "tcp-rst"
	case MethodSession:
		return "tcp-session"
	case MethodACK:
		return "tcp-ack"
	case MethodSessionRST:
		return "tcp-session-rst"
	case MethodICMPEchoReply:
		return "icmp-echo-reply"
	case MethodUDPReply:
		return "udp-reply"
	}
	return ""
}

// MaxOptions is how many TCP option kinds a Packet keeps, in wire order.
// Real stacks send at most 7; the rest of a longer list is dropped and
// OptionsTruncated is set.
const MaxOptions = 12

// Packet is one packet received on the TUN: one row of the raw CSV log and,
// for SYNs, one `syn` event. It is copied by value into the writer's queue,
// so it holds no pointer except Payload (nil for the common payload-less
// SYN) and the addresses.
type Packet struct {
	// Time is the time the packet was read from the TUN.
	Time time.Time
	// Src and Dst are the IP addresses as on the wire (remote → telescope).
	Src, Dst netip.Addr
	// IPID is the IPv4 identification (0 for IPv6).
	IPID uint16
	// TTL is the IPv4 TTL or the IPv6 hop limit.
	TTL uint8
	// Proto is the transport protocol.
	Proto Proto
	// SrcPort and DstPort are the transport ports (0 for ICMP).
	SrcPort, DstPort uint16
	// Seq and Ack are the TCP sequence and acknowledgment numbers.
	Seq, Ack uint32
	// Flags holds the TCP flags byte (FlagSYN, FlagACK, ...).
	Flags uint8
	// Window is the raw, unscaled TCP window.
	Window uint16
	// Options holds the TCP option kinds in wire order (NOP and EOL
	// included), NumOptions of them.
	Options    [MaxOptions]uint8
	NumOptions uint8
	// OptionsTruncated is set when the packet carried more than MaxOptions.
	OptionsTruncated bool
	// MSS is the value of the MSS option, 0 if absent.
	MSS uint16
	// WScale is the window-scale shift, -1 if absent.
	WScale int8
	// ICMPType and ICMPCode are set for ICMP and ICMPv6 packets.
	ICMPType, ICMPCode uint8
	// ICMPRest is the ICMP header's last four bytes (an echo's identifier
	// << 16 | sequence number); Payload holds what follows them.
	ICMPRest uint32
	// Payload is the transport payload, capped by the netstack. It is owned
	// by the record: the netstack copies it out of the packet buffer.
	Payload []byte
	// PayloadLen is the payload length on the wire, before any cap.
	PayloadLen int
	// Fragment is set for an IP fragment (IPv4, or IPv6 with a fragment
	// header that is not atomic). The first fragment has the transport
	// columns its bytes hold; a later one has none (ports, flags and
	// options zero) and its bytes are the Payload. The CSV rows have no
	// column for it; the `syn` event says "fragment":true.
	Fragment bool

	// Probed is true when the telescope reacted to the packet (Spoki's
	// `probed`): a SYN-ACK for a SYN, an accepted connection for an ACK with
	// a valid cookie.
	Probed bool
	// Method is the reaction (Spoki's `method`).
	Method Method
	// UserID joins the row to the reply log (Spoki's `userid`).
	UserID uint32
	// ProbeAck and ProbeSeq are the reaction's ack and seq numbers (Spoki's
	// `probe anum`, `probe snum`).
	ProbeAck, ProbeSeq uint32
	// NumProbes is how many packets the reaction sends (1 for a SYN-ACK).
	NumProbes uint8
}

// IsSYN reports whether the packet is a TCP SYN without ACK and RST: the
// packets that get a SYN-ACK and a `syn` event.
func (p *Packet) IsSYN() bool {
	return p.Proto == ProtoTCP && p.Flags&(FlagSYN|FlagACK|FlagRST) == FlagSYN
}

// Reply is one packet the telescope wrote to the TUN: one row of Spoki's
// reply (scamper) log, joined to the raw log by UserID.
type Reply struct {
	// Time is when the packet was written.
	Time time.Time
	// Method says what the reply is.
	Method Method
	// UserID is the id of the packet row that caused it.
	UserID uint32
	// NumProbes is the number of packets this row stands for (always 1:
	// spoki never retransmits a SYN-ACK).
	NumProbes uint8
	// Src and Dst are the reply's addresses (telescope → remote), SrcPort and
	// DstPort its ports.
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
}

// Flow describes one accepted TCP connection, as the netstack hands it to
// the handlers.
type Flow struct {
	// Remote is the scanner's address and port, Local the telescope's.
	Remote, Local netip.AddrPort
	// UserID is the id of the handshake ACK's raw-log row.
	UserID uint32
	// ISN is the client's initial sequence number (its SYN's seq, the
	// handshake ACK's seq - 1), which joins the connection's events to its
	// syn event through the flow_id (FlowID).
	ISN uint32
	// Accepted is when the valid-cookie ACK arrived.
	Accepted time.Time
}

// Event type names of the JSON-lines event log.
const (
	EventSYN     = "syn"
	EventSession = "session"
	EventICMP    = "icmp"
	EventUDP     = "udp"
)

// Session is the `session` event: one per completed handshake, written when
// the connection ends.
type Session struct {
	Flow Flow
	// End is when the connection ended.
	End time.Time
	// AppProto is the name of the handler that served the connection.
	AppProto string
	// Payload is the client's first data segment (capped), nil if the client
	// sent nothing before the deadline.
	Payload []byte
	// BytesToServer and BytesToClient count the application bytes in each
	// direction.
	BytesToServer, BytesToClient int64
	// Detail is what the handler parsed, written under the key AppProto
	// (e.g. "http": {...}). Nil writes no object.
	Detail any
	// Error says why the session ended abnormally (deadline, cap, panic),
	// empty otherwise.
	Error string
}

// Marshaler is implemented by handler detail objects that encode themselves
// without reflection.
type Marshaler = json.Marshaler
