package netstack

import (
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

// reactWindow is the window of the plain persona's SYN-ACK, ACK and RST
// (the others': Persona.Window): the ACK's window is the SYN-ACK's, so the
// ACK tells the client nothing it did not already know but the
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
//
// The ACK is shaped by the persona p: its window is the SYN-ACK's, scaled
// by shift when the handshake agreed to window scaling, and it carries
// timestamps when the handshake ACK did (opts are its options).
func (s *Stack) ackHandshake(src, dst, opts []byte, rec *records.Packet, uid uint32, p *Persona, shift uint8, tx *txBatch) {
	ack := rec.Seq
	seg := segment{
		local: dst, remote: src, sport: rec.DstPort, dport: rec.SrcPort,
		seq: rec.Ack, ack: ack, flags: header.TCPFlagAck, id: p.ipID(), p: p, shift: shift,
	}
	if p.Timestamps {
		if to := header.ParseTCPOptions(opts); to.TS {
			seg.opts.ts, seg.opts.tsVal, seg.opts.tsEcr = true, s.tsVal(dst, src), to.TSVal
		}
	}
	if err := s.writeSegment(&seg, tx); err != nil {
		s.stats.DropTxError.Add(1)
		return
	}
	s.probed(rec, records.MethodACK, uid, ack, rec.Ack)
}

// resetACK answers a handshake ACK to a pure-mode address as Spoki does: a
// RST at once (seq = the ACK's ack, ack 0), recorded as the reaction of rec
// (method tcp-rst, probe snum = the ACK's ack). The ACK never reaches
// gVisor: there is no connection, and no slot of MaxConns is taken.
func (s *Stack) resetACK(src, dst []byte, rec *records.Packet, tx *txBatch) verdict {
	p := s.persona(rec.Dst)
	seg := segment{
		local: dst, remote: src, sport: rec.DstPort, dport: rec.SrcPort,
		seq: rec.Ack, flags: header.TCPFlagRst, id: p.ipID(), p: p,
	}
	if err := s.writeSegment(&seg, tx); err != nil {
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
