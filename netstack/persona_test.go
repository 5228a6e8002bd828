package netstack

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/spoki-telescope/spoki/records"
)

// SYN option blocks the persona tests offer.
const synTSVal = 0x01020304

var (
	// synFull is a Linux client's SYN: MSS, SACK, TS, NOP, WS 7.
	synFull = []byte{2, 4, 0x05, 0xb4, 4, 2, 8, 10, 1, 2, 3, 4, 0, 0, 0, 0, 1, 3, 3, 7}
	// synNoTS is nmap's ECN probe: WS 10, NOP, MSS, SACK, NOP, NOP.
	synNoTS = []byte{3, 3, 10, 1, 2, 4, 0x05, 0xb4, 4, 2, 1, 1}
	// synTSOnly is nmap's third probe: WS 5, NOP, MSS 640, TS, no SACK.
	synTSOnly = []byte{3, 3, 5, 1, 2, 4, 0x02, 0x80, 8, 10, 1, 2, 3, 4, 0, 0, 0, 0}
	// synMSS is a masscan/zmap SYN: MSS only.
	synMSS = mssOpt
)

// personaWant is what a persona's SYN-ACK to each SYN must carry: its
// options in p0f's notation, independent of the encoder.
type personaWant struct {
	p                           *Persona
	full, noTS, tsOnly, mssOnly string
	winTS, win                  uint16
	ws                          uint8
	ttl                         uint8
	df                          bool
}

var personaWants = []personaWant{
	{PersonaPlain, "mss", "mss", "mss", "mss", 0xffff, 0xffff, 0, 64, true},
	{PersonaLinux, "mss,sok,ts,nop,ws", "mss,nop,nop,sok,nop,ws", "mss,nop,nop,ts,nop,ws", "mss", 65160, 64240, 7, 64, true},
	{PersonaWindows, "mss,nop,ws,sok,ts", "mss,nop,ws,nop,nop,sok", "mss,nop,ws,nop,nop,ts", "mss", 8192, 8192, 8, 128, true},
	{PersonaEmbedded, "mss", "mss", "mss", "mss", 5840, 5840, 0, 255, false},
}

func onePersona(p *Persona) func(*Config) {
	return func(c *Config) { c.Persona = PersonaLookup(p, nil) }
}

// decoded is a packet the stack wrote, decoded by gopacket.
type decoded struct {
	tcp  *layers.TCP
	ttl  uint8
	df   bool
	ipid uint16
	v6   bool
}

func decode(t *testing.T, b []byte) decoded {
	t.Helper()
	first := layers.LayerTypeIPv4
	if b[0]>>4 == 6 {
		first = layers.LayerTypeIPv6
	}
	pkt := gopacket.NewPacket(b, first, gopacket.Default)
	if e := pkt.ErrorLayer(); e != nil {
		t.Fatalf("gopacket: %v", e.Error())
	}
	var d decoded
	if ip, ok := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
		d.ttl, d.df, d.ipid = ip.TTL, ip.Flags&layers.IPv4DontFragment != 0, ip.Id
		if ^checksum.Checksum(b[:ip.IHL*4], 0) != 0 {
			t.Errorf("IPv4 header checksum does not verify")
		}
	} else if ip, ok := pkt.Layer(layers.LayerTypeIPv6).(*layers.IPv6); ok {
		d.ttl, d.v6 = ip.HopLimit, true
	}
	tcp, ok := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if !ok {
		t.Fatalf("no TCP layer in %x", b)
	}
	d.tcp = tcp
	l4 := b[header.IPv4MinimumSize:]
	src, dst := b[12:16], b[16:20]
	if d.v6 {
		l4, src, dst = b[header.IPv6MinimumSize:], b[8:24], b[24:40]
	}
	if !tcpChecksumValid(l4, src, dst) {
		t.Errorf("TCP checksum does not verify")
	}
	return d
}

// p0f writes a TCP option list in p0f's notation.
func p0f(opts []layers.TCPOption) string {
	var s []string
	for _, o := range opts {
		switch o.OptionType {
		case layers.TCPOptionKindMSS:
			s = append(s, "mss")
		case layers.TCPOptionKindNop:
			s = append(s, "nop")
		case layers.TCPOptionKindWindowScale:
			s = append(s, "ws")
		case layers.TCPOptionKindSACKPermitted:
			s = append(s, "sok")
		case layers.TCPOptionKindTimestamps:
			s = append(s, "ts")
		case layers.TCPOptionKindEndList:
			s = append(s, "eol")
		default:
			s = append(s, o.OptionType.String())
		}
	}
	return strings.Join(s, ",")
}

func option(opts []layers.TCPOption, kind layers.TCPOptionKind) (layers.TCPOption, bool) {
	for _, o := range opts {
		if o.OptionType == kind {
			return o, true
		}
	}
	return layers.TCPOption{}, false
}

