package handlers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/spoki-telescope/spoki/records"
)

// Defaults of MuxConfig's zero values.
const (
	DefaultFirstDataTimeout = 5 * time.Second
	DefaultIdleTimeout      = 30 * time.Second
	// DefaultRequestTimeout gives a client 10 s to send its request: bots
	// send theirs in one segment, and a slowloris that trickles a header a
	// byte at a time holds its slot for 10 s instead of TotalTimeout.
	DefaultRequestTimeout   = 10 * time.Second
	DefaultTotalTimeout     = 120 * time.Second
	DefaultMaxFirstBytes    = 4096
	DefaultMaxBytesToServer = 1 << 20
	DefaultMaxBytesToClient = 1 << 20
	DefaultMaxEventsPerConn = 16
)

// MuxConfig configures a Mux. Zero durations and sizes mean the defaults
// above; there is no "unlimited": every connection has a budget.
type MuxConfig struct {
	// Registry picks the handler. Required.
	Registry *Registry
	// Emit receives one session event per connection, after the connection
	// is closed. Required. It is called from many goroutines at once, takes
	// ownership of the Session, and should not block: it holds the
	// connection's goroutine (and so the netstack's concurrency slot).
	Emit func(*records.Session)
	// EmitEvent receives the extra events handlers raise with Conn.Emit
	// (e.g. `downloader`), each one JSON line encoded by
	// records.AppendEvent and timestamped t; filesink.Writer.Event fits.
	// It is called from many goroutines at once, takes ownership of line,
	// and should not block. nil drops such events (counted in
	// Stats.EventsDropped).
	EmitEvent func(t time.Time, line []byte)
	// Alerts adds an alert event (records.AlertDownloader, EVE's alert
	// form) after each downloader event, through EmitEvent; it does not
	// count against MaxEventsPerConn.
	Alerts bool
	// Logger gets panics (Error) and one Debug line per session; nil
	// discards.
	Logger *slog.Logger

	// FirstDataTimeout is how long the Mux waits for the client's first
	// data segment before dispatching by port with a nil First.
	FirstDataTimeout time.Duration
	// IdleTimeout ends the exchange when a single read or write on the Conn
	// waits longer than this.
	IdleTimeout time.Duration
	// TotalTimeout bounds the whole connection, first-data wait included;
	// Serve's context is cancelled at that deadline.
	TotalTimeout time.Duration
	// RequestTimeout is the minimum-progress rule: until the handler has
	// answered data the client sent (written to a client that has sent
	// something), no read waits past RequestTimeout after the connection
	// started, so that a client trickling its first request a byte at a
	// time, within IdleTimeout and the handler's own per-read timeouts,
	// still gives up its slot after RequestTimeout rather than
	// TotalTimeout. A banner written before the client spoke does not
	// count as an answer. Cuts are counted in Stats.BudgetRequest.
	RequestTimeout time.Duration
	// MaxFirstBytes caps the first segment, as read and recorded.
	MaxFirstBytes int
	// MaxBytesToServer and MaxBytesToClient cap the bytes a handler may
	// read and write, first segment included. MaxBytesToServer must be at
	// least MaxFirstBytes.
	MaxBytesToServer, MaxBytesToClient int64
	// MaxEventsPerConn caps the events one connection may raise with
	// Conn.Emit (16), so that a client repeating a command cannot flood the
	// event log; the rest are dropped and counted.
	MaxEventsPerConn int
}

// Mux is spoki's dispatcher: for each accepted connection it reads the
// first segment, picks a Handler from the Registry, runs it under the
// configured budgets, closes the connection and emits the session event.
type Mux struct {
	cfg MuxConfig
	log *slog.Logger
	// bufs holds *[]byte of max(MaxFirstBytes, minPoolBuf) bytes, for the
	// first read and for what endWithReset discards: one pool, so that a
	// burst of short connections leaves one set of buffers behind, not
	// this and io.Discard's own (8 KiB each).
	bufs  sync.Pool
	stats Stats
}

