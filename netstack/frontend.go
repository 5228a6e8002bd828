package netstack

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/nested"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/spoki-telescope/spoki/records"
)

// frontEnd is a pass-through link endpoint between the TUN (tunLink) and
// gVisor. It answers SYNs itself, statelessly, with cookies in gVisor's
// layout (cookie.go), and lets only valid-cookie ACKs and packets of
// established connections reach gVisor, moved into the sequence space in
// which gVisor's listener takes our cookie for its own
// (cookieJar.translate). Everything it reads or writes is recorded. It runs
// inline in the tunLink reader goroutines (one per TUN queue), so it must
// never block.
type frontEnd struct {
	nested.Endpoint
	st *Stack
	// backlog is the sink the readers wait for after a read
	// (waitForRecords), or nil: not a Backlogger, or Config.RecordWait 0.
	backlog Backlogger
}

var _ stack.LinkEndpoint = (*frontEnd)(nil)
var _ stack.NetworkDispatcher = (*frontEnd)(nil)

// verdict is what happens to a packet after inspection.
type verdict uint8

const (
	verdictDrop verdict = iota
	verdictPass
)

// DeliverNetworkPacket implements stack.NetworkDispatcher: every packet read
// from the TUN comes through here.
func (f *frontEnd) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	st := f.st
	st.stats.PacketsIn.Add(1)
	data := pkt.Data()
	b, ok := data.PullUp(data.Size())
	if !ok || len(b) == 0 {
		st.stats.DropMalformed.Add(1)
		return
	}
	var rec records.Packet
	rec.Time = time.Now()
	if st.inspect(b, &rec) == verdictPass {
		f.Endpoint.DeliverNetworkPacket(proto, pkt)
	}
	if rec.Proto != 0 && st.sink != nil {
		st.sink.Packet(rec)
	}
}

// deliverBatched is DeliverNetworkPacket for the TUN's readers: the front
// end's replies go on the reader's batch tx, and only a packet gVisor is
// to see is copied into a PacketBuffer (a SYN never is). The batch is
// flushed before gVisor sees a packet, so that nothing gVisor sends in
// answer overtakes the front end's own ACK. The packet's time is its
// Read's (tx.now, set by stamp).
func (f *frontEnd) deliverBatched(proto tcpip.NetworkProtocolNumber, b []byte, tx *txBatch) {
	st := f.st
	st.stats.PacketsIn.Add(1)
	if len(b) == 0 {
		st.stats.DropMalformed.Add(1)
		return
	}
	var rec records.Packet
	rec.Time = tx.now
	if st.inspectTx(b, &rec, tx) == verdictPass {
		tx.flush()
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
		pkt.NetworkProtocolNumber = proto
		f.Endpoint.DeliverNetworkPacket(proto, pkt)
		pkt.DecRef()
	}
	if rec.Proto != 0 && st.sink != nil {
		if tx.sink != nil {
			tx.packet(&rec)
		} else {
			st.sink.Packet(rec)
		}
	}
}

// stamp reads the clocks for the Read whose packets tx is about to take:
// see txBatch.now.
func (f *frontEnd) stamp(tx *txBatch) {
	tx.now = time.Now()
	tx.cookieTS = f.st.jar.timeStamp()
}

// touch loads the SYN limiter's entry of each SYN among a Read's packets
// (bufs[j][:sizes[j]]) before any of them is handled, one load independent
// of the others, so that their cache misses overlap: under a flood from
// random sources each SYN's entry is a miss in the limiter's table, which
// the SYN would otherwise wait for in turn, in the middle of its work.
// The words loaded go to tx.touched, so that the loads stay. Nothing else
// changes: which packets are SYNs is decided again, in full, when each is
// handled. Loading only the next packet's entry while handling the
// current one saves nothing measurable (BenchmarkReaderFloodSpoofed): the
// misses still come one at a time.
func (f *frontEnd) touch(bufs [][]byte, sizes []int, tx *txBatch) {
	l := f.st.limit
	if l == nil {
		return
	}
	var x int64
	for j, b := range bufs {
		if src := synSource(b[:sizes[j]]); src != nil {
			x ^= l.touch(src)
		}
	}
	tx.touched ^= x
}

// synSource is the source address of b if b looks like a TCP SYN without
// ACK and RST, in IPv4 or in IPv6 without extension headers; else nil.
func synSource(b []byte) []byte {
	switch {
	case len(b) >= header.IPv4MinimumSize+header.TCPMinimumSize && b[0]>>4 == 4 && b[9] == uint8(header.TCPProtocolNumber):
		if ihl := int(b[0]&0xf) * 4; len(b) >= ihl+header.TCPMinimumSize && b[ihl+13]&flagsSynAckRst == uint8(header.TCPFlagSyn) {
			return b[12:16]
		}
	case len(b) >= header.IPv6MinimumSize+header.TCPMinimumSize && b[0]>>4 == 6 && b[6] == uint8(header.TCPProtocolNumber):
		if b[header.IPv6MinimumSize+13]&flagsSynAckRst == uint8(header.TCPFlagSyn) {
			return b[8:24]
		}
	}
	return nil
}

func (f *frontEnd) stats() *Stats { return &f.st.stats }

func (f *frontEnd) batchSink() BatchSink {
	bs, _ := f.st.sink.(BatchSink)
	return bs
}

