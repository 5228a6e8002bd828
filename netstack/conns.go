package netstack

import (
	"net/netip"
	"sync"
	"time"
)

// flowKey names a connection from the telescope's side.
type flowKey struct {
	local, remote         [16]byte
	localPort, remotePort uint16
}

func makeFlowKey(local, remote netip.Addr, lport, rport uint16) flowKey {
	return flowKey{local: local.As16(), remote: remote.As16(), localPort: lport, remotePort: rport}
}

// connEntry is what the front end knows of an admitted connection.
type connEntry struct {
	userID   uint32
	admitted time.Time
	accepted bool
	done     time.Time // zero while the connection is open
}

// connTable bounds concurrent connections and keeps the user id of each
// admitted handshake so that gVisor's replies on it (the final reset above
// all) join the ACK's raw row. It only grows with completed handshakes, and
// at most to max open entries plus those finished within doneLinger.
type connTable struct {
	mu   sync.Mutex
	m    map[flowKey]*connEntry
	open int
	max  int
}

const (
	// admitTimeout is how long an admitted handshake may wait for gVisor to
	// accept it before the slot is reclaimed.
	admitTimeout = 10 * time.Second
	// doneLinger keeps a finished connection's user id for the last
	// segments gVisor sends after the handler returns (the RST, a FIN).
	doneLinger = 5 * time.Second
)

func newConnTable(max int) *connTable {
	return &connTable{m: make(map[flowKey]*connEntry), max: max}
}

// admit reserves a slot for a handshake. A segment of a handshake already
// admitted (a retransmitted ACK, data racing the accept) gets the same slot
// with fresh false. It fails when max connections are open.
func (t *connTable) admit(k flowKey, newID func() uint32, now time.Time) (uid uint32, fresh, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.m[k]; ok && e.done.IsZero() {
		return e.userID, false, true
	}
	if t.open >= t.max {
		return 0, false, false
	}
	e := &connEntry{userID: newID(), admitted: now}
	t.m[k] = e
	t.open++
	return e.userID, true, true
}

// forget undoes an admission that could not be passed on.
func (t *connTable) forget(k flowKey) {
	t.mu.Lock()
	if e, ok := t.m[k]; ok && e.done.IsZero() {
		delete(t.m, k)
		t.open--
	}
	t.mu.Unlock()
}

// accepted marks the connection as served and returns its entry's data.
func (t *connTable) accepted(k flowKey) (uid uint32, admitted time.Time, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[k]
	if !ok || !e.done.IsZero() {
		return 0, time.Time{}, false
	}
	e.accepted = true
	return e.userID, e.admitted, true
}

// finish releases the slot; the user id lingers for late replies.
func (t *connTable) finish(k flowKey, now time.Time) {
	t.mu.Lock()
	if e, ok := t.m[k]; ok && e.done.IsZero() {
		e.done = now
		t.open--
	}
	t.mu.Unlock()
}

// userID returns the id of the connection, 0 if unknown.
func (t *connTable) userID(k flowKey) uint32 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.m[k]; ok {
		return e.userID
	}
	return 0
}

// sweep removes finished entries after doneLinger and admissions gVisor never
// accepted after admitTimeout; it returns how many of the latter there were.
func (t *connTable) sweep(now time.Time) (expired int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, e := range t.m {
		switch {
		case !e.done.IsZero() && now.Sub(e.done) > doneLinger:
			delete(t.m, k)
		case e.done.IsZero() && !e.accepted && now.Sub(e.admitted) > admitTimeout:
			delete(t.m, k)
			t.open--
			expired++
		}
	}
	return expired
}

// len returns the number of open connections.
func (t *connTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.open
}
