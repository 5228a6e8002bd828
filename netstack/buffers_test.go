package netstack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/spoki-telescope/spoki/handlers"
	"github.com/spoki-telescope/spoki/records"
)

// clientStack is a second gVisor stack, the scanner, wired to a Stack's
// in-memory link: a real TCP client (windows, retransmissions, delayed
// ACKs) for tests that need more than hand-built segments.
type clientStack struct {
	st *stack.Stack
}

// newClientStack builds a client at scanner4 and pumps packets between it
// and srv (the Stack's channel link) until the test ends.
func newClientStack(t *testing.T, srv *channel.Endpoint) *clientStack {
	t.Helper()
	st := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
	})
	ch := channel.New(1024, 1500, "")
	if e := st.CreateNIC(1, ch); e != nil {
		t.Fatalf("client nic: %v", e)
	}
	addr := tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddrFrom4(scanner4.As4()).WithPrefix()}
	if e := st.AddProtocolAddress(1, addr, stack.AddressProperties{}); e != nil {
		t.Fatalf("client address: %v", e)
	}
	st.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: 1}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	pump := func(from, to *channel.Endpoint) {
		defer func() { done <- struct{}{} }()
		for {
			pkt := from.ReadContext(ctx)
			if pkt == nil {
				return
			}
			v := pkt.ToView()
			b := append([]byte(nil), v.AsSlice()...)
			v.Release()
			pkt.DecRef()
			in := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
			to.InjectInbound(header.IPv4ProtocolNumber, in)
			in.DecRef()
		}
	}
	go pump(ch, srv)
	go pump(srv, ch)
	t.Cleanup(func() {
		cancel()
		<-done
		<-done
		st.Close()
		st.Wait()
	})
	return &clientStack{st: st}
}

