package assemble

// Stage C (see doc.go): the original's PhaseMatcher. Packets are
// sorted into seven insertion-ordered maps keyed by (saddr, daddr, dport)
// and combined by the seven match functions; a checkpoint re-tries the
// matches, drops repeated connections and evicts one batch.

import (
	"net/netip"
	"slices"
)

// pkey is the phase matcher's key: the scanner's address, the telescope's
// address and port.
type pkey struct {
	saddr, daddr netip.Addr
	dport        uint16
}

func keyOf(ev *event) pkey { return pkey{ev.saddr, ev.daddr, ev.dport} }

// rec is one entry of a phase-matcher list: up to four packets. Plain lists
// (irregular_syns, regular_syns, acks) use one slot.
type rec struct {
	isyn, iack, rsyn, rack *event
}

// Tags of the output records, in the order in which evict collects them.
const (
	tagISYN uint8 = iota
	tagRSYN
	tagACK
	tagISYNAcked
	tagRSYNAcked
	tagTwoPhaseNoAck
	tagTwoPhase
)

var tagNames = [...]string{"isyn", "rsyn", "ack", "isyn (acked)", "rsyn (acked)", "two-phase (no ack)", "two-phase"}

// omap is an insertion-ordered map from pkey to a list of recs, with the
// semantics of a Python dict of lists: a key keeps its position while its
// list is empty, and a deleted key that comes back goes to the end.
// Deletion leaves a tombstone that compact removes.
type omap struct {
	idx  map[pkey]int
	ents []oent
	dead int
}

type oent struct {
	key  pkey
	list []rec
	dead bool
}

func newOmap() omap { return omap{idx: make(map[pkey]int)} }

// get returns the entry of k, nil if absent. It does not insert.
func (m *omap) get(k pkey) *oent {
	i, ok := m.idx[k]
	if !ok {
		return nil
	}
	return &m.ents[i]
}

// add appends r to the list of k, inserting k at the end if absent.
func (m *omap) add(k pkey, r rec) {
	if i, ok := m.idx[k]; ok {
		m.ents[i].list = append(m.ents[i].list, r)
		return
	}
	m.idx[k] = len(m.ents)
	m.ents = append(m.ents, oent{key: k, list: []rec{r}})
}

// del deletes the entry at position i.
func (m *omap) del(i int) {
	e := &m.ents[i]
	delete(m.idx, e.key)
	e.dead, e.list = true, nil
	m.dead++
}

// compact drops the tombstones once they outnumber the live entries. It
// must not run while the entries are being iterated.
func (m *omap) compact() {
	if m.dead < 64 || m.dead < len(m.ents)/2 {
		return
	}
	live := m.ents[:0]
	for _, e := range m.ents {
		if !e.dead {
			m.idx[e.key] = len(live)
			live = append(live, e)
		}
	}
	clear(m.ents[len(live):])
	m.ents, m.dead = live, 0
}

// len returns the number of recs in all lists.
func (m *omap) len() int {
	n := 0
	for i := range m.ents {
		n += len(m.ents[i].list)
	}
	return n
}

func removeAt(list []rec, j int) []rec {
	copy(list[j:], list[j+1:])
	list[len(list)-1] = rec{}
	return list[:len(list)-1]
}

// rtKey identifies a segment for the retransmit filter.
// The addresses are stored as 16 bytes plus a family bit, not as
// netip.Addr: a key without pointers hashes faster and is not scanned by
// the GC, and the sets hold one key per packet of two hours.
type rtKey struct {
	saddr, daddr [16]byte
	sport, dport uint16
	snum         uint32
	fam          uint8 // bit 0: saddr is IPv4, bit 1: daddr is IPv4
}

// phaseMatcher is the original's PhaseMatcher.
type phaseMatcher struct {
	phaseUs int64
	isyns   omap // irregular_syns
	rsyns   omap // regular_syns
	acks    omap
	iacked  omap // irregular_acked
	racked  omap // regular_acked
	tpna    omap // two_phase_no_ack
	tp      omap // two_phase
	// rt holds the retransmit sets by batch id.
	rt    map[int32]map[rtKey]struct{}
	stats *Stats
}

func newPhaseMatcher(phaseUs int64, st *Stats) *phaseMatcher {
	return &phaseMatcher{
		phaseUs: phaseUs,
		isyns:   newOmap(), rsyns: newOmap(), acks: newOmap(), iacked: newOmap(),
		racked: newOmap(), tpna: newOmap(), tp: newOmap(),
		rt:    make(map[int32]map[rtKey]struct{}),
		stats: st,
	}
}

// within is the phase window: t (the regular SYN's second) lies in
// [tc-1, tc+P) around the confirmation second tc of the irregular SYN's
// probe. An irregular SYN without a confirmation is never phase one.
func (pm *phaseMatcher) within(isyn *event, t int64) bool {
	if !isyn.conf {
		return false
	}
	tc := floorDiv(isyn.confUs, 1e6)
	if tc <= t {
		return (t-tc)*1e6 < pm.phaseUs
	}
	return tc-t <= 1
}

