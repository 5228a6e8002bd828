package netstack

import (
	"encoding/binary"
	"math/rand/v2"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/spoki-telescope/spoki/records"
)

// The front end's own reaction to a handshake ACK. Spoki's logs join each
// probed raw row to the reply row of the reaction (same user id, method and
// swapped addresses and ports); the analysis loses the payload of an ACK
// whose reaction never shows up. So the reaction is written, and recorded,
// by the front end at the moment the ACK arrives, instead of being left to
// whatever gVisor or the handler happens to send later (nothing at all when
// the client resets first).

// reactLen is the TCP header of the front end's ACK or RST: no options.
const reactLen = header.TCPMinimumSize

// reactWindow is the window of the front end's ACK and RST: the SYN-ACK's,
// so the ACK tells the client nothing it did not already know but the
// acknowledgement of what the handshake ACK carried.
const reactWindow = 0xffff

// ackHandshake writes the front end's pure ACK of an admitted handshake ACK
// (seq = the ACK's ack, which is gVisor's next sequence number; ack = the
// ACK's seq: it acknowledges the handshake, never the data or FIN the ACK
// carried, which only gVisor may acknowledge once it holds them: a data
// ACK that overtook its bare ACK can be lost inside gVisor, and the client
// must then retransmit it) and records it as the reaction of rec (method
// tcp-ack). To the client it is a duplicate ACK, which changes nothing. If
// the TUN refuses the segment, rec stays unprobed: spoki did not react.
func (s *Stack) ackHandshake(src, dst []byte, v6 bool, rec *records.Packet, uid uint32) {
	ack := rec.Seq
	if err := s.writeSegment(src, dst, v6, rec.DstPort, rec.SrcPort, rec.Ack, ack, uint8(header.TCPFlagAck)); err != nil {
		s.stats.DropTxError.Add(1)
		return
	}
	s.probed(rec, records.MethodACK, uid, ack, rec.Ack)
}

// resetACK answers a handshake ACK to a pure-mode address as Spoki does: a
// RST at once (seq = the ACK's ack, ack 0), recorded as the reaction of rec
// (method tcp-rst, probe snum = the ACK's ack). The ACK never reaches
// gVisor: there is no connection, and no slot of MaxConns is taken.
func (s *Stack) resetACK(src, dst []byte, v6 bool, rec *records.Packet) verdict {
	if err := s.writeSegment(src, dst, v6, rec.DstPort, rec.SrcPort, rec.Ack, 0, uint8(header.TCPFlagRst)); err != nil {
		s.stats.DropTxError.Add(1)
		return verdictDrop
	}
	s.stats.PureResets.Add(1)
	s.probed(rec, records.MethodRST, s.nextUserID(), 0, rec.Ack)
	return verdictDrop
}

// probed fills rec's probe columns and writes the reply row of the
// reaction, stamped with rec's own time: the two rows always land in the
// same hourly files.
func (s *Stack) probed(rec *records.Packet, m records.Method, uid, probeAck, probeSeq uint32) {
	rec.Probed = true
	rec.Method = m
	rec.UserID = uid
	rec.ProbeAck, rec.ProbeSeq = probeAck, probeSeq
	rec.NumProbes = 1
	if s.sink != nil {
		s.sink.Reply(records.Reply{
			Time: rec.Time, Method: m, UserID: uid, NumProbes: 1,
			Src: rec.Dst, Dst: rec.Src, SrcPort: rec.DstPort, DstPort: rec.SrcPort,
		})
	}
}

// writeSegment writes one TCP segment without options or payload from
// local (the telescope's address) to remote, bypassing gVisor as the
// SYN-ACK does.
func (s *Stack) writeSegment(remote, local []byte, v6 bool, sport, dport uint16, seq, ack uint32, flags uint8) error {
	var pkt [header.IPv6MinimumSize + reactLen]byte
	var ipHdr int
	if v6 {
		ipHdr = header.IPv6MinimumSize
		pkt[0] = 0x60
		binary.BigEndian.PutUint16(pkt[4:], reactLen)
		pkt[6] = uint8(header.TCPProtocolNumber)
		pkt[7] = defaultTTL
		copy(pkt[8:24], local)
		copy(pkt[24:40], remote)
	} else {
		ipHdr = header.IPv4MinimumSize
		pkt[0] = 0x45
		binary.BigEndian.PutUint16(pkt[2:], uint16(ipHdr+reactLen))
		binary.BigEndian.PutUint16(pkt[4:], uint16(rand.Uint32()))
		pkt[6] = 0x40 // DF
		pkt[8] = defaultTTL
		pkt[9] = uint8(header.TCPProtocolNumber)
		copy(pkt[12:16], local)
		copy(pkt[16:20], remote)
		binary.BigEndian.PutUint16(pkt[10:], ^checksum.Checksum(pkt[:ipHdr], 0))
	}
	n := ipHdr + reactLen
	t := pkt[ipHdr:n]
	binary.BigEndian.PutUint16(t[0:], sport)
	binary.BigEndian.PutUint16(t[2:], dport)
	binary.BigEndian.PutUint32(t[4:], seq)
	binary.BigEndian.PutUint32(t[8:], ack)
	t[12] = byte(reactLen/4) << 4
	t[13] = flags
	binary.BigEndian.PutUint16(t[14:], reactWindow)
	xsum := checksum.Checksum(local, 0)
	xsum = checksum.Checksum(remote, xsum)
	var tail [4]byte
	binary.BigEndian.PutUint16(tail[0:], uint16(header.TCPProtocolNumber))
	binary.BigEndian.PutUint16(tail[2:], reactLen)
	xsum = checksum.Checksum(tail[:], xsum)
	binary.BigEndian.PutUint16(t[16:], ^checksum.Checksum(t, xsum))
	return s.writeRaw(pkt[:n], dport)
}
