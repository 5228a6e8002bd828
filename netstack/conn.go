package netstack

import (
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/waiter"
)

// Conn is an accepted connection as handlers see it: a net.Conn with
// Reset, under the netstack's idle and total budgets, which hold whatever
// deadlines the handler sets.
type Conn struct {
	*gonet.TCPConn
	ep    tcpip.Endpoint
	idle  time.Duration
	end   time.Time
	timer *time.Timer

	mu            sync.Mutex
	readDeadline  time.Time
	writeDeadline time.Time
	closeOnce     sync.Once
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
	d := time.Now().Add(c.idle)
	if c.end.Before(d) {
		d = c.end
	}
	if !user.IsZero() && user.Before(d) {
		d = user
	}
	return d
}

// Read implements net.Conn.
func (c *Conn) Read(b []byte) (int, error) {
	c.mu.Lock()
	d := c.bound(c.readDeadline)
	c.mu.Unlock()
	c.TCPConn.SetReadDeadline(d)
	return c.TCPConn.Read(b)
}

// Write implements net.Conn.
func (c *Conn) Write(b []byte) (int, error) {
	c.mu.Lock()
	d := c.bound(c.writeDeadline)
	c.mu.Unlock()
	c.TCPConn.SetWriteDeadline(d)
	return c.TCPConn.Write(b)
}

// SetDeadline implements net.Conn.
func (c *Conn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.readDeadline, c.writeDeadline = t, t
	c.mu.Unlock()
	return nil
}

// SetReadDeadline implements net.Conn.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.readDeadline = t
	c.mu.Unlock()
	return nil
}

// SetWriteDeadline implements net.Conn.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.writeDeadline = t
	c.mu.Unlock()
	return nil
}

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
