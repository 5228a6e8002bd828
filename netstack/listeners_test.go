package netstack

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/spoki-telescope/spoki/records"
)

// wire reads everything the stack writes: it keeps the cookie of each
// SYN-ACK and every RST, so that tests can run many handshakes at once
// and check that gVisor answered none of them with a reset.
type wire struct {
	mu      sync.Mutex
	cond    *sync.Cond
	cookies map[netip.AddrPort]uint32 // by the client's end
	rsts    []netip.AddrPort          // clients reset
}

func newWire(t *testing.T, h *harness) *wire {
	w := &wire{cookies: map[netip.AddrPort]uint32{}}
	w.cond = sync.NewCond(&w.mu)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			pkt := h.ch.ReadContext(ctx)
			if pkt == nil {
				return
			}
			v := pkt.ToView()
			b := append([]byte(nil), v.AsSlice()...)
			v.Release()
			pkt.DecRef()
			tc := tcpOf(b)
			var dst netip.Addr
			if b[0]>>4 == 6 {
				dst = netip.AddrFrom16([16]byte(b[24:40]))
			} else {
				dst = netip.AddrFrom4([4]byte(b[16:20]))
			}
			client := netip.AddrPortFrom(dst, tc.DestinationPort())
			w.mu.Lock()
			switch f := tc.Flags(); {
			case f == header.TCPFlagSyn|header.TCPFlagAck:
				w.cookies[client] = tc.SequenceNumber()
			case f&header.TCPFlagRst != 0:
				w.rsts = append(w.rsts, client)
			}
			w.cond.Broadcast()
			w.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

// cookie waits for the SYN-ACK to client.
func (w *wire) cookie(t *testing.T, client netip.AddrPort) uint32 {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		if c, ok := w.cookies[client]; ok {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("no SYN-ACK to %s", client)
		}
		w.mu.Unlock()
		time.Sleep(time.Millisecond)
		w.mu.Lock()
	}
}

func (w *wire) resets() []netip.AddrPort {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]netip.AddrPort(nil), w.rsts...)
}

// connect sends a SYN and then the ACK carrying payload.
func connect(t *testing.T, h *harness, w *wire, src netip.AddrPort, dst netip.AddrPort, payload string) {
	t.Helper()
	h.inject(seg{src: src.Addr(), dst: dst.Addr(), sport: src.Port(), dport: dst.Port(), seq: 100,
		flags: header.TCPFlagSyn, opts: mssOpt}.build())
	c := w.cookie(t, src)
	h.inject(seg{src: src.Addr(), dst: dst.Addr(), sport: src.Port(), dport: dst.Port(), seq: 101, ack: c + 1,
		flags: header.TCPFlagAck | header.TCPFlagPsh, payload: []byte(payload)}.build())
}

// holdHandler returns a Handle that reports each connection's first
// payload and keeps the connection open until release is closed.
func holdHandler(got chan<- served, release <-chan struct{}) func(net.Conn, records.Flow) {
	return func(c net.Conn, f records.Flow) {
		buf := make([]byte, 512)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _ := c.Read(buf)
		got <- served{flow: f, first: append([]byte(nil), buf[:n]...)}
		<-release
	}
}

func listenerOf(st *Stack, v6 bool, port uint16) *listener {
	k := listenKey{header.IPv4ProtocolNumber, port}
	if v6 {
		k.netProto = header.IPv6ProtocolNumber
	}
	st.lmu.Lock()
	defer st.lmu.Unlock()
	return st.listeners[k]
}