// dial connects to dst.
func (c *clientStack) dial(t *testing.T, dst netip.AddrPort) *gonet.TCPConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := gonet.DialContextTCP(ctx, c.st,
		tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(dst.Addr().As4()), Port: dst.Port()}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatalf("dial %v: %v", dst, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// muxHarness is a Stack whose connections a handlers.Mux serves.
func muxHarness(t *testing.T, cfg Config, mc handlers.MuxConfig) (*harness, *handlers.Mux, chan *records.Session) {
	t.Helper()
	sessions := make(chan *records.Session, 4)
	mc.Emit = func(s *records.Session) { sessions <- s }
	m, err := handlers.NewMux(mc)
	if err != nil {
		t.Fatalf("NewMux: %v", err)
	}
	h := newHarness(t, func(c *Config) {
		c.ConnBuffer = cfg.ConnBuffer
		c.Handle = m.ServeConn
	})
	return h, m, sessions
}

// TestConnBufferLargeRequest checks that small connection buffers still
// carry a 16 KiB request to a handler, read through the Mux's Conn, and a
// 16 KiB answer back: the window opens as the handler reads, the send
// buffer drains as the client acknowledges.
func TestConnBufferLargeRequest(t *testing.T) {
	const size = 16 << 10
	for _, buf := range []int{MinConnBuffer, 16 << 10} {
		t.Run(fmt.Sprintf("%dKiB", buf>>10), func(t *testing.T) {
			got := make(chan []byte, 1)
			reg := handlers.NewRegistry(handlers.Func("big", func(_ context.Context, c *handlers.Conn) (any, error) {
				b := make([]byte, size)
				n, err := io.ReadFull(c, b)
				got <- b[:n]
				if err != nil {
					return nil, err
				}
				_, err = c.Write(bytes.Repeat([]byte("r"), size))
				return nil, err
			}))
			h, _, sessions := muxHarness(t, Config{ConnBuffer: buf},
				handlers.MuxConfig{Registry: reg, MaxFirstBytes: 4096})
			client := newClientStack(t, h.ch)
			conn := client.dial(t, netip.MustParseAddrPort("198.51.100.7:7777"))
			req := make([]byte, size)
			for i := range req {
				req[i] = byte(i % 251)
			}
			if _, err := conn.Write(req); err != nil {
				t.Fatalf("client write: %v", err)
			}
			var b []byte
			select {
			case b = <-got:
			case <-time.After(20 * time.Second):
				t.Fatal("the handler did not read the request")
			}
			if !bytes.Equal(b, req) {
				t.Fatalf("handler read %d bytes, want the %d sent, equal", len(b), len(req))
			}
			conn.SetReadDeadline(time.Now().Add(20 * time.Second))
			resp := make([]byte, size)
			if _, err := io.ReadFull(conn, resp); err != nil {
				t.Fatalf("client read of the answer: %v", err)
			}
			s := <-sessions
			if s.BytesToServer != size || s.BytesToClient != size || s.Error != "" {
				t.Errorf("session bytes %d/%d, error %q, want %d/%d, none", s.BytesToServer, s.BytesToClient, s.Error, size, size)
			}
		})
	}
}

// TestConnDeadlineErrors checks that the netstack's Conn reports a deadline
// as net.Conn promises (wrapping os.ErrDeadlineExceeded), so that the Mux
// tells its budgets from other errors: a client that trickles a request
// that never completes is cut by the request budget, counted as such.
func TestConnDeadlineErrors(t *testing.T) {
	h, m, sessions := muxHarness(t, Config{}, handlers.MuxConfig{
		Registry: handlers.NewRegistry(handlers.Func("greedy", func(_ context.Context, c *handlers.Conn) (any, error) {
			_, err := io.Copy(io.Discard, c)
			return nil, err
		})),
		IdleTimeout: 5 * time.Second, RequestTimeout: 300 * time.Millisecond,
	})
	client := newClientStack(t, h.ch)
	conn := client.dial(t, netip.MustParseAddrPort("198.51.100.8:80"))
	go func() {
		for range 100 {
			if _, err := conn.Write([]byte("x")); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	var s *records.Session
	select {
	case s = <-sessions:
	case <-time.After(5 * time.Second):
		t.Fatal("the request budget did not end the connection")
	}
	if !strings.Contains(s.Error, "request timeout") || !strings.Contains(s.Error, handlers.ErrBudgetExceeded.Error()) {
		t.Errorf("session error = %q, want the request timeout budget", s.Error)
	}
	if got := m.Stats().Snapshot(); got.BudgetRequest != 1 || got.BudgetExceeded != 1 {
		t.Errorf("Mux stats budget request %d, exceeded %d, want 1, 1", got.BudgetRequest, got.BudgetExceeded)
	}

	// And directly: a Read past its deadline.
	err := deadlineErr(&net.OpError{Op: "read", Err: timeoutOnly{}})
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("deadlineErr(gonet timeout) = %v, does not wrap os.ErrDeadlineExceeded", err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("deadlineErr(gonet timeout) = %v, not a net.Error timeout", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) {
		t.Errorf("deadlineErr lost the *net.OpError")
	}
	if e := errors.New("other"); deadlineErr(e) != e {
		t.Errorf("deadlineErr changed a non-timeout error")
	}
}

// timeoutOnly is a timeout error that does not wrap os.ErrDeadlineExceeded,
// like gonet's timeoutError.
type timeoutOnly struct{}

func (timeoutOnly) Error() string   { return "i/o timeout" }
func (timeoutOnly) Timeout() bool   { return true }
func (timeoutOnly) Temporary() bool { return true }

// TestListenerBurst checks that a burst of handshakes to one port, all
// arriving at once (as the retransmissions of connections that waited for
// a free slot do), is accepted whole: gVisor bounds a listener's queue by
// its receive buffer, and a queue of ConnBuffer bytes would keep only a
// few of them, every time.
func TestListenerBurst(t *testing.T) {
	const n = 64
	// The handler never blocks (a blocked handler would hang Close): it
	// counts each connection by its source port, and a port accepted twice
	// is a failure of its own.
	var mu sync.Mutex
	seen := map[uint16]int{}
	accepted := make(chan struct{}, 4*n)
	h := newHarness(t, func(c *Config) {
		c.Handle = func(c net.Conn, f records.Flow) {
			mu.Lock()
			seen[f.Remote.Port()]++
			mu.Unlock()
			select {
			case accepted <- struct{}{}:
			default:
			}
			c.(*Conn).Reset()
		}
	})
	dst := netip.MustParseAddr("198.51.100.9")
	payload := bytes.Repeat([]byte("G"), 1000)
	var acks [][]byte
	for i := range n {
		sport := uint16(20000 + i)
		cookie := h.synAck(scanner4, dst, sport, 80, uint32(1000*i))
		acks = append(acks, seg{src: scanner4, dst: dst, sport: sport, dport: 80, seq: uint32(1000*i) + 1,
			ack: cookie + 1, flags: header.TCPFlagAck | header.TCPFlagPsh, payload: payload}.build())
	}
	distinct := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(seen)
	}
	// One listener exists from the first ACK on; then the burst.
	h.inject(acks[0])
	select {
	case <-accepted:
	case <-time.After(5 * time.Second):
		// Bounded: a lost first connection fails the test, never hangs it.
		t.Fatalf("the first connection was not accepted; gVisor dropped %d packets", h.st.GVisorStats().DroppedPackets.Value())
	}
	for _, b := range acks[1:] {
		h.inject(b)
	}
	deadline := time.After(5 * time.Second)
	for distinct() < n {
		select {
		case <-accepted:
		case <-deadline:
			t.Fatalf("%d of %d connections of the burst accepted; gVisor dropped %d packets", distinct()-1, n-1,
				h.st.GVisorStats().DroppedPackets.Value())
		}
	}
	time.Sleep(50 * time.Millisecond) // a late second acceptance shows here
	t.Logf("%d duplicate acceptances reset without the handler (gVisor built %d connections)", h.st.Stats().AcceptDuplicate.Load(),
		h.st.GVisorStats().TCP.PassiveConnectionOpenings.Value())
	mu.Lock()
	defer mu.Unlock()
	for port, k := range seen {
		if k != 1 {
			t.Errorf("the connection from port %d was handed to the handler %d times", port, k)
		}
	}
}

// TestListenerLeak pins gVisor's listener accounting (see
// listenQueueBuffer): many handshakes whose ACK carries data, one after
// the other to one port, must all be accepted. gVisor charges each such
// segment to the listener for good, so a listener with a bounded receive
// buffer stops accepting anything after a few of them.
func TestListenerLeak(t *testing.T) {
	const n = 400                      // ≈ 400 × 1.6 KiB charged: more than 256 KiB
	accepted := make(chan struct{}, n) // a handler never blocks Close
	h := newHarness(t, func(c *Config) {
		c.Handle = func(c net.Conn, f records.Flow) {
			buf := make([]byte, 2048)
			_, _ = c.Read(buf)
			accepted <- struct{}{}
			c.(*Conn).Reset()
		}
	})
	dst := netip.MustParseAddr("198.51.100.11")
	payload := bytes.Repeat([]byte("P"), 1000)
	for i := range n {
		sport := uint16(30000 + i)
		cookie := h.synAck(scanner4, dst, sport, 80, uint32(7000*i))
		h.inject(seg{src: scanner4, dst: dst, sport: sport, dport: 80, seq: uint32(7000*i) + 1,
			ack: cookie + 1, flags: header.TCPFlagAck | header.TCPFlagPsh, payload: payload}.build())
		select {
		case <-accepted:
		case <-time.After(5 * time.Second):
			t.Fatalf("handshake %d of %d with data not accepted: the listener stopped (gVisor dropped %d packets)",
				i+1, n, h.st.GVisorStats().DroppedPackets.Value())
		}
		// Drain the replies (SYN-ACK read above; ACK, RST) so the link's
		// queue does not fill.
		for h.read(time.Millisecond) != nil {
		}
	}
}
