package handlers

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spoki-telescope/spoki/records"
)

// Conn is the connection a Handler serves. It implements net.Conn over the
// netstack's conn with three additions: reads first return the client's
// first segment, which the Mux already read to choose the handler (a peeked
// conn); reads and writes run under the Mux's budgets and are counted for
// the session event; and Reset aborts the connection with a TCP RST.
//
// Like any net.Conn, its methods may be called from several goroutines, but
// only until Serve returns.
type Conn struct {
	raw   net.Conn
	flow  records.Flow
	first []byte

	// Budgets set by the Mux; zero means none (a Conn built by NewConn).
	idle               time.Duration
	end                time.Time
	requestEnd         time.Time // until answered: the request budget's deadline
	answered           atomic.Bool
	cut                atomic.Uint32 // the first budget that ended a read or write
	maxToServer        int64
	maxToClient        int64
	toServer, toClient atomic.Int64
	mu                 sync.Mutex
	unread             []byte            // +checklocks:mu; rest of first not yet returned by Read
	dl                 records.Deadlines // the handler's own deadlines

	mux    *Mux         // nil for a Conn built by NewConn: Emit drops
	events atomic.Int64 // events raised with Emit, for the per-conn cap
	reset  atomic.Bool  // Reset was called
}

var _ net.Conn = (*Conn)(nil)

// NewConn returns a Conn over c for a connection described by f, whose
// first segment, already read from c, is first (nil if none). It has no
// budgets: the Mux builds its own Conns; NewConn lets a handler's tests call
// Serve directly. The Conn keeps first; the caller must not modify it.
func NewConn(c net.Conn, f records.Flow, first []byte) *Conn {
	cc := &Conn{raw: c, flow: f, first: first, unread: first}
	cc.toServer.Store(int64(len(first)))
	return cc
}

// Flow returns the connection's addresses and handshake facts.
func (c *Conn) Flow() records.Flow { return c.flow }

// First returns the client's first data segment (at most
// MuxConfig.MaxFirstBytes), or nil if none arrived within
// MuxConfig.FirstDataTimeout. The slice is the session's payload: read it,
// never modify or retain it past Serve.
func (c *Conn) First() []byte { return c.first }

// Read implements net.Conn. It returns the unread part of First before
// reading the connection, so a handler parses the stream from its start.
func (c *Conn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if len(c.unread) > 0 {
		n := copy(p, c.unread)
		c.unread = c.unread[n:]
		c.mu.Unlock()
		return n, nil
	}
	c.mu.Unlock()
	dl, why := c.deadline(c.dl.Read())
	if c.maxToServer > 0 {
		left := c.maxToServer - c.toServer.Load()
		if left <= 0 {
			c.cut.CompareAndSwap(0, uint32(budgetBytes))
			return 0, fmt.Errorf("read: bytes to server cap: %w", ErrBudgetExceeded)
		}
		if int64(len(p)) > left {
			p = p[:left]
		}
	}
	if err := c.raw.SetReadDeadline(dl); err != nil {
		return 0, err
	}
	n, err := c.raw.Read(p)
	c.toServer.Add(int64(n))
	return n, c.budgetErr("read", why, err)
}

// Write implements net.Conn. Past the bytes-to-client cap it writes what
// fits and returns an error wrapping ErrBudgetExceeded.
func (c *Conn) Write(p []byte) (int, error) {
	dl, why := c.deadline(c.dl.Write())
	var capErr error
	if c.maxToClient > 0 {
		left := max(c.maxToClient-c.toClient.Load(), 0)
		if int64(len(p)) > left {
			p = p[:left]
			c.cut.CompareAndSwap(0, uint32(budgetBytes))
			capErr = fmt.Errorf("write: bytes to client cap: %w", ErrBudgetExceeded)
		}
	}
	if err := c.raw.SetWriteDeadline(dl); err != nil {
		return 0, err
	}
	n, err := c.raw.Write(p)
	c.toClient.Add(int64(n))
	if n > 0 && c.toServer.Load() > 0 {
		// The client spoke and got an answer: its request is complete.
		c.answered.Store(true)
	}
	if err != nil {
		return n, c.budgetErr("write", why, err)
	}
	return n, capErr
}

// deadline returns the earliest of the handler's deadline hd and the Mux's
// idle and total deadlines, and which budget it is ("" if the handler's or
// none). Deadlines are set on every call, as idle time restarts with each
// read or write.
func (c *Conn) deadline(hd time.Time) (time.Time, string) {
	var idle, request time.Time
	if c.idle > 0 {
		idle = time.Now().Add(c.idle)
	}
	if !c.answered.Load() {
		request = c.requestEnd
	}
	dl, i := records.EarliestDeadline(hd, idle, c.end, request)
	if i < 0 {
		return dl, ""
	}
	return dl, [...]string{"idle timeout", "total timeout", "request timeout"}[i]
}