// ackMatches reports whether ack completes the handshake of syn: same
// source port and seq equal to the SYN-ACK probe's ack number. There is no
// time limit.
func ackMatches(syn, ack *event) bool {
	return syn.probed && syn.sport == ack.sport && syn.panum == ack.snum
}

// retransmit is the original's filter on (saddr, daddr, sport, dport, snum)
// per batch, also looking into the previous batch.
func (pm *phaseMatcher) retransmit(ev *event) bool {
	k := rtKey{saddr: ev.saddr.As16(), daddr: ev.daddr.As16(), sport: ev.sport, dport: ev.dport, snum: ev.snum}
	if ev.saddr.Is4() {
		k.fam |= 1
	}
	if ev.daddr.Is4() {
		k.fam |= 2
	}
	set := pm.rt[ev.batch]
	if set == nil {
		set = make(map[rtKey]struct{})
		pm.rt[ev.batch] = set
	}
	if _, ok := set[k]; ok {
		return true
	}
	set[k] = struct{}{}
	if ev.batch > 0 {
		if prev := pm.rt[ev.batch-1]; prev != nil {
			if _, ok := prev[k]; ok {
				return true
			}
		}
	}
	return false
}

// addEvent is the original's add_event.
func (pm *phaseMatcher) addEvent(ev *event) {
	if ev.proto != protoTCP {
		pm.stats.NonTCP++
		return
	}
	if ev.flags&flagRST != 0 {
		pm.stats.RSTIgnored++
		return
	}
	if pm.retransmit(ev) {
		pm.stats.Retransmits++
		return
	}
	syn, ack := ev.flags&flagSYN != 0, ev.flags&flagACK != 0
	switch {
	case syn && !ack:
		k := keyOf(ev)
		if ev.ipid == 54321 || ev.ttl > 200 || ev.options == "" {
			pm.isyns.add(k, rec{isyn: ev})
			return
		}
		if pm.rsynToISYN(k, ev) || pm.rsynToISYNAcked(k, ev) {
			return
		}
		pm.rsyns.add(k, rec{rsyn: ev})
	case ack && !syn:
		k := keyOf(ev)
		if pm.ackToRSYN(k, ev) || pm.ackToISYN(k, ev) || pm.ackToTP(k, ev) {
			return
		}
		pm.acks.add(k, rec{rack: ev})
	default:
		pm.stats.Ignored++
	}
}

// The seven match functions. Each scans the list of k in order, takes the
// first candidate, removes it and appends the combined record under k.

func (pm *phaseMatcher) rsynToISYN(k pkey, rsyn *event) bool {
	e := pm.isyns.get(k)
	if e == nil {
		return false
	}
	for j, r := range e.list {
		if pm.within(r.isyn, rsyn.ts) {
			e.list = removeAt(e.list, j)
			pm.tpna.add(k, rec{isyn: r.isyn, rsyn: rsyn})
			return true
		}
	}
	return false
}

func (pm *phaseMatcher) rsynToISYNAcked(k pkey, rsyn *event) bool {
	e := pm.iacked.get(k)
	if e == nil {
		return false
	}
	for j, r := range e.list {
		if pm.within(r.isyn, rsyn.ts) {
			e.list = removeAt(e.list, j)
			pm.tpna.add(k, rec{isyn: r.isyn, iack: r.iack, rsyn: rsyn})
			return true
		}
	}
	return false
}

func (pm *phaseMatcher) ackToRSYN(k pkey, ack *event) bool {
	e := pm.rsyns.get(k)
	if e == nil {
		return false
	}
	for j, r := range e.list {
		if ackMatches(r.rsyn, ack) {
			e.list = removeAt(e.list, j)
			pm.racked.add(k, rec{rsyn: r.rsyn, rack: ack})
			return true
		}
	}
	return false
}

func (pm *phaseMatcher) ackToISYN(k pkey, ack *event) bool {
	e := pm.isyns.get(k)
	if e == nil {
		return false
	}
	for j, r := range e.list {
		if ackMatches(r.isyn, ack) {
			e.list = removeAt(e.list, j)
			pm.iacked.add(k, rec{isyn: r.isyn, iack: ack})
			return true
		}
	}
	return false
}

func (pm *phaseMatcher) ackToTP(k pkey, ack *event) bool {
	e := pm.tpna.get(k)
	if e == nil {
		return false
	}
	for j, r := range e.list {
		if ackMatches(r.rsyn, ack) {
			e.list = removeAt(e.list, j)
			r.rack = ack
			pm.tp.add(k, r)
			return true
		}
	}
	return false
}

func (pm *phaseMatcher) rsynAckedToISYN(k pkey, p2 rec) bool {
	e := pm.isyns.get(k)
	if e == nil {
		return false
	}
	for j, r := range e.list {
		if pm.within(r.isyn, p2.rsyn.ts) {
			e.list = removeAt(e.list, j)
			pm.tp.add(k, rec{isyn: r.isyn, rsyn: p2.rsyn, rack: p2.rack})
			return true
		}
	}
	return false
}

