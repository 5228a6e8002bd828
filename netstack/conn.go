package netstack

import (
	"errors"
	"math"
	"net"
	"os"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/spoki-telescope/spoki/records"
)

// Per-connection buffer sizes (Config.ConnBuffer): the receive and the send
// buffer each. Requests to a telescope fit in a few segments; a larger
// request still arrives, the window just opens as the handler reads.
const (
	// DefaultConnBuffer is 8 KiB: DefaultMaxConns connections hold at most
	// 4096 × 2 × 8 KiB = 64 MiB in gVisor buffers.
	DefaultConnBuffer = 8 << 10
	// MinConnBuffer is the smallest buffer that carries a request larger
	// than itself: with 4 KiB (gVisor's own floor), whose accounting of
	// segment overhead leaves a window below one segment, a 16 KiB request
	// stalled for good in 3 of 10 runs of TestConnBufferLargeRequest; with
	// 8 KiB in none.
	MinConnBuffer = 8 << 10
	// MaxConnBuffer is the 64 KiB that the front end's SYN-ACK announces as
	// its window (no window scaling): more could never be used.
	MaxConnBuffer = 64 << 10
)

// listenQueueBuffer is the receive buffer of listeners, which gVisor uses
// only to bound a listener's queue of handshake segments; connections take
// the buffer the listener had at Listen (ConnBuffer). It is the largest
// value gVisor's int32 accounting holds, because that accounting leaks:
// a segment queued on a listener is charged to it, and when the listener
// hands the segment on to the connection it built (a handshake ACK with
// data, or data racing its ACK), the charge moves to the connection and is
// never taken off the listener. With any smaller bound each port's listener
// drops every segment, silently and for good, after bound/2 KiB such
// handshakes (3 with an 8 KiB buffer, 28 with 64 KiB); TestListenerLeak
// pins it. The queue's real memory stays bounded: only admitted handshakes
// (--max-conns at once) reach a listener, and each segment leaves the queue
// as soon as a gVisor processor handles it.
const listenQueueBuffer = math.MaxInt32

// ConnBufferBudget is what maxConns connections with buffers of buf bytes
// each way can hold in gVisor at most: the worst case the start-up line
// reports.
func ConnBufferBudget(maxConns, buf int) int64 { return int64(maxConns) * 2 * int64(buf) }

// Conn is an accepted connection as handlers see it: a net.Conn with
// Reset, under the netstack's idle and total budgets, which hold whatever
// deadlines the handler sets.
type Conn struct {
	*gonet.TCPConn
	ep    tcpip.Endpoint
	idle  time.Duration
	end   time.Time
	timer *time.Timer

	dl        records.Deadlines // the handler's own
	closeOnce sync.Once
}

func newConn(wq *waiter.Queue, ep tcpip.Endpoint, idle, total time.Duration) *Conn {
	c := &Conn{TCPConn: gonet.NewTCPConn(wq, ep), ep: ep, idle: idle, end: time.Now().Add(total)}
	// The total budget holds even for a handler blocked outside Read and
	// Write.
	c.timer = time.AfterFunc(total, func() { c.Reset() })
	return c
}

// bound returns the earliest of the handler's deadline, the idle budget from
// now and the total budget.
func (c *Conn) bound(user time.Time) time.Time {
	d, _ := records.EarliestDeadline(user, time.Now().Add(c.idle), c.end)
	return d
}

// Read implements net.Conn. A read past its deadline fails with an error
// that wraps os.ErrDeadlineExceeded, as net.Conn promises.
func (c *Conn) Read(b []byte) (int, error) {
	d := c.bound(c.dl.Read())
	c.TCPConn.SetReadDeadline(d)
	n, err := c.TCPConn.Read(b)
	return n, deadlineErr(err)
}

// Write implements net.Conn; like Read, past its deadline it fails with an
// error that wraps os.ErrDeadlineExceeded.
func (c *Conn) Write(b []byte) (int, error) {
	d := c.bound(c.dl.Write())
	c.TCPConn.SetWriteDeadline(d)
	n, err := c.TCPConn.Write(b)
	return n, deadlineErr(err)
}

// deadlineErr makes gonet's timeout errors, which are net.Errors with
// Timeout() but do not wrap os.ErrDeadlineExceeded, wrap it: the handlers
// tell their budgets from other errors with errors.Is, as they do on the
// kernel's sockets.
func deadlineErr(err error) error {
	var ne net.Error
	if err == nil || !errors.As(err, &ne) || !ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	return timeoutErr{err}
}

// timeoutErr is a gonet timeout that also wraps os.ErrDeadlineExceeded; it
// reads as the original error (and still unwraps to its *net.OpError).
type timeoutErr struct{ err error }

func (e timeoutErr) Error() string   { return e.err.Error() }
func (e timeoutErr) Unwrap() []error { return []error{e.err, os.ErrDeadlineExceeded} }
func (e timeoutErr) Timeout() bool   { return true }
func (e timeoutErr) Temporary() bool { return true }

// SetDeadline implements net.Conn.
func (c *Conn) SetDeadline(t time.Time) error { c.dl.Set(t); return nil }

// SetReadDeadline implements net.Conn.
func (c *Conn) SetReadDeadline(t time.Time) error { c.dl.SetRead(t); return nil }

// SetWriteDeadline implements net.Conn.
func (c *Conn) SetWriteDeadline(t time.Time) error { c.dl.SetWrite(t); return nil }

// Reset aborts the connection with a TCP RST, as Spoki ends every
// connection. The conn must still be closed.
func (c *Conn) Reset() error {
	c.ep.Abort()
	return nil
}

// Close implements net.Conn; it is safe to call more than once.
func (c *Conn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.timer.Stop()
		err = c.TCPConn.Close()
	})
	return err
}
