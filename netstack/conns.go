package netstack

import (
	"maps"
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
	isn      uint32 // the client's initial sequence number (records.Flow.ISN)
	admitted time.Time
	accepted bool
	done     time.Time // zero while the connection is open
	// src and net are the remote address and its /24 or /48, whose open
	// counts this entry holds while open.
	src netip.Addr
	net netip.Prefix
	// l is the listener the handshake was handed to, whose pending count
	// this entry holds until accepted or expired.
	l *listener
	// rstSeq is the sequence number of a client's reset right after the
	// admitting segment; reset records one that came before the accept.
	rstSeq uint32
	reset  bool
	// shift is the window scale the SYN-ACK announced and the client
	// agreed to (0: none): the front end scales gVisor's windows by it.
	shift uint8
	// delta is what the front end adds to the sequence numbers of the
	// client's segments before gVisor sees them, and takes off the
	// acknowledgements gVisor sends, so that gVisor's listener takes the
	// front end's cookie for one of its own (cookieJar.translate). It
	// must be there before any segment of the connection reaches gVisor:
	// admitFlow sets it with the entry.
	delta uint32
}

// connTable bounds concurrent connections, in total and per remote address
// and network, and keeps the user id of each admitted handshake so that
// gVisor's replies on it (the final reset above all) join the ACK's raw
// row. It holds at most max open entries plus doneFactor × max finished
// ones (those finished within doneLinger, the oldest first out); the
// per-source counts hold open connections only, so at most max entries
// each.
//
// Go's maps never give back the room of deleted entries, so after a burst
// (a port sweep: up to 5 × max entries at once) they would keep its
// memory for good; sweep rebuilds a map, and the ring of finished
// entries, once it holds under a quarter of its high-water mark
// (shrinkFactor).
type connTable struct {
	mu     sync.Mutex
	m      map[flowKey]*connEntry
	perIP  map[netip.Addr]int
	perNet map[netip.Prefix]int
	open   int
	max    int
	maxIP  int
	maxNet int
	// done is a ring of the finished entries in the order they finished,
	// at most doneFactor × max; doneHead is its oldest.
	done     []doneKey
	doneHead int
	// hwM, hwIP and hwNet are the most entries m, perIP and perNet held
	// since they were last rebuilt.
	hwM, hwIP, hwNet int
}

// doneKey names a finished entry in connTable.done; at tells it from a later
// entry of the same four-tuple.
type doneKey struct {
	k  flowKey
	at time.Time
}

// admitResult says whether admit reserved a slot, and which cap refused it.
type admitResult uint8

const (
	admitOK admitResult = iota
	// admitConnLimit: max connections are open.
	admitConnLimit
	// admitSourceLimit: the remote address holds maxIP connections.
	admitSourceLimit
	// admitNetLimit: the remote /24 or /48 holds maxNet connections.
	admitNetLimit
)

const (
	// admitTimeout is how long an admitted handshake may wait for gVisor to
	// accept it before the slot is reclaimed.
	admitTimeout = 10 * time.Second
	// doneLinger keeps a finished connection's user id for the last
	// segments gVisor sends after the handler returns (the RST, a FIN).
	doneLinger = 5 * time.Second
	// doneFactor × max bounds the finished entries kept for doneLinger:
	// beyond 4 × 4096 / 5 s ≈ 3,300 connections ending per second at the
	// defaults, the oldest lose their user id early (connTable.finish).
	doneFactor = 4
	// shrinkFactor and shrinkMin: sweep rebuilds a map (or the ring of
	// finished entries) whose entries fell to 1/shrinkFactor of its
	// high-water mark, if that mark was at least shrinkMin (smaller ones
	// cost too little to bother).
	shrinkFactor = 4
	shrinkMin    = 256
	// netBits4 and netBits6 are the remote networks capped together.
	netBits4 = 24
	netBits6 = 48
)

// newConnTable returns a table of max connections without per-source caps
// (they are max); capSources sets them.
func newConnTable(max int) *connTable {
	return &connTable{m: make(map[flowKey]*connEntry), perIP: make(map[netip.Addr]int), perNet: make(map[netip.Prefix]int),
		max: max, maxIP: max, maxNet: max}
}

// capSources sets the per-address and per-network caps.
func (t *connTable) capSources(maxIP, maxNet int) *connTable {
	t.maxIP, t.maxNet = maxIP, maxNet
	return t
}

