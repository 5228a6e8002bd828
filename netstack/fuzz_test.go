package netstack

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"

	"github.com/spoki-telescope/spoki/records"
)

// Fuzz modes: bits of the first argument, so that the fuzzer gets past the
// length and checksum checks and reaches established connections.
const (
	fuzzFixLengths = 1 << iota // set the IP length fields to the packet's length
	fuzzFixSum                 // recompute the TCP checksum
	fuzzEstablish              // complete a handshake for the packet's flow first
)

// fuzzTuple is a TCP flow as the telescope sees it.
type fuzzTuple struct {
	remote, local netip.AddrPort
}

// encodeSink runs every record through the CSV and event encoders and keeps
// nothing, so that a long fuzz run has flat memory.
type encodeSink struct {
	mu  sync.Mutex
	buf []byte
}

func (e *encodeSink) Packet(p records.Packet) {
	e.mu.Lock()
	e.buf = records.AppendRawRow(e.buf[:0], &p)
	if p.IsSYN() {
		e.buf = records.AppendSYNEvent(e.buf[:0], &p)
	}
	e.mu.Unlock()
}

func (e *encodeSink) Reply(r records.Reply) {
	e.mu.Lock()
	e.buf = records.AppendReplyRow(e.buf[:0], &r)
	e.mu.Unlock()
}

// fuzzStack is one in-memory stack shared by the executions of a fuzz
// worker, with the flows it has established.
type fuzzStack struct {
	ch  *channel.Endpoint
	st  *Stack
	est map[fuzzTuple]time.Time
}

func newFuzzStack(f *testing.F) *fuzzStack {
	fz := &fuzzStack{ch: channel.New(4096, 1500, ""), est: map[fuzzTuple]time.Time{}}
	st, err := New(Config{
		Link:     fz.ch,
		Prefixes: []netip.Prefix{telescope4, telescope6},
		Sink:     &encodeSink{},
		// No limit: every SYN the front end accepts is answered.
		SYNACKLimits: &SYNACKLimits{},
		Handle: func(c net.Conn, _ records.Flow) {
			var b [512]byte
			c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			c.Read(b[:])
			c.(*Conn).Reset()
		},
	})
	if err != nil {
		f.Fatal(err)
	}
	fz.st = st
	f.Cleanup(st.Close)
	return fz
}

// tcpAt locates the TCP header of an IP packet as the front end would, and
// returns the flow (remote = the packet's source) and the header.
func tcpAt(b []byte) (tu fuzzTuple, tcp header.TCP, ok bool) {
	if len(b) == 0 {
		return tu, nil, false
	}
	var src, dst netip.Addr
	var l4 []byte
	switch b[0] >> 4 {
	case 4:
		if len(b) < header.IPv4MinimumSize {
			return tu, nil, false
		}
		ihl := int(b[0]&0xf) * 4
		tot := int(binary.BigEndian.Uint16(b[2:]))
		if ihl < header.IPv4MinimumSize || tot < ihl || tot > len(b) || b[9] != uint8(header.TCPProtocolNumber) {
			return tu, nil, false
		}
		src, dst = netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20]))
		l4 = b[ihl:tot]
	case 6:
		if len(b) < header.IPv6MinimumSize {
			return tu, nil, false
		}
		end := header.IPv6MinimumSize + int(binary.BigEndian.Uint16(b[4:]))
		if end > len(b) {
			return tu, nil, false
		}
		proto, off, _, _, ok := parseIPv6Chain(b[:end])
		if !ok || proto != uint8(header.TCPProtocolNumber) {
			return tu, nil, false
		}
		src, dst = netip.AddrFrom16([16]byte(b[8:24])), netip.AddrFrom16([16]byte(b[24:40]))
		l4 = b[off:end]
	default:
		return tu, nil, false
	}
	if len(l4) < header.TCPMinimumSize {
		return tu, nil, false
	}
	tcp = header.TCP(l4)
	return fuzzTuple{netip.AddrPortFrom(src, tcp.SourcePort()), netip.AddrPortFrom(dst, tcp.DestinationPort())}, tcp, true
}

