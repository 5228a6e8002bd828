package netstack

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/spoki-telescope/spoki/records"
)

// TestCookieTamperedBits checks that the cheap cookie breaks under any
// change of a bit above the two data bits (which carry the MSS index and so,
// as in gVisor's format, leave four cookies of a SYN valid).
func TestCookieTamperedBits(t *testing.T) {
	j, _ := testJar(t)
	for _, fam := range []struct {
		name          string
		local, remote []byte
	}{
		{"ipv4", cLocal, cRemote},
		{"ipv6", netip.MustParseAddr("2001:db8:5b0::7").AsSlice(), netip.MustParseAddr("2001:db8:1::2").AsSlice()},
	} {
		t.Run(fam.name, func(t *testing.T) {
			for data := range uint32(len(mssTable)) {
				const seq = 0xfffffff0 // the sum wraps
				cookie := j.create(fam.local, fam.remote, 443, 50000, seq, data)
				var got uint32
				if !j.check(fam.local, fam.remote, 443, 50000, cookie, seq, &got) || got != data {
					t.Fatalf("data %d: check = %v, data %d", data, j.valid(fam.local, fam.remote, 443, 50000, cookie, seq), got)
				}
				for bit := 2; bit < 32; bit++ {
					if j.valid(fam.local, fam.remote, 443, 50000, cookie^1<<bit, seq) {
						t.Errorf("data %d: cookie with bit %d flipped is valid", data, bit)
					}
				}
			}
		})
	}
}

// TestCookieKeyed checks that the cookie depends on the jar's SipHash key:
// another jar (another key, the same clock) takes none of this jar's
// cookies, and the cookie is not gVisor's.
func TestCookieKeyed(t *testing.T) {
	j, _ := testJar(t)
	other := *j
	other.key[1] ^= 1 << 63
	r := rand.New(rand.NewPCG(3, 4))
	for range 1000 {
		seq, rport := r.Uint32(), uint16(r.Uint32())
		cookie := j.create(cLocal, cRemote, 80, rport, seq, 3)
		if !j.valid(cLocal, cRemote, 80, rport, cookie, seq) {
			t.Fatal("own cookie rejected")
		}
		if other.valid(cLocal, cRemote, 80, rport, cookie, seq) {
			t.Fatal("cookie valid under another key")
		}
		if cookie == j.gvisorCookie(cLocal, cRemote, 80, rport, seq, 3, j.timeStamp()) {
			t.Fatal("the front end's cookie is gVisor's")
		}
	}
}

// TestCookieTranslation checks translate against gVisor's formula (our copy;
// TestGVisorCookieCompat and TestTranslatedConnection pin it to gVisor's
// listener): with the client's ISN moved by delta, the front end's cookie
// is the one gVisor mints, with the same data, and so gVisor's check
// recovers the data. Cookies of every live age translate, and the delta is
// the same for every segment of the handshake only through the entry that
// keeps it (it depends on the tick).
func TestCookieTranslation(t *testing.T) {
	j, clock := testJar(t)
	r := rand.New(rand.NewPCG(5, 6))
	for i := range 2000 {
		local, remote := cLocal, cRemote
		if i%2 == 1 {
			local, remote = netip.MustParseAddr("2001:db8:5b0::7").AsSlice(), netip.MustParseAddr("2001:db8:1::2").AsSlice()
		}
		lport, rport, isn, data := uint16(r.Uint32()), uint16(r.Uint32()), r.Uint32(), r.Uint32N(uint32(len(mssTable)))
		cookie := j.create(local, remote, lport, rport, isn, data)
		clock.Advance(time.Duration(r.Int64N(int64(128 * time.Second))))
		var got uint32
		if !j.check(local, remote, lport, rport, cookie, isn, &got) || got != data {
			t.Fatalf("cookie rejected or data %d != %d", got, data)
		}
		delta := j.translate(local, remote, lport, rport, cookie, isn, data)
		ts := j.timeStamp()
		if g := j.gvisorCookie(local, remote, lport, rport, isn+delta, data, ts); g != cookie {
			t.Fatalf("gVisor's cookie for irs+delta = %#x, want the front end's %#x", g, cookie)
		}
		// gVisor's isCookieValid, step by step.
		v := cookie - j.gvisorHash(local, remote, lport, rport, 0, 0) - (isn + delta)
		if v>>cookieTSOffset != ts {
			t.Fatalf("gVisor reads tick %d, want %d", v>>cookieTSOffset, ts)
		}
		if d := (v - j.gvisorHash(local, remote, lport, rport, ts, 1)) & cookieHashMask; d != data {
			t.Fatalf("gVisor reads data %d, want %d", d, data)
		}
	}
}