// TestListenersClosedWhenIdle checks that a port's listener is closed once
// idle (IPv4 and IPv6), that its port then takes a new handshake (gVisor
// released the port at once), and that no wake-up slot leaks.
func TestListenersClosedWhenIdle(t *testing.T) {
	for _, tc := range []struct {
		name     string
		src, dst netip.Addr
	}{
		{"ipv4", scanner4, netip.MustParseAddr("198.51.100.7")},
		{"ipv6", scanner6, netip.MustParseAddr("2001:db8:5b0::7")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			w := newWire(t, h)
			for round := range 2 {
				connect(t, h, w, netip.AddrPortFrom(tc.src, uint16(40000+round)), netip.AddrPortFrom(tc.dst, 23), "hello")
				select {
				case s := <-h.got:
					if string(s.first) != "hello" {
						t.Fatalf("round %d: first payload %q", round, s.first)
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("round %d: no connection accepted", round)
				}
				if n := h.st.Stats().Listeners.Load(); n != 1 {
					t.Fatalf("round %d: %d listeners open, want 1", round, n)
				}
				// The janitor runs every second and closes listeners idle
				// for listenerIdle.
				waitFor(t, func() bool { return h.st.Stats().Listeners.Load() == 0 })
				if got := h.st.Stats().ListenersClosed.Load(); got != uint64(round+1) {
					t.Fatalf("round %d: ListenersClosed = %d, want %d", round, got, round+1)
				}
				waitFor(t, func() bool { return h.st.slots.Load() == 0 })
				if l := listenerOf(h.st, tc.dst.Is6(), 23); l != nil {
					t.Fatalf("round %d: closed listener still in the map", round)
				}
			}
			if n := h.st.Stats().Accepted.Load(); n != 2 {
				t.Errorf("Accepted = %d, want 2", n)
			}
		})
	}
}