// NewMux returns a Mux configured by cfg, or an error naming the missing or
// invalid setting.
func NewMux(cfg MuxConfig) (*Mux, error) {
	switch {
	case cfg.Registry == nil:
		return nil, errors.New("handlers: new mux: no Registry")
	case cfg.Emit == nil:
		return nil, errors.New("handlers: new mux: no Emit")
	case cfg.FirstDataTimeout < 0, cfg.IdleTimeout < 0, cfg.TotalTimeout < 0, cfg.RequestTimeout < 0,
		cfg.MaxFirstBytes < 0, cfg.MaxBytesToServer < 0, cfg.MaxBytesToClient < 0,
		cfg.MaxEventsPerConn < 0:
		return nil, errors.New("handlers: new mux: negative timeout or size")
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&cfg.FirstDataTimeout, DefaultFirstDataTimeout)
	def(&cfg.IdleTimeout, DefaultIdleTimeout)
	def(&cfg.TotalTimeout, DefaultTotalTimeout)
	def(&cfg.RequestTimeout, DefaultRequestTimeout)
	if cfg.MaxFirstBytes == 0 {
		cfg.MaxFirstBytes = DefaultMaxFirstBytes
	}
	if cfg.MaxBytesToServer == 0 {
		cfg.MaxBytesToServer = max(DefaultMaxBytesToServer, int64(cfg.MaxFirstBytes))
	}
	if cfg.MaxBytesToClient == 0 {
		cfg.MaxBytesToClient = DefaultMaxBytesToClient
	}
	if cfg.MaxEventsPerConn == 0 {
		cfg.MaxEventsPerConn = DefaultMaxEventsPerConn
	}
	if cfg.MaxBytesToServer < int64(cfg.MaxFirstBytes) {
		return nil, fmt.Errorf("handlers: new mux: MaxBytesToServer %d below MaxFirstBytes %d",
			cfg.MaxBytesToServer, cfg.MaxFirstBytes)
	}
	m := &Mux{cfg: cfg, log: cfg.Logger}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	m.bufs.New = func() any { b := make([]byte, max(cfg.MaxFirstBytes, minPoolBuf)); return &b }
	return m, nil
}

// Stats returns the Mux's live counters.
func (m *Mux) Stats() *Stats { return &m.stats }

// Pure reports whether the Mux's Registry puts connections to the local
// address a in pure Spoki mode: the netstack's front end then resets a
// handshake ACK with data itself, as Spoki does (netstack.Config.Pure).
func (m *Mux) Pure(a netip.Addr) bool { return m.cfg.Registry.IsPure(a) }

// endWithReset ends a connection its handler left open the way Spoki ends
// every connection, with a RST (the handshake ACK's own reaction is already
// in the reply log: the netstack's front end wrote it). It first sends a FIN,
// so that a client reading until the end knows it has everything, and gives
// the client LingerTimeout to read what the handler wrote and close: a RST
// that overtook unread data would make the client drop it. What the client
// still sends meanwhile is read and discarded (capped).
func (m *Mux) endWithReset(conn *Conn) {
	if cw, ok := conn.raw.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = conn.raw.SetReadDeadline(time.Now().Add(LingerTimeout))
	m.discard(conn.raw, lingerDiscardBytes)
	_ = conn.Reset()
}

const (
	// lingerDiscardBytes caps what endWithReset reads from a client that
	// keeps sending after the handler is done.
	lingerDiscardBytes = 64 << 10
	// minPoolBuf is the smallest buffer of Mux.bufs, which discard reads
	// into.
	minPoolBuf = 4 << 10
)

// discard reads and drops up to n bytes of r, until an error (the
// deadline, the client's close).
func (m *Mux) discard(r io.Reader, n int64) {
	bp := m.bufs.Get().(*[]byte)
	defer m.bufs.Put(bp)
	for n > 0 {
		k, err := r.Read((*bp)[:min(int64(len(*bp)), n)])
		n -= int64(k)
		if err != nil {
			return
		}
	}
}

