package netstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/spoki-telescope/spoki/records"
	"github.com/spoki-telescope/spoki/tun"
)

const nicID tcpip.NICID = 1

// Defaults for Config.
const (
	DefaultMTU             = 1500
	DefaultMaxConns        = 4096
	DefaultIdleTimeout     = 30 * time.Second
	DefaultTotalTimeout    = 2 * time.Minute
	DefaultMaxPayloadBytes = 65535
	// DefaultMaxConnsPerIP and DefaultMaxConnsPerNet are the shares of
	// MaxConns one remote address and one remote /24 (IPv4) or /48 (IPv6)
	// may hold: 64 addresses or 16 networks are needed to fill the table.
	DefaultMaxConnsPerIP  = 64
	DefaultMaxConnsPerNet = 256
	// DefaultMaxListeners bounds the gVisor listeners open at once, about
	// 4.5 KiB each (see listener).
	DefaultMaxListeners = 1024
	// listenBacklog bounds each lazily created listener's accept queue; the
	// acceptors drain it at once, and MaxConns bounds the total anyway.
	listenBacklog = 1024
	acceptors     = 2
	// listenerIdle is how long a listener stays open after the front end
	// last handed it a segment; the janitor closes it then, if no
	// handshake it was handed is still waiting to be accepted.
	listenerIdle = time.Second
	// listenerEvictIdle is the shorter idle time after which a listener may
	// be closed to make room when MaxListeners are open. It must exceed by
	// far the time gVisor takes to process a segment queued on a listener:
	// a segment still queued when its listener closes would be answered
	// with a RST.
	listenerEvictIdle = 250 * time.Millisecond
	// listenerEvictScan bounds the listeners looked at for one eviction.
	listenerEvictScan = 32
)

// Sink receives the records of the packet path. Both methods are called
// inline for every packet and must not block; records are passed by value so
// that nothing escapes to the heap.
type Sink interface {
	Packet(p records.Packet)
	Reply(r records.Reply)
}

// BatchSink is a Sink that also takes the records of one read of the TUN
// at once. A TUN reader then collects its packets' rows and the SYN-ACKs'
// reply rows and hands them over once per read (and before any packet
// reaches gVisor), instead of one Packet and one Reply call each: one
// queue operation per batch where there were two per SYN. Records must
// not block and must copy what it keeps: the slices are the reader's and
// are reused at once.
type BatchSink interface {
	Sink
	Records(pkts []records.Packet, replies []records.Reply)
}

// Backlogger is a Sink that can tell that it is behind: the records it
// has queued are near the bound past which it drops them. While it is, a
// TUN reader waits after handing it a read's records (Config.RecordWait),
// so that a flood leaves its excess unread in the TUN's queue (the
// kernel drops it there, before anything is spent on it) instead of
// answering SYNs whose rows the sink would then drop: every SYN-ACK sent
// keeps its rows. Backlogged is called once per read and must be cheap.
type Backlogger interface {
	Backlogged() bool
}

// DefaultRecordWait is the longest a TUN reader waits for a backlogged
// sink after one read (Config.RecordWait): long enough for the record
// writer to drain a read's worth on a core shared with the readers, short
// enough that a writer stalled on its disk slows a reader to no less than
// 64 packets a millisecond.
const DefaultRecordWait = time.Millisecond

// recordWaitStep is how long a waiting reader sleeps between two looks at
// the sink's backlog.
const recordWaitStep = 100 * time.Microsecond