// readSYNACK returns the next SYN-ACK the stack wrote.
func readSYNACK(t *testing.T, h *harness) []byte {
	t.Helper()
	for {
		b := h.read(time.Second)
		if b == nil {
			t.Fatal("no SYN-ACK")
		}
		if tcpOf(b).Flags() == header.TCPFlagSyn|header.TCPFlagAck {
			return b
		}
	}
}

// TestPersonaSYNACK checks, with gopacket, that each persona's SYN-ACK to
// each kind of SYN carries the persona's options in its order (only those
// the SYN offered), window, window scale, timestamps echo, TTL or hop
// limit, DF and IP ID behaviour, in IPv4 and IPv6.
func TestPersonaSYNACK(t *testing.T) {
	for _, w := range personaWants {
		t.Run(w.p.Name, func(t *testing.T) {
			h := newHarness(t, onePersona(w.p))
			for _, fam := range []struct {
				name     string
				src, dst netip.Addr
			}{{"ipv4", scanner4, netip.MustParseAddr("198.51.100.9")}, {"ipv6", scanner6, netip.MustParseAddr("2001:db8:5b0::9")}} {
				var ids []uint16
				for i, syn := range []struct {
					name string
					opts []byte
					want string
				}{{"full", synFull, w.full}, {"no-ts", synNoTS, w.noTS}, {"ts-only", synTSOnly, w.tsOnly}, {"mss-only", synMSS, w.mssOnly}} {
					h.inject(seg{src: fam.src, dst: fam.dst, sport: uint16(5000 + i), dport: 443, seq: 77,
						flags: header.TCPFlagSyn, opts: syn.opts}.build())
					d := decode(t, readSYNACK(t, h))
					where := fam.name + " " + syn.name
					if got := p0f(d.tcp.Options); got != syn.want {
						t.Errorf("%s: options %s, want %s", where, got, syn.want)
					}
					mss, ok := option(d.tcp.Options, layers.TCPOptionKindMSS)
					if !ok || binary.BigEndian.Uint16(mss.OptionData) != h.st.mss(fam.src.Is6()) {
						t.Errorf("%s: MSS option %v, want %d", where, mss, h.st.mss(fam.src.Is6()))
					}
					ts, hasTS := option(d.tcp.Options, layers.TCPOptionKindTimestamps)
					wantWin := w.win
					if hasTS {
						wantWin = w.winTS
						if ecr := binary.BigEndian.Uint32(ts.OptionData[4:]); ecr != synTSVal {
							t.Errorf("%s: TSecr %#x, want the SYN's TSval %#x", where, ecr, synTSVal)
						}
					}
					if d.tcp.Window != wantWin {
						t.Errorf("%s: window %d, want %d", where, d.tcp.Window, wantWin)
					}
					if ws, ok := option(d.tcp.Options, layers.TCPOptionKindWindowScale); ok && ws.OptionData[0] != w.ws {
						t.Errorf("%s: window scale %d, want %d", where, ws.OptionData[0], w.ws)
					}
					if d.ttl != w.ttl {
						t.Errorf("%s: TTL %d, want %d", where, d.ttl, w.ttl)
					}
					if !d.v6 {
						if d.df != w.df {
							t.Errorf("%s: DF %v, want %v", where, d.df, w.df)
						}
						ids = append(ids, d.ipid)
					}
				}
				for i := 1; i < len(ids); i++ {
					switch w.p.IPID {
					case IPIDZero:
						if ids[i] != 0 || ids[0] != 0 {
							t.Errorf("%s: IP IDs %v, want 0", fam.name, ids)
						}
					case IPIDIncrement:
						if ids[i] != ids[i-1]+1 {
							t.Errorf("%s: IP IDs %v, want consecutive", fam.name, ids)
						}
					}
				}
			}
		})
	}
}

// TestPersonaPerPrefix checks that PersonaLookup gives the most specific
// prefix's persona, and the default elsewhere.
func TestPersonaPerPrefix(t *testing.T) {
	look := PersonaLookup(PersonaLinux, []PersonaPrefix{
		{netip.MustParsePrefix("198.51.100.0/24"), PersonaWindows},
		{netip.MustParsePrefix("198.51.100.128/25"), PersonaEmbedded},
	})
	for a, want := range map[string]*Persona{
		"198.51.100.7": PersonaWindows, "198.51.100.200": PersonaEmbedded, "203.0.113.1": PersonaLinux,
	} {
		if got := look(netip.MustParseAddr(a)); got != want {
			t.Errorf("%s: persona %s, want %s", a, got.Name, want.Name)
		}
	}
	if got := PersonaLookup(nil, nil)(scanner4); got != PersonaPlain {
		t.Errorf("nil default: %s, want plain", got.Name)
	}
	if a := testing.AllocsPerRun(100, func() { look(scanner4) }); a != 0 {
		t.Errorf("lookup allocates %.1f", a)
	}
}