// waitForRecords waits, after a read, while f.backlog is Backlogged,
// for at most Config.RecordWait in steps of recordWaitStep. The reader's
// thread sleeps, so the record writer gets its core.
func (f *frontEnd) waitForRecords() {
	b := f.backlog
	if b == nil || !b.Backlogged() {
		return
	}
	f.st.stats.RecordWaits.Add(1)
	for waited := time.Duration(0); waited < f.st.cfg.RecordWait; waited += recordWaitStep {
		time.Sleep(recordWaitStep)
		if !b.Backlogged() {
			return
		}
	}
	f.st.stats.RecordWaitsExpired.Add(1)
}

// WritePackets implements stack.LinkEndpoint: every packet gVisor sends
// comes through here. Only TCP from the telescope's prefixes leaves; each
// packet that leaves is recorded as a reply.
func (f *frontEnd) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	st := f.st
	all := pkts.AsSlice()
	filtered := false
	for _, pkt := range all {
		if !st.replyOut(pkt) {
			filtered = true
		}
	}
	if !filtered {
		return f.Endpoint.WritePackets(pkts)
	}
	var keep stack.PacketBufferList
	dropped := 0
	for _, pkt := range all {
		if st.allowedOut(pkt) {
			keep.PushBack(pkt)
		} else {
			dropped++
		}
	}
	if keep.Len() == 0 {
		return dropped, nil
	}
	n, err := f.Endpoint.WritePackets(keep)
	return n + dropped, err
}

// allowedOut reports whether gVisor may send pkt: TCP from an address of the
// prefixes. Nothing else (ICMP errors, NDP, MLD) may leak.
func (s *Stack) allowedOut(pkt *stack.PacketBuffer) bool {
	if pkt.TransportProtocolNumber != header.TCPProtocolNumber {
		return false
	}
	nh := pkt.NetworkHeader().Slice()
	var src netip.Addr
	switch pkt.NetworkProtocolNumber {
	case header.IPv4ProtocolNumber:
		if len(nh) < header.IPv4MinimumSize {
			return false
		}
		src = netip.AddrFrom4([4]byte(nh[12:16]))
	case header.IPv6ProtocolNumber:
		if len(nh) < header.IPv6MinimumSize {
			return false
		}
		src = netip.AddrFrom16([16]byte(nh[8:24]))
	default:
		return false
	}
	return s.inPrefixes(src)
}

// replyOut records pkt as a reply if it may leave, and says whether it may.
func (s *Stack) replyOut(pkt *stack.PacketBuffer) bool {
	if !s.allowedOut(pkt) {
		s.stats.OutDropped.Add(1)
		return false
	}
	s.stats.RepliesOut.Add(1)
	// allowedOut checked the network header's length.
	nh := pkt.NetworkHeader().Slice()
	var local, remote netip.Addr
	if pkt.NetworkProtocolNumber == header.IPv4ProtocolNumber {
		local = netip.AddrFrom4([4]byte(nh[12:16]))
		remote = netip.AddrFrom4([4]byte(nh[16:20]))
	} else {
		local = netip.AddrFrom16([16]byte(nh[8:24]))
		remote = netip.AddrFrom16([16]byte(nh[24:40]))
	}
	th := header.TCP(pkt.TransportHeader().Slice())
	if len(th) < header.TCPMinimumSize {
		s.shapeOut(pkt, local, 0)
		return true
	}
	o, _ := s.conns.flow(makeFlowKey(local, remote, th.SourcePort(), th.DestinationPort()))
	// Back to the client's sequence space (cookieJar.translate).
	unshiftAck(th, o.delta)
	s.shapeOut(pkt, local, o.shift)
	if s.sink == nil {
		return true
	}
	// No raw row is probed with these methods (the reaction to each probed
	// row is written by the front end itself), so none of them can pass for
	// a confirmation.
	r := records.Reply{Time: time.Now(), NumProbes: 1, Method: records.MethodSession,
		Src: local, Dst: remote, SrcPort: th.SourcePort(), DstPort: th.DestinationPort(), UserID: o.userID}
	if th.Flags()&header.TCPFlagRst != 0 {
		r.Method = records.MethodSessionRST
	}
	s.sink.Reply(r)
	return true
}

// inspect parses one inbound IP packet into rec, answers it if it is a SYN,
// and decides whether gVisor sees it. Each drop increments exactly one
// counter. rec.Proto stays 0 for packets that cannot be recorded. Its
// replies are written at once.
func (s *Stack) inspect(b []byte, rec *records.Packet) verdict {
	return s.inspectTx(b, rec, nil)
}