// TestShiftSeqChecksum checks the incremental checksum updates of the
// translation against a full recomputation, across carries and wraps.
func TestShiftSeqChecksum(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	src, dst := scanner4.AsSlice(), netip.MustParseAddr("198.51.100.9").AsSlice()
	for range 5000 {
		s := seg{src: scanner4, dst: netip.AddrFrom4([4]byte(dst)), sport: uint16(r.Uint32()), dport: 80,
			seq: r.Uint32(), ack: r.Uint32(), flags: header.TCPFlagAck | header.TCPFlagPsh, payload: make([]byte, r.IntN(40))}
		for i := range s.payload {
			s.payload[i] = byte(r.Uint32())
		}
		b := s.build()
		l4 := b[header.IPv4MinimumSize:]
		delta := r.Uint32()
		switch r.IntN(4) {
		case 0:
			delta = 0
		case 1:
			delta = -s.seq // to zero
		}
		shiftSeq(l4, delta)
		if got := header.TCP(l4).SequenceNumber(); got != s.seq+delta {
			t.Fatalf("seq %d, want %d", got, s.seq+delta)
		}
		if !tcpChecksumValid(l4, src, dst) {
			t.Fatalf("checksum wrong after shiftSeq(%d)", delta)
		}
		unshiftAck(header.TCP(l4), delta)
		if got := header.TCP(l4).AckNumber(); got != s.ack-delta {
			t.Fatalf("ack %d, want %d", got, s.ack-delta)
		}
		if !tcpChecksumValid(l4, src, dst) {
			t.Fatalf("checksum wrong after unshiftAck(%d)", delta)
		}
	}
	// A segment without ACK keeps its acknowledgement field.
	b := seg{src: scanner4, dst: netip.AddrFrom4([4]byte(dst)), sport: 1, dport: 2, seq: 3, ack: 4, flags: header.TCPFlagRst}.build()
	unshiftAck(header.TCP(b[header.IPv4MinimumSize:]), 99)
	if got := header.TCP(b[header.IPv4MinimumSize:]).AckNumber(); got != 4 {
		t.Errorf("RST without ACK: ack %d, want 4", got)
	}
}

// client is the peer's side of one connection through the harness: it
// sends segments in its own sequence space and checks that everything
// gVisor sends on the connection is in it too.
type client struct {
	t            *testing.T
	h            *harness
	src, dst     netip.Addr
	sport, dport uint16
	nxt, una     uint32 // our next sequence number; the peer's next, acknowledged
	cookie       uint32
	got          bytes.Buffer // the bytes gVisor sent, in order
	fin          bool         // gVisor's FIN arrived
}

func (c *client) send(flags header.TCPFlags, payload string) {
	c.h.inject(seg{src: c.src, dst: c.dst, sport: c.sport, dport: c.dport, seq: c.nxt, ack: c.una,
		flags: flags, payload: []byte(payload)}.build())
	c.nxt += uint32(len(payload))
	if flags&header.TCPFlagFin != 0 {
		c.nxt++
	}
}

// readUntil reads the stack's segments to the client until done holds,
// checking each: a valid checksum, an acknowledgement in the client's
// space (never beyond what it sent), gVisor's sequence numbers continuing
// from the cookie. In-order data and FIN are taken and acknowledged.
func (c *client) readUntil(what string, done func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !done() {
		b := c.h.read(time.Until(deadline))
		if b == nil {
			c.t.Fatalf("waiting for %s: nothing more (have %q, fin %v)", what, c.got.String(), c.fin)
		}
		d := decode(c.t, b)
		th := d.tcp
		if th.RST {
			c.t.Fatalf("waiting for %s: RST seq %d ack %d", what, th.Seq, th.Ack)
		}
		if !th.ACK {
			c.t.Fatalf("segment without ACK: %+v", th)
		}
		if d := int32(th.Seq - (c.cookie + 1)); d < 0 || d > 1<<20 {
			c.t.Fatalf("segment seq %d: not from the cookie %d on", th.Seq, c.cookie)
		}
		if d := int32(c.nxt - th.Ack); d < 0 || d > 1<<20 {
			c.t.Fatalf("ack %d not in the client's space (next %d): untranslated", th.Ack, c.nxt)
		}
		if th.Seq == c.una && (len(th.Payload) > 0 || th.FIN) {
			c.got.Write(th.Payload)
			c.una += uint32(len(th.Payload))
			if th.FIN {
				c.una++
				c.fin = true
			}
			c.send(header.TCPFlagAck, "")
		}
	}
}