// TestPersonaHandshake completes a handshake with each persona's SYN-ACK
// (the cookie checks hold: gVisor accepts the ACK and the handler reads
// its payload), and checks that the front end's ACK and gVisor's own
// segments carry the persona's TTL, DF and window (scaled by the agreed
// window scale), that gVisor's timestamps continue from the SYN-ACK's, and
// that the rewritten segments' checksums verify.
func TestPersonaHandshake(t *testing.T) {
	const banner = "220 ready\r\n"
	for _, w := range personaWants {
		for _, fam := range []struct {
			name     string
			src, dst netip.Addr
		}{{"ipv4", scanner4, netip.MustParseAddr("198.51.100.30")}, {"ipv6", scanner6, netip.MustParseAddr("2001:db8:5b0::30")}} {
			for _, synOpts := range []struct {
				name string
				opts []byte
			}{{"full", synFull}, {"no-ts", synNoTS}} {
				t.Run(w.p.Name+"/"+fam.name+"/"+synOpts.name, func(t *testing.T) {
					got := make(chan served, 1)
					h := newHarness(t, func(c *Config) {
						c.Persona = PersonaLookup(w.p, nil)
						c.Handle = func(conn net.Conn, f records.Flow) {
							conn.Write([]byte(banner))
							buf := make([]byte, 512)
							conn.SetReadDeadline(time.Now().Add(5 * time.Second))
							n, _ := conn.Read(buf)
							got <- served{flow: f, first: append([]byte(nil), buf[:n]...)}
							time.Sleep(200 * time.Millisecond)
						}
					})
					const isn = 4242
					h.inject(seg{src: fam.src, dst: fam.dst, sport: 40001, dport: 21, seq: isn,
						flags: header.TCPFlagSyn, opts: synOpts.opts}.build())
					sa := decode(t, readSYNACK(t, h))
					cookie := sa.tcp.Seq
					_, scaled := option(sa.tcp.Options, layers.TCPOptionKindWindowScale)
					tsOpt, hasTS := option(sa.tcp.Options, layers.TCPOptionKindTimestamps)
					var synTS uint32
					var ackOpts []byte
					if hasTS {
						synTS = binary.BigEndian.Uint32(tsOpt.OptionData)
						ackOpts = []byte{1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 0}
						binary.BigEndian.PutUint32(ackOpts[8:], synTS)
					}
					h.inject(seg{src: fam.src, dst: fam.dst, sport: 40001, dport: 21, seq: isn + 1, ack: cookie + 1,
						flags: header.TCPFlagAck | header.TCPFlagPsh, opts: ackOpts, payload: []byte("USER anonymous\r\n")}.build())
					select {
					case s := <-got:
						if string(s.first) != "USER anonymous\r\n" {
							t.Errorf("handler read %q", s.first)
						}
					case <-time.After(5 * time.Second):
						t.Fatal("the handshake ACK was not accepted: no connection")
					}
					var fe, data *decoded
					for fe == nil || data == nil {
						b := h.read(2 * time.Second)
						if b == nil {
							t.Fatalf("missing segments: front end's ACK %v, gVisor's banner %v", fe != nil, data != nil)
						}
						d := decode(t, b)
						switch {
						case fe == nil && len(d.tcp.Payload) == 0 && d.tcp.ACK && !d.tcp.RST:
							fe = &d
						case len(d.tcp.Payload) > 0:
							data = &d
						}
					}
					shift := uint8(0)
					if scaled {
						shift = w.ws
					}
					wantWin := scaleWindow(w.p.synWindow(hasTS), shift)
					if fe.tcp.Window != wantWin {
						t.Errorf("front end's ACK: window %d, want %d", fe.tcp.Window, wantWin)
					}
					for _, d := range []*decoded{fe, data} {
						if d.ttl != w.ttl || (!d.v6 && d.df != w.df) {
							t.Errorf("TTL %d DF %v, want %d %v", d.ttl, d.df, w.ttl, w.df)
						}
						_, ts := option(d.tcp.Options, layers.TCPOptionKindTimestamps)
						if ts != hasTS {
							t.Errorf("timestamps on a segment: %v, want %v", ts, hasTS)
						}
					}
					if w.p != PersonaPlain && !data.v6 && w.p.IPID == IPIDZero && data.ipid != 0 {
						t.Errorf("gVisor's IP ID %d, want 0", data.ipid)
					}
					// gVisor's window: at most 64 KiB unscaled; read
					// through the agreed scale it must stay about that.
					if got := uint32(data.tcp.Window) << shift; got > 0xffff+1<<shift || got == 0 {
						t.Errorf("gVisor's window field %d << %d = %d: not gVisor's window", data.tcp.Window, shift, got)
					}
					if scaled && data.tcp.Window > scaleWindow(0xffff, shift) {
						t.Errorf("gVisor's window %d not scaled by %d", data.tcp.Window, shift)
					}
					if hasTS {
						ts, _ := option(data.tcp.Options, layers.TCPOptionKindTimestamps)
						later := binary.BigEndian.Uint32(ts.OptionData)
						if d := int32(later - synTS); d < 0 || d > 5000 {
							t.Errorf("gVisor's TSval %d is %d ms after the SYN-ACK's %d: PAWS would drop it", later, d, synTS)
						}
					}
				})
			}
		}
	}
}