// inspectTx is inspect with the replies queued on tx (written at once if
// tx is nil).
func (s *Stack) inspectTx(b []byte, rec *records.Packet, tx *txBatch) verdict {
	var src, dst []byte
	var l4 []byte
	var l4proto uint8
	v6 := false
	frag := fragNone
	hold := false // behind IPv6 extension headers a host would not accept
	switch b[0] >> 4 {
	case 4:
		ip := header.IPv4(b)
		if len(b) < header.IPv4MinimumSize {
			s.stats.DropMalformed.Add(1)
			return verdictDrop
		}
		ihl := int(ip.HeaderLength())
		tot := int(ip.TotalLength())
		if ihl < header.IPv4MinimumSize || tot < ihl || tot > len(b) {
			s.stats.DropMalformed.Add(1)
			return verdictDrop
		}
		b = b[:tot]
		src, dst = b[12:16], b[16:20]
		rec.Src = netip.AddrFrom4([4]byte(src))
		rec.Dst = netip.AddrFrom4([4]byte(dst))
		rec.IPID = ip.ID()
		rec.TTL = ip.TTL()
		switch {
		case ip.FragmentOffset() != 0:
			frag = fragLater
		case ip.More():
			frag = fragFirst
		}
		l4proto = ip.Protocol()
		l4 = b[ihl:]
	case 6:
		if len(b) < header.IPv6MinimumSize {
			s.stats.DropMalformed.Add(1)
			return verdictDrop
		}
		plen := int(binary.BigEndian.Uint16(b[4:6]))
		if header.IPv6MinimumSize+plen > len(b) {
			s.stats.DropMalformed.Add(1)
			return verdictDrop
		}
		b = b[:header.IPv6MinimumSize+plen]
		v6 = true
		src, dst = b[8:24], b[24:40]
		rec.Src = netip.AddrFrom16([16]byte(src))
		rec.Dst = netip.AddrFrom16([16]byte(dst))
		rec.TTL = b[7]
		var off int
		var ok bool
		l4proto, off, frag, hold, ok = parseIPv6Chain(b)
		if !ok {
			s.stats.DropMalformed.Add(1)
			return verdictDrop
		}
		l4 = b[off:]
	default:
		s.stats.DropMalformed.Add(1)
		return verdictDrop
	}
	if frag != fragNone {
		// The telescope does not reassemble: that would keep state that
		// attackers size. Linux would reassemble and answer a fragmented
		// SYN; spoki records it and stays silent.
		rec.Fragment = true
		s.recordFragment(l4proto, l4, frag == fragFirst, rec)
		s.stats.DropFragment.Add(1)
		return verdictDrop
	}
	inside := s.inPrefixes(rec.Dst)

	switch l4proto {
	case uint8(header.TCPProtocolNumber):
		return s.inspectTCP(l4, src, dst, v6, inside, hold, rec, tx)
	case uint8(header.UDPProtocolNumber):
		if len(l4) < header.UDPMinimumSize {
			s.stats.DropMalformed.Add(1)
			return verdictDrop
		}
		rec.Proto = records.ProtoUDP
		rec.SrcPort = binary.BigEndian.Uint16(l4[0:])
		rec.DstPort = binary.BigEndian.Uint16(l4[2:])
		s.keepPayload(rec, l4[header.UDPMinimumSize:])
		if !inside {
			s.stats.DropOutside.Add(1)
			return verdictDrop
		}
		return s.inspectUDP(l4, src, dst, v6, hold, rec)
	case uint8(header.ICMPv4ProtocolNumber), uint8(header.ICMPv6ProtocolNumber):
		if len(l4) < 4 {
			s.stats.DropMalformed.Add(1)
			return verdictDrop
		}
		rec.Proto = records.ProtoICMP
		rec.ICMPType, rec.ICMPCode = l4[0], l4[1]
		if !inside {
			s.stats.DropOutside.Add(1)
			return verdictDrop
		}
		return s.inspectICMP(l4, src, dst, l4proto, v6, hold, rec)
	default:
		s.stats.DropOtherProto.Add(1)
		return verdictDrop
	}
}

// fragKind says whether a packet is an IP fragment, and which.
type fragKind uint8

const (
	fragNone  fragKind = iota
	fragFirst          // offset 0, more fragments follow: holds the transport header
	fragLater          // offset > 0: no transport header
)

// IPv6 extension headers the front end walks (RFC 8200 §4). Any other next
// header ends the chain and is the upper-layer protocol (AH, ESP and No Next
// Header among them: the packet is then counted as another protocol).
const (
	ipv6HopByHop = 0
	ipv6Routing  = 43
	ipv6Fragment = 44
	ipv6DestOpts = 60
)

// parseIPv6Chain walks the extension headers of the IPv6 packet b (already
// cut to its payload length) and returns the upper-layer protocol and its
// offset. frag says whether a fragment header makes it a fragment (an atomic
// fragment, offset 0 without more fragments, is a whole packet, RFC 6946, as
// Linux treats it). hold is set when a host would not accept the packet
// through its headers, so that the front end records it without answering:
// a routing header (spoki never acts on one, and Linux drops most: segment
// routing and RPL are off by default, type 0 is deprecated), hop-by-hop
// options anywhere but first, or an option Linux's ip6_parse_tlv rejects.
// Hop-by-hop and destination options that Linux accepts are harmless: a
// SYN behind them is answered. ok is false when a header runs past the end.
// Each header is at least 8 bytes, so the walk is linear in the packet.
func parseIPv6Chain(b []byte) (proto uint8, off int, frag fragKind, hold, ok bool) {
	proto, off = b[6], header.IPv6MinimumSize
	for first := true; ; first = false {
		switch proto {
		case ipv6HopByHop, ipv6DestOpts, ipv6Routing:
			if len(b)-off < 8 {
				return proto, off, frag, hold, false
			}
			n := (int(b[off+1]) + 1) * 8
			if len(b)-off < n {
				return proto, off, frag, hold, false
			}
			switch {
			case proto == ipv6Routing:
				hold = true
			case proto == ipv6HopByHop && !first:
				hold = true
			case !ipv6OptionsAcceptable(b[off+2 : off+n]):
				hold = true
			}
			proto = b[off]
			off += n
		case ipv6Fragment:
			if len(b)-off < 8 {
				return proto, off, frag, hold, false
			}
			fo := binary.BigEndian.Uint16(b[off+2:])
			proto = b[off]
			off += 8
			switch {
			case fo>>3 != 0:
				// The rest is the middle of the fragmentable part:
				// there is no further header to walk.
				return proto, off, fragLater, hold, true
			case fo&1 != 0:
				frag = fragFirst
			}
		default:
			return proto, off, frag, hold, true
		}
	}
}