// ServeConn serves one accepted connection c described by f and returns
// when it is closed and its session emitted. It has the signature the
// netstack takes at construction; the netstack calls it on a new goroutine
// per connection and enforces the concurrency cap, so ServeConn neither
// spawns goroutines nor limits concurrency. It owns c and always closes it.
func (m *Mux) ServeConn(c net.Conn, f records.Flow) {
	start := time.Now()
	end := start.Add(m.cfg.TotalTimeout)
	ctx, cancel := context.WithDeadline(context.Background(), end)
	defer cancel()

	conn := &Conn{
		raw: c, flow: f,
		idle: m.cfg.IdleTimeout, end: end, requestEnd: start.Add(m.cfg.RequestTimeout),
		maxToServer: m.cfg.MaxBytesToServer, maxToClient: m.cfg.MaxBytesToClient,
		mux: m,
	}
	// A speak-first port's handler gets the connection after its shorter
	// wait: its clients wait for the server's banner.
	wait := m.cfg.FirstDataTimeout
	if sf := m.cfg.Registry.SpeakFirst(f.Local); sf > 0 && sf < wait {
		wait = sf
	}
	firstDL := start.Add(wait)
	if end.Before(firstDL) {
		firstDL = end
	}
	conn.first = m.readFirst(conn, firstDL)
	conn.unread = conn.first

	s := &records.Session{Flow: f, Payload: conn.first}
	var err error
	s.AppProto, s.Detail, err = m.serve(ctx, conn)
	if !conn.reset.Load() {
		m.endWithReset(conn)
	}
	_ = c.Close() // the exchange is over; a second close after Reset is harmless
	s.End = time.Now()
	s.BytesToServer, s.BytesToClient = conn.toServer.Load(), conn.toClient.Load()
	if err != nil {
		s.Error = err.Error()
	}
	m.stats.session(s.AppProto)
	m.stats.cut(budget(conn.cut.Load()))
	if m.log.Enabled(ctx, slog.LevelDebug) {
		m.log.LogAttrs(ctx, slog.LevelDebug, "session", flowAttrs(f,
			slog.String("app_proto", s.AppProto),
			slog.Int64("bytes_toserver", s.BytesToServer),
			slog.Int64("bytes_toclient", s.BytesToClient),
			slog.String("error", s.Error))...)
	}
	m.cfg.Emit(s)
}

// readFirst does the single read that peeks at the client's first segment,
// under deadline dl, and returns a copy sized to the data (nil if none).
func (m *Mux) readFirst(c *Conn, dl time.Time) []byte {
	bp := m.bufs.Get().(*[]byte)
	defer m.bufs.Put(bp)
	var n int
	err := c.raw.SetReadDeadline(dl)
	if err == nil {
		n, err = c.raw.Read((*bp)[:m.cfg.MaxFirstBytes])
	}
	c.toServer.Add(int64(n))
	switch {
	case n > 0:
		// A read error with data is left for the handler's next read to see.
		return append([]byte(nil), (*bp)[:n]...)
	case errors.Is(err, os.ErrDeadlineExceeded):
		m.stats.FirstDataTimeouts.Add(1)
	default:
		m.stats.FirstDataClosed.Add(1)
	}
	return nil
}

// serve picks the handler and runs it, recovering a panic in either: the
// panic is counted, logged once with its stack, and the connection reset.
func (m *Mux) serve(ctx context.Context, c *Conn) (name string, detail any, err error) {
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		m.stats.Panics.Add(1)
		m.log.LogAttrs(ctx, slog.LevelError, "handler panic", flowAttrs(c.flow,
			slog.String("handler", name),
			slog.Any("panic", v),
			slog.String("stack", string(debug.Stack())))...)
		_ = c.Reset()
		detail, err = nil, fmt.Errorf("handlers: %s: panic: %v", name, v)
	}()
	h := m.cfg.Registry.LookupAddr(c.first, c.flow.Local)
	name = h.Name()
	detail, err = h.Serve(ctx, c)
	if err != nil {
		m.stats.Errors.Add(1)
		if errors.Is(err, ErrBudgetExceeded) {
			m.stats.BudgetExceeded.Add(1)
		}
	}
	return name, detail, err
}

// emitEvent encodes and hands on one event a handler raised on c.
func (m *Mux) emitEvent(c *Conn, eventType string, fields any) error {
	if m.cfg.EmitEvent == nil || c.events.Add(1) > int64(m.cfg.MaxEventsPerConn) {
		m.stats.EventsDropped.Add(1)
		return ErrEventDropped
	}
	t := time.Now()
	line, err := records.AppendEvent(nil, eventType, t, &c.flow, fields)
	if err != nil {
		m.stats.EventsDropped.Add(1)
		return fmt.Errorf("handlers: emit: %w", err)
	}
	m.stats.Events.Add(1)
	m.cfg.EmitEvent(t, line)
	if d, ok := fields.(Downloader); ok && m.cfg.Alerts && eventType == EventDownloader {
		if line, err = records.AppendAlertEvent(nil, t, &c.flow, &records.AlertDownloader, d.AppProto, eventType, d); err == nil {
			m.stats.Alerts.Add(1)
			m.cfg.EmitEvent(t, line)
		}
	}
	return nil
}

// flowAttrs returns f's addresses as log attributes named like the event
// fields, followed by more.
func flowAttrs(f records.Flow, more ...slog.Attr) []slog.Attr {
	return append([]slog.Attr{
		slog.String("src_ip", f.Remote.Addr().String()),
		slog.Int("src_port", int(f.Remote.Port())),
		slog.String("dest_ip", f.Local.Addr().String()),
		slog.Int("dest_port", int(f.Local.Port())),
	}, more...)
}