// TestConnSurvivesListenerClose checks that a connection accepted on a
// listener keeps working after the listener is closed: gVisor registers
// it under its own four-tuple.
func TestConnSurvivesListenerClose(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	got := make(chan served, 4)
	h := newHarness(t, func(c *Config) {
		c.Handle = func(c net.Conn, f records.Flow) {
			buf := make([]byte, 512)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, _ := c.Read(buf)
			got <- served{flow: f, first: append([]byte(nil), buf[:n]...)}
			// The second read comes after the listener is gone.
			n, _ = c.Read(buf)
			got <- served{flow: f, first: append([]byte(nil), buf[:n]...)}
			c.Write([]byte("bye"))
			<-release
		}
	})
	w := newWire(t, h)
	src := netip.AddrPortFrom(scanner4, 41000)
	dst := netip.AddrPortFrom(netip.MustParseAddr("198.51.100.8"), 8080)
	connect(t, h, w, src, dst, "one")
	if s := <-got; string(s.first) != "one" {
		t.Fatalf("first read %q", s.first)
	}
	l := listenerOf(h.st, false, 8080)
	if l == nil {
		t.Fatal("no listener for port 8080")
	}
	// Close it now, as the janitor would once it is idle.
	h.st.lmu.Lock()
	if !h.st.closableLocked(l, time.Now().Add(time.Hour), listenerIdle) {
		h.st.lmu.Unlock()
		t.Fatal("listener of an accepted connection is not closable")
	}
	h.st.closeListenerLocked(l)
	h.st.lmu.Unlock()

	cookie := w.cookie(t, src)
	h.inject(seg{src: src.Addr(), dst: dst.Addr(), sport: src.Port(), dport: dst.Port(), seq: 104, ack: cookie + 1,
		flags: header.TCPFlagAck | header.TCPFlagPsh, payload: []byte("two")}.build())
	select {
	case s := <-got:
		if string(s.first) != "two" {
			t.Fatalf("second read %q, want %q", s.first, "two")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the connection did not survive its listener's close")
	}
	if n := h.st.Stats().Listeners.Load(); n != 0 {
		t.Errorf("Listeners = %d, want 0", n)
	}
	// The port's next listener binds although the connection of the last
	// one is still open (SO_REUSEADDR).
	src2 := netip.AddrPortFrom(scanner4, 41001)
	connect(t, h, w, src2, dst, "three")
	select {
	case s := <-got:
		if string(s.first) != "three" || s.flow.Remote != src2 {
			t.Fatalf("new connection read %q from %v", s.first, s.flow.Remote)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no new connection on the port of the closed listener (listener errors %d)", h.st.Stats().DropListener.Load())
	}
	if r := w.resets(); len(r) != 0 {
		t.Errorf("resets sent to %v, want none", r)
	}
}

// TestGVisorListenerCloseResets pins the gVisor behaviour the listener
// lifecycle is built around: closing a listener resets the connections in
// its accept queue (accept.go, closePendingAcceptableConnectionsLocked),
// so a listener with a handshake not yet accepted must not be closed;
// closableLocked refuses it, and once the acceptor has taken the
// connection the close resets nothing. The forced close is the negative
// control: it shows the test sees such a reset.
func TestGVisorListenerCloseResets(t *testing.T) {
	for _, force := range []bool{false, true} {
		t.Run(fmt.Sprintf("force=%t", force), func(t *testing.T) {
			release := make(chan struct{})
			defer close(release)
			got := make(chan served, 4)
			h := newHarness(t, func(c *Config) { c.Handle = holdHandler(got, release) })
			w := newWire(t, h)
			dst := netip.AddrPortFrom(netip.MustParseAddr("198.51.100.9"), 2323)
			// A first connection creates the listener.
			connect(t, h, w, netip.AddrPortFrom(scanner4, 42000), dst, "a")
			<-got
			l := listenerOf(h.st, false, 2323)
			// Keep the acceptors away: with queued set, the wake-up of the
			// next connection is not sent.
			waitFor(t, func() bool { return l.queued.CompareAndSwap(false, true) })
			src := netip.AddrPortFrom(scanner4, 42001)
			connect(t, h, w, src, dst, "b")
			waitFor(t, func() bool { return l.ep.Readiness(0xff)&1 != 0 })
			h.st.lmu.Lock()
			closable := h.st.closableLocked(l, time.Now().Add(time.Hour), listenerIdle)
			if force {
				h.st.closeListenerLocked(l)
			}
			h.st.lmu.Unlock()
			if closable {
				t.Fatal("listener with a connection in its accept queue is closable")
			}
			if force {
				waitFor(t, func() bool { return len(w.resets()) > 0 })
				if r := w.resets(); r[0] != src {
					t.Fatalf("reset sent to %v, want %v", r, src)
				}
				return
			}
			// Let the acceptor take it; then the listener may close.
			l.queued.Store(false)
			l.entry.NotifyEvent(1)
			if s := <-got; string(s.first) != "b" {
				t.Fatalf("second connection read %q", s.first)
			}
			h.st.lmu.Lock()
			closable = h.st.closableLocked(l, time.Now().Add(time.Hour), listenerIdle)
			if closable {
				h.st.closeListenerLocked(l)
			}
			h.st.lmu.Unlock()
			if !closable {
				t.Fatal("listener not closable once its connections are accepted")
			}
			time.Sleep(100 * time.Millisecond)
			if r := w.resets(); len(r) != 0 {
				t.Errorf("resets sent to %v after closing a drained listener, want none", r)
			}
		})
	}
}

// TestHandshakesRacingListenerClose runs handshakes on a few ports while
// another goroutine closes every closable listener as fast as it can (as
// if each were long idle). Every handshake must be served or counted, and
// gVisor must answer none with a reset.
func TestHandshakesRacingListenerClose(t *testing.T) {
	const conns = 300
	release := make(chan struct{})
	got := make(chan served, conns)
	h := newHarness(t, func(c *Config) {
		c.Handle = holdHandler(got, release)
		c.MaxConnsPerIP = conns
		c.MaxConnsPerNet = conns
	})
	t.Cleanup(func() { close(release) })
	w := newWire(t, h)
	stop := make(chan struct{})
	closerDone := make(chan struct{})
	go func() {
		defer close(closerDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			h.st.lmu.Lock()
			for l := h.st.lru.back; l != nil; {
				prev := l.prev
				if h.st.closableLocked(l, time.Now().Add(time.Hour), listenerIdle) {
					h.st.closeListenerLocked(l)
				}
				l = prev
			}
			h.st.lmu.Unlock()
		}
	}()
	var wg sync.WaitGroup
	for g := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range conns / 3 {
				src := netip.AddrPortFrom(scanner4, uint16(20000+g*1000+i))
				dst := netip.AddrPortFrom(netip.MustParseAddr("198.51.100.20"), uint16(7000+i%4))
				connect(t, h, w, src, dst, "x")
			}
		}()
	}
	wg.Wait()
	served := 0
	deadline := time.After(10 * time.Second)
	for served < conns {
		st := h.st.Stats()
		if uint64(served) == st.Handshakes.Load() && st.Handshakes.Load()+st.DropListener.Load()+st.DropListenerCap.Load() == conns {
			break
		}
		select {
		case <-got:
			served++
		case <-deadline:
			t.Fatalf("%d of %d handshakes served, %d counted", served, conns, h.st.Stats().Snapshot().Drops())
		}
	}
	close(stop)
	<-closerDone
	s := h.st.Stats().Snapshot()
	t.Logf("served %d, listeners closed %d, drops %d (listener %d, cap %d), accept unknown %d", served, s.ListenersClosed, s.Drops(), s.DropListener, s.DropListenerCap, s.AcceptUnknown)
	if uint64(served)+s.DropListener+s.DropListenerCap != conns {
		t.Errorf("served %d + dropped %d, want %d", served, s.DropListener+s.DropListenerCap, conns)
	}
	// Far below MaxListeners, and a port's next listener binds while the
	// connections of the last one are open: nothing needs dropping.
	if served != conns {
		t.Errorf("served %d of %d handshakes (listener errors %d, cap %d), want all", served, conns, s.DropListener, s.DropListenerCap)
	}
	if s.ListenersClosed == 0 {
		t.Errorf("no listener was closed: the race did not happen")
	}
	if s.AcceptUnknown != 0 {
		t.Errorf("AcceptUnknown = %d, want 0", s.AcceptUnknown)
	}
	time.Sleep(100 * time.Millisecond)
	if r := w.resets(); len(r) != 0 {
		t.Errorf("gVisor reset %d handshakes (%v...), want none", len(r), r[0])
	}
}