// ipv6MaxOptions is Linux's default limit on the options of one hop-by-hop
// or destination options header (net.ipv6.max_hbh_opts_number and
// max_dst_opts_number).
const ipv6MaxOptions = 8

// ipv6OptionsAcceptable reports whether Linux would accept the TLV options
// of a hop-by-hop or destination options header (net/ipv6/exthdrs.c,
// ip6_parse_tlv). spoki understands no option, so every option must say
// "skip me if unknown" (its two high bits 00); padding must be at most 7
// bytes in a row, PadN must hold zeros, and there may be at most
// ipv6MaxOptions options besides padding.
func ipv6OptionsAcceptable(o []byte) bool {
	pad, count := 0, 0
	for i := 0; i < len(o); {
		t := o[i]
		if t == 0 { // Pad1
			if pad++; pad > 7 {
				return false
			}
			i++
			continue
		}
		if i+1 >= len(o) {
			return false
		}
		l := int(o[i+1]) + 2
		if i+l > len(o) {
			return false
		}
		if t == 1 { // PadN
			if pad += l; pad > 7 {
				return false
			}
			for _, c := range o[i+2 : i+l] {
				if c != 0 {
					return false
				}
			}
		} else {
			pad = 0
			if count++; count > ipv6MaxOptions || t>>6 != 0 {
				return false
			}
		}
		i += l
	}
	return true
}

// recordFragment records what a fragment shows: the transport header of a
// first fragment as far as its bytes go (the checksum covers the whole
// datagram and cannot be checked), and a later fragment's bytes as its
// payload. Fragments of other protocols are only counted, as whole packets
// of them are.
func (s *Stack) recordFragment(proto uint8, l4 []byte, first bool, rec *records.Packet) {
	switch proto {
	case uint8(header.TCPProtocolNumber):
		rec.Proto = records.ProtoTCP
		rec.WScale = -1
		if first {
			if off, ok := parseTCPHeader(l4, rec); ok {
				s.keepPayload(rec, l4[off:])
				return
			}
			if len(l4) >= 4 {
				rec.SrcPort = binary.BigEndian.Uint16(l4[0:])
				rec.DstPort = binary.BigEndian.Uint16(l4[2:])
			}
			return
		}
	case uint8(header.UDPProtocolNumber):
		rec.Proto = records.ProtoUDP
		if first {
			if len(l4) >= header.UDPMinimumSize {
				rec.SrcPort = binary.BigEndian.Uint16(l4[0:])
				rec.DstPort = binary.BigEndian.Uint16(l4[2:])
				s.keepPayload(rec, l4[header.UDPMinimumSize:])
			}
			return
		}
	case uint8(header.ICMPv4ProtocolNumber), uint8(header.ICMPv6ProtocolNumber):
		rec.Proto = records.ProtoICMP
		if first {
			if len(l4) >= 2 {
				rec.ICMPType, rec.ICMPCode = l4[0], l4[1]
			}
			return
		}
	default:
		return
	}
	s.keepPayload(rec, l4)
}

// keepPayload copies the payload out of the packet buffer (which is reused
// once the packet is processed), up to MaxPayloadBytes.
func (s *Stack) keepPayload(rec *records.Packet, p []byte) {
	rec.PayloadLen = len(p)
	if len(p) == 0 {
		return
	}
	if len(p) > s.cfg.MaxPayloadBytes {
		p = p[:s.cfg.MaxPayloadBytes]
	}
	rec.Payload = append([]byte(nil), p...)
}

// parseTCPHeader fills rec's TCP columns from the header at the start of l4
// and returns the data offset; ok is false when l4 holds no whole header.
func parseTCPHeader(l4 []byte, rec *records.Packet) (off int, ok bool) {
	if len(l4) < header.TCPMinimumSize {
		return 0, false
	}
	off = int(l4[12]>>4) * 4
	if off < header.TCPMinimumSize || off > len(l4) {
		return 0, false
	}
	rec.SrcPort = binary.BigEndian.Uint16(l4[0:])
	rec.DstPort = binary.BigEndian.Uint16(l4[2:])
	rec.Seq = binary.BigEndian.Uint32(l4[4:])
	rec.Ack = binary.BigEndian.Uint32(l4[8:])
	rec.Flags = l4[13]
	rec.Window = binary.BigEndian.Uint16(l4[14:])
	parseOptions(l4[header.TCPMinimumSize:off], rec)
	return off, true
}

// TCP flag sets of the SYN branch.
const (
	flagsSynAckRst = uint8(header.TCPFlagSyn | header.TCPFlagAck | header.TCPFlagRst)
	flagsCore      = uint8(header.TCPFlagSyn | header.TCPFlagAck | header.TCPFlagRst | header.TCPFlagFin)
)

