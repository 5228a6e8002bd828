package netstack

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/fdbased"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/spoki-telescope/spoki/records"
)

const nicID tcpip.NICID = 1

// Defaults for Config.
const (
	DefaultMTU             = 1500
	DefaultMaxConns        = 4096
	DefaultIdleTimeout     = 30 * time.Second
	DefaultTotalTimeout    = 2 * time.Minute
	DefaultMaxPayloadBytes = 65535
	// listenBacklog bounds each lazily created listener's accept queue; the
	// acceptors drain it at once, and MaxConns bounds the total anyway.
	listenBacklog = 1024
	// readyQueue bounds the listeners waiting for the acceptors; a listener
	// is queued at most once, so this only needs to exceed the number of
	// listeners that become ready at the same time.
	readyQueue = 4096
	acceptors  = 2
)

// Sink receives the records of the packet path. Both methods are called
// inline for every packet and must not block; records are passed by value so
// that nothing escapes to the heap.
type Sink interface {
	Packet(p records.Packet)
	Reply(r records.Reply)
}

// Config configures a Stack. Zero values mean the defaults.
type Config struct {
	// FDs are the TUN queue file descriptors, one fdbased reader each.
	FDs []int
	// Link replaces FDs with a link endpoint (in-memory tests).
	Link stack.LinkEndpoint
	// MTU of the link.
	MTU uint32
	// Prefixes are the telescope's address space; packets to other
	// addresses are recorded and dropped.
	Prefixes []netip.Prefix
	// MaxConns bounds connections open at once; valid-cookie ACKs over it
	// are dropped and counted (the client retransmits).
	MaxConns int
	// IdleTimeout ends a connection on which nothing was read or written
	// for that long; TotalTimeout ends any connection after that long.
	IdleTimeout, TotalTimeout time.Duration
	// MaxPayloadBytes caps the payload copied into a packet record.
	MaxPayloadBytes int
	// ConnBuffer is the receive and the send buffer of each connection
	// (each, in bytes, segment overhead included): MaxConns × 2 ×
	// ConnBuffer bounds what connections hold in gVisor. 0 means
	// DefaultConnBuffer; it must be within MinConnBuffer and MaxConnBuffer.
	ConnBuffer int
	// Handle serves one accepted connection in its own goroutine. The conn
	// is closed when Handle returns.
	Handle func(net.Conn, records.Flow)
	// Sink receives packet and reply records; nil records nothing.
	Sink Sink
	// Logger for lifecycle and errors.
	Logger *slog.Logger

	// clock replaces gVisor's clock in tests (cookie expiry).
	clock tcpip.Clock
	// tamperNonce, in tests, alters the secret handed to gVisor's
	// listeners: the negative control of the cookie guard test.
	tamperNonce func([]byte)
}

// Stack is the telescope's TCP/IP stack: gVisor behind the stateless
// front end.
type Stack struct {
	cfg   Config
	stack *stack.Stack
	fe    *frontEnd
	fds   []int
	sink  Sink
	log   *slog.Logger
	jar   *cookieJar
	rng   *nonceRNG
	conns *connTable
	stats Stats
	uid   atomic.Uint32

	lmu       sync.Mutex
	listeners map[listenKey]*listener
	ready     chan *listener

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // acceptors, janitor
	served sync.WaitGroup // connection goroutines

	closeOnce sync.Once
}

type listenKey struct {
	netProto tcpip.NetworkProtocolNumber
	port     uint16
}

type listener struct {
	ep     tcpip.Endpoint
	wq     *waiter.Queue
	entry  waiter.Entry
	queued atomic.Bool
}

