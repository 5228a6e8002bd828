package scenarios

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Defaults of ReplayConfig.
const (
	// DefaultMaxGap caps the pause between two replayed packets.
	DefaultMaxGap = time.Second
	// DefaultMaxPackets caps the packets one replay sends.
	DefaultMaxPackets = 10000
	// replaySYNACKWait is how long a connection waits for the telescope's
	// SYN-ACK before its first ACK, whose ack number depends on it.
	replaySYNACKWait = 2 * time.Second
)

// ReplayConfig says how to replay a capture. Zero values mean defaults.
type ReplayConfig struct {
	// Src4 and Src6 replace the client addresses (as a script's src
	// lines do); the wire must have been opened with them.
	Src4, Src6 netip.Addr
	// Prefixes are the telescope's prefixes: each destination is moved
	// into the first prefix of its family, keeping its host bits.
	Prefixes []netip.Prefix
	// MaxGap caps the pauses of the capture; MaxPackets the packets sent.
	MaxGap     time.Duration
	MaxPackets int
}

// replayConn is one TCP connection of the capture.
type replayConn struct {
	n                   int
	origClient, origSrv netip.AddrPort
	client, server      netip.AddrPort
	origSrvISN          uint32
	haveOrigISN         bool
	telISN              uint32
	haveTelISN          bool
	sent                int
	waited              bool
}

// Replay sends the client side of a pcap or pcapng capture to the
// telescope: every TCP connection that starts with a client SYN in the
// capture is replayed from the configured source, its destination moved
// into the prefix, its acknowledgement numbers shifted from the captured
// server's ISN to the telescope's cookie, its pauses kept up to MaxGap.
// Server packets are not sent. It prints one line per connection (ok when
// the telescope answered its SYN) and returns ErrFailed if one was not
// answered.
func (r *Runner) Replay(ctx context.Context, rd io.Reader, cfg ReplayConfig) error {
	if cfg.MaxGap <= 0 {
		cfg.MaxGap = DefaultMaxGap
	}
	if cfg.MaxPackets <= 0 {
		cfg.MaxPackets = DefaultMaxPackets
	}
	r.reset()
	next, err := packetSource(rd)
	if err != nil {
		return err
	}
	type key struct{ a, b netip.AddrPort }
	conns := map[key]*replayConn{}
	var order []*replayConn
	var lastTS time.Time
	skipped, sent := 0, 0
	for {
		data, ci, err := next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("scenarios: replay: %w", err)
		}
		p, ok := data.decode()
		if !ok {
			continue
		}
		c := conns[key{p.Src, p.Dst}]
		fromClient := c != nil && c.origClient == p.Src
		if c == nil {
			c = conns[key{p.Dst, p.Src}]
		}
		if c == nil {
			if p.Flags&(FlagSYN|FlagACK) != FlagSYN {
				skipped++
				continue
			}
			c, err = r.newReplayConn(len(order)+1, p, cfg)
			if err != nil {
				fmt.Fprintf(r.out, "  skip %v\n", err)
				skipped++
				continue
			}
			conns[key{p.Src, p.Dst}] = c
			order = append(order, c)
			fromClient = true
		}
		if !fromClient {
			if p.Flags&(FlagSYN|FlagACK) == FlagSYN|FlagACK && !c.haveOrigISN {
				c.origSrvISN, c.haveOrigISN = p.Seq, true
			}
			continue
		}
		if sent >= cfg.MaxPackets {
			fmt.Fprintf(r.out, "  stop: %d packets sent, the cap\n", sent)
			break
		}
		if !lastTS.IsZero() {
			gap := min(max(ci.Sub(lastTS), 0), cfg.MaxGap)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(gap):
			}
		}
		lastTS = ci
		if err := r.replayOne(ctx, c, p); err != nil {
			return err
		}
		sent++
	}
	failed := 0
	for _, c := range order {
		status := "ok  "
		what := fmt.Sprintf("SYN-ACK %d", c.telISN)
		if !r.synAckSeen(c) {
			status, what = "FAIL", "no SYN-ACK"
			failed++
		}
		fmt.Fprintf(r.out, "  %s conn %d %s > %s (captured %s > %s): %s, %d packets sent\n",
			status, c.n, c.client, c.server, c.origClient, c.origSrv, what, c.sent)
	}
	fmt.Fprintf(r.out, "--- replay: %d connections, %d packets sent, %d packets skipped (no client SYN), %d connections failed\n",
		len(order), sent, skipped, failed)
	if failed > 0 {
		return fmt.Errorf("%w: %d of %d connections got no SYN-ACK", ErrFailed, failed, len(order))
	}
	return nil
}

// newReplayConn maps a captured client SYN to the telescope.
func (r *Runner) newReplayConn(n int, syn Packet, cfg ReplayConfig) (*replayConn, error) {
	src := cfg.Src4
	if syn.Dst.Addr().Is6() {
		src = cfg.Src6
	}
	if !src.IsValid() {
		return nil, fmt.Errorf("connection %s > %s: no source address of its family", syn.Src, syn.Dst)
	}
	var prefix netip.Prefix
	for _, p := range cfg.Prefixes {
		if p.Addr().Is4() == syn.Dst.Addr().Is4() {
			prefix = p.Masked()
			break
		}
	}
	if !prefix.IsValid() {
		return nil, fmt.Errorf("connection %s > %s: no telescope prefix of its family", syn.Src, syn.Dst)
	}
	return &replayConn{
		n: n, origClient: syn.Src, origSrv: syn.Dst,
		client: netip.AddrPortFrom(src, syn.Src.Port()),
		server: netip.AddrPortFrom(intoPrefix(prefix, syn.Dst.Addr()), syn.Dst.Port()),
	}, nil
}