// prepare applies the mode's fixes to a copy of pkt.
func prepare(mode uint8, pkt []byte) []byte {
	b := append([]byte(nil), pkt...)
	if len(b) == 0 {
		return b
	}
	if mode&fuzzFixLengths != 0 {
		switch {
		case b[0]>>4 == 4 && len(b) >= header.IPv4MinimumSize && len(b) <= 0xffff:
			binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
		case b[0]>>4 == 6 && len(b) >= header.IPv6MinimumSize && len(b)-header.IPv6MinimumSize <= 0xffff:
			binary.BigEndian.PutUint16(b[4:], uint16(len(b)-header.IPv6MinimumSize))
		}
	}
	if mode&(fuzzFixSum|fuzzEstablish) != 0 {
		fixTCPSum(b)
	}
	return b
}

// fixTCPSum recomputes the TCP checksum of b, if b is TCP.
func fixTCPSum(b []byte) {
	tu, tcp, ok := tcpAt(b)
	if !ok {
		return
	}
	tcp.SetChecksum(0)
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, tcpip.AddrFromSlice(tu.remote.Addr().AsSlice()),
		tcpip.AddrFromSlice(tu.local.Addr().AsSlice()), uint16(len(tcp)))
	tcp.SetChecksum(^checksum.Checksum(tcp, xsum))
}

func (fz *fuzzStack) inject(b []byte) {
	h := harness{ch: fz.ch}
	h.inject(b)
}

// establish completes a handshake for tu and records the flow.
func (fz *fuzzStack) establish(t *testing.T, tu fuzzTuple) {
	fz.inject(seg{src: tu.remote.Addr(), dst: tu.local.Addr(), sport: tu.remote.Port(), dport: tu.local.Port(),
		seq: 7, flags: header.TCPFlagSyn, opts: mssOpt}.build())
	var cookie uint32
	found := false
	fz.drain(t, func(out fuzzTuple, tcp header.TCP) bool {
		if out == tu && tcp.Flags() == header.TCPFlagSyn|header.TCPFlagAck && tcp.AckNumber() == 8 {
			cookie, found = tcp.SequenceNumber(), true
			return true
		}
		return false
	})
	if !found {
		return // e.g. a source no reply may go to
	}
	fz.est[tu] = time.Now()
	fz.inject(seg{src: tu.remote.Addr(), dst: tu.local.Addr(), sport: tu.remote.Port(), dport: tu.local.Port(),
		seq: 8, ack: cookie + 1, flags: header.TCPFlagAck}.build())
	if len(fz.est) > 10000 {
		for k, at := range fz.est {
			if time.Since(at) > 10*time.Second {
				delete(fz.est, k)
			}
		}
	}
}

// drain reads every packet the stack wrote, checks that it belongs to an
// established flow unless claim takes it, and fails on anything else.
func (fz *fuzzStack) drain(t *testing.T, claim func(fuzzTuple, header.TCP) bool) {
	for {
		pkt := fz.ch.Read()
		if pkt == nil {
			return
		}
		v := pkt.ToView()
		b := append([]byte(nil), v.AsSlice()...)
		v.Release()
		pkt.DecRef()
		tu, tcp, ok := tcpAt(b)
		if !ok {
			t.Fatalf("the stack wrote a non-TCP packet: % x", b)
		}
		// Out of the stack, remote is the destination: flip it.
		in := fuzzTuple{remote: tu.local, local: tu.remote}
		if !fz.st.inPrefixes(in.local.Addr()) {
			t.Fatalf("reply from %s, outside the prefixes", in.local)
		}
		if claim != nil && claim(in, tcp) {
			continue
		}
		if _, ok := fz.est[in]; !ok {
			t.Fatalf("unprompted %v segment to %s from %s (no connection)", tcp.Flags(), in.remote, in.local)
		}
	}
}