// Config configures a Stack. Zero values mean the defaults.
type Config struct {
	// Device is the TUN, one reader goroutine per queue. It stays the
	// caller's: Close stops reading it, and the caller closes it.
	Device tun.Device
	// Link replaces Device with a gVisor link endpoint (in-memory tests).
	Link stack.LinkEndpoint
	// MTU of the link; the Device's if zero.
	MTU uint32
	// Prefixes are the telescope's address space; packets to other
	// addresses are recorded and dropped.
	Prefixes []netip.Prefix
	// RecordWait is the longest a TUN reader waits, after handing a read's
	// records to a Sink that is a Backlogger and Backlogged, for it to catch
	// up, in steps of 100 µs (Stats.RecordWaits, RecordWaitsExpired).
	// Unlike the other fields, zero is not the default but never waiting:
	// the sink then drops and counts what does not fit. spoki run sets
	// DefaultRecordWait (--record-wait).
	RecordWait time.Duration
	// MaxConns bounds connections open at once; valid-cookie ACKs over it
	// are dropped and counted (the client retransmits).
	MaxConns int
	// MaxConnsPerIP and MaxConnsPerNet bound the connections open at once
	// from one remote address and from one remote /24 (IPv4) or /48
	// (IPv6), so that one host or network gets at most its share of
	// MaxConns. Valid-cookie ACKs over them are dropped and counted apart.
	// A value >= MaxConns turns the cap off.
	MaxConnsPerIP, MaxConnsPerNet int
	// MaxListeners bounds the gVisor listeners open at once (one per port
	// and family that saw a handshake recently). A listener is closed once
	// idle; a handshake that finds MaxListeners open and none idle is
	// dropped and counted (the client retransmits).
	MaxListeners int
	// IdleTimeout ends a connection on which nothing was read or written
	// for that long; TotalTimeout ends any connection after that long.
	IdleTimeout, TotalTimeout time.Duration
	// MaxPayloadBytes caps the payload copied into a packet record.
	MaxPayloadBytes int
	// ICMPOff leaves ICMP echo requests unanswered (they are recorded);
	// UDPOff the UDP probes of the services of udpreply. By default the
	// front end answers both (reply.go).
	ICMPOff, UDPOff bool
	// ReplyLimits limits the echo replies and UDP answers per source; nil
	// means DefaultReplyLimits.
	ReplyLimits *ReplyLimits
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
	// Pure reports whether connections to the local address are in pure
	// Spoki mode: the front end then answers a handshake ACK that carries
	// data with a RST at once, as Spoki does, and gVisor never sees it. It
	// is called on the packet path, concurrently, and must be fast and
	// never block. nil means never.
	Pure func(local netip.Addr) bool
	// Logger for lifecycle and errors.
	Logger *slog.Logger
	// SYNACKLimits limits the SYN-ACKs per source (ratelimit.go); nil
	// means DefaultSYNACKLimits.
	SYNACKLimits *SYNACKLimits
	// Persona returns the persona of the telescope's address (persona.go):
	// the shape of the SYN-ACKs, of the front end's ACKs and RSTs, and of
	// the IP header of gVisor's segments from it. It is called on the
	// packet path, concurrently, and must be fast, never block and never
	// allocate (PersonaLookup's function is such). nil means PersonaPlain
	// everywhere.
	Persona func(local netip.Addr) *Persona

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
	tun   *tunLink // nil over Config.Link
	sink  Sink
	log   *slog.Logger
	jar   *cookieJar
	rlim  *synLimiter // echo replies (class regular) and UDP answers (irregular); nil: not limited
	rng   *nonceRNG
	conns *connTable
	stats Stats
	uid   atomic.Uint32
	limit *synLimiter // nil: SYN-ACKs are not limited
	// tsSecret is gVisor's TCP timestamp offset secret, handed to it at
	// stack creation (tcpProtocol), so that the front end's timestamps are
	// the ones gVisor's connections continue from.
	tsSecret [tsSecretLen]byte

	// lmu serialises listener creation (and with it the nonce injection)
	// and closing; listeners holds the open ones, most recently used first
	// in the lru list.
	lmu       sync.Mutex
	listeners map[listenKey]*listener // +checklocks:lmu
	lru       listenerList            // +checklocks:lmu
	// slots counts the listeners that may still be in ready: the open ones
	// and the closed ones the acceptors have not yet taken out. It never
	// exceeds MaxListeners, ready's capacity, so that a wake-up can never
	// find ready full.
	slots atomic.Int64
	ready chan *listener

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

// listener is one lazily created wildcard gVisor listener: it turns the
// valid-cookie ACKs of one port and family into connections. Its lifecycle:
// created by the first handshake of its port; closed by the janitor (or to
// make room at MaxListeners) once no handshake it was handed waits to be
// accepted (pending), its accept queue is empty and the front end has not
// handed it a segment for listenerIdle. gVisor's Close unregisters it and
// releases the port at once, so the next handshake creates a new one; the
// connections it created are registered on their own and live on.
type listener struct {
	key listenKey
	ep  tcpip.Endpoint
	wq  *waiter.Queue
	// entry wakes the acceptors; queued is set while the listener is in
	// ready (or about to be sent there), and stays set once it is closed
	// and its slot released, so that it is never queued again.
	entry    waiter.Entry
	queued   atomic.Bool
	closed   atomic.Bool
	released atomic.Bool
	// pending counts the admitted handshakes handed to this listener that
	// were neither accepted nor expired (connEntry.l points here).
	pending atomic.Int32
	// lastUse is when the front end last handed it a segment.
	lastUse    time.Time // +checklocks:Stack.lmu
	prev, next *listener // lru links, +checklocks:Stack.lmu
}

// listenerList is an intrusive doubly linked list of listeners, most
// recently used at the front.
type listenerList struct {
	front, back *listener
}

func (ll *listenerList) remove(l *listener) {
	if l.prev != nil {
		l.prev.next = l.next
	} else {
		ll.front = l.next
	}
	if l.next != nil {
		l.next.prev = l.prev
	} else {
		ll.back = l.prev
	}
	l.prev, l.next = nil, nil
}

func (ll *listenerList) pushFront(l *listener) {
	l.prev, l.next = nil, ll.front
	if ll.front != nil {
		ll.front.prev = l
	} else {
		ll.back = l
	}
	ll.front = l
}

// New builds the stack and starts reading the link.
func New(cfg Config) (*Stack, error) {
	if (cfg.Device == nil || len(cfg.Device.Queues()) == 0) && cfg.Link == nil {
		return nil, fmt.Errorf("%w: no TUN device and no link", ErrConfig)
	}
	if len(cfg.Prefixes) == 0 {
		return nil, fmt.Errorf("%w: no prefixes", ErrConfig)
	}
	if cfg.Handle == nil {
		return nil, fmt.Errorf("%w: no connection handler", ErrConfig)
	}
	if cfg.MTU == 0 && cfg.Link == nil {
		cfg.MTU = uint32(cfg.Device.MTU())
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.MaxConnsPerIP <= 0 {
		cfg.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	if cfg.MaxConnsPerNet <= 0 {
		cfg.MaxConnsPerNet = DefaultMaxConnsPerNet
	}
	if cfg.MaxListeners <= 0 {
		cfg.MaxListeners = DefaultMaxListeners
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
	limits := DefaultSYNACKLimits()
	if cfg.SYNACKLimits != nil {
		limits = *cfg.SYNACKLimits
	}
	if err := limits.Validate(); err != nil {
		return nil, err
	}
	replyLimits := DefaultReplyLimits()
	if cfg.ReplyLimits != nil {
		replyLimits = *cfg.ReplyLimits
	}
	if err := replyLimits.Validate(); err != nil {
		return nil, err
	}
	s := &Stack{
		cfg:       cfg,
		sink:      cfg.Sink,
		log:       cfg.Logger,
		rng:       &nonceRNG{},
		conns:     newConnTable(cfg.MaxConns).capSources(cfg.MaxConnsPerIP, cfg.MaxConnsPerNet),
		listeners: make(map[listenKey]*listener),
		ready:     make(chan *listener, cfg.MaxListeners),
		limit:     newSYNLimiter(limits),
		rlim:      newSYNLimiter(replyLimits.asSYN()),
	}
	if _, err := s.rng.Read(s.tsSecret[:]); err != nil {
		return nil, fmt.Errorf("netstack: timestamp secret: %w", err)
	}
	tsFailed := false
	s.stack = stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{s.tcpProtocol(tcp.NewProtocol, &tsFailed)},
		SecureRNG:          s.rng,
		Clock:              cfg.clock,
	})
	if tsFailed {
		s.stack.Close()
		return nil, errTSSecretUnread
	}
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
		s.tun = newTUNLink(cfg.Device, cfg.MTU, func(q int, err error) {
			s.log.Error("TUN queue stopped", "queue", q, "err", err)
		})
		link = s.tun
	}
	s.fe = &frontEnd{st: s}
	if b, ok := s.sink.(Backlogger); ok && cfg.RecordWait > 0 {
		s.fe.backlog = b
	}
	s.fe.Endpoint.Init(link, s.fe)
	if e := s.stack.CreateNIC(nicID, s.fe); e != nil {
		s.stack.Close()
		return nil, gvErr("create nic", e)
	}
	// Any address of the prefixes is ours (promiscuous) and may be the
	// source of replies (spoofing); docs/frontend.md#why-not-stock-gvisor.
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

// errListenerCap means MaxListeners listeners are open and none could be
// closed to make room.
var errListenerCap = errors.New("netstack: listener cap reached")

// ensureListener returns the listener of a port, creating it on first use
// (it injects the cookie secret so that gVisor validates the front end's
// cookies), and marks it used at now. A fresh handshake is counted in its
// pending until accepted or expired (connTable.bind). At MaxListeners it
// closes the least recently used idle listener, or fails with
// errListenerCap.
func (s *Stack) ensureListener(netProto tcpip.NetworkProtocolNumber, port uint16, fresh bool, now time.Time) (*listener, error) {
	k := listenKey{netProto, port}
	s.lmu.Lock()
	defer s.lmu.Unlock()
	l, ok := s.listeners[k]
	if !ok {
		var err error
		if l, err = s.newListenerLocked(k, now); err != nil {
			return nil, err
		}
	} else {
		s.lru.remove(l)
		s.lru.pushFront(l)
	}
	l.lastUse = now
	if fresh {
		l.pending.Add(1)
	}
	return l, nil
}

// newListenerLocked creates and registers the listener of k.
//
// +checklocks:s.lmu
func (s *Stack) newListenerLocked(k listenKey, now time.Time) (*listener, error) {
	if s.slots.Load() >= int64(s.cfg.MaxListeners) {
		s.evictLocked(now)
		if s.slots.Load() >= int64(s.cfg.MaxListeners) {
			return nil, errListenerCap
		}
	}
	l := &listener{key: k, wq: &waiter.Queue{}}
	ep, e := s.stack.NewEndpoint(tcp.ProtocolNumber, k.netProto, l.wq)
	if e != nil {
		return nil, gvErr("new endpoint", e)
	}
	if k.netProto == header.IPv6ProtocolNumber {
		ep.SocketOptions().SetV6Only(true)
	}
	// SO_REUSEADDR, inherited by the connections it creates: the next
	// listener of the port binds while connections of a closed one are
	// still open or in TIME-WAIT, as a restarted Linux server does
	// (ports.TupleOnlyFlag).
	ep.SocketOptions().SetReuseAddress(true)
	if e := ep.Bind(tcpip.FullAddress{Port: k.port}); e != nil {
		ep.Close()
		return nil, gvErr(fmt.Sprintf("bind port %d", k.port), e)
	}
	err := s.rng.inject(s.jar, s.cfg.tamperNonce, func() error { return gvErr("listen", ep.Listen(listenBacklog)) })
	if err != nil {
		ep.Close()
		s.log.Error("listener", "dest_port", k.port, "err", err)
		return nil, err
	}
	// After Listen: the connections keep ConnBuffer, the queue grows.
	ep.SocketOptions().SetReceiveBufferSize(listenQueueBuffer, false)
	l.ep = ep
	l.entry = waiter.NewFunctionEntry(waiter.ReadableEvents, func(waiter.EventMask) {
		if l.queued.CompareAndSwap(false, true) {
			select {
			case s.ready <- l:
			default:
				// Unreachable: a listener is in ready at most once, and
				// at most slots <= MaxListeners = cap(ready) listeners
				// can be. Never block gVisor's processor, though.
				l.queued.Store(false)
			}
		}
	})
	s.slots.Add(1)
	l.wq.EventRegister(&l.entry)
	s.listeners[k] = l
	s.lru.pushFront(l)
	s.stats.Listeners.Add(1)
	// The ACK that triggered creation may already be queued.
	l.entry.NotifyEvent(waiter.ReadableEvents)
	return l, nil
}

// closableLocked reports whether l may be closed without losing a
// handshake: none it was handed waits to be accepted, its accept queue is
// empty, and the front end has not handed it a segment for idle (so none
// is still queued in gVisor).
//
// +checklocks:s.lmu
func (s *Stack) closableLocked(l *listener, now time.Time, idle time.Duration) bool {
	return now.Sub(l.lastUse) >= idle && l.pending.Load() == 0 &&
		l.ep.Readiness(waiter.ReadableEvents)&waiter.ReadableEvents == 0
}

// closeListenerLocked closes l. Its slot is released now, or by the
// acceptor that takes it out of ready.
//
// +checklocks:s.lmu
func (s *Stack) closeListenerLocked(l *listener) {
	delete(s.listeners, l.key)
	s.lru.remove(l)
	// After EventUnregister no wake-up of l runs (waiter.Queue holds its
	// lock while notifying).
	l.wq.EventUnregister(&l.entry)
	l.closed.Store(true)
	l.ep.Close()
	s.stats.Listeners.Add(-1)
	s.stats.ListenersClosed.Add(1)
	// Claiming queued keeps l out of ready for good; if it is in ready
	// already, the acceptor releases it.
	if l.queued.CompareAndSwap(false, true) {
		s.releaseSlot(l)
	}
}

// releaseSlot frees l's wake-up slot, once.
func (s *Stack) releaseSlot(l *listener) {
	if l.released.CompareAndSwap(false, true) {
		s.slots.Add(-1)
	}
}

// evictLocked makes room for a listener: it closes the least recently used
// one that has been idle for listenerEvictIdle and is closable.
//
// +checklocks:s.lmu
func (s *Stack) evictLocked(now time.Time) {
	n := 0
	for l := s.lru.back; l != nil && n < listenerEvictScan; l = l.prev {
		if now.Sub(l.lastUse) < listenerEvictIdle {
			return
		}
		if s.closableLocked(l, now, listenerEvictIdle) {
			s.closeListenerLocked(l)
			return
		}
		n++
	}
}

// closeIdleListeners closes every closable listener idle for
// listenerIdle, a batch at a time so that the front end never waits long
// for lmu.
func (s *Stack) closeIdleListeners(now time.Time) {
	const batch = 64
	for {
		closed := 0
		s.lmu.Lock()
		for l := s.lru.back; l != nil && closed < batch; {
			prev := l.prev
			if now.Sub(l.lastUse) < listenerIdle {
				break
			}
			if s.closableLocked(l, now, listenerIdle) {
				s.closeListenerLocked(l)
				closed++
			}
			l = prev
		}
		s.lmu.Unlock()
		if closed < batch {
			return
		}
	}
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
			if l.closed.Load() {
				if l.queued.CompareAndSwap(false, true) {
					s.releaseSlot(l)
				}
				continue
			}
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
	uid, isn, admitted, reset, st := s.conns.accepted(key)
	switch st {
	case acceptAgain:
		s.stats.AcceptDuplicate.Add(1)
		s.dropDuplicate(ep, wq)
		return
	case acceptUnknown:
		s.stats.AcceptUnknown.Add(1)
		admitted = time.Now()
	}
	if reset {
		// The client's reset came before gVisor had the connection: end
		// it now rather than wait for data that will not come. The
		// handler still sees (and records) the reset connection.
		ep.Abort()
		s.stats.AcceptReset.Add(1)
	}
	flow := records.Flow{Remote: remote, Local: local, UserID: uid, ISN: isn, Accepted: admitted}
	c := newConn(wq, ep, s.cfg.IdleTimeout, s.cfg.TotalTimeout)
	s.stats.Accepted.Add(1)
	s.stats.Active.Add(1)
	s.served.Add(1)
	go func() {
		defer s.served.Done()
		defer s.stats.Active.Add(-1)
		defer func() {
			if s.conns.finish(key, time.Now()) {
				s.stats.LingerEvicted.Add(1)
			}
		}()
		defer c.Close()
		s.cfg.Handle(c, flow)
	}()
}

// dupDrainWait bounds how long dropDuplicate waits for gVisor to process
// the segment it queued on a duplicate endpoint (microseconds, normally).
const dupDrainWait = time.Second

// dropDuplicate resets, without a handler, an endpoint gVisor built a second
// time for a flow already served. gVisor queues the payload (or FIN) of a
// handshake ACK on the endpoint it builds from it (tcp accept.go,
// handleListenSegment: "Requeue the segment"); an endpoint closed or
// aborted before its processor took that segment hands it back to the demuxer
// (connect.go, drainClosingSegmentQueue), which finds the listener, whose
// valid cookie builds the endpoint again. So a handler that resets at once
// would be handed its connection again and again. The duplicate is aborted
// only once readable, when gVisor has taken the segment, so that it is not
// handed back once more: one flow, at most one duplicate, each counted.
func (s *Stack) dropDuplicate(ep tcpip.Endpoint, wq *waiter.Queue) {
	const mask = waiter.ReadableEvents | waiter.EventHUp | waiter.EventErr
	e, ch := waiter.NewChannelEntry(mask)
	wq.EventRegister(&e)
	s.served.Add(1)
	go func() {
		defer s.served.Done()
		if ep.Readiness(mask) == 0 {
			t := time.NewTimer(dupDrainWait)
			select {
			case <-ch:
			case <-t.C:
			case <-s.ctx.Done():
			}
			t.Stop()
		}
		wq.EventUnregister(&e)
		ep.Abort()
		ep.Close()
	}()
}

func addrOf(a tcpip.Address) netip.Addr {
	if a.Len() == 4 {
		return netip.AddrFrom4(a.As4())
	}
	return netip.AddrFrom16(a.As16())
}

// janitor reclaims admissions gVisor never accepted, forgets finished
// connections and closes idle listeners.
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
			s.closeIdleListeners(now)
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
		// The TUN readers stop first, outside gVisor's locks (tunLink.stop).
		if s.tun != nil {
			s.tun.stop()
		}
		s.wg.Wait()
		s.stack.RemoveNIC(nicID)
		s.stack.Close()
		s.served.Wait()
		s.stack.Wait()
	})
}