// TestListenerCap checks MaxListeners: a handshake on a new port while
// every listener is in use is dropped and counted, and one after the
// least recently used listener has been idle a while takes its place.
func TestListenerCap(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxListeners = 2 })
	w := newWire(t, h)
	dst := netip.MustParseAddr("198.51.100.30")
	for i, port := range []uint16{1001, 1002} {
		connect(t, h, w, netip.AddrPortFrom(scanner4, uint16(43000+i)), netip.AddrPortFrom(dst, port), "p")
		<-h.got
	}
	connect(t, h, w, netip.AddrPortFrom(scanner4, 43002), netip.AddrPortFrom(dst, 1003), "p")
	if got := h.st.Stats().DropListenerCap.Load(); got != 1 {
		t.Fatalf("DropListenerCap = %d, want 1", got)
	}
	if n := h.st.Stats().Listeners.Load(); n != 2 {
		t.Fatalf("Listeners = %d, want 2", n)
	}
	time.Sleep(listenerEvictIdle + 50*time.Millisecond)
	connect(t, h, w, netip.AddrPortFrom(scanner4, 43003), netip.AddrPortFrom(dst, 1003), "p")
	select {
	case s := <-h.got:
		if s.flow.Local.Port() != 1003 {
			t.Fatalf("served port %d", s.flow.Local.Port())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no connection on port 1003 after the eviction delay")
	}
	if l := listenerOf(h.st, false, 1001); l != nil {
		t.Errorf("least recently used listener (port 1001) still open")
	}
	if n := h.st.slots.Load(); n > 2 {
		t.Errorf("slots = %d, want <= 2", n)
	}
	if r := w.resets(); len(r) > 0 {
		// The harness handler resets each connection it served; nothing
		// else may be reset.
		for _, c := range r {
			if c.Port() == 43002 {
				t.Errorf("the handshake over the cap was reset")
			}
		}
	}
}