// FuzzInspect sends arbitrary packets through a whole in-memory stack (the
// front end, the cookie path and gVisor) and checks that no input panics,
// that a SYN is only ever answered by one SYN-ACK acknowledging it, that
// nothing else is ever written except on an established connection, that
// gVisor never sees a SYN, and that each packet is counted exactly once.
// The stack is shared by the executions, so coverage depends a little on
// what came before: run it with a short minimisation budget,
//
//	go test -run '^$' -fuzz '^FuzzInspect$' -fuzztime 60s -fuzzminimizetime 2s ./netstack
func FuzzInspect(f *testing.F) {
	in4 := netip.MustParseAddr("198.51.100.30")
	in6 := netip.MustParseAddr("2001:db8:5b0::30")
	s4 := seg{src: scanner4, dst: in4, sport: 41000, dport: 80, seq: 100, flags: header.TCPFlagSyn, opts: mssOpt}
	s6 := seg{src: scanner6, dst: in6, sport: 41000, dport: 80, seq: 100, flags: header.TCPFlagSyn, opts: mssOpt}
	syn4, syn6 := s4.build(), s6.build()
	for _, c := range []struct {
		mode uint8
		pkt  []byte
	}{
		{0, syn4},
		{0, syn6},
		{0, irregularSYN(scanner4, in4, 1, 23, 9)},
		{0, seg{src: scanner4, dst: in4, sport: 1, dport: 80, flags: header.TCPFlagSyn | header.TCPFlagFin}.build()},
		{0, seg{src: scanner4, dst: in4, sport: 1, dport: 80, seq: 5, ack: 77, flags: header.TCPFlagAck}.build()},
		{0, withExtHeaders(syn6, extHBHPad, extDestPad)},
		{0, withExtHeaders(syn6, extRouting)},
		{0, withExtHeaders(syn6, extFragFirst)},
		{0, ipv4Fragment(syn4, 0, true)},
		{0, ipv4Fragment(syn4, 8, false)},
		{fuzzEstablish, seg{src: scanner4, dst: in4, sport: 41001, dport: 80, seq: 8, ack: 1,
			flags: header.TCPFlagAck | header.TCPFlagPsh, payload: []byte("GET / HTTP/1.0\r\n\r\n")}.build()},
		{fuzzEstablish, seg{src: scanner6, dst: in6, sport: 41002, dport: 81, seq: 8, flags: header.TCPFlagRst}.build()},
		{fuzzEstablish, seg{src: scanner4, dst: in4, sport: 41003, dport: 82, seq: 8, flags: header.TCPFlagSyn}.build()},
		{fuzzFixLengths | fuzzFixSum, syn4[:30]},
	} {
		f.Add(c.mode, c.pkt)
	}
	fz := newFuzzStack(f)
	f.Fuzz(func(t *testing.T, mode uint8, pkt []byte) {
		b := prepare(mode, pkt)
		if len(b) == 0 || len(b) > 1500 {
			return
		}
		if mode&fuzzEstablish != 0 {
			if tu, tcp, ok := tcpAt(b); ok && fz.st.inPrefixes(tu.local.Addr()) {
				// Few ports, so that the listeners stay few.
				tcp.SetDestinationPort(80 + tcp.DestinationPort()%4)
				fixTCPSum(b)
				tu.local = netip.AddrPortFrom(tu.local.Addr(), tcp.DestinationPort())
				fz.drain(t, nil)
				fz.establish(t, tu)
			}
		}
		fz.drain(t, nil)
		before := fz.st.Stats().Snapshot()
		fz.inject(b)
		after := fz.st.Stats().Snapshot()
		if in, counted := after.PacketsIn-before.PacketsIn,
			(after.SYNACKsSent+after.Handshakes+after.ToStack+after.Drops())-
				(before.SYNACKsSent+before.Handshakes+before.ToStack+before.Drops()); in != 1 || counted != 1 {
			t.Fatalf("one packet in: PacketsIn +%d, verdict counters +%d, want +1 and +1", in, counted)
		}
		tu, tcp, isTCP := tcpAt(b)
		isSYN := isTCP && tcp.Flags()&(header.TCPFlagSyn|header.TCPFlagAck|header.TCPFlagRst|header.TCPFlagFin) == header.TCPFlagSyn
		answers := 0
		fz.drain(t, func(out fuzzTuple, reply header.TCP) bool {
			if reply.Flags()&header.TCPFlagSyn == 0 {
				return false
			}
			if !isSYN || out != tu || reply.Flags() != header.TCPFlagSyn|header.TCPFlagAck || reply.AckNumber() != tcp.SequenceNumber()+1 {
				t.Fatalf("a %v segment to %s that answers no SYN (input: SYN %v from %s)", reply.Flags(), out.remote, isSYN, tu.remote)
			}
			if answers++; answers > 1 {
				t.Fatalf("%d SYN-ACKs for one SYN", answers)
			}
			return true
		})
		if n := fz.st.GVisorStats().TCP.ListenOverflowSynCookieSent.Value(); n != 0 {
			t.Fatalf("gVisor answered %d SYNs itself", n)
		}
	})
}