// TestCookieDataWindowScale checks the window scale bit of the cookie's
// data: it is set exactly when window scale is announced, and the MSS index
// never grows.
func TestCookieDataWindowScale(t *testing.T) {
	for _, mss := range []uint16{0, 536, 1000, 1300, 1400, 1440, 1452, 1460, 9000} {
		for _, ws := range []bool{false, true} {
			plain, _ := encodeCookieData(mss, false, ws)
			if plain != encodeMSS(mss) {
				t.Errorf("mss %d without scaling: %d, want gVisor's %d", mss, plain, encodeMSS(mss))
			}
			d, ok := encodeCookieData(mss, true, ws)
			if d > encodeMSS(mss) || int(d) >= len(mssTable) {
				t.Errorf("mss %d ws %v: index %d above %d", mss, ws, d, encodeMSS(mss))
			}
			if ok && (d&1 == 1) != ws {
				t.Errorf("mss %d ws %v: index %d has the wrong bit", mss, ws, d)
			}
			if !ok && (!ws || encodeMSS(mss) != 0) {
				t.Errorf("mss %d ws %v: refused", mss, ws)
			}
		}
	}
}

// BenchmarkSYNPersona is BenchmarkSYN with each persona answering a Linux
// client's SYN (MSS, SACK, TS, WS): the cost of the options parsed and
// written, and of the timestamp's SHA-256. It fails if a SYN allocates.
func BenchmarkSYNPersona(b *testing.B) {
	for _, p := range []*Persona{PersonaPlain, PersonaLinux, PersonaWindows, PersonaEmbedded} {
		b.Run(p.Name, func(b *testing.B) {
			s := synStack(b)
			s.cfg.Persona = PersonaLookup(p, nil)
			benchSYN(b, s, testSYN(synFull))
		})
	}
}

// TestPersonaTimestampSecretTampered is the negative control of the
// timestamp check of TestPersonaHandshake: with one bit of the front end's
// copy of gVisor's timestamp secret flipped, gVisor's TSvals no longer go
// on from the SYN-ACK's (they are off by a random 32-bit offset; the
// chance that it falls within 5 s is about 1 in a million).
func TestPersonaTimestampSecretTampered(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.Persona = PersonaLookup(PersonaLinux, nil)
		c.Handle = func(conn net.Conn, f records.Flow) {
			conn.Write([]byte("hi\r\n"))
			time.Sleep(200 * time.Millisecond)
		}
	})
	h.st.tsSecret[0] ^= 1
	dst := netip.MustParseAddr("198.51.100.31")
	h.inject(seg{src: scanner4, dst: dst, sport: 40002, dport: 21, seq: 9, flags: header.TCPFlagSyn, opts: synFull}.build())
	sa := decode(t, readSYNACK(t, h))
	ts, ok := option(sa.tcp.Options, layers.TCPOptionKindTimestamps)
	if !ok {
		t.Fatal("no timestamps in the SYN-ACK")
	}
	synTS := binary.BigEndian.Uint32(ts.OptionData)
	ackOpts := []byte{1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(ackOpts[8:], synTS)
	h.inject(seg{src: scanner4, dst: dst, sport: 40002, dport: 21, seq: 10, ack: sa.tcp.Seq + 1,
		flags: header.TCPFlagAck, opts: ackOpts}.build())
	for {
		b := h.read(2 * time.Second)
		if b == nil {
			t.Fatal("no data segment from gVisor")
		}
		d := decode(t, b)
		if len(d.tcp.Payload) == 0 {
			continue
		}
		ts, _ := option(d.tcp.Options, layers.TCPOptionKindTimestamps)
		later := binary.BigEndian.Uint32(ts.OptionData)
		if diff := int32(later - synTS); diff >= 0 && diff <= 5000 {
			t.Errorf("gVisor's TSval %d within %d ms of the SYN-ACK's with a tampered secret: the check cannot fail", later, diff)
		}
		return
	}
}