// TestGVisorReuseAddrBind pins why listeners set SO_REUSEADDR: once a
// port's listener is closed, gVisor refuses to bind the port again while a
// connection it accepted is open (its tuple reservation conflicts with a
// wildcard bind, ports.TupleOnlyFlag), unless both carry SO_REUSEADDR. The
// bind without it is the negative control.
func TestGVisorReuseAddrBind(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	got := make(chan served, 4)
	h := newHarness(t, func(c *Config) { c.Handle = holdHandler(got, release) })
	w := newWire(t, h)
	dst := netip.AddrPortFrom(netip.MustParseAddr("198.51.100.50"), 8443)
	connect(t, h, w, netip.AddrPortFrom(scanner4, 44000), dst, "x")
	<-got
	l := listenerOf(h.st, false, 8443)
	h.st.lmu.Lock()
	h.st.closeListenerLocked(l)
	h.st.lmu.Unlock()
	for _, reuse := range []bool{false, true} {
		var wq waiter.Queue
		ep, e := h.st.stack.NewEndpoint(tcp.ProtocolNumber, header.IPv4ProtocolNumber, &wq)
		if e != nil {
			t.Fatalf("NewEndpoint: %v", e)
		}
		ep.SocketOptions().SetReuseAddress(reuse)
		e = ep.Bind(tcpip.FullAddress{Port: dst.Port()})
		ep.Close()
		if reuse && e != nil {
			t.Errorf("bind with SO_REUSEADDR while a connection is open: %v, want success", e)
		}
		if !reuse && e == nil {
			t.Errorf("bind without SO_REUSEADDR while a connection is open succeeded: gVisor changed, SO_REUSEADDR may no longer be needed")
		}
	}
}

// TestResetBeforeAccept checks that a client's reset that overtakes its
// handshake's ACK into gVisor (nmap's connect scan does that: ACK, then RST
// at once) ends the connection as soon as it is accepted instead of holding
// its slot until the handler gives up, and that a reset with another
// sequence number (blind) does not. The listener's processing is held with
// gVisor's StopWork so that the reset surely comes first.
func TestResetBeforeAccept(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rstSeq uint32 // the ACK's seq is 101
		reset  bool
	}{{"exact", 101, true}, {"blind", 5000, false}} {
		t.Run(tc.name, func(t *testing.T) {
			type result struct {
				port    uint16
				err     error
				timeout bool
			}
			res := make(chan result, 4)
			h := newHarness(t, func(c *Config) {
				c.Handle = func(c net.Conn, f records.Flow) {
					c.SetReadDeadline(time.Now().Add(time.Second))
					_, err := c.Read(make([]byte, 64))
					ne, ok := err.(net.Error)
					res <- result{f.Remote.Port(), err, ok && ne.Timeout()}
				}
			})
			w := newWire(t, h)
			dst := netip.AddrPortFrom(netip.MustParseAddr("198.51.100.60"), 9000)
			connect(t, h, w, netip.AddrPortFrom(scanner4, 45000), dst, "first")
			<-res
			l := listenerOf(h.st, false, 9000)
			gep := l.ep.(*tcp.Endpoint)
			gep.StopWork()
			src := netip.AddrPortFrom(scanner4, 45001)
			h.inject(seg{src: src.Addr(), dst: dst.Addr(), sport: src.Port(), dport: dst.Port(), seq: 100,
				flags: header.TCPFlagSyn, opts: mssOpt}.build())
			c := w.cookie(t, src)
			h.inject(seg{src: src.Addr(), dst: dst.Addr(), sport: src.Port(), dport: dst.Port(), seq: 101, ack: c + 1,
				flags: header.TCPFlagAck}.build())
			h.inject(seg{src: src.Addr(), dst: dst.Addr(), sport: src.Port(), dport: dst.Port(), seq: tc.rstSeq,
				flags: header.TCPFlagRst}.build())
			gep.ResumeWork()
			var r result
			select {
			case r = <-res:
			case <-time.After(5 * time.Second):
				t.Fatal("connection not served")
			}
			if r.port != src.Port() {
				t.Fatalf("served port %d, want %d", r.port, src.Port())
			}
			if got := h.st.Stats().AcceptReset.Load(); got != map[bool]uint64{true: 1}[tc.reset] {
				t.Errorf("AcceptReset = %d, want %d", got, map[bool]uint64{true: 1}[tc.reset])
			}
			if tc.reset && (r.err == nil || r.timeout) {
				t.Errorf("handler read = %v, want the reset at once", r.err)
			}
			if !tc.reset && !r.timeout {
				t.Errorf("handler read = %v, want a timeout (a blind reset must not end the connection)", r.err)
			}
		})
	}
}