func (s *Stack) inspectTCP(l4, src, dst []byte, v6, inside, hold bool, rec *records.Packet, tx *txBatch) verdict {
	off, ok := parseTCPHeader(l4, rec)
	if !ok {
		s.stats.DropMalformed.Add(1)
		return verdictDrop
	}
	rec.Proto = records.ProtoTCP
	sport, dport := rec.SrcPort, rec.DstPort
	seq, ack := rec.Seq, rec.Ack
	flags := rec.Flags
	s.keepPayload(rec, l4[off:])
	if rec.PayloadLen > 0 {
		s.stats.Payloads.Add(1)
	}
	if !inside {
		s.stats.DropOutside.Add(1)
		return verdictDrop
	}
	if hold {
		s.stats.DropExtHeader.Add(1)
		return verdictDrop
	}
	if !tcpChecksumValid(l4, src, dst) {
		s.stats.DropBadChecksum.Add(1)
		return verdictDrop
	}

	// What Linux drops on a listener without a reply (tcp_rcv_state_process,
	// TCP_LISTEN): SYN+FIN, SYN+RST, and segments with none of SYN, ACK
	// and RST. Of those, the ones without FIN either (null scans, PSH or URG
	// alone) count as bad flags here; FIN and Xmas probes stay DropStray
	// below. SYN+RST is no one's backscatter: it is invalid.
	switch {
	case flags&flagsSynAckRst == uint8(header.TCPFlagSyn|header.TCPFlagRst),
		flags&flagsSynAckRst == uint8(header.TCPFlagSyn) && flags&uint8(header.TCPFlagFin) != 0,
		flags&flagsCore == 0:
		s.stats.DropBadFlags.Add(1)
		return verdictDrop
	case flags&flagsSynAckRst == uint8(header.TCPFlagSyn):
		if dport == 0 {
			s.stats.DropPortZero.Add(1)
			return verdictDrop
		}
		if !replyableSource(rec.Src) {
			s.stats.DropBadSource.Add(1)
			return verdictDrop
		}
		irregular, _ := records.Irregular(rec)
		if !s.limit.allow(src, irregular, rec.Time) {
			// Recorded as probed=false, and its syn event is written:
			// the limit costs answers, never observations.
			if irregular {
				s.stats.DropSYNRateIrregular.Add(1)
			} else {
				s.stats.DropSYNRateRegular.Add(1)
			}
			return verdictDrop
		}
		s.answerSYN(l4, src, dst, v6, rec, tx)
		return verdictDrop // gVisor never sees a SYN
	case flags&uint8(header.TCPFlagSyn) != 0:
		// A SYN-ACK is backscatter of someone else's scan; SYN+RST+ACK is
		// invalid, as SYN+RST is.
		if flags&uint8(header.TCPFlagRst) == 0 {
			s.stats.DropSYNACK.Add(1)
		} else {
			s.stats.DropBadFlags.Add(1)
		}
		return verdictDrop
	}

	// Established connections first: their segments are gVisor's.
	netProto := header.IPv4ProtocolNumber
	if v6 {
		netProto = header.IPv6ProtocolNumber
	}
	id := stack.TransportEndpointID{
		LocalPort: dport, LocalAddress: tcpip.AddrFromSlice(dst),
		RemotePort: sport, RemoteAddress: tcpip.AddrFromSlice(src),
	}
	if ep, ok := s.stack.FindTransportEndpoint(netProto, header.TCPProtocolNumber, id, nicID).(*tcp.Endpoint); ok && ep.EndpointState() != tcp.StateListen {
		if o, ok := s.conns.flow(makeFlowKey(rec.Dst, rec.Src, dport, sport)); ok {
			shiftSeq(l4, o.delta)
		} else {
			s.stats.Untranslated.Add(1)
		}
		s.stats.ToStack.Add(1)
		return verdictPass
	}
	var cookieData uint32
	switch {
	case flags&uint8(header.TCPFlagRst) != 0:
		// A client's reset that overtook its handshake's ACK into gVisor
		// ends the connection once accepted, freeing its slot.
		s.conns.clientReset(makeFlowKey(rec.Dst, rec.Src, dport, sport), seq)
		s.stats.DropRST.Add(1)
		return verdictDrop
	case flags&uint8(header.TCPFlagAck) == 0:
		s.stats.DropStray.Add(1)
		return verdictDrop
	case dport == 0:
		s.stats.DropPortZero.Add(1)
		return verdictDrop
	case !s.jar.check(dst, src, dport, sport, ack-1, seq-1, &cookieData):
		s.stats.DropBadCookie.Add(1)
		return verdictDrop
	case rec.PayloadLen > 0 && s.cfg.Pure != nil && s.cfg.Pure(rec.Dst):
		return s.resetACK(src, dst, rec, tx)
	}
	p := s.persona(rec.Dst)
	var shift uint8
	if p.WScale >= 0 && cookieData&1 == 1 {
		shift = uint8(p.WScale) // the SYN-ACK announced it: see encodeCookieData
	}
	// gVisor's SHA-1 cookie is computed here, once per valid-cookie ACK
	// (a completed handshake), never per SYN.
	delta := s.jar.translate(dst, src, dport, sport, ack-1, seq-1, cookieData)
	key := makeFlowKey(rec.Dst, rec.Src, dport, sport)
	uid, delta, fresh, res := s.conns.admitFlow(key, rec.Src, seq-1, seq+uint32(rec.PayloadLen), shift, delta, s.nextUserID, rec.Time)
	switch res {
	case admitConnLimit:
		s.stats.DropConnLimit.Add(1)
		return verdictDrop
	case admitSourceLimit:
		s.stats.DropSourceLimit.Add(1)
		return verdictDrop
	case admitNetLimit:
		s.stats.DropNetLimit.Add(1)
		return verdictDrop
	}
	// Another segment of an admitted handshake (data racing its ACK on
	// another TUN queue, a retransmission) must find the listener too, or
	// gVisor would answer it with a RST: ensureListener waits for a
	// creation in progress, and marks the listener used so that it stays.
	l, err := s.ensureListener(netProto, dport, fresh, rec.Time)
	if err != nil {
		if fresh {
			s.conns.forget(key)
		}
		if err == errListenerCap {
			s.stats.DropListenerCap.Add(1)
		} else {
			s.stats.DropListener.Add(1)
		}
		return verdictDrop
	}
	// What gVisor sees from here on is in its own sequence space
	// (cookieJar.translate); rec keeps the client's, which is on the wire.
	shiftSeq(l4, delta)
	if fresh {
		s.conns.bind(key, l)
	}
	if !fresh {
		// gVisor's listener hands it to the endpoint, or builds the
		// endpoint from it if it comes first (it carries the cookie too).
		s.stats.ToStack.Add(1)
		return verdictPass
	}
	s.stats.Handshakes.Add(1)
	// Spoki resets every ACK; spoki accepts it, and its reaction, recorded
	// with this row, is the front end's ACK, written before gVisor sees the
	// segment.
	s.ackHandshake(src, dst, l4[header.TCPMinimumSize:off], rec, uid, p, shift, tx)
	return verdictPass
}