// TestTranslatedConnection runs a whole connection through the front end
// and gVisor's real listener and endpoint: the handshake ACK with data,
// data both ways, the client's FIN, the handler's answer to it and its FIN.
// Each side must read exactly the other's bytes, every segment gVisor
// sends must acknowledge in the client's sequence space, and the raw rows
// must hold the sequence numbers the client sent.
func TestTranslatedConnection(t *testing.T) {
	for _, fam := range []struct {
		name     string
		src, dst netip.Addr
		p        *Persona
	}{
		{"ipv4", scanner4, netip.MustParseAddr("198.51.100.40"), nil},
		{"ipv6", scanner6, netip.MustParseAddr("2001:db8:5b0::40"), nil},
		{"ipv4-linux", scanner4, netip.MustParseAddr("198.51.100.41"), PersonaLinux},
	} {
		t.Run(fam.name, func(t *testing.T) {
			type result struct {
				flow     records.Flow
				read     string
				err      error
				finished bool
			}
			res := make(chan result, 1)
			h := newHarness(t, func(c *Config) {
				if fam.p != nil {
					c.Persona = PersonaLookup(fam.p, nil)
				}
				c.Handle = func(conn net.Conn, f records.Flow) {
					conn.SetDeadline(time.Now().Add(5 * time.Second))
					var r result
					r.flow = f
					buf := make([]byte, len("hello"))
					if _, r.err = io.ReadFull(conn, buf); r.err == nil {
						if _, r.err = conn.Write([]byte("world")); r.err == nil {
							var rest []byte
							rest, r.err = io.ReadAll(conn) // to the client's FIN
							r.read = string(buf) + string(rest)
							if r.err == nil {
								_, r.err = conn.Write([]byte("bye"))
								r.finished = true
							}
						}
					}
					conn.Close()
					res <- r
				}
			})
			const isn uint32 = 0xfffffffa // the client's sequence numbers wrap
			h.inject(seg{src: fam.src, dst: fam.dst, sport: 40100, dport: 8080, seq: isn,
				flags: header.TCPFlagSyn, opts: mssOpt}.build())
			cookie := tcpOf(readSYNACK(t, h)).SequenceNumber()
			c := &client{t: t, h: h, src: fam.src, dst: fam.dst, sport: 40100, dport: 8080,
				nxt: isn + 1, una: cookie + 1, cookie: cookie}
			c.send(header.TCPFlagAck|header.TCPFlagPsh, "hello")
			c.readUntil("world", func() bool { return c.got.String() == "world" })
			c.send(header.TCPFlagAck|header.TCPFlagPsh, ", more")
			c.send(header.TCPFlagAck|header.TCPFlagFin, "")
			c.readUntil("bye and FIN", func() bool { return c.fin })
			if c.got.String() != "worldbye" {
				t.Errorf("client read %q, want %q", c.got.String(), "worldbye")
			}
			var r result
			select {
			case r = <-res:
			case <-time.After(5 * time.Second):
				t.Fatal("handler did not finish")
			}
			if r.err != nil || !r.finished || r.read != "hello, more" {
				t.Errorf("handler read %q (finished %v): %v, want %q", r.read, r.finished, r.err, "hello, more")
			}
			if r.flow.ISN != isn {
				t.Errorf("flow ISN %d, want the client's %d", r.flow.ISN, isn)
			}
			// The raw rows: what the client sent, as it sent it.
			var want []uint32
			for _, d := range []uint32{0, 1, 6, 12} {
				want = append(want, isn+d)
			}
			h.sink.mu.Lock()
			var seqs []uint32
			for _, p := range h.sink.packets {
				if p.SrcPort == 40100 && p.Flags&uint8(header.TCPFlagAck|header.TCPFlagSyn) != 0 && (p.PayloadLen > 0 || p.Flags&uint8(header.TCPFlagSyn|header.TCPFlagFin) != 0) {
					seqs = append(seqs, p.Seq)
				}
			}
			h.sink.mu.Unlock()
			if len(seqs) != len(want) {
				t.Fatalf("raw rows' seq %v, want %v", seqs, want)
			}
			for i := range want {
				if seqs[i] != want[i] {
					t.Errorf("raw row %d: seq %d, want %d", i, seqs[i], want[i])
				}
			}
			if n := h.st.GVisorStats().TCP.ListenOverflowSynCookieRcvd.Value(); n != 1 {
				t.Errorf("gVisor validated %d cookies, want 1", n)
			}
		})
	}
}