// intoPrefix keeps a's host bits under prefix p.
func intoPrefix(p netip.Prefix, a netip.Addr) netip.Addr {
	pb, ab := p.Addr().As16(), a.As16()
	off := 0
	if p.Addr().Is4() {
		off = 96
	}
	bits := p.Bits() + off
	var out [16]byte
	for i := range out {
		var mask byte
		switch {
		case bits >= (i+1)*8:
			mask = 0xff
		case bits > i*8:
			mask = byte(0xff << (8 - (bits - i*8)))
		}
		out[i] = pb[i]&mask | ab[i]&^mask
	}
	res := netip.AddrFrom16(out)
	if p.Addr().Is4() {
		return res.Unmap()
	}
	return res
}

// replayOne rewrites and sends one client packet.
func (r *Runner) replayOne(ctx context.Context, c *replayConn, p Packet) error {
	out := p
	out.Src, out.Dst = c.client, c.server
	if p.Flags&FlagACK != 0 {
		if !c.waited {
			c.waited = true
			deadline := time.Now().Add(replaySYNACKWait)
			for !r.synAckSeen(c) && time.Now().Before(deadline) && ctx.Err() == nil {
				time.Sleep(20 * time.Millisecond)
			}
		}
		if r.synAckSeen(c) {
			base := c.origSrvISN
			if !c.haveOrigISN {
				base = p.Ack - 1 // the capture lacks the SYN-ACK: the first ACK acks ISN+1
				c.origSrvISN, c.haveOrigISN = base, true
			}
			out.Ack = p.Ack - base + c.telISN
		}
	}
	b, err := out.Marshal()
	if err != nil {
		return err
	}
	if err := r.cfg.Wire.WritePacket(b); err != nil {
		return fmt.Errorf("scenarios: replay: %w", err)
	}
	c.sent++
	return nil
}

// synAckSeen looks for the telescope's SYN-ACK of c and records its ISN.
func (r *Runner) synAckSeen(c *replayConn) bool {
	if c.haveTelISN {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range r.pkts {
		if !k.outgoing && k.pkt.Src == c.server && k.pkt.Dst == c.client && k.pkt.Flags&(FlagSYN|FlagACK) == FlagSYN|FlagACK {
			c.telISN, c.haveTelISN = k.pkt.Seq, true
			return true
		}
	}
	return false
}

// framed is one captured frame with its link type.
type framed struct {
	data []byte
	link layers.LinkType
}

// decode extracts the TCP segment of the frame.
func (f framed) decode() (Packet, bool) {
	return decodeFrom(gopacket.NewPacket(f.data, f.link, gopacket.DecodeOptions{Lazy: true}))
}

// maxPcapRecord caps one record of a capture: a longer one fails the
// replay (the readers grow a record's buffer as its bytes arrive, so a
// lying length costs nothing before this check).
const maxPcapRecord = 256 << 10

// pcapngMagic starts a pcapng file (its section header block type, a
// palindrome, so either byte order).
var pcapngMagic = []byte{0x0a, 0x0d, 0x0d, 0x0a}

// packetSource reads a pcap (either byte order, micro- or nanosecond
// timestamps) or a pcapng stream, told apart by the first four bytes,
// with gopacket's pcapgo. A pcapng file may mix link types across its
// interfaces: each frame is decoded as its interface's.
func packetSource(rd io.Reader) (func() (framed, time.Time, error), error) {
	br := bufio.NewReader(rd)
	magic, err := br.Peek(4)
	if err != nil {
		return nil, fmt.Errorf("scenarios: replay: read capture header: %w", err)
	}
	if bytes.Equal(magic, pcapngMagic) {
		ng, err := pcapgo.NewNgReader(br, pcapgo.NgReaderOptions{WantMixedLinkType: true, SkipUnknownVersion: true})
		if err != nil {
			return nil, fmt.Errorf("scenarios: replay: pcapng: %w", err)
		}
		return func() (framed, time.Time, error) {
			data, ci, err := ng.ReadPacketData()
			if err != nil {
				return framed{}, time.Time{}, err // io.EOF at the end
			}
			link := ng.LinkType()
			if len(ci.AncillaryData) > 0 {
				if l, ok := ci.AncillaryData[0].(layers.LinkType); ok {
					link = l
				}
			}
			return checkRecord(data, link, ci)
		}, nil
	}
	pr, err := pcapgo.NewReader(br)
	if err != nil {
		return nil, fmt.Errorf("scenarios: replay: not a pcap or pcapng file (magic %x): %w", magic, err)
	}
	link := pr.LinkType()
	return func() (framed, time.Time, error) {
		data, ci, err := pr.ReadPacketData()
		if err != nil {
			return framed{}, time.Time{}, err // io.EOF at a record boundary
		}
		return checkRecord(data, link, ci)
	}, nil
}

// checkRecord bounds one record and returns it as a frame.
func checkRecord(data []byte, link layers.LinkType, ci gopacket.CaptureInfo) (framed, time.Time, error) {
	if len(data) > maxPcapRecord {
		return framed{}, time.Time{}, fmt.Errorf("record of %d bytes, more than %d", len(data), maxPcapRecord)
	}
	return framed{data, link}, ci.Timestamp, nil
}