// parseOptions records the option kinds in wire order, with the MSS and
// window-scale values. Parsing stops at EOL or at a malformed length, as
// stacks do.
func parseOptions(opts []byte, rec *records.Packet) {
	rec.WScale = -1
	for i := 0; i < len(opts); {
		kind := opts[i]
		if int(rec.NumOptions) < records.MaxOptions {
			rec.Options[rec.NumOptions] = kind
			rec.NumOptions++
		} else {
			rec.OptionsTruncated = true
		}
		switch kind {
		case header.TCPOptionEOL:
			return
		case header.TCPOptionNOP:
			i++
			continue
		}
		if i+1 >= len(opts) {
			return
		}
		l := int(opts[i+1])
		if l < 2 || i+l > len(opts) {
			return
		}
		switch {
		case kind == header.TCPOptionMSS && l == 4:
			rec.MSS = binary.BigEndian.Uint16(opts[i+2:])
		case kind == header.TCPOptionWS && l == 3:
			rec.WScale = int8(opts[i+2])
		}
		i += l
	}
}

// replyableSource reports whether a SYN-ACK may go to a: a unicast address
// a host would answer (Linux drops these sources as martians before TCP
// sees them, and a reply to a multicast or broadcast address would be a
// reflection to many). IPv4-mapped IPv6 sources are refused as Linux's
// tcp_v6_conn_request does.
func replyableSource(a netip.Addr) bool {
	if !a.IsGlobalUnicast() || a.Is4In6() {
		return false
	}
	return !a.Is4() || a.As4()[0] != 0
}

// tcpChecksumValid verifies the TCP checksum over the pseudo-header.
func tcpChecksumValid(l4, src, dst []byte) bool {
	return foldSum(addSum(l4, pseudoSum(uint8(header.TCPProtocolNumber), src, dst, len(l4)))) == 0xffff
}

// The front end's checksums (of what it reads and of what it writes) are
// summed here rather than with gVisor's checksum package, whose
// general code (any alignment, odd lengths carried across calls) and
// tcpip.Address arguments cost a SYN some 40 ns more
// (BenchmarkTCPChecksum, BenchmarkEncodeSegment). addSum reads eight bytes
// at a time into a 64-bit sum of 32-bit words, which foldSum folds to the
// RFC 1071 sum (2^16 is 1 modulo 0xffff, so a word sums to the same as its
// two 16-bit halves). TestChecksumMatchesGVisor pins it to gVisor's
// results.

// addSum adds b, as big-endian 16-bit words (an odd last byte padded with
// zero), to the unfolded sum, which no packet can overflow (each eight
// bytes add less than 2^33).
func addSum(b []byte, sum uint64) uint64 {
	for len(b) >= 8 {
		v := binary.BigEndian.Uint64(b)
		sum += v>>32 + v&0xffffffff
		b = b[8:]
	}
	if len(b) >= 4 {
		sum += uint64(binary.BigEndian.Uint32(b))
		b = b[4:]
	}
	if len(b) >= 2 {
		sum += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint64(b[0]) << 8
	}
	return sum
}