func (pm *phaseMatcher) rsynAckedToISYNAcked(k pkey, p2 rec) bool {
	e := pm.iacked.get(k)
	if e == nil {
		return false
	}
	for j, r := range e.list {
		if pm.within(r.isyn, p2.rsyn.ts) {
			e.list = removeAt(e.list, j)
			pm.tp.add(k, rec{isyn: r.isyn, iack: r.iack, rsyn: p2.rsyn, rack: p2.rack})
			return true
		}
	}
	return false
}

// tryMatchEverything re-tries the stored ACKs, then at most one regular SYN
// and one acked regular SYN per key (the original stops at the first
// success of each key).
func (pm *phaseMatcher) tryMatchEverything() {
	for i := range pm.acks.ents {
		e := &pm.acks.ents[i]
		if e.dead {
			continue
		}
		kept := e.list[:0]
		for _, r := range e.list {
			if pm.ackToRSYN(e.key, r.rack) || pm.ackToISYN(e.key, r.rack) || pm.ackToTP(e.key, r.rack) {
				continue
			}
			kept = append(kept, r)
		}
		clear(e.list[len(kept):])
		e.list = kept
	}
	for i := range pm.rsyns.ents {
		e := &pm.rsyns.ents[i]
		if e.dead {
			continue
		}
		for j, r := range e.list {
			if pm.rsynToISYN(e.key, r.rsyn) || pm.rsynToISYNAcked(e.key, r.rsyn) {
				e.list = removeAt(e.list, j)
				break
			}
		}
	}
	for i := range pm.racked.ents {
		e := &pm.racked.ents[i]
		if e.dead {
			continue
		}
		for j, r := range e.list {
			if pm.rsynAckedToISYN(e.key, r) || pm.rsynAckedToISYNAcked(e.key, r) {
				e.list = removeAt(e.list, j)
				break
			}
		}
	}
}

// findRepeatedConnections discards every acked regular SYN that lies in
// the phase window of a two-phase record of its key.
func (pm *phaseMatcher) findRepeatedConnections() int {
	n := 0
	for i := range pm.racked.ents {
		e := &pm.racked.ents[i]
		if e.dead {
			continue
		}
		kept := e.list[:0]
		for _, r := range e.list {
			if pm.repeated(e.key, r.rsyn) {
				n++
				continue
			}
			kept = append(kept, r)
		}
		clear(e.list[len(kept):])
		e.list = kept
		if len(kept) == 0 {
			pm.racked.del(i)
		}
	}
	pm.stats.RepeatedDropped += uint64(n)
	return n
}

func (pm *phaseMatcher) repeated(k pkey, rsyn *event) bool {
	for _, m := range [...]*omap{&pm.tpna, &pm.tp} {
		if e := m.get(k); e != nil {
			for _, r := range e.list {
				if pm.within(r.isyn, rsyn.ts) {
					return true
				}
			}
		}
	}
	return false
}

// evictRetransmits forgets the retransmit set of batch b.
func (pm *phaseMatcher) evictRetransmits(b int32) { delete(pm.rt, b) }

// evict moves out every rec whose anchor belongs to batch b, category by
// category in the original's order, then sorts them stably by time.
func (pm *phaseMatcher) evict(b int32, out []Record) []Record {
	out = evictMap(&pm.isyns, b, tagISYN, out, pm.stats)
	out = evictMap(&pm.rsyns, b, tagRSYN, out, pm.stats)
	out = evictMap(&pm.acks, b, tagACK, out, pm.stats)
	out = evictMap(&pm.iacked, b, tagISYNAcked, out, pm.stats)
	out = evictMap(&pm.racked, b, tagRSYNAcked, out, pm.stats)
	out = evictMap(&pm.tpna, b, tagTwoPhaseNoAck, out, pm.stats)
	out = evictMap(&pm.tp, b, tagTwoPhase, out, pm.stats)
	slices.SortStableFunc(out, func(x, y Record) int {
		switch {
		case x.ts < y.ts:
			return -1
		case x.ts > y.ts:
			return 1
		}
		return 0
	})
	return out
}

// anchor returns the event whose batch and time a rec of tag has.
func anchor(tag uint8, r *rec) *event {
	switch tag {
	case tagRSYN, tagRSYNAcked:
		return r.rsyn
	case tagACK:
		return r.rack
	}
	return r.isyn
}

func evictMap(m *omap, b int32, tag uint8, out []Record, st *Stats) []Record {
	for i := range m.ents {
		e := &m.ents[i]
		if e.dead {
			continue
		}
		kept := e.list[:0]
		for _, r := range e.list {
			a := anchor(tag, &r)
			if a.batch != b {
				kept = append(kept, r)
				continue
			}
			if tag == tagACK {
				// Unmatched ACKs are evicted but never written.
				st.AcksDiscarded++
				continue
			}
			out = append(out, Record{ts: a.ts, tag: tag, r: r})
		}
		clear(e.list[len(kept):])
		e.list = kept
		if len(kept) == 0 {
			m.del(i)
		}
	}
	m.compact()
	return out
}