// budgetErr wraps a deadline error caused by the Mux's budget why with
// ErrBudgetExceeded, so that handlers and the Mux can tell it from the
// handler's own deadlines, and notes the budget for the Mux's counters
// (which count it whether or not the handler returns the error).
func (c *Conn) budgetErr(op, why string, err error) error {
	if err == nil || why == "" || !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	c.cut.CompareAndSwap(0, uint32(budgetOf(why)))
	return fmt.Errorf("%s: %s: %w: %w", op, why, ErrBudgetExceeded, err)
}

// budget names the Mux budget that cut a connection short.
type budget uint32

const (
	budgetNone budget = iota
	budgetRequest
	budgetIdle
	budgetTotal
	budgetBytes
)

// budgetOf maps a deadline's name, as deadline returns it, to its budget.
func budgetOf(why string) budget {
	switch why {
	case "request timeout":
		return budgetRequest
	case "idle timeout":
		return budgetIdle
	case "total timeout":
		return budgetTotal
	}
	return budgetNone
}

// SetDeadline implements net.Conn. Deadlines only shorten the Mux's budgets.
func (c *Conn) SetDeadline(t time.Time) error { c.dl.Set(t); return nil }

// SetReadDeadline implements net.Conn; it applies from the next Read on.
func (c *Conn) SetReadDeadline(t time.Time) error { c.dl.SetRead(t); return nil }

// SetWriteDeadline implements net.Conn; it applies from the next Write on.
func (c *Conn) SetWriteDeadline(t time.Time) error { c.dl.SetWrite(t); return nil }

// LingerTimeout is how long Linger waits for the client to hang up.
const LingerTimeout = time.Second

// Linger lets the client read the handler's last answer (and send what
// it sends next, which is not answered) before the reset that ends the
// connection: a reset sent at once could discard the answer before the
// client reads it. It reads and discards, through r, the handler's
// buffered reader over c, up to max bytes, until the client hangs up or
// LingerTimeout passes. It replaces the handler's read deadline.
func (c *Conn) Linger(r *bufio.Reader, max int) {
	_ = c.SetReadDeadline(time.Now().Add(LingerTimeout))
	_, _ = r.Discard(max)
}

// Close implements net.Conn. Handlers need not call it: the Mux closes the
// connection after Serve.
func (c *Conn) Close() error { return c.raw.Close() }

// LocalAddr implements net.Conn.
func (c *Conn) LocalAddr() net.Addr { return c.raw.LocalAddr() }

// RemoteAddr implements net.Conn.
func (c *Conn) RemoteAddr() net.Addr { return c.raw.RemoteAddr() }

// Emit raises one extra event of type eventType about this connection
// (e.g. "downloader"), besides the session event the Mux writes at the end.
// The line is encoded at once by records.AppendEvent: the timestamp is now,
// the flow fields come from Flow, then the members of fields, which must
// encode to a JSON object that does not reuse those keys. Handlers call it
// from Serve, never after.
//
// Emit fails with an error wrapping ErrEventDropped when the Mux has no
// event sink (MuxConfig.EmitEvent) or the connection raised
// MaxEventsPerConn events already, and with the encoding error when fields
// do not encode; either way the event is counted in Stats.EventsDropped and
// the handler should carry on.
func (c *Conn) Emit(eventType string, fields any) error {
	if c.mux == nil {
		return ErrEventDropped
	}
	return c.mux.emitEvent(c, eventType, fields)
}

// Reset aborts the connection with a TCP RST instead of a FIN, discarding
// unsent data; it is how Spoki ends every connection. It uses the
// underlying conn's own Reset method if it has one (the netstack's conns
// do), else SetLinger(0) and Close on a *net.TCPConn. Other conns (such as
// net.Pipe) are only closed, and the error wraps errors.ErrUnsupported.
func (c *Conn) Reset() error {
	c.reset.Store(true)
	switch rc := c.raw.(type) {
	case interface{ Reset() error }:
		return rc.Reset()
	case *net.TCPConn:
		return errors.Join(rc.SetLinger(0), rc.Close())
	}
	return errors.Join(fmt.Errorf("handlers: reset %T: %w", c.raw, errors.ErrUnsupported), c.raw.Close())
}