// remoteNet returns the network of a remote address that is capped as one.
func remoteNet(a netip.Addr) netip.Prefix {
	bits := netBits6
	if a.Is4() {
		bits = netBits4
	}
	p, _ := a.Prefix(bits)
	return p
}

// admitFlow reserves a slot for a handshake from remote, whose client ISN
// is isn (the admitting ACK's seq - 1, kept for the connection's Flow) and
// whose admitting segment ends at sequence number end (its seq plus
// payload), and gives the fresh entry the window scale shift and the
// sequence offset delta of the connection. A segment of a handshake
// already admitted (a retransmitted ACK, data racing the accept) gets the
// same slot with fresh false, and the offset it was admitted with. Both
// are set under the lock that makes the entry visible, so that a segment
// racing the admitting one on another TUN queue never reaches gVisor
// untranslated. It fails when the remote address, its network or the
// whole table holds its maximum of open connections, checked in that
// order.
func (t *connTable) admitFlow(k flowKey, remote netip.Addr, isn, end uint32, shift uint8, delta uint32, newID func() uint32, now time.Time) (uid, entryDelta uint32, fresh bool, res admitResult) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.m[k]; ok && e.done.IsZero() {
		return e.userID, e.delta, false, admitOK
	}
	remote = remote.Unmap()
	nw := remoteNet(remote)
	switch {
	case t.perIP[remote] >= t.maxIP:
		return 0, 0, false, admitSourceLimit
	case t.perNet[nw] >= t.maxNet:
		return 0, 0, false, admitNetLimit
	case t.open >= t.max:
		return 0, 0, false, admitConnLimit
	}
	e := &connEntry{userID: newID(), isn: isn, admitted: now, src: remote, net: nw, rstSeq: end, shift: shift, delta: delta}
	t.m[k] = e
	t.open++
	t.perIP[remote]++
	t.perNet[nw]++
	t.hwM = max(t.hwM, len(t.m))
	t.hwIP = max(t.hwIP, len(t.perIP))
	t.hwNet = max(t.hwNet, len(t.perNet))
	return e.userID, e.delta, true, admitOK
}

// release gives back the open counts of e, which is leaving the open state.
//
// +checklocks:t.mu
func (t *connTable) release(e *connEntry) {
	t.open--
	if n := t.perIP[e.src] - 1; n > 0 {
		t.perIP[e.src] = n
	} else {
		delete(t.perIP, e.src)
	}
	if n := t.perNet[e.net] - 1; n > 0 {
		t.perNet[e.net] = n
	} else {
		delete(t.perNet, e.net)
	}
	t.unbind(e)
}

// unbind gives back e's count in its listener's pending.
//
// +checklocks:t.mu
func (t *connTable) unbind(e *connEntry) {
	if e.l != nil {
		e.l.pending.Add(-1)
		e.l = nil
	}
}

// bind records that the fresh admission k was handed to listener l (whose
// pending ensureListener raised): the count is given back when the
// connection is accepted or the admission expires. It reports false, and
// gives the count back at once, if k is no longer waiting.
func (t *connTable) bind(k flowKey, l *listener) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[k]
	if !ok || !e.done.IsZero() || e.accepted || e.l != nil {
		l.pending.Add(-1)
		return false
	}
	e.l = l
	return true
}

// forget undoes an admission that could not be passed on.
func (t *connTable) forget(k flowKey) {
	t.mu.Lock()
	if e, ok := t.m[k]; ok && e.done.IsZero() {
		delete(t.m, k)
		t.release(e)
	}
	t.mu.Unlock()
}

// acceptState is what the table knows of a connection gVisor accepted.
type acceptState uint8

const (
	// acceptFirst: admitted and not accepted before; it is served.
	acceptFirst acceptState = iota
	// acceptAgain: the flow was accepted before (it is open or finished
	// and lingering) and no handshake admitted it since: gVisor built a
	// second endpoint from a segment of the first (see Stack.serve). A
	// flow is served once.
	acceptAgain
	// acceptUnknown: never admitted, or forgotten.
	acceptUnknown
)

// accepted marks the connection as served and returns its entry's data;
// reset says that the client reset it before. Only acceptFirst returns
// data and changes the entry.
func (t *connTable) accepted(k flowKey) (uid, isn uint32, admitted time.Time, reset bool, st acceptState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[k]
	switch {
	case !ok:
		return 0, 0, time.Time{}, false, acceptUnknown
	case !e.done.IsZero() || e.accepted:
		// A new handshake of the same four-tuple would have replaced a
		// finished entry (admit), and an open one is accepted once.
		return 0, 0, time.Time{}, false, acceptAgain
	}
	e.accepted = true
	t.unbind(e)
	return e.userID, e.isn, e.admitted, e.reset, acceptFirst
}

