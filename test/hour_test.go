package test

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/spoki-telescope/spoki/netstack"
	"github.com/spoki-telescope/spoki/records"
	"github.com/spoki-telescope/spoki/records/filesink"
)

// hourShiftSink moves every record's time by off before the file writer
// sees it: the test's clock. The files are hourly by record time, so a
// session that starts just before a (shifted) full hour crosses into the
// next hour's files without the test waiting for one.
type hourShiftSink struct {
	w   *filesink.Writer
	off time.Duration
}

func (s hourShiftSink) Packet(p records.Packet) { p.Time = p.Time.Add(s.off); s.w.Packet(&p) }
func (s hourShiftSink) Reply(r records.Reply)   { r.Time = r.Time.Add(s.off); s.w.Reply(&r) }

// hourSegment builds one IPv4 TCP segment from the scanner to the telescope.
func hourSegment(t *testing.T, src, dst netip.Addr, sport, dport uint16, ttl uint8, ipid uint16, seq, ack uint32, syn bool, opts []layers.TCPOption, payload string) []byte {
	t.Helper()
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: ttl, Id: ipid, Protocol: layers.IPProtocolTCP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: seq, Ack: ack,
		SYN: syn, ACK: !syn, PSH: payload != "", Window: 8192, Options: opts}
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, tcp, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestSessionCrossesTheHour runs test-spoki's two-phase exchange through an
// in-memory netstack whose records are stamped by a clock set 0.7s before
// a full hour, and a handler that answers only after the hour has turned:
// the session's later segments land in the next hour's files. The
// handshake ACK's reaction must still sit in the ACK's own hour (it is
// written when the ACK arrives), the invariant must hold over both hours,
// and `spoki assemble --flush-at-eof` over them must find the two-phase
// scan with its payload.
func TestSessionCrossesTheHour(t *testing.T) {
	labSpokiBin(t) // assemble runs at the end: fail early without it
	dir := t.TempDir()
	w, err := filesink.New(filesink.Config{Dir: dir, Tag: e2eTag})
	if err != nil {
		t.Fatal(err)
	}
	hour := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	boundary := hour.Add(time.Hour)
	sink := hourShiftSink{w: w, off: boundary.Add(-700 * time.Millisecond).Sub(time.Now())}

	served := make(chan struct{})
	ch := channel.New(256, 1500, "")
	st, err := netstack.New(netstack.Config{
		Link:     ch,
		Prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")},
		Sink:     sink,
		Handle: func(c net.Conn, f records.Flow) {
			defer close(served)
			buf := make([]byte, 512)
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, _ = c.Read(buf)
			// Answer after the (shifted) hour has turned, then reset.
			time.Sleep(1500 * time.Millisecond)
			_, _ = c.Write([]byte("late\r\n"))
			_ = c.(*netstack.Conn).Reset()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	var closeOnce sync.Once
	closeAll := func() {
		closeOnce.Do(func() {
			st.Close()
			if err := w.Close(); err != nil {
				t.Errorf("filesink close: %v", err)
			}
		})
	}
	t.Cleanup(closeAll)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	inject := func(b []byte) {
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
		ch.InjectInbound(header.IPv4ProtocolNumber, pkt)
		pkt.DecRef()
	}
	// synAck returns the seq of the next SYN-ACK the telescope writes.
	synAck := func() uint32 {
		t.Helper()
		for {
			pkt := ch.ReadContext(ctx)
			if pkt == nil {
				t.Fatal("no SYN-ACK")
			}
			v := pkt.ToView()
			b := append([]byte(nil), v.AsSlice()...)
			v.Release()
			pkt.DecRef()
			tc := header.TCP(b[header.IPv4(b).HeaderLength():])
			if tc.Flags() == header.TCPFlagSyn|header.TCPFlagAck {
				return tc.SequenceNumber()
			}
		}
	}
	src, dst := netip.MustParseAddr("192.0.2.100"), netip.MustParseAddr("198.51.100.42")
	inject(hourSegment(t, src, dst, 22734, 42, 231, 61602, 1298127, 0, true, nil, ""))
	synAck()
	inject(hourSegment(t, src, dst, 41725, 42, 64, 20202, 1298130, 0, true,
		[]layers.TCPOption{{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}}}, ""))
	r := synAck()
	inject(hourSegment(t, src, dst, 41725, 42, 64, 11727, 1298131, r+1, false, nil, endWget))
	// Keep reading what the telescope writes, as a client would.
	go func() {
		for {
			pkt := ch.ReadContext(ctx)
			if pkt == nil {
				return
			}
			pkt.DecRef()
		}
	}()
	select {
	case <-served:
	case <-ctx.Done():
		t.Fatal("the handler did not finish")
	}
	// gVisor writes the reset as the handler returns; give it a moment.
	time.Sleep(200 * time.Millisecond)
	closeAll()
	cancel()

	raw, replies := e2eReadRawTCP(t, dir), e2eReadReplies(t, dir)
	endCheckInvariant(t, raw, replies)
	ack := endAckRow(t, raw, dst, endRegularPort)
	if !ack.Probed || ack.Method != records.MethodACK {
		t.Fatalf("ACK row: probed=%t method %q, want tcp-ack", ack.Probed, ack.Method)
	}
	if ack.Time.After(boundary) {
		t.Fatalf("the ACK is stamped %v, after the boundary %v: the clock is off", ack.Time, boundary)
	}
	// The session crossed: its later segments are in the next hour, the
	// ACK's reaction in the ACK's hour.
	var late, react int
	for _, r := range replies {
		if r.UserID != ack.UserID {
			continue
		}
		switch {
		case r.Method == records.MethodACK && r.Time.Before(boundary):
			react++
		case (r.Method == records.MethodSession || r.Method == records.MethodSessionRST) && !r.Time.Before(boundary):
			late++
		}
	}
	if react != 1 || late == 0 {
		t.Errorf("reply rows of userid %d: %d tcp-ack before %v (want 1), %d session rows after it (want some)", ack.UserID, react, boundary, late)
	}
	for _, h := range []time.Time{hour, boundary} {
		name := filepath.Join(dir, h.Format("2006-01-02.15:00:00")+"."+e2eTag+".spoki.tcp.scamper."+strconv.FormatInt(h.Unix(), 10)+".csv")
		if _, err := os.Stat(name); err != nil {
			t.Errorf("reply log of hour %s: %v", h.Format("15:04"), err)
		}
	}
	endCheckTwoPhase(t, endAssemble(t, dir, hour, dst), endWget, records.MethodACK)
}
