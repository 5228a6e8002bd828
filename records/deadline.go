package records

import (
	"sync"
	"time"
)

// The connections handed to handlers (the netstack's, and the Mux's over
// them) run under budgets that the handler's own deadlines may only
// shorten. Both keep the handler's deadlines and clamp them the same way,
// here, where both may import it.

// Deadlines holds the read and write deadlines that a net.Conn's user sets;
// the conn applies them, clamped by its budgets, on each Read and Write.
// The zero value has none. It is safe for concurrent use.
type Deadlines struct {
	mu    sync.Mutex
	read  time.Time // +checklocks:mu
	write time.Time // +checklocks:mu
}

// Set sets both deadlines, as net.Conn.SetDeadline.
func (d *Deadlines) Set(t time.Time) {
	d.mu.Lock()
	d.read, d.write = t, t
	d.mu.Unlock()
}

// SetRead sets the read deadline, as net.Conn.SetReadDeadline.
func (d *Deadlines) SetRead(t time.Time) {
	d.mu.Lock()
	d.read = t
	d.mu.Unlock()
}

// SetWrite sets the write deadline, as net.Conn.SetWriteDeadline.
func (d *Deadlines) SetWrite(t time.Time) {
	d.mu.Lock()
	d.write = t
	d.mu.Unlock()
}

// Read returns the read deadline (zero if none).
func (d *Deadlines) Read() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.read
}

// Write returns the write deadline (zero if none).
func (d *Deadlines) Write() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.write
}

// EarliestDeadline returns the earliest of the user's deadline and the
// budgets' deadlines, the zero time being none, and which budget it is (its
// index in budgets; -1 if it is the user's or there is none). On a tie the
// user's deadline, then the earlier budget in the list, wins.
func EarliestDeadline(user time.Time, budgets ...time.Time) (time.Time, int) {
	dl, which := user, -1
	for i, t := range budgets {
		if !t.IsZero() && (dl.IsZero() || t.Before(dl)) {
			dl, which = t, i
		}
	}
	return dl, which
}