// clientReset records a client's reset of an admitted handshake that gVisor
// has not yet turned into a connection (the reset overtook the ACK), if it
// carries exactly the expected sequence number (as RFC 5961 asks, so that
// a blind reset does nothing). It reports whether it did.
func (t *connTable) clientReset(k flowKey, seq uint32) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[k]
	if !ok || !e.done.IsZero() || e.accepted || seq != e.rstSeq {
		return false
	}
	e.reset = true
	return true
}

// finish releases the slot; the user id lingers for late replies, unless
// doneFactor × max entries finished since: then the oldest finished entry
// is forgotten early, and evicted says so.
func (t *connTable) finish(k flowKey, now time.Time) (evicted bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[k]
	if !ok || !e.done.IsZero() {
		return false
	}
	e.done = now
	t.release(e)
	if len(t.done) < doneFactor*t.max {
		t.done = append(t.done, doneKey{k, now})
		return false
	}
	old := t.done[t.doneHead]
	t.done[t.doneHead] = doneKey{k, now}
	t.doneHead = (t.doneHead + 1) % len(t.done)
	// The ring still holds entries sweep removed, and keys admitted again.
	if o, ok := t.m[old.k]; ok && o.done.Equal(old.at) {
		delete(t.m, old.k)
		// Past doneLinger, sweep would have removed it anyway.
		return now.Sub(old.at) <= doneLinger
	}
	return false
}

// sweep removes finished entries after doneLinger and admissions gVisor never
// accepted after admitTimeout; it returns how many of the latter there were.
// Then it shrinks what a burst left oversized (shrinkFactor).
func (t *connTable) sweep(now time.Time) (expired int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	done := 0
	for k, e := range t.m {
		switch {
		case !e.done.IsZero() && now.Sub(e.done) > doneLinger:
			delete(t.m, k)
		case e.done.IsZero() && !e.accepted && now.Sub(e.admitted) > admitTimeout:
			delete(t.m, k)
			t.release(e)
			expired++
		case !e.done.IsZero():
			done++
		}
	}
	t.m = shrunk(t.m, &t.hwM)
	t.perIP = shrunk(t.perIP, &t.hwIP)
	t.perNet = shrunk(t.perNet, &t.hwNet)
	t.shrinkDone(done)
	return expired
}

// shrunk returns m, or a copy of it sized to its entries if they fell to
// 1/shrinkFactor of *hw (which is then reset): the copy is what lets the
// runtime free the old map's room.
func shrunk[K comparable, V any](m map[K]V, hw *int) map[K]V {
	if *hw < shrinkMin || len(m) > *hw/shrinkFactor {
		return m
	}
	n := make(map[K]V, len(m))
	maps.Copy(n, m)
	*hw = len(m)
	return n
}

// shrinkDone rebuilds the ring of finished entries when at most
// 1/shrinkFactor of its slots name a finished entry still in m (done of
// them, as sweep counted): it keeps those, oldest first, in a ring that
// append grows again up to doneFactor × max.
//
// +checklocks:t.mu
func (t *connTable) shrinkDone(done int) {
	if len(t.done) < shrinkMin || done > len(t.done)/shrinkFactor {
		return
	}
	var ring []doneKey
	if done > 0 {
		ring = make([]doneKey, 0, 2*done)
	}
	for i := range len(t.done) {
		d := t.done[(t.doneHead+i)%len(t.done)]
		if e, ok := t.m[d.k]; ok && e.done.Equal(d.at) {
			ring = append(ring, d)
		}
	}
	t.done, t.doneHead = ring, 0
}

// len returns the number of open connections.
func (t *connTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.open
}

// flowInfo is what the front end needs of an admitted connection for each
// of its segments: the user id its replies join, the window scale by which
// gVisor's windows are scaled and the sequence offset of the translation.
type flowInfo struct {
	userID uint32
	shift  uint8
	delta  uint32
}

// flow returns what the table knows of connection k, in one lookup; ok is
// false (and the flowInfo zero) if it does not know k.
func (t *connTable) flow(k flowKey) (flowInfo, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.m[k]; e != nil {
		return flowInfo{userID: e.userID, shift: e.shift, delta: e.delta}, true
	}
	return flowInfo{}, false
}