// TestTranslatedClientReset checks that a client's RST on an established
// connection reaches gVisor translated: gVisor takes a reset only at
// exactly its next expected sequence number (RFC 5961), so an
// untranslated one would leave the handler waiting.
func TestTranslatedClientReset(t *testing.T) {
	errc := make(chan error, 1)
	read := make(chan struct{})
	h := newHarness(t, func(c *Config) {
		c.Handle = func(conn net.Conn, f records.Flow) {
			conn.SetDeadline(time.Now().Add(3 * time.Second))
			buf := make([]byte, 5)
			_, err := io.ReadFull(conn, buf)
			close(read)
			if err == nil {
				_, err = conn.Read(buf)
			}
			errc <- err
		}
	})
	dst := netip.MustParseAddr("198.51.100.42")
	h.inject(seg{src: scanner4, dst: dst, sport: 40200, dport: 80, seq: 77, flags: header.TCPFlagSyn, opts: mssOpt}.build())
	cookie := tcpOf(readSYNACK(t, h)).SequenceNumber()
	c := &client{t: t, h: h, src: scanner4, dst: dst, sport: 40200, dport: 80, nxt: 78, una: cookie + 1, cookie: cookie}
	c.send(header.TCPFlagAck|header.TCPFlagPsh, "hello")
	select {
	case <-read:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler read nothing")
	}
	toStack := h.st.stats.ToStack.Load()
	c.send(header.TCPFlagRst|header.TCPFlagAck, "")
	if h.st.stats.ToStack.Load() != toStack+1 {
		t.Fatal("the reset did not take the established path")
	}
	select {
	case err := <-errc:
		var ne net.Error
		if err == nil || errors.Is(err, io.EOF) || (errors.As(err, &ne) && ne.Timeout()) {
			t.Errorf("handler's read after the client's RST: %v, want a reset", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("handler did not return")
	}
}

// TestAdmitFlowKeepsDelta checks that every segment of an admitted
// handshake gets the offset the handshake was admitted with, whichever
// offset its own reader computed (they differ across a clock tick).
func TestAdmitFlowKeepsDelta(t *testing.T) {
	tb := newConnTable(4)
	var n uint32
	newID := func() uint32 { n++; return n }
	k := makeFlowKey(netip.MustParseAddr("198.51.100.1"), scanner4, 80, 40000)
	now := time.Now()
	uid, d, fresh, res := tb.admitFlow(k, scanner4, 1, 2, 7, 1000, newID, now)
	if res != admitOK || !fresh || d != 1000 {
		t.Fatalf("first: delta %d fresh %v res %v", d, fresh, res)
	}
	uid2, d, fresh, _ := tb.admitFlow(k, scanner4, 1, 2, 0, 2000, newID, now)
	if fresh || d != 1000 || uid2 != uid {
		t.Fatalf("second: delta %d fresh %v uid %d/%d, want the first's 1000", d, fresh, uid2, uid)
	}
	if o, ok := tb.flow(k); !ok || o.delta != 1000 || o.shift != 7 || o.userID != uid {
		t.Errorf("flow = %+v, %v", o, ok)
	}
}

// TestTranslatedSegmentRacingTheACK sends a bare handshake ACK and, before
// gVisor has built the connection, a data segment of the same handshake:
// the second takes the path of an admitted handshake (not fresh) and must be
// translated with the first's offset, or gVisor's listener would refuse it.
func TestTranslatedSegmentRacingTheACK(t *testing.T) {
	got := make(chan string, 1)
	h := newHarness(t, func(c *Config) {
		c.Handle = func(conn net.Conn, f records.Flow) {
			conn.SetDeadline(time.Now().Add(3 * time.Second))
			buf := make([]byte, 5)
			_, err := io.ReadFull(conn, buf)
			if err != nil {
				got <- err.Error()
				return
			}
			got <- string(buf)
		}
	})
	for i, dst := range []netip.Addr{netip.MustParseAddr("198.51.100.44"), netip.MustParseAddr("2001:db8:5b0::44")} {
		src := scanner4
		if dst.Is6() {
			src = scanner6
		}
		h.inject(seg{src: src, dst: dst, sport: 40400, dport: 81, seq: 900, flags: header.TCPFlagSyn, opts: mssOpt}.build())
		cookie := tcpOf(readSYNACK(t, h)).SequenceNumber()
		before := h.st.stats.ToStack.Load()
		h.inject(seg{src: src, dst: dst, sport: 40400, dport: 81, seq: 901, ack: cookie + 1, flags: header.TCPFlagAck}.build())
		h.inject(seg{src: src, dst: dst, sport: 40400, dport: 81, seq: 901, ack: cookie + 1,
			flags: header.TCPFlagAck | header.TCPFlagPsh, payload: []byte("hello")}.build())
		if h.st.stats.ToStack.Load() != before+1 {
			t.Fatalf("the data segment did not reach gVisor")
		}
		select {
		case s := <-got:
			if s != "hello" {
				t.Errorf("handler read %q, want hello", s)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no connection")
		}
		if n := h.st.stats.Handshakes.Load(); n != uint64(i+1) {
			t.Errorf("Handshakes = %d, want %d", n, i+1)
		}
	}
}

// TestUntranslatedCounted checks that a segment of a connection whose
// entry the front end lost reaches gVisor untranslated, is counted, and
// is not taken by gVisor (it is out of gVisor's window): the negative
// control of the translation on the established path.
func TestUntranslatedCounted(t *testing.T) {
	reads := make(chan string, 2)
	h := newHarness(t, func(c *Config) {
		c.Handle = func(conn net.Conn, f records.Flow) {
			conn.SetDeadline(time.Now().Add(3 * time.Second))
			for {
				buf := make([]byte, 16)
				n, err := conn.Read(buf)
				if err != nil {
					close(reads)
					return
				}
				reads <- string(buf[:n])
			}
		}
	})
	dst := netip.MustParseAddr("198.51.100.43")
	h.inject(seg{src: scanner4, dst: dst, sport: 40300, dport: 80, seq: 500, flags: header.TCPFlagSyn, opts: mssOpt}.build())
	cookie := tcpOf(readSYNACK(t, h)).SequenceNumber()
	c := &client{t: t, h: h, src: scanner4, dst: dst, sport: 40300, dport: 80, nxt: 501, una: cookie + 1, cookie: cookie}
	c.send(header.TCPFlagAck|header.TCPFlagPsh, "one")
	if got := <-reads; got != "one" {
		t.Fatalf("handler read %q, want %q", got, "one")
	}
	k := makeFlowKey(dst, scanner4, 80, 40300)
	h.st.conns.mu.Lock()
	delete(h.st.conns.m, k)
	h.st.conns.mu.Unlock()
	c.send(header.TCPFlagAck|header.TCPFlagPsh, "two")
	if n := h.st.stats.Untranslated.Load(); n != 1 {
		t.Errorf("Untranslated = %d, want 1", n)
	}
	if got, ok := <-reads; ok {
		t.Errorf("handler read %q from an untranslated segment", got)
	}
}

// BenchmarkCookieMint compares the SYN-ACK's cookie as gVisor mints it (two
// SHA-1 under the 64-byte nonce: what the front end computed per SYN
// before) with the front end's (two SipHash-2-4).
func BenchmarkCookieMint(b *testing.B) {
	j, _ := testJar(&testing.T{})
	for _, fam := range []struct {
		name          string
		local, remote []byte
	}{
		{"ipv4", cLocal, cRemote},
		{"ipv6", netip.MustParseAddr("2001:db8:5b0::7").AsSlice(), netip.MustParseAddr("2001:db8:1::2").AsSlice()},
	} {
		for _, c := range []struct {
			name string
			mint func(laddr, raddr []byte, lport, rport uint16, seq, data, ts uint32) uint32
		}{{"sha1", j.gvisorCookie}, {"siphash", j.mint}} {
			b.Run(c.name+"/"+fam.name, func(b *testing.B) {
				var sink uint32
				seq := uint32(1)
				for b.Loop() {
					sink += c.mint(fam.local, fam.remote, 80, 40000, seq, 3, 9)
					seq++
				}
				_ = sink
			})
		}
	}
}