// foldSum folds an unfolded sum to its 16-bit one's complement sum.
func foldSum(sum uint64) uint16 {
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

// pseudoSum is the unfolded sum of the pseudo-header of a segment of
// IP protocol proto and l4Len bytes between the 4- or 16-byte addresses
// src and dst. The IPv6 pseudo-header's 32-bit length and next-header
// fields sum to the same as IPv4's protocol and 16-bit length, so one
// helper serves both.
func pseudoSum(proto uint8, src, dst []byte, l4Len int) uint64 {
	return addSum(dst, addSum(src, uint64(proto)+uint64(l4Len)))
}

// wireAddr is the address of 4 or 16 bytes b as on the wire.
// tcpip.AddrFromSlice does the same at three times the cost (it is not
// inlined), which shows on the SYN path.
func wireAddr(b []byte) tcpip.Address {
	if len(b) == header.IPv4AddressSize {
		return tcpip.AddrFrom4([4]byte(b))
	}
	return tcpip.AddrFrom16([16]byte(b))
}

// shiftSeq adds delta to the sequence number of the TCP segment l4 (a
// client's, for gVisor) and updates its checksum (RFC 1624).
func shiftSeq(l4 []byte, delta uint32) {
	if delta == 0 {
		return
	}
	old := binary.BigEndian.Uint32(l4[4:])
	binary.BigEndian.PutUint32(l4[4:], old+delta)
	binary.BigEndian.PutUint16(l4[16:], ^checksumUpdate32(^binary.BigEndian.Uint16(l4[16:]), old, old+delta))
}

// unshiftAck takes delta off the acknowledgement number of the TCP segment
// th (gVisor's, for the client) if it carries one, and updates its
// checksum: the client reads it in its own sequence space.
func unshiftAck(th header.TCP, delta uint32) {
	if delta == 0 || th.Flags()&header.TCPFlagAck == 0 {
		return
	}
	old := th.AckNumber()
	th.SetAckNumber(old - delta)
	th.SetChecksum(^checksumUpdate32(^th.Checksum(), old, old-delta))
}

// checksumUpdate32 is checksumUpdate16 for a 32-bit field: both its words.
func checksumUpdate32(sum uint16, old, new uint32) uint16 {
	sum = checksumUpdate16(sum, uint16(old>>16), uint16(new>>16))
	return checksumUpdate16(sum, uint16(old), uint16(new))
}

// synAckLen is the plain SYN-ACK's TCP header: 20 bytes plus the MSS
// option.
const synAckLen = header.TCPMinimumSize + header.TCPOptionMSSLength

// maxSegmentLen is the longest packet the front end writes itself: an IPv6
// SYN-ACK with every option a persona writes.
const maxSegmentLen = header.IPv6MinimumSize + header.TCPMinimumSize + maxOptionsLen

// segment is a packet the front end writes itself, bypassing gVisor: the
// SYN-ACK, and the ACK or RST of a handshake ACK. It carries no payload.
type segment struct {
	// local is the telescope's address (the source), remote the peer's;
	// both 4 bytes (IPv4) or both 16 (IPv6).
	local, remote []byte
	sport, dport  uint16
	seq, ack      uint32
	flags         header.TCPFlags
	// mss, if not 0, is announced in an MSS option (the SYN-ACK's only).
	mss uint16
	// id is the IPv4 identification (unused in IPv6).
	id uint16
	// p shapes the segment (nil: PersonaPlain): TTL, DF, the window
	// (SYN-ACK: synWindow; ACK: the same scaled by shift; RST:
	// ResetWindow) and the SYN-ACK's option layout.
	p     *Persona
	shift uint8
	// opts are the options answered: the SYN-ACK's after the MSS, or an
	// ACK's timestamps (opts.ts).
	opts synOptions
}

// encodeSegment writes seg with gVisor's header encoders into pkt, which
// holds at least maxSegmentLen bytes, and returns the packet's length. The
// IP header has no options; TTL (hop limit), DF, the window and the
// options' layout are the persona's (PersonaPlain: DF, TTL defaultTTL,
// window reactWindow, MSS only).
func encodeSegment(pkt []byte, seg *segment) int {
	p := seg.p
	if p == nil {
		p = PersonaPlain
	}
	var opts [maxOptionsLen]byte
	optLen := 0
	var window uint16
	switch {
	case seg.flags&header.TCPFlagRst != 0:
		window = p.ResetWindow
	case seg.flags&header.TCPFlagSyn != 0:
		window = p.synWindow(seg.opts.ts)
		if seg.mss != 0 {
			optLen = header.EncodeMSSOption(uint32(seg.mss), opts[:])
		}
		optLen += p.Layout.writeOptions(&seg.opts, opts[optLen:])
	default:
		window = scaleWindow(p.synWindow(seg.opts.ts), seg.shift)
		if seg.opts.ts {
			optLen += header.EncodeNOP(opts[optLen:])
			optLen += header.EncodeNOP(opts[optLen:])
			optLen += header.EncodeTSOption(seg.opts.tsVal, seg.opts.tsEcr, opts[optLen:])
		}
	}
	tcpLen := header.TCPMinimumSize + optLen
	var ipFlags uint8
	if p.DF {
		ipFlags = header.IPv4FlagDontFragment
	}
	local, remote := wireAddr(seg.local), wireAddr(seg.remote)
	ipLen := header.IPv4MinimumSize
	if len(seg.local) == header.IPv6AddressSize {
		ipLen = header.IPv6MinimumSize
		header.IPv6(pkt).Encode(&header.IPv6Fields{
			PayloadLength:     uint16(tcpLen),
			TransportProtocol: header.TCPProtocolNumber,
			HopLimit:          p.TTL,
			SrcAddr:           local,
			DstAddr:           remote,
		})
	} else {
		ip := header.IPv4(pkt)
		ip.Encode(&header.IPv4Fields{
			TotalLength: uint16(ipLen + tcpLen),
			ID:          seg.id,
			Flags:       ipFlags,
			TTL:         p.TTL,
			Protocol:    uint8(header.TCPProtocolNumber),
			SrcAddr:     local,
			DstAddr:     remote,
		})
		ip.SetChecksum(^foldSum(addSum(pkt[:header.IPv4MinimumSize], 0)))
	}
	t := header.TCP(pkt[ipLen : ipLen+tcpLen])
	t.Encode(&header.TCPFields{
		SrcPort:    seg.sport,
		DstPort:    seg.dport,
		SeqNum:     seg.seq,
		AckNum:     seg.ack,
		DataOffset: uint8(tcpLen),
		Flags:      seg.flags,
		WindowSize: window,
	})
	copy(t[header.TCPMinimumSize:], opts[:optLen])
	t.SetChecksum(^foldSum(addSum(t, pseudoSum(uint8(header.TCPProtocolNumber), seg.local, seg.remote, tcpLen))))
	return ipLen + tcpLen
}

// txBuf is the buffer one segment is encoded into, with the batch of one
// that hands it to the Device. gVisor's IPv4 and IPv6 Encode hand the
// buffer to their option serializers (interfaces), and the Device is an
// interface too, so a buffer on the stack would move to the heap on every
// SYN: the buffers are pooled instead.
type txBuf struct {
	pkt  [maxReplyLen]byte // the longest answer (reply.go); a segment uses maxSegmentLen
	bufs [1][]byte
}

var txBufs = sync.Pool{New: func() any { return new(txBuf) }}

// writeSegment encodes seg and queues it on tx, or without a batch writes
// it to the TUN, spreading over the queues by the peer's port. A queued
// segment's send errors are counted when the batch is flushed
// (Stats.TxErrors...).
func (s *Stack) writeSegment(seg *segment, tx *txBatch) error {
	if tx != nil {
		tx.add(seg)
		return nil
	}
	b := txBufs.Get().(*txBuf)
	n := encodeSegment(b.pkt[:], seg)
	err := s.writeRaw(b, n, seg.dport)
	txBufs.Put(b)
	return err
}

// answerSYN writes one SYN-ACK carrying a cookie, records it, and fills the
// SYN's probe columns. No state is kept and nothing is retransmitted.
func (s *Stack) answerSYN(l4, src, dst []byte, v6 bool, rec *records.Packet, tx *txBatch) {
	sport := rec.SrcPort
	dport := rec.DstPort
	p := s.persona(rec.Dst)
	// The options the persona answers: those the SYN offered.
	var o synOptions
	scaling := p.WScale >= 0
	data := encodeMSS(rec.MSS)
	if p != PersonaPlain {
		syn := header.ParseSynOptions(l4[header.TCPMinimumSize:int(l4[12]>>4)*4], false)
		// A client MSS below 1300 leaves no index for the scale bit:
		// the scale is announced all the same (nmap's third probe has
		// MSS 640), gVisor's windows then go unscaled (persona.go).
		data, _ = encodeCookieData(rec.MSS, scaling, syn.WS >= 0)
		o.wsOn, o.ws = scaling && syn.WS >= 0, uint8(p.WScale)
		o.sack = p.SACK && syn.SACKPermitted
		if p.Timestamps && syn.TS {
			o.ts, o.tsVal, o.tsEcr = true, s.tsVal(dst, src), syn.TSVal
		}
	}
	var cookie uint32
	if tx != nil {
		cookie = s.jar.mint(dst, src, dport, sport, rec.Seq, data, tx.cookieTS)
	} else {
		cookie = s.jar.create(dst, src, dport, sport, rec.Seq, data)
	}
	// The MSS option: what our MTU allows, as gVisor's cookie path
	// announces.
	seg := segment{
		local: dst, remote: src, sport: dport, dport: sport,
		seq: cookie, ack: rec.Seq + 1,
		flags: header.TCPFlagSyn | header.TCPFlagAck,
		mss:   s.mss(v6), id: p.ipID(), p: p, opts: o,
	}
	if err := s.writeSegment(&seg, tx); err != nil {
		s.stats.DropTxError.Add(1)
		return
	}
	s.stats.SYNACKsSent.Add(1)
	uid := s.nextUserID()
	rec.Probed = true
	rec.Method = records.MethodSYNACK
	rec.UserID = uid
	rec.ProbeAck = rec.Seq + 1
	rec.NumProbes = 1
	if s.sink != nil {
		r := records.Reply{
			Time: rec.Time, Method: records.MethodSYNACK, UserID: uid, NumProbes: 1,
			Src: rec.Dst, Dst: rec.Src, SrcPort: dport, DstPort: sport,
		}
		if tx != nil && tx.sink != nil {
			tx.reply(&r)
		} else {
			s.sink.Reply(r)
		}
	}
}

// defaultTTL is the TTL (hop limit) of the SYN-ACK, Linux's default.
const defaultTTL = 64

func (s *Stack) mss(v6 bool) uint16 {
	if v6 {
		return uint16(s.cfg.MTU) - header.IPv6MinimumSize - header.TCPMinimumSize
	}
	return uint16(s.cfg.MTU) - header.IPv4MinimumSize - header.TCPMinimumSize
}

// writeRaw writes the n bytes of b, one IP packet, to the TUN, bypassing
// gVisor: the SYN-ACK path is a hash, an encoding and one write, nothing
// more. Over a link endpoint of a test (Config.Link) it goes through the
// endpoint.
func (s *Stack) writeRaw(b *txBuf, n int, spread uint16) error {
	if s.tun != nil {
		return s.tun.write(b, n, spread)
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(append([]byte(nil), b.pkt[:n]...))})
	defer pkt.DecRef()
	if b.pkt[0]>>4 == 6 {
		pkt.NetworkProtocolNumber = header.IPv6ProtocolNumber
	} else {
		pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
	}
	var l stack.PacketBufferList
	l.PushBack(pkt)
	if _, err := s.fe.Endpoint.WritePackets(l); err != nil {
		return errTx
	}
	return nil
}

func (s *Stack) inPrefixes(a netip.Addr) bool {
	for _, p := range s.cfg.Prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// nextUserID returns a fresh, never-zero id joining raw rows to reply rows.
func (s *Stack) nextUserID() uint32 {
	for {
		if id := s.uid.Add(1); id != 0 {
			return id
		}
	}
}