// New builds the stack and starts reading the link.
func New(cfg Config) (*Stack, error) {
	if len(cfg.FDs) == 0 && cfg.Link == nil {
		return nil, fmt.Errorf("%w: no TUN fds and no link", ErrConfig)
	}
	if len(cfg.Prefixes) == 0 {
		return nil, fmt.Errorf("%w: no prefixes", ErrConfig)
	}
	if cfg.Handle == nil {
		return nil, fmt.Errorf("%w: no connection handler", ErrConfig)
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.TotalTimeout <= 0 {
		cfg.TotalTimeout = DefaultTotalTimeout
	}
	if cfg.MaxPayloadBytes <= 0 {
		cfg.MaxPayloadBytes = DefaultMaxPayloadBytes
	}
	if cfg.ConnBuffer == 0 {
		cfg.ConnBuffer = DefaultConnBuffer
	}
	if cfg.ConnBuffer < MinConnBuffer || cfg.ConnBuffer > MaxConnBuffer {
		return nil, fmt.Errorf("%w: connection buffer %d bytes outside %d to %d", ErrConfig, cfg.ConnBuffer, MinConnBuffer, MaxConnBuffer)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Stack{
		cfg:       cfg,
		fds:       cfg.FDs,
		sink:      cfg.Sink,
		log:       cfg.Logger,
		rng:       &nonceRNG{},
		conns:     newConnTable(cfg.MaxConns),
		listeners: make(map[listenKey]*listener),
		ready:     make(chan *listener, readyQueue),
	}
	s.stack = stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
		SecureRNG:          s.rng,
		Clock:              cfg.clock,
	})
	jar, err := newCookieJar(s.stack.Clock())
	if err != nil {
		s.stack.Close()
		return nil, fmt.Errorf("netstack: cookie secret: %w", err)
	}
	s.jar = jar
	if err := s.configure(); err != nil {
		s.stack.Close()
		return nil, err
	}

	link := cfg.Link
	if link == nil {
		link, err = fdbased.New(&fdbased.Options{
			FDs: cfg.FDs,
			MTU: cfg.MTU,
			// One processor per fd delivers inline in the reader goroutine:
			// more would put an unbounded queue between the TUN and the
			// front end (gvisor-notes §2).
			ProcessorsPerChannel: 1,
			// The kernel checksums what it hands a TUN; the front end
			// checks TCP itself before anything reaches gVisor.
			RXChecksumOffload: true,
		})
		if err != nil {
			s.stack.Close()
			return nil, fmt.Errorf("netstack: fdbased: %w", err)
		}
	}
	s.fe = &frontEnd{st: s}
	s.fe.Endpoint.Init(link, s.fe)
	if e := s.stack.CreateNIC(nicID, s.fe); e != nil {
		s.stack.Close()
		return nil, gvErr("create nic", e)
	}
	// Any address of the prefixes is ours (promiscuous) and may be the
	// source of replies (spoofing); gvisor-notes §1.1.
	if e := s.stack.SetPromiscuousMode(nicID, true); e != nil {
		s.Close()
		return nil, gvErr("promiscuous", e)
	}
	if e := s.stack.SetSpoofing(nicID, true); e != nil {
		s.Close()
		return nil, gvErr("spoofing", e)
	}
	s.stack.SetRouteTable([]tcpip.Route{
		{Destination: header.IPv4EmptySubnet, NIC: nicID},
		{Destination: header.IPv6EmptySubnet, NIC: nicID},
	})

	s.ctx, s.cancel = context.WithCancel(context.Background())
	for range acceptors {
		s.wg.Add(1)
		go s.acceptLoop()
	}
	s.wg.Add(1)
	go s.janitor()
	return s, nil
}

// configure sets the non-default TCP options, each for a reason.
func (s *Stack) configure() error {
	// Safety net: should a SYN ever reach a listener, gVisor answers it with
	// a cookie too and keeps no half-open state.
	cookies := tcpip.TCPAlwaysUseSynCookies(true)
	if e := s.stack.SetTransportProtocolOption(tcp.ProtocolNumber, &cookies); e != nil {
		return gvErr("syn cookies", e)
	}
	// Cookie connections carry no SACK; don't offer it.
	sack := tcpip.TCPSACKEnabled(false)
	if e := s.stack.SetTransportProtocolOption(tcp.ProtocolNumber, &sack); e != nil {
		return gvErr("sack", e)
	}
	// A telescope reads a few KiB per connection: small buffers keep the
	// memory of MaxConns connections small, and Max = Default with
	// auto-tuning off means no connection grows past ConnBuffer, whatever
	// the client sends or leaves unread. gVisor counts segment overhead
	// against the receive buffer, so it bounds memory, not just payload.
	b := s.cfg.ConnBuffer
	rcv := tcpip.TCPReceiveBufferSizeRangeOption{Min: MinConnBuffer, Default: b, Max: b}
	if e := s.stack.SetTransportProtocolOption(tcp.ProtocolNumber, &rcv); e != nil {
		return gvErr("receive buffer", e)
	}
	snd := tcpip.TCPSendBufferSizeRangeOption{Min: MinConnBuffer, Default: b, Max: b}
	if e := s.stack.SetTransportProtocolOption(tcp.ProtocolNumber, &snd); e != nil {
		return gvErr("send buffer", e)
	}
	tune := tcpip.TCPModerateReceiveBufferOption(false)
	if e := s.stack.SetTransportProtocolOption(tcp.ProtocolNumber, &tune); e != nil {
		return gvErr("receive buffer auto-tuning", e)
	}
	// Don't hold finished connections for a minute: scanners reuse ports.
	tw := tcpip.TCPTimeWaitTimeoutOption(5 * time.Second)
	if e := s.stack.SetTransportProtocolOption(tcp.ProtocolNumber, &tw); e != nil {
		return gvErr("time-wait", e)
	}
	return nil
}

// Stats returns the live counters.
func (s *Stack) Stats() *Stats { return &s.stats }

// GVisorStats returns gVisor's own counters (for tests and diagnostics).
func (s *Stack) GVisorStats() tcpip.Stats { return s.stack.Stats() }

// ensureListener creates the wildcard listener of a port on first use. It
// injects the cookie secret so that gVisor validates the front end's
// cookies.
func (s *Stack) ensureListener(netProto tcpip.NetworkProtocolNumber, port uint16) error {
	k := listenKey{netProto, port}
	s.lmu.Lock()
	defer s.lmu.Unlock()
	if _, ok := s.listeners[k]; ok {
		return nil
	}
	l := &listener{wq: &waiter.Queue{}}
	ep, e := s.stack.NewEndpoint(tcp.ProtocolNumber, netProto, l.wq)
	if e != nil {
		return gvErr("new endpoint", e)
	}
	if netProto == header.IPv6ProtocolNumber {
		ep.SocketOptions().SetV6Only(true)
	}
	if e := ep.Bind(tcpip.FullAddress{Port: port}); e != nil {
		ep.Close()
		return gvErr(fmt.Sprintf("bind port %d", port), e)
	}
	err := s.rng.inject(s.jar, s.cfg.tamperNonce, func() error { return gvErr("listen", ep.Listen(listenBacklog)) })
	if err != nil {
		ep.Close()
		s.log.Error("listener", "dest_port", port, "err", err)
		return err
	}
	// After Listen: the connections keep ConnBuffer, the queue grows.
	ep.SocketOptions().SetReceiveBufferSize(listenQueueBuffer, false)
	l.ep = ep
	l.entry = waiter.NewFunctionEntry(waiter.ReadableEvents, func(waiter.EventMask) {
		if l.queued.CompareAndSwap(false, true) {
			select {
			case s.ready <- l:
			default:
				// Cannot happen while readyQueue exceeds the listener
				// count; the next notification retries.
				l.queued.Store(false)
			}
		}
	})
	l.wq.EventRegister(&l.entry)
	s.listeners[k] = l
	s.stats.Listeners.Add(1)
	// The ACK that triggered creation may already be queued.
	l.entry.NotifyEvent(waiter.ReadableEvents)
	return nil
}

// acceptLoop drains listeners that have connections ready.
func (s *Stack) acceptLoop() {
	defer s.wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case l := <-s.ready:
			l.queued.Store(false)
			for {
				ep, wq, e := l.ep.Accept(nil)
				if e != nil {
					break
				}
				s.serve(ep, wq)
			}
		}
	}
}

// serve starts the handler of one accepted connection.
func (s *Stack) serve(ep tcpip.Endpoint, wq *waiter.Queue) {
	id := ep.Info().(*stack.TransportEndpointInfo).ID
	local := netip.AddrPortFrom(addrOf(id.LocalAddress), id.LocalPort)
	remote := netip.AddrPortFrom(addrOf(id.RemoteAddress), id.RemotePort)
	key := makeFlowKey(local.Addr(), remote.Addr(), local.Port(), remote.Port())
	uid, admitted, ok := s.conns.accepted(key)
	if !ok {
		s.stats.AcceptUnknown.Add(1)
		admitted = time.Now()
	}
	flow := records.Flow{Remote: remote, Local: local, UserID: uid, Accepted: admitted}
	c := newConn(wq, ep, s.cfg.IdleTimeout, s.cfg.TotalTimeout)
	s.stats.Accepted.Add(1)
	s.stats.Active.Add(1)
	s.served.Add(1)
	go func() {
		defer s.served.Done()
		defer s.stats.Active.Add(-1)
		defer s.conns.finish(key, time.Now())
		defer c.Close()
		s.cfg.Handle(c, flow)
	}()
}

func addrOf(a tcpip.Address) netip.Addr {
	if a.Len() == 4 {
		return netip.AddrFrom4(a.As4())
	}
	return netip.AddrFrom16(a.As16())
}

// janitor reclaims admissions gVisor never accepted and forgets finished
// connections.
func (s *Stack) janitor() {
	defer s.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-t.C:
			if n := s.conns.sweep(now); n > 0 {
				s.stats.AdmitExpired.Add(uint64(n))
			}
		}
	}
}

// Close stops reading the link, resets open connections, waits for the
// handlers and releases gVisor. It is safe to call more than once.
func (s *Stack) Close() {
	s.closeOnce.Do(func() {
		if s.cancel != nil {
			s.cancel()
		}
		s.wg.Wait()
		// Removing the NIC stops the fdbased readers and waits for them.
		s.stack.RemoveNIC(nicID)
		s.stack.Close()
		s.served.Wait()
		s.stack.Wait()
	})
}
